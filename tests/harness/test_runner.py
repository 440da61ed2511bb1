from __future__ import annotations

import shutil
import subprocess

import pytest

from harness import budget, machine
from harness.results import load
from harness.runner import (
    OverallProgress,
    RunInterrupted,
    RunPlan,
    committed_results_tree,
    estimate_seconds,
    plan_steps,
    run_spike,
    source_state,
)
from tests.harness.fakes import FakeSpike


@pytest.fixture(autouse=True)
def no_nginx(monkeypatch):
    real = machine.find_tool
    monkeypatch.setattr(machine, "find_tool", lambda name: None if name == "nginx" else real(name))


def test_a_crashing_scenario_is_recorded_and_the_run_goes_on(tmp_path):
    echoed = []
    run = run_spike(RunPlan(FakeSpike(), scenarios=["works", "crashes", "needs-tool"], repeat=2), tmp_path, echo=echoed.append)
    status = {(s.scenario, s.option): s.status for s in run.scenarios}
    assert status == {
        ("works", "a"): "ok",
        ("works", "b"): "ok",
        ("crashes", "a"): "failed",
        ("crashes", "b"): "failed",
        ("needs-tool", "a"): "not_run",
        ("needs-tool", "b"): "not_run",
    }
    crashed = run.result("crashes", "a")
    assert "the server crashed mid-scenario" in crashed.reason
    assert "apt-get install -y nginx" in run.result("needs-tool", "a").reason
    assert any("failed" in e for e in echoed) and any("not run" in e for e in echoed)
    log = (tmp_path / "runs" / f"{run.run_id}.log").read_text()
    assert "Traceback" in log and "RuntimeError" in log
    assert load(run.path).result("crashes", "b").status == "failed"  # stored results stay valid


def test_repeats_and_params_follow_the_profile(tmp_path):
    run = run_spike(RunPlan(FakeSpike(), scenarios=["works"], options=["b"], quick=True), tmp_path)
    sr = run.result("works", "b")
    assert run.profile == "quick" and run.parameters["repeat"] == 3
    assert sr.params == {"size": 1} and [f["seen"] for f in sr.facts] == [1, 1, 1]
    assert len(sr.measurement("latency").repeats) == 3 and len(sr.durations_s) == 3
    assert run.complexity["b"] == {"files": {"server.py": 2}, "loc": 2, "dependencies": ["dep1"], "dependency_count": 1}


def test_ctrl_c_stores_what_was_measured(tmp_path):
    with pytest.raises(RunInterrupted) as exc:
        run_spike(RunPlan(FakeSpike(), scenarios=["works", "interrupts"], repeat=1), tmp_path)
    stored = load(exc.value.run.path)
    assert stored.parameters["interrupted"] is True
    assert stored.result("works", "a").status == "ok"
    assert stored.result("interrupts", "a").status == "interrupted"


def test_scenarios_limited_to_some_options():
    steps = plan_steps(RunPlan(FakeSpike(), scenarios=["interrupts", "works"]))
    assert steps == [("interrupts", "a"), ("works", "a"), ("works", "b")]


def test_a_scenario_that_finds_it_cannot_run_is_not_run_not_failed(tmp_path):
    run = run_spike(RunPlan(FakeSpike(), scenarios=["cannot"], repeat=2), tmp_path)
    sr = run.result("cannot", "a")
    assert sr.status == "not_run" and "apt-get install -y nodejs" in sr.reason and len(sr.durations_s) == 1


class CalmSpike(FakeSpike):
    """Only the working scenario: a run of every scenario and option is complete."""

    scenarios = (FakeSpike.scenarios[0],)


def test_completion_and_budget_are_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "budget_minutes", lambda number, quick: 2.0 if quick else 7.0)
    full = run_spike(RunPlan(CalmSpike(), repeat=1), tmp_path)
    assert full.completion == "complete" and full.budget == {"minutes": 7.0, "over": False}
    quick = run_spike(RunPlan(CalmSpike(), quick=True, repeat=1), tmp_path)
    assert quick.completion == "complete" and quick.budget["minutes"] == 2.0
    assert run_spike(RunPlan(CalmSpike(), options=["a"], repeat=1), tmp_path).completion == "partial"
    assert run_spike(RunPlan(CalmSpike(), options=["a", "b"], scenarios=["works"], repeat=1), tmp_path).completion == "complete"
    assert load(full.path).completion == "complete" and load(full.path).source["allow_dirty"] is False


def test_ctrl_c_between_steps_still_stores_the_run(tmp_path):
    def on_step(desc: str, index: int, total: int) -> None:
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted) as exc:
        run_spike(RunPlan(CalmSpike(), repeat=1), tmp_path, on_step=on_step)
    stored = load(exc.value.run.path)
    assert stored.completion == "interrupted"
    assert stored.result("works", "a").status == "ok" and stored.result("works", "b").status == "interrupted"


def test_a_crash_in_the_harness_stores_the_run_as_interrupted_and_is_raised(tmp_path):
    def on_step(desc: str, index: int, total: int) -> None:
        if index == 1:
            raise RuntimeError("progress bar broke")

    with pytest.raises(RuntimeError, match="progress bar broke"):
        run_spike(RunPlan(CalmSpike(), repeat=1), tmp_path, on_step=on_step)
    (stored,) = (tmp_path / "runs").glob("*.json")
    crashed = load(stored)
    assert crashed.completion == "interrupted" and crashed.result("works", "a").status == "ok"
    assert "progress bar broke" in crashed.result("works", "b").reason
    assert "RuntimeError" in (tmp_path / "runs" / f"{crashed.run_id}.log").read_text()


def _stored_run(tmp_path, duration_s: float, **plan):
    run = run_spike(RunPlan(CalmSpike(), **plan), tmp_path)
    run.duration_s = duration_s
    return run


def test_the_estimate_comes_from_stored_durations_of_the_same_spike_and_profile(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "budget_minutes", lambda number, quick: 9.0)
    history = [_stored_run(tmp_path, d, repeat=2) for d in (1000.0, 100.0, 300.0, 200.0)]
    history.append(_stored_run(tmp_path, 5.0, repeat=2, quick=True))  # another profile
    history.append(_stored_run(tmp_path, 7.0, repeat=2, options=["a"]))  # partial: not a whole run's time
    seconds, basis = estimate_seconds(RunPlan(CalmSpike(), repeat=2), history)
    assert seconds == 200.0 and "median of 3" in basis  # the newest three: 100, 300, 200
    assert estimate_seconds(RunPlan(CalmSpike(), repeat=4), history)[0] == 400.0  # twice the repeats
    assert estimate_seconds(RunPlan(CalmSpike(), repeat=2, options=["a"]), history)[0] == 100.0  # half the steps
    assert estimate_seconds(RunPlan(CalmSpike(), repeat=2, quick=True), history)[0] == 5.0
    # No history: the budget; no budget either: unknown.
    assert estimate_seconds(RunPlan(CalmSpike(), repeat=2), []) == (540.0, "the budget (no earlier run)")
    monkeypatch.setattr(budget, "budget_minutes", lambda number, quick: None)
    assert estimate_seconds(RunPlan(CalmSpike(), repeat=2), [])[0] is None


def test_overall_progress_weighs_spikes_by_their_estimates():
    p = OverallProgress([600.0, None, 300.0])
    assert p.total == 900.0
    assert p.completed(0, 0.5) == 300.0 and p.remaining(0, 0.5) == 600.0
    assert p.completed(2, 0.0) == 600.0 and p.remaining(3, 0.0) == 0.0
    assert p.describe(0, 0.0) == "spike 1 of 3, about 15 min left plus 1 spike(s) with no estimate"
    assert p.describe(2, 0.9) == "spike 3 of 3, under a minute left"
    assert OverallProgress([6000.0]).describe(0, 0.0) == "spike 1 of 1, about 1 h 40 min left"


def _git(repo, *args: str) -> str:
    cmd = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=True).stdout


def test_source_state_lists_uncommitted_paths_but_not_the_results_folder(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "code").mkdir(parents=True)
    (repo / "results").mkdir()
    for name in ("code/a.py", "code/b.py", "results/README.md"):
        (repo / name).write_text("x\n")
    _git(tmp_path, "init", "-q", str(repo))
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "start")
    clean = source_state(repo / "code", ignore=repo / "results")
    assert clean == {"commit": _git(repo, "rev-parse", "HEAD").strip(), "dirty": False, "dirty_paths": []}
    (repo / "code" / "a.py").write_text("changed\n")
    _git(repo, "mv", "code/b.py", "code/c.py")
    (repo / "code" / "new.py").write_text("new\n")
    (repo / "results" / "README.md").write_text("re-rendered\n")
    (repo / "results" / "runs").mkdir()
    (repo / "results" / "runs" / "r.json").write_text("{}\n")
    state = source_state(repo / "code", ignore=repo / "results")
    assert state["dirty"] is True and state["dirty_paths"] == ["code/a.py", "code/c.py", "code/new.py"]
    assert committed_results_tree(repo / "results") == repo.resolve()
    assert committed_results_tree(repo / "results" / "quick") is None  # nothing tracked there
    assert committed_results_tree(tmp_path / "elsewhere") is None
    assert source_state(tmp_path / "elsewhere") == {"commit": None, "dirty": False, "dirty_paths": []}
