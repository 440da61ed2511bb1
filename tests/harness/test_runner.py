from __future__ import annotations

import pytest

from harness import machine
from harness.results import load
from harness.runner import RunInterrupted, RunPlan, plan_steps, run_spike
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
