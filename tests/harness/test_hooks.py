"""Observers of a run (harness.hooks): step started/ended around every repeat, faults a scenario reports, errors isolated."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness import hooks, machine
from harness.hooks import Event, FaultInjected, Observers, RunHooks, StepEnded, StepStarted
from harness.plugin import Scenario, ScenarioContext, ScenarioOutput
from harness.runner import RunInterrupted, RunPlan, run_spike
from tests.harness.fakes import FakeSpike, _ok


@pytest.fixture(autouse=True)
def no_nginx(monkeypatch):
    real = machine.find_tool
    monkeypatch.setattr(machine, "find_tool", lambda name: None if name == "nginx" else real(name))


@pytest.fixture(autouse=True)
def no_global_observers():
    """Each test starts and ends with no global observer, whatever it attached."""
    hooks.GLOBAL.clear()
    yield
    hooks.GLOBAL.clear()


def _steps(events: list[Event]) -> list[tuple[str, str, str, int, str]]:
    """Each step event as (kind, scenario, option, repeat, status), status empty for a start."""
    out = []
    for e in events:
        if isinstance(e, StepStarted):
            out.append(("started", e.scenario, e.option, e.repeat, ""))
        elif isinstance(e, StepEnded):
            out.append(("ended", e.scenario, e.option, e.repeat, e.status))
    return out


def test_observers_see_every_step_start_and_end_in_order_with_its_status(tmp_path):
    seen: list[Event] = []
    plan = RunPlan(FakeSpike(), scenarios=["works", "crashes", "needs-tool", "cannot"], repeat=2)
    run = run_spike(plan, tmp_path, observers=[seen.append])
    expected = []
    for opt in ("a", "b"):
        for r in (0, 1):
            expected += [("started", "works", opt, r, ""), ("ended", "works", opt, r, "ok")]
    for scen, status in (("crashes", "failed"), ("needs-tool", "not_run"), ("cannot", "not_run")):
        for opt in ("a", "b"):
            expected += [("started", scen, opt, 0, ""), ("ended", scen, opt, 0, status)]
    assert _steps(seen) == expected
    assert all(e.run_id == run.run_id and e.spike == "s42-fake" for e in seen)
    assert all(isinstance(e.monotonic, float) and isinstance(e.wall, float) for e in seen)
    ended = [e for e in seen if isinstance(e, StepEnded)]
    crashed = next(e for e in ended if e.scenario == "crashes")
    assert "the server crashed mid-scenario" in crashed.reason and crashed.reason == run.result("crashes", "a").reason
    assert "apt-get install -y nginx" in next(e for e in ended if e.scenario == "needs-tool").reason
    assert next(e for e in ended if e.scenario == "needs-tool").duration_s == 0.0
    # the run itself is what it would be with no observer
    assert [(s.scenario, s.option, s.status) for s in run.scenarios] == [
        (s, o, st)
        for s, st in (("works", "ok"), ("crashes", "failed"), ("needs-tool", "not_run"), ("cannot", "not_run"))
        for o in ("a", "b")
    ]


def _nan_latency(ctx: ScenarioContext) -> ScenarioOutput:
    out = ScenarioOutput()
    out.add("latency", "ms", [1.0, math.nan])
    return out


class NanSpike(FakeSpike):
    scenarios = (Scenario("nan", "NaN", "A NaN sample: the output check fails the step.", _nan_latency),)


def test_the_last_end_of_a_step_carries_the_status_the_output_check_gave_it(tmp_path):
    seen: list[Event] = []
    run = run_spike(RunPlan(NanSpike(), options=["a"], repeat=2), tmp_path, observers=[seen.append])
    assert _steps(seen) == [
        ("started", "nan", "a", 0, ""),
        ("ended", "nan", "a", 0, "ok"),
        ("started", "nan", "a", 1, ""),
        ("ended", "nan", "a", 1, "failed"),
    ]
    assert seen[-1].reason == run.result("nan", "a").reason  # type: ignore[union-attr]


def test_an_interrupted_step_ends_interrupted(tmp_path):
    seen: list[Event] = []
    with pytest.raises(RunInterrupted):
        run_spike(RunPlan(FakeSpike(), scenarios=["works", "interrupts"], repeat=1), tmp_path, observers=[seen.append])
    assert _steps(seen)[-2:] == [("started", "interrupts", "a", 0, ""), ("ended", "interrupts", "a", 0, "interrupted")]


def test_an_observer_that_raises_does_not_break_the_run_and_is_logged(tmp_path):
    def broken(event: Event) -> None:
        raise ValueError("the exporter is down")

    seen: list[Event] = []
    plan = RunPlan(FakeSpike(), scenarios=["works", "crashes"], repeat=2)
    run = run_spike(plan, tmp_path, observers=[broken, seen.append])
    assert run.completion == "partial" and not run.parameters["interrupted"]
    assert run.result("works", "a").status == "ok" and run.result("crashes", "b").status == "failed"
    assert len(_steps(seen)) == 2 * 4 + 2 * 2  # the observer after the broken one still heard everything
    log = (tmp_path / "runs" / f"{run.run_id}.log").read_text()
    assert "observer" in log and "broken" in log and "ValueError: the exporter is down" in log
    assert log.count("Traceback") == 1 + 2  # the observer's once (then one line each), the crashing scenario's twice
    assert log.count("ValueError: the exporter is down") == len(seen)


def _injects(ctx: ScenarioContext) -> ScenarioOutput:
    ctx.fault("kill", "server", signal="SIGKILL", after_s=1.5)
    return _ok(ctx)


class FaultSpike(FakeSpike):
    scenarios = (Scenario("chaos", "Chaos", "Kills its server.", _injects, {"size": 1}),)


def test_a_fault_reported_by_a_scenario_reaches_observers_between_its_steps_events(tmp_path):
    seen: list[Event] = []
    run = run_spike(RunPlan(FaultSpike(), options=["b"], repeat=2), tmp_path, observers=[seen.append])
    assert [type(e).__name__ for e in seen] == ["StepStarted", "FaultInjected", "StepEnded"] * 2
    faults = [e for e in seen if isinstance(e, FaultInjected)]
    assert [(f.what, f.target, f.scenario, f.option, f.repeat) for f in faults] == [
        ("kill", "server", "chaos", "b", 0),
        ("kill", "server", "chaos", "b", 1),
    ]
    assert dict(faults[0].details) == {"signal": "SIGKILL", "after_s": 1.5}
    assert faults[0].run_id == run.run_id and run.result("chaos", "b").status == "ok"


def test_a_context_built_by_hand_reports_faults_to_its_own_callback_or_nowhere(tmp_path):
    option = FakeSpike.options[0]
    ScenarioContext(option, {}, 0, True, tmp_path).fault("kill", "server")  # no runner: goes nowhere, no error
    got: list[tuple[str, str, dict[str, object]]] = []
    ctx = ScenarioContext(option, {}, 0, True, tmp_path, on_fault=lambda w, t, d: got.append((w, t, d)))
    ctx.fault("partition", "link-1", seconds=3)
    assert got == [("partition", "link-1", {"seconds": 3})]


def test_a_global_observer_hears_runs_until_detached(tmp_path):
    seen: list[Event] = []
    assert hooks.attach(seen.append) is not None
    run_spike(RunPlan(FakeSpike(), scenarios=["works"], options=["a"], repeat=1), tmp_path)
    assert _steps(seen) == [("started", "works", "a", 0, ""), ("ended", "works", "a", 0, "ok")]
    hooks.detach(seen.append)
    run_spike(RunPlan(FakeSpike(), scenarios=["works"], options=["a"], repeat=1), tmp_path)
    assert len(seen) == 2
    hooks.detach(seen.append)  # detaching one that is not attached is ignored


def test_a_spike_attaches_observers_to_its_own_runs(tmp_path):
    made: list[list[Event]] = []

    class Watched(FakeSpike):
        def observers(self) -> list[hooks.Observer]:
            made.append([])
            return [made[-1].append]

    run_spike(RunPlan(Watched(), scenarios=["works"], options=["a"], repeat=1), tmp_path)
    run_spike(RunPlan(Watched(), scenarios=["works"], options=["b"], repeat=1), tmp_path)
    assert [[(e.option, type(e).__name__) for e in events] for events in made] == [
        [("a", "StepStarted"), ("a", "StepEnded")],
        [("b", "StepStarted"), ("b", "StepEnded")],
    ]
    assert FakeSpike().observers() == ()  # none by default


def test_the_registry_attaches_once_detaches_and_an_observer_attached_twice_hears_once(tmp_path: Path):
    heard: list[Event] = []
    registry = Observers()
    registry.attach(heard.append)
    registry.attach(heard.append)
    assert len(registry) == 1
    registry.detach(heard.append)
    assert len(registry) == 0

    hooks.attach(heard.append)
    lines: list[str] = []
    run = RunHooks("run-1", "s10-monitoring", [heard.append], log=lines.append)
    run.step_started("sc", "opt", 0)
    assert len(heard) == 1 and heard[0].run_id == "run-1" and lines == []
    run.observers.detach(heard.append)
    hooks.detach(heard.append)
    run.step_started("sc", "opt", 1)
    assert len(heard) == 1
