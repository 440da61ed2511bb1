"""Spike 2's plugin end to end: a tiny real run through the runner, its scores and its document."""

from __future__ import annotations

import dataclasses
import re

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.report.render import decide, render_spike
from harness.results import RunResult
from harness.runner import RunPlan, run_spike
from spikes.s02_state_sync import spike
from tests.spikes import handcheck as h

TINY = {
    "trace-replay": {"edits": 400, "lww_edits": 200, "rounds": 1, "batches": [1, 10], "memory": False},
    "intent": {"rounds": 2, "edits": 30},
    "session": {"clients": [3], "duration_s": 0.5, "rate": 4.0, "latency_ms": 5},
    "offline": {"offline_s": 0.5, "rate": 10.0, "latency_ms": 5},
}


@pytest.mark.slow
def test_a_tiny_real_run_scores_and_renders(tmp_path):
    """One run (a whole spike run is the slow part), checked from measurements to document."""
    tiny = type(spike)()
    tiny.scenarios = tuple(dataclasses.replace(s, quick_params={**s.quick_params, **TINY.get(s.key, {})}) for s in spike.scenarios)
    run = run_spike(RunPlan(tiny, quick=True, repeat=1, author="CI"), tmp_path / "out")
    _measures_every_scenario_and_option(run)
    _scores_follow_the_stated_formulas(run)
    _the_document_shows_the_credit_the_matrix_and_a_derived_recommendation(run, tmp_path / "doc")
    _a_missing_scenario_leaves_scores_incomplete_not_invented(run)


def _measures_every_scenario_and_option(run: RunResult) -> None:
    assert [(s.scenario, s.option, s.status) for s in run.scenarios if s.status != "ok"] == []
    for o in ("ot", "crdt", "lww"):
        assert run.median("trace-replay", o, "final_text_equal") == 1.0
        assert run.median("session", o, "converged", clients="3") == 1.0
        assert run.median("trace-replay", o, "memory_bytes") is None  # not measured in this run: shown as not run
        assert run.median("offline", o, "merged") == 1.0
        assert run.median("robustness", o, "cases_failed") == 0  # every hostile frame got a clear answer (harness/frames.py)
    for o in ("ot", "crdt"):
        assert run.median("concurrent-trace", o, "final_text_equal") == 1.0
        assert run.median("intent", o, "workload_lost_fraction") == 0.0
    assert run.median("intent", "lww", "case_lost", case="same-place typing") == 3
    crdt = run.ok("trace-replay", "crdt")
    assert {m.tags["batch"] for m in crdt.find("batch_replay_s")} == {"1", "10"}
    assert crdt.median("harness_over_direct") > 0


def _scores_follow_the_stated_formulas(run: RunResult) -> None:
    d = decide(spike, run)
    # The gate: an option that lost intents in the workload cannot be recommended; the others pass it.
    for o in run.options:
        lost = max(x for r in run.ok("intent", o).measurement("workload_lost_fraction").repeats for x in r)
        gate = next(g for g in d.gates[o] if g.gate.name == "no intent lost in the random concurrent workload")
        assert gate.status == ("fail" if lost > 0 else "pass") and gate.value == lost
    assert "lww" in d.blocked
    # Performance: replay speed (log, 500 -> 10,000 edits/s) and convergence (log, 2 s -> 0.1 s), equally weighted.
    for o in run.options:
        ops = run.median("trace-replay", o, "prefix_ops_per_s")
        conv = run.ok("session", o).measurement("convergence_s", clients="3").repeat_medians()[0]
        assert d.cells[o]["Performance"].score == pytest.approx((h.logu(ops, 10_000, 500) + h.logu(conv, 0.1, 2.0)) / 2)


def _the_document_shows_the_credit_the_matrix_and_a_derived_recommendation(run: RunResult, tmp_path) -> None:
    text = render_spike(spike, run, tmp_path).read_text()
    assert "CC BY 4.0" in text and "Joseph Gentle" in text
    for title in (
        "Comparison matrix",
        "Replay of automerge-paper",
        "Replay of concurrent traces (friendsforever: 2 authors; friendsforever-x2: 4 authors)",
        "Intent cases",
        "Session over the real server",
        "Offline editing, then reconnect",
        "CRDT replay: this spike's code against pycrdt directly",
        "Recommendation per kind of tabletop state",
        "Hostile frames: the answer to each case",
    ):
        assert title in text, title
    # Four authors through OT's central server and the CRDT, both exactly at endContent (issue 18).
    for o in ("ot", "crdt"):
        assert run.median("concurrent-trace", o, "final_text_equal", trace="friendsforever-x2") == 1.0
        assert run.median("concurrent-trace", o, "mapping_failures", trace="friendsforever-x2") == 0.0
    rows = {r[0]: r[1] for r in spike.recommendation_by_kind(run)}
    assert set(rows) == {"token positions", "strokes", "note text"}
    # LWW loses note edits in the workload, so it is never the note's strategy.
    assert rows["note text"] != "Last-Write-Wins (hybrid logical clocks)"
    assert "Chosen option: **" in text or "Tie within noise: **" in text
    assert "Last-Write-Wins (hybrid logical clocks) cannot be recommended whatever its total" in text
    links = re.findall(r"\]\((charts/[^)]+\.svg)\)", text)
    assert links and all((tmp_path / link).is_file() for link in links)


def _a_missing_scenario_leaves_scores_incomplete_not_invented(run: RunResult) -> None:
    data = run.to_dict()
    data["scenarios"] = [s for s in data["scenarios"] if not (s["scenario"] == "session" and s["option"] == "ot")]
    d = decide(spike, RunResult.from_dict(data))
    assert d.cells["ot"]["Performance"].score is None and "Performance" in d.left_out and "Performance" not in d.used


def test_an_unknown_scenario_is_a_user_error_not_a_traceback(tmp_path):
    res = CliRunner().invoke(app, ["run", "2", "--quick", "--scenario", "nope", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no scenario 'nope'" in res.output
