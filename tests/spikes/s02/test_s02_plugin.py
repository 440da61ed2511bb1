"""Spike 2's plugin end to end: a tiny real run through the runner, its scores and its document."""

from __future__ import annotations

import dataclasses
import re

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.report.render import decision_matrix, render_spike
from harness.results import RunResult
from harness.runner import RunPlan, run_spike
from spikes.s02_state_sync import spike

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
    for o in ("ot", "crdt"):
        assert run.median("concurrent-trace", o, "final_text_equal") == 1.0
        assert run.median("intent", o, "workload_lost_fraction") == 0.0
    assert run.median("intent", "lww", "case_lost", case="same-place typing") == 3
    crdt = run.ok("trace-replay", "crdt")
    assert {m.tags["batch"] for m in crdt.find("batch_replay_s")} == {"1", "10"}
    assert crdt.median("harness_over_direct") > 0


def _scores_follow_the_stated_formulas(run: RunResult) -> None:
    scores = spike.score(run).scores
    # Maintenance: the option losing intents scores below the ones that lose none.
    lost = {o: run.median("intent", o, "workload_lost_fraction") for o in run.options}
    for o in run.options:
        passed, total = spike._checks(run, o)
        assert scores[o]["Maintenance"].score == pytest.approx(10 * passed / total * (1 - lost[o]))
    # Performance: geometric mean of the speed ratio on the common prefix and the convergence-time ratio.
    ops = {o: run.median("trace-replay", o, "prefix_ops_per_s") for o in run.options}
    conv = {o: run.median("session", o, "convergence_s", clients="3") for o in run.options}
    for o in run.options:
        expected = 10 * ((ops[o] / max(ops.values())) * (min(conv.values()) / conv[o])) ** 0.5
        assert scores[o]["Performance"].score == pytest.approx(expected)


def _the_document_shows_the_credit_the_matrix_and_a_derived_recommendation(run: RunResult, tmp_path) -> None:
    text = render_spike(spike, run, tmp_path).read_text()
    assert "CC BY 4.0" in text and "Joseph Gentle" in text
    for title in (
        "Comparison matrix",
        "Replay of automerge-paper",
        "Replay of friendsforever",
        "Intent cases",
        "Session over the real server",
        "Offline editing, then reconnect",
        "CRDT replay: this spike's code against pycrdt directly",
        "Recommendation per kind of tabletop state",
    ):
        assert title in text, title
    rows = {r[0]: r[1] for r in spike.recommendation_by_kind(run)}
    assert set(rows) == {"token positions", "strokes", "note text"}
    # LWW loses note edits in the workload, so it is never the note's strategy.
    assert rows["note text"] != "Last-Write-Wins (hybrid logical clocks)"
    assert "Chosen option: **" in text
    links = re.findall(r"\]\((charts/[^)]+\.svg)\)", text)
    assert links and all((tmp_path / link).is_file() for link in links)


def _a_missing_scenario_leaves_scores_incomplete_not_invented(run: RunResult) -> None:
    data = run.to_dict()
    data["scenarios"] = [s for s in data["scenarios"] if not (s["scenario"] == "session" and s["option"] == "ot")]
    matrix = decision_matrix(spike, RunResult.from_dict(data))
    assert matrix.scores["ot"]["Performance"] is None and matrix.totals["ot"] is None


def test_an_unknown_scenario_is_a_user_error_not_a_traceback(tmp_path):
    res = CliRunner().invoke(app, ["run", "2", "--quick", "--scenario", "nope", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no scenario 'nope'" in res.output
