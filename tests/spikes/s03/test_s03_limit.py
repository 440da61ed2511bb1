"""Spike 3's frame statistics and limit search, on synthetic data: no browser."""

from __future__ import annotations

import math

import pytest

from spikes.s03_canvas_performance import limit as lim


def test_percentile_and_share_over():
    xs = [16.7] * 95 + [40.0] * 5
    assert lim.percentile(xs, 50) == pytest.approx(16.7)
    assert lim.share_over(xs, 25) == pytest.approx(0.05)
    assert math.isnan(lim.percentile([], 95))
    assert lim.share_over([], 25) == 1.0  # no frame is never a fast frame


def test_normal_and_headroom_judgements():
    assert lim.passes_normal([16.7] * 200 + [30.0])  # 1 in 201 over 25 ms: under 1%
    assert not lim.passes_normal([16.7] * 98 + [30.0] * 2)
    assert not lim.passes_normal([])
    assert lim.passes_headroom([5.0] * 95 + [30.0] * 5)
    assert not lim.passes_headroom([20.0] * 10)


def _curve(limit: int):
    """A synthetic renderer: frame cost grows linearly with the count and crosses 25 ms at ``limit``."""

    def frames(n: int) -> list[float]:
        cost = 25.0 * n / limit
        return [max(16.7, cost - 0.01)] * 300

    return frames


@pytest.mark.parametrize("true_limit", [137, 1000, 2345, 5999])
def test_bisection_converges_on_a_synthetic_cost_curve(true_limit):
    frames = _curve(true_limit)
    swept = {n: lim.passes_normal(frames(n)) for n in (100, 300, 1000, 3000, 10000)}
    lo, hi = lim.bracket(swept)
    assert lo is not None and hi is not None and lo <= true_limit < hi
    seen: list[int] = []

    def probe(n: int) -> bool:
        seen.append(n)
        return lim.passes_normal(frames(n))

    lo, hi, probed = lim.bisect_limit(probe, lo, hi, ratio=1.05, max_steps=20)
    assert probed == seen
    assert lo <= true_limit < hi and hi / lo <= 1.05
    assert len(probed) <= 10  # geometric: a few probes, not a scan


def test_bisection_stops_at_its_step_budget_and_never_claims_an_unseen_pass():
    calls = []
    lo, hi, probed = lim.bisect_limit(lambda n: calls.append(n) or False, 100, 10000, max_steps=2)
    assert len(probed) == 2 and lo == 100 and hi < 10000


def test_bracket_edges():
    assert lim.bracket({100: False, 300: False}) == (None, 100)
    assert lim.bracket({100: True, 300: True}) == (300, None)
    assert lim.bracket({100: True, 300: False, 1000: True}) == (100, 300)  # noise above a failure is not a pass
    with pytest.raises(ValueError):
        lim.bisect_limit(lambda n: True, 10, 10)


def test_vsync_paced_frames_are_not_counted_late():
    paced = [16.6, 16.7, 16.8] * 100
    assert lim.share_late(paced, 1) == 0.0
    assert lim.share_late([16.7] * 9 + [33.4], 1) == pytest.approx(0.1)
    assert lim.share_late([33.4] * 10, 2) == 0.0 and lim.share_late([50.0] * 10, 2) == 1.0
