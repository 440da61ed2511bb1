"""A small fake spike for harness tests: no I/O, deterministic, fully under test control."""

from __future__ import annotations

from pathlib import Path

import harness.services  # noqa: F401  # registers nginx, which a fake scenario requires
from harness.decide import Criterion, Metric, Part, Utility
from harness.plugin import (
    Chart,
    Finding,
    NotRunnable,
    Option,
    ReportContent,
    Scenario,
    ScenarioContext,
    ScenarioOutput,
    Spike,
    Table,
)
from harness.results import RunResult

__all__ = ["FakeSpike"]

CALLS: list[str] = []

LATENCY = Utility(10, 20, "a fake requirement: 10 ms is good enough, 20 ms unacceptable")
CRITERIA = ("Performance", "Maintenance", "Scalability", "Cost")


def _ok(ctx: ScenarioContext) -> ScenarioOutput:
    CALLS.append(f"ok:{ctx.option.key}:{ctx.repeat}")
    out = ScenarioOutput()
    base = {"a": 10.0, "b": 20.0}[ctx.option.key]
    out.add("latency", "ms", [base + ctx.repeat, base + ctx.repeat + 1], message="m1")
    out.facts["seen"] = ctx.params["size"]
    return out


def _boom(ctx: ScenarioContext) -> ScenarioOutput:
    raise RuntimeError("the server crashed mid-scenario")


def _not_runnable(ctx: ScenarioContext) -> ScenarioOutput:
    raise NotRunnable("node is not installed; install it with: apt-get install -y nodejs")


def _interrupt(ctx: ScenarioContext) -> ScenarioOutput:
    raise KeyboardInterrupt


class FakeSpike(Spike):
    """Two options, a working scenario, a crashing one and one needing a missing program."""

    number = 42
    slug = "fake"
    title = "Fake Spike"
    priority = "nice"
    planned_hours = 1
    question = "Does the harness work?"
    options = (Option("a", "Option A", "", ("server.py",), ()), Option("b", "Option B", "", ("server.py",), ("dep1",)))
    scenarios = (
        Scenario("works", "Works", "Measures a fake latency.", _ok, {"size": 100}, {"size": 1}),
        Scenario("crashes", "Crashes", "Raises.", _boom),
        Scenario("needs-tool", "Needs a tool", "Needs a program that is not installed.", _ok, {"size": 1}, requires=("nginx",)),
        Scenario("interrupts", "Interrupts", "Ctrl-C.", _interrupt, options=("a",)),
        Scenario("cannot", "Cannot run", "Finds out at run time that it cannot run.", _not_runnable),
    )
    package_dir = Path(__file__).parent / "fake_poc"
    #: Every seed criterion but Complexity (the harness's own) reads the median latency: 10 at 10 ms, 0 at 20 ms.
    criteria = tuple(Criterion(c, (Part("latency", Metric("works", "latency"), "ms", LATENCY, min_diff=0.5),)) for c in CRITERIA)

    def report(self, run: RunResult) -> ReportContent:
        rows = [[o, str(run.ok("works", o).measurement("latency").median)] for o in run.options if run.ok("works", o)]
        return ReportContent(
            tables=[Table("Latency", ["Option", "Median ms"], rows)],
            charts=[
                Chart(
                    "lat",
                    "Latency",
                    "bar",
                    "ms",
                    {o: [run.ok("works", o).measurement("latency").median] for o in run.options if run.ok("works", o)},
                    ["m1"],
                )
            ],
            findings=[
                Finding(o, o == "a", f"latency is {run.ok('works', o).measurement('latency').median} ms")
                for o in run.options
                if run.ok("works", o)
            ],
        )
