from __future__ import annotations

import json
import math
import shutil
import subprocess

import pytest

from harness import budget, machine
from harness.plugin import Measurement, Scenario, ScenarioContext, ScenarioOutput
from harness.results import load
from harness.runner import (
    OverallProgress,
    RunCrashed,
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

    with pytest.raises(RunCrashed, match="RuntimeError: progress bar broke") as exc:
        run_spike(RunPlan(CalmSpike(), repeat=1), tmp_path, on_step=on_step)
    assert isinstance(exc.value.error, RuntimeError) and exc.value.__cause__ is exc.value.error
    (stored,) = (tmp_path / "runs").glob("*.json")
    crashed = load(stored)
    assert exc.value.run.path == stored and exc.value.log == tmp_path / "runs" / f"{crashed.run_id}.log"
    assert crashed.completion == "interrupted" and crashed.result("works", "a").status == "ok"
    assert "progress bar broke" in crashed.result("works", "b").reason
    log = exc.value.log.read_text()
    assert "Traceback" in log and "RuntimeError: progress bar broke" in log


# -- a step's output is checked as the step finishes: never a stored run that cannot be read back ------------------------


def _empty_latency(ctx: ScenarioContext) -> ScenarioOutput:
    out = ScenarioOutput()
    out.add("latency", "ms", [])  # e.g. every message was lost
    out.add("sent", "messages", [100.0], better=None)
    out.facts["seen"] = 1
    return out


def _nan_latency(ctx: ScenarioContext) -> ScenarioOutput:
    out = ScenarioOutput()
    out.add("latency", "ms", [1.0, math.nan] if ctx.option.key == "a" else [2.0, 3.0])
    out.add("sent", "messages", [100.0], better=None)
    return out


def _bad_facts_and_tags(ctx: ScenarioContext) -> ScenarioOutput:
    out = ScenarioOutput()
    out.add("latency", "ms", [1.0])
    out.measurements.append(Measurement("batch_s", "s", [0.5], {"batch": 1}))  # type: ignore[dict-item]
    out.facts["ratio"] = math.inf
    return out


class BadOutputSpike(CalmSpike):
    scenarios = (
        Scenario("empty", "Empty", "A metric with no samples.", _empty_latency),
        Scenario("nan", "NaN", "A NaN sample in option a.", _nan_latency),
        Scenario("odd", "Odd", "A tag that is not a string, and facts JSON cannot hold.", _bad_facts_and_tags),
        FakeSpike.scenarios[0],
    )


def test_a_measurement_with_no_samples_fails_its_step_and_the_run_still_loads(tmp_path):
    echoed: list[str] = []
    run = run_spike(RunPlan(BadOutputSpike(), scenarios=["empty", "works"], repeat=2), tmp_path, echo=echoed.append)
    back = load(run.path)  # before the check, load refused this file forever: "(latency) has no samples"
    sr = back.result("empty", "a")
    assert sr.status == "failed" and "measurement (latency) has no samples" in sr.reason
    assert [m.name for m in sr.measurements] == ["sent"] and sr.measurement("sent").repeats == [[100.0], [100.0]]
    assert sr.facts == [{"seen": 1}, {"seen": 1}]  # the step's valid output is kept
    assert back.result("works", "a").status == "ok"  # the other steps are untouched
    assert any("has no samples" in line for line in echoed)


def test_a_nan_sample_fails_its_step_instead_of_making_save_raise_after_the_run(tmp_path):
    run = run_spike(RunPlan(BadOutputSpike(), scenarios=["nan", "works"], repeat=1), tmp_path)
    back = load(run.path)
    bad, good = back.result("nan", "a"), back.result("nan", "b")
    assert bad.status == "failed" and "measurement (latency) holds a non-finite or non-numeric sample nan" in bad.reason
    assert [m.name for m in bad.measurements] == ["sent"]
    assert good.status == "ok" and good.measurement("latency").repeats == [[2.0, 3.0]]
    assert json.loads(run.path.read_text())["scenarios"][0]["status"] == "failed"


def test_a_tag_that_is_not_a_string_and_facts_json_cannot_hold_fail_the_step(tmp_path):
    run = run_spike(RunPlan(BadOutputSpike(), scenarios=["odd"], options=["a"], repeat=1), tmp_path)
    sr = load(run.path).result("odd", "a")
    assert sr.status == "failed" and "measurement.tags must be an object of strings" in sr.reason
    assert "repeat 1: facts hold a value a results file cannot store" in sr.reason
    assert [m.name for m in sr.measurements] == ["latency"] and sr.facts == []


def test_an_output_the_harness_cannot_take_apart_fails_the_step_not_the_run(tmp_path):
    def returns_none(ctx: ScenarioContext) -> ScenarioOutput:
        return None  # type: ignore[return-value]

    class NoneSpike(CalmSpike):
        scenarios = (Scenario("none", "None", "Forgets to return its output.", returns_none), FakeSpike.scenarios[0])

    run = run_spike(RunPlan(NoneSpike(), repeat=1), tmp_path)
    assert run.completion == "complete" and run.result("works", "b").status == "ok"
    assert run.result("none", "a").status == "failed" and "AttributeError" in run.result("none", "a").reason


# -- budgets -----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_budgets(monkeypatch):
    """The budget table as if every run were allowed a microsecond: any run is over it."""
    monkeypatch.setattr(budget, "_table", lambda: ({}, 1e-8))


def test_budgets_do_not_apply_in_the_test_suite(tmp_path, tiny_budgets):
    # tests/conftest.py sets SPIKE_NO_BUDGET for every test: a slow machine must not turn a test red.
    run = run_spike(RunPlan(CalmSpike(), quick=True, repeat=1), tmp_path)
    assert run.budget == {"minutes": None, "over": False}
    assert budget.table_minutes(42, True) == 1e-8  # the table is still read: only its enforcement is off


def test_without_spike_no_budget_a_run_over_its_budget_is_marked_over(tmp_path, tiny_budgets, monkeypatch):
    for value in (None, "", "0"):
        if value is None:
            monkeypatch.delenv(budget.NO_BUDGET_ENV)
        else:
            monkeypatch.setenv(budget.NO_BUDGET_ENV, value)
        run = run_spike(RunPlan(CalmSpike(), quick=True, repeat=1), tmp_path)
        assert run.budget == {"minutes": 1e-8, "over": True}, value


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


def test_an_option_that_needs_a_missing_program_is_not_run_alone(tmp_path):
    import dataclasses

    from tests.harness.fakes import FakeSpike

    class OptionNeedsNginx(FakeSpike):
        options = (FakeSpike.options[0], dataclasses.replace(FakeSpike.options[1], requires=("nginx",)))

    run = run_spike(RunPlan(OptionNeedsNginx(), scenarios=["works"], repeat=1), tmp_path)
    assert run.result("works", "a").status == "ok"
    assert run.result("works", "b").status == "not_run" and "apt-get install -y nginx" in run.result("works", "b").reason


def test_a_program_nobody_registered_is_missing_with_a_reason_not_a_crash(tmp_path):
    import dataclasses

    from tests.harness.fakes import FakeSpike

    class NeedsWarp(FakeSpike):
        scenarios = (dataclasses.replace(FakeSpike.scenarios[0], requires=("warp-drive",)),)

    run = run_spike(RunPlan(NeedsWarp(), scenarios=["works"], repeat=1), tmp_path)
    assert run.result("works", "a").status == "not_run"
    assert run.result("works", "a").reason == "warp-drive is a program the harness does not describe"


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_while_the_run_is_being_stored_does_not_lose_it(tmp_path, monkeypatch, signame):
    import os
    import signal

    from harness import runner

    real_save = runner.save

    def save_hit_by_a_signal(run, runs_dir):
        os.kill(os.getpid(), getattr(signal, signame))  # a second Ctrl-C, or the CI's kill, as the file is written
        return real_save(run, runs_dir)

    monkeypatch.setattr(runner, "save", save_hit_by_a_signal)
    with pytest.raises(RunInterrupted) as exc:
        run_spike(RunPlan(CalmSpike(), repeat=1), tmp_path)
    stored = load(exc.value.run.path)
    assert stored.completion == "complete"  # every step had finished: the run stands, and the signal still stops the command
    assert {r.status for r in stored.scenarios} == {"ok"}
