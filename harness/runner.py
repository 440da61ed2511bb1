"""Run a spike: options x scenarios x repeats, with progress and error isolation.

A failing scenario is recorded as failed, with its reason, and the run goes on;
a scenario whose external program is missing is recorded as not run, with the
install command. Ctrl-C stops the run, and what was measured so far is still
stored (marked interrupted) before the interrupt is passed on.
"""

from __future__ import annotations

import datetime as _dt
import secrets
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import complexity, machine
from harness.plugin import NotRunnable, ScenarioContext, Spike, source_hash
from harness.results import MeasurementRecord, RunResult, ScenarioResult, save

__all__ = ["RunPlan", "RunInterrupted", "run_spike", "plan_steps"]


class RunInterrupted(Exception):
    """Ctrl-C during a run; ``run`` holds what was stored before it."""

    def __init__(self, run: RunResult):
        super().__init__("interrupted")
        self.run = run


@dataclass
class RunPlan:
    """What one ``spike run`` of one spike does."""

    spike: Spike
    scenarios: Sequence[str] | None = None
    options: Sequence[str] | None = None
    quick: bool = False
    repeat: int | None = None
    author: str = "realtime-spikes"
    weights: dict[str, int] = field(default_factory=dict)

    @property
    def repeats(self) -> int:
        return self.repeat or (self.spike.quick_repeat if self.quick else self.spike.default_repeat)

    @property
    def option_keys(self) -> list[str]:
        return list(self.options) if self.options else [o.key for o in self.spike.options]

    @property
    def scenario_keys(self) -> list[str]:
        return list(self.scenarios) if self.scenarios else [s.key for s in self.spike.scenarios]

    @property
    def effective_weights(self) -> dict[str, int]:
        w = dict(self.spike.weights)
        w.update(self.weights)
        return w


def plan_steps(plan: RunPlan) -> list[tuple[str, str]]:
    """The (scenario, option) pairs of a plan, in run order."""
    return [(s, o) for s in plan.scenario_keys for o in plan.option_keys if plan.spike.scenario(s).applies_to(o)]


def _missing_tools(requires: Sequence[str]) -> list[str]:
    return [name for name in requires if machine.find_tool(name) is None]


def _merge(record: dict[tuple, MeasurementRecord], output_measurements: list, repeat: int) -> None:
    for m in output_measurements:
        key = (m.name, tuple(sorted(m.tags.items())))
        rec = record.get(key)
        if rec is None:
            rec = record[key] = MeasurementRecord(m.name, m.unit, dict(m.tags), m.better, [])
        while len(rec.repeats) < repeat:
            rec.repeats.append([])  # a repeat that did not produce this metric
        rec.repeats.append(list(m.samples))


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def run_spike(
    plan: RunPlan,
    out_dir: Path,
    *,
    on_step: Callable[[str, int, int], None] | None = None,
    on_advance: Callable[[float], None] | None = None,
    echo: Callable[[str], None] = lambda s: None,
) -> RunResult:
    """Run a plan, store the run under ``out_dir/runs``, and return it.

    ``on_step(description, index, total)`` is called as each step starts,
    ``on_advance(fraction)`` as a step progresses (for progress bars), and
    ``echo`` for lines the user should read (failures, scenarios not run).
    """
    spike = plan.spike
    started = _now()
    t_start = time.perf_counter()
    profile = "quick" if plan.quick else "full"
    run_id = f"{started:%Y%m%dT%H%M%SZ}-{spike.key}-{profile}-{secrets.token_hex(2)}"
    runs_dir = Path(out_dir) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    log_path = runs_dir / f"{run_id}.log"
    log_lines: list[str] = []

    def log(line: str) -> None:
        log_lines.append(line)

    # Hash the code before running it: an edit during a long run must not be credited to this run.
    code_hash = source_hash(spike)
    meta = machine.collect(cwd=Path(spike.package_dir))
    complexity_by_option = {
        o.key: complexity.measure(spike.package_dir, spike.option(o.key)) for o in spike.options if o.key in plan.option_keys
    }
    steps = plan_steps(plan)
    results: list[ScenarioResult] = []
    measured_s = 0.0
    interrupted = False

    with tempfile.TemporaryDirectory(prefix=f"spike-{spike.number}-") as tmp:
        for index, (scen_key, opt_key) in enumerate(steps):
            scenario = spike.scenario(scen_key)
            option = spike.option(opt_key)
            params = scenario.resolved_params(plan.quick)
            sr = ScenarioResult(scenario=scen_key, option=opt_key, status="ok", params=params)
            results.append(sr)
            if on_step:
                on_step(f"{scenario.title} · {option.title}", index, len(steps))
            missing = _missing_tools(scenario.requires)
            if missing:
                sr.status = "not_run"
                sr.reason = "; ".join(f"{m} is not installed (install: {machine.EXTERNAL_TOOLS[m].install})" for m in missing)
                echo(f"[yellow]not run[/]: {scenario.title} / {option.title}: {sr.reason}")
                continue
            records: dict[tuple, MeasurementRecord] = {}
            repeats = min(plan.repeats, scenario.max_repeats or plan.repeats)
            for r in range(repeats):
                workdir = Path(tmp) / f"{scen_key}-{opt_key}-{r}"
                workdir.mkdir()

                def advance(fraction: float, _r: int = r, _n: int = repeats) -> None:
                    if on_advance:
                        on_advance((_r + max(0.0, min(1.0, fraction))) / _n)

                ctx = ScenarioContext(
                    option=option, params=dict(params), repeat=r, quick=plan.quick, workdir=workdir, log=log, advance=advance
                )
                t0 = time.perf_counter()
                try:
                    out = scenario.run(ctx)
                except NotRunnable as exc:
                    sr.status = "not_run"
                    sr.reason = str(exc)
                    echo(f"[yellow]not run[/]: {scenario.title} / {option.title}: {sr.reason}")
                    break
                except KeyboardInterrupt:
                    sr.status = "interrupted"
                    sr.reason = f"interrupted by the user during repeat {r + 1} of {repeats}"
                    interrupted = True
                    break
                except Exception as exc:  # isolate: one broken scenario must not sink the run
                    sr.status = "failed"
                    sr.reason = f"{type(exc).__name__}: {exc}"
                    log(f"--- {scen_key}/{opt_key} repeat {r} failed\n{traceback.format_exc()}")
                    echo(f"[red]failed[/]: {scenario.title} / {option.title}: {sr.reason} (traceback in {log_path})")
                    break
                finally:
                    dt = time.perf_counter() - t0
                    measured_s += dt
                    sr.durations_s.append(round(dt, 6))
                _merge(records, out.measurements, r)
                sr.facts.append(out.facts)
                advance(1.0)
            sr.measurements = list(records.values())
            if interrupted:
                break

    finished = _now()
    duration = time.perf_counter() - t_start
    run = RunResult(
        run_id=run_id,
        spike={"number": spike.number, "slug": spike.slug, "title": spike.title, "source_hash": code_hash},
        profile=profile,
        author=plan.author,
        started_at=started.isoformat(timespec="seconds"),
        finished_at=finished.isoformat(timespec="seconds"),
        duration_s=round(duration, 3),
        machine=meta,
        parameters={
            "repeat": plan.repeats,
            "weights": plan.effective_weights,
            "options": plan.option_keys,
            "scenarios": plan.scenario_keys,
            "interrupted": interrupted,
        },
        complexity=complexity_by_option,
        scenarios=results,
        harness={
            "measured_s": round(measured_s, 3),
            "overhead_fraction": round(max(0.0, duration - measured_s) / duration, 4) if duration else 0.0,
        },
    )
    save(run, runs_dir)
    if log_lines:
        log_path.write_text("\n".join(log_lines) + "\n", encoding="utf-8")
    if interrupted:
        raise RunInterrupted(run)
    return run
