"""Spike 3's scenarios on tiny parameters: what they store, and the stroke limit's sweep."""

from __future__ import annotations

import pytest

from harness.plugin import ScenarioContext
from spikes.s03_canvas_performance import scenarios as sc
from spikes.s03_canvas_performance import spike
from spikes.s03_canvas_performance.decision import scored_parts
from tests.utils import require_program


@pytest.mark.slow  # two Chromium launches
def test_strokes_stores_the_drawn_scene_and_a_stroke_limit(tmp_path):
    require_program("chromium", "node", "npm")
    params = {
        **sc.STROKES_QUICK,
        "strokes": 40,
        "warmup_ms": 100,
        "window_ms": 300,
        "limit_counts": [50, 200],
        "limit_window_ms": 300,
        "limit_refine": 0,
    }
    ctx = ScenarioContext(spike.option("canvas2d"), params, 0, True, tmp_path, log=lambda m: None)
    out = sc.run_strokes(ctx)
    names = {(m.name, m.tags.get("phase"), m.tags.get("strokes")) for m in out.measurements}
    assert ("frame_ms", "drawn", "40") in names
    assert ("frame_ms", "limit", "50") in names and ("frame_ms", "limit", "200") in names
    assert len(next(m for m in out.measurements if m.name == "draw_op_ms").samples) == 40  # one per draw operation
    f = out.facts["limit_strokes"]
    assert set(f["swept"]) == {"50", "200"} and f["probed"] == []
    limit = next(m for m in out.measurements if m.name == "stroke_limit").samples[0]
    assert limit in (0.0, 50.0, 200.0)  # the largest count seen to pass (judged, not timed, by this test)
    assert out.facts["browser_label"].startswith("Chromium")


class _FakePage:
    def to_dict(self):
        return {"engine": "chromium", "renderer": "fake"}

    def label(self):
        return "Chromium (fake)"


class _FakeRun:
    """What page.run_option returns, for steps judged by their token count: up to 1000 pass, past it frames are late."""

    def __init__(self, steps):
        self.page = _FakePage()
        self.steps = [{"intervals": [16.7] * 99 + [16.7 if st["tokens"] <= 1000 else 40.0] * 2, "script": [0.5] * 101} for st in steps]

    def step_cpu(self, step):
        return {}

    def step_rss(self, step):
        return None


def _animation_launches(monkeypatch, tmp_path, repeat):
    launches = []

    def run_option(option, steps, *, args=(), workdir=None, **kw):
        launches.append(([st["tokens"] for st in steps], tuple(args)))
        return _FakeRun(steps)

    monkeypatch.setattr(sc.page, "run_option", run_option)
    monkeypatch.setattr(sc.page, "package_versions", lambda: {})
    params = dict(sc.ANIMATION_PARAMS)
    ctx = ScenarioContext(spike.option("canvas2d"), params, repeat, False, tmp_path, log=lambda m: None)
    return sc.run_animation(ctx), launches


def test_the_first_animation_repeat_sweeps_and_searches_the_limit(monkeypatch, tmp_path):
    out, launches = _animation_launches(monkeypatch, tmp_path, 0)
    counts = sc.ANIMATION_PARAMS["counts"]
    assert launches[0] == (counts, ())  # the normal sweep, one launch
    assert any(args for _, args in launches)  # headroom mode ran
    assert len(launches) > 2  # and bisection probes between 1000 (passes) and 3000 (fails)
    assert out.facts["limit_search"] is True and out.facts["limit_normal"]["passes"] >= 1000
    assert {m.name for m in out.measurements} >= {"token_limit_normal", "token_limit_headroom"}


def test_later_animation_repeats_measure_only_the_scored_counts_in_one_launch(monkeypatch, tmp_path):
    out, launches = _animation_launches(monkeypatch, tmp_path, 1)
    counts = sc.ANIMATION_PARAMS["counts"]
    assert launches == [([min(counts), max(counts)], ())]  # no headroom, no bisection
    assert out.facts["limit_search"] is False and out.facts["counts_normal"] == [min(counts), max(counts)]
    assert "limit_normal" not in out.facts
    tagged = {m.tags["tokens"] for m in out.measurements if m.name == "script_ms"}
    assert tagged == {str(min(counts)), str(max(counts))}
    assert not any(m.name.startswith("token_limit") for m in out.measurements)


def test_the_declared_repeats_give_the_scored_animation_and_state_a_spread():
    repeats = {s.key: min(spike.default_repeat, s.max_repeats or spike.default_repeat) for s in spike.scenarios}
    scored = {scenario for _, scenario, exact in scored_parts() if not exact}
    assert {"animation", "state"} <= scored
    assert repeats["animation"] >= 2 and repeats["state"] >= 2
