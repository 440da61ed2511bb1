"""Spike 3's document from synthetic stored runs: the caveat on repeats, the OffscreenCanvas verdict, per-repeat scoring."""

from __future__ import annotations

from typing import Any

import pytest

from harness.decide.engine import source_values
from harness.report.render import decide, decision_box
from harness.results import MeasurementRecord, RunResult, ScenarioResult
from spikes.s03_canvas_performance import main_thread_at_limit, spike
from spikes.s03_canvas_performance import scenarios as sc
from spikes.s03_canvas_performance.decision import CRITERIA, scored_parts

OPTIONS = ["canvas2d", "konva", "pixi", "svg"]
#: Main-thread JS per frame (ms) by option and animated-token count: made-up, distinct per option.
JS = {"canvas2d": 0.2, "konva": 1.5, "pixi": 0.4, "svg": 0.8}


def _m(name: str, repeats: list[list[float]], unit: str = "ms", **tags: str) -> MeasurementRecord:
    return MeasurementRecord(name, unit, dict(tags), "lower", repeats)


def _animation(option: str, repeats: int, fails: int | None, js_at_fail: float) -> ScenarioResult:
    """Repeat 1 sweeps 100-3000 and searches the limit; later repeats measure 100 and 3000 only (as run_animation does)."""
    counts = [100, 300, 1000, 3000]
    later = sc.repeat_counts(counts)
    ms = []
    for n in counts:
        per = [[JS[option] * n / 100 + 0.01 * k] * 30 for k in range(repeats)] if n in later else [[JS[option] * n / 100] * 30]
        if n == fails:
            per = [[js_at_fail] * 30 for _ in per]
        ms.append(_m("script_ms", per, tokens=str(n), mode="normal"))
        ms.append(_m("p95_frame_ms", [[16.8] for _ in per], tokens=str(n), mode="normal"))
        ms.append(_m("gpu_cpu_ms_per_frame", [[9.0] for _ in per], tokens=str(n), mode="normal"))
    passes = max((n for n in counts if fails is None or n < fails), default=None)
    first: dict[str, Any] = {
        "counts_normal": counts,
        "limit_search": True,
        "limit_normal": {"passes": passes, "fails": fails, "probed": [], "swept": {str(n): fails is None or n < fails for n in counts}},
    }
    facts = [first] + [{"counts_normal": later, "limit_search": False} for _ in range(repeats - 1)]
    return ScenarioResult("animation", option, "ok", measurements=ms, facts=facts, durations_s=[30.0] * repeats)


def _run(*, repeats: dict[str, int], fails: int | None = None, js_at_fail: float = 1.0) -> RunResult:
    """A complete full-profile run with every scored figure, each scenario with the given number of repeats."""
    scenarios = []
    for i, o in enumerate(OPTIONS):
        scenarios.append(_animation(o, repeats["animation"], fails, js_at_fail))
        n = repeats["strokes"]
        scenarios.append(
            ScenarioResult(
                "strokes",
                o,
                "ok",
                params={"strokes": 1000},
                measurements=[_m("script_ms", [[JS[o] + 0.05 * k] * 30 for k in range(n)], strokes="1000", phase="drawn")],
                facts=[{}] * n,
                durations_s=[20.0] * n,
            )
        )
        n = repeats["state"]
        scenarios.append(
            ScenarioResult(
                "state",
                o,
                "ok",
                params={"state_mb": 10},
                measurements=[
                    _m("state_heap_mb", [[30.0 + 40 * i + k] for k in range(n)], unit="MB"),
                    _m("first_render_ms", [[500.0 + 900 * i + 10 * k] for k in range(n)]),
                ],
                facts=[{}] * n,
                durations_s=[14.0] * n,
            )
        )
        scenarios.append(
            ScenarioResult(
                "bad-input",
                o,
                "ok",
                measurements=[_m("bad_inputs_detected", [[2.0]], unit="cases"), _m("bad_inputs_total", [[2.0]], unit="cases")],
                facts=[{"cases": []}],
                durations_s=[4.0],
            )
        )
    return RunResult(
        run_id="synthetic",
        spike={"number": 3, "slug": spike.slug, "title": spike.title, "source_hash": ""},
        profile="full",
        author="test",
        started_at="2026-12-01T00:00:00+00:00",
        finished_at="2026-12-01T00:10:00+00:00",
        duration_s=600.0,
        machine={},
        parameters={"repeat": max(repeats.values()), "options": OPTIONS, "scenarios": ["strokes", "state", "animation", "bad-input"]},
        complexity={},
        scenarios=scenarios,
    )


def _caveats(run: RunResult) -> list[str]:
    content = spike.report(run)
    return decision_box(decide(spike, run), run, content.caveats, stale=False)["caveats"]


def test_mixed_repeats_name_the_scenarios_that_ran_once_and_the_scored_figure_without_a_spread():
    run = _run(repeats={"animation": 2, "state": 2, "strokes": 1})
    caveats = _caveats(run)
    assert not any(c.startswith("one repeat") for c in caveats)  # the harness drops its caveat once any part repeats
    (ours,) = [c for c in caveats if c.startswith("repeats:")]
    assert "`state` 2" in ours and "`animation` 2" in ours
    assert "`strokes` and `bad-input` ran once" in ours
    assert "main-thread JS per frame, panning over the drawn strokes" in ours  # scored, from one repeat
    assert "bad inputs detected" not in ours  # exact: a count that cannot vary is no missing spread
    assert "measured only 100 and 3000 tokens" in ours  # the animation's later repeats measured less


def test_when_every_scenario_ran_once_only_the_harness_speaks_of_one_repeat():
    run = _run(repeats={"animation": 1, "state": 1, "strokes": 1})
    caveats = _caveats(run)
    assert "one repeat: no estimate of the noise" in caveats
    assert not any(c.startswith("repeats:") for c in caveats)


def test_when_every_scenario_repeats_no_scored_figure_is_named_as_unrepeated():
    run = _run(repeats={"animation": 2, "state": 2, "strokes": 2})
    (ours,) = [c for c in _caveats(run) if c.startswith("repeats:")]
    assert "panning over the drawn strokes" not in ours and "`strokes` 2" in ours
    assert "; `bad-input` ran once" in ours


def test_every_scored_part_reads_a_scenario_of_the_spike():
    keys = {s.key for s in spike.scenarios}
    parts = scored_parts()
    assert len(parts) == sum(len(c.parts) for c in CRITERIA)
    assert {scenario for _, scenario, _ in parts} <= keys


def test_the_most_tokens_swept_is_scored_once_per_repeat_from_each_repeats_own_counts():
    run = _run(repeats={"animation": 2, "state": 2, "strokes": 2})
    part = next(p for c in CRITERIA for p in c.parts if p.label.endswith("the most tokens swept"))
    values = source_values(part.source, run, "konva")
    # 3000 tokens, repeat 1 and repeat 2 (which measured only 100 and 3000): two values, not one repeated
    assert values == pytest.approx([JS["konva"] * 30, JS["konva"] * 30 + 0.01])


@pytest.mark.parametrize(
    "fails,js,limited,count",
    [
        (None, 1.0, False, 3000),  # no count failed: judged at the most swept
        (1000, 5.0, False, 1000),  # failed, but its JS leaves the frame: raster is the limit
        (1000, 21.0, True, 1000),  # failed with its JS over the 16.7 ms frame: the main thread is the limit
    ],
)
def test_the_offscreen_canvas_verdict_comes_from_canvas2ds_js_where_it_stops_passing(fails, js, limited, count):
    run = _run(repeats={"animation": 2, "state": 2, "strokes": 1}, fails=fails, js_at_fail=js)
    v = main_thread_at_limit(run, "canvas2d")
    assert v is not None and v["count"] == count and v["limited"] is limited and v["failed"] is (fails is not None)
    note = next(n for n in spike.report(run).notes if n.startswith("**OffscreenCanvas"))
    assert ("**indicated** by this run" in note) is limited and ("not indicated by this run" in note) is (not limited)
    assert f"at {count} animated tokens" in note


def test_without_a_limit_search_the_offscreen_canvas_step_is_not_judged():
    run = _run(repeats={"animation": 1, "state": 1, "strokes": 1})
    run.scenarios = [s for s in run.scenarios if not (s.scenario == "animation" and s.option == "canvas2d")]
    assert main_thread_at_limit(run, "canvas2d") is None
    assert any(n.startswith("**OffscreenCanvas") and "not judged" in n for n in spike.report(run).notes)
