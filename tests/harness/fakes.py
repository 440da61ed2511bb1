"""A small fake spike for harness tests: no I/O, deterministic, fully under test control."""

from __future__ import annotations

from pathlib import Path

from harness.plugin import (
    Chart,
    CriterionScore,
    Finding,
    NotRunnable,
    Option,
    ReportContent,
    Scenario,
    ScenarioContext,
    ScenarioOutput,
    Scoring,
    Spike,
    Table,
)
from harness.results import RunResult

__all__ = ["FakeSpike"]

CALLS: list[str] = []


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

    def score(self, run: RunResult) -> Scoring:
        scores = {}
        for o in run.options:
            sr = run.ok("works", o)
            if sr is None:
                scores[o] = {}
                continue
            lat = sr.measurement("latency").median
            scores[o] = {c: CriterionScore(100 / lat, f"{lat} ms") for c in self.weights}
        return Scoring(scores, {c: "100 / latency" for c in self.weights})

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
