"""Run a spike: options x scenarios x repeats, with progress and error isolation.

A failing scenario is recorded as failed, with its reason, and the run goes on;
a scenario whose external program is missing is recorded as not run, with the
install command. Ctrl-C (or a crash of the harness itself) stops the run, and
what was measured so far is still stored, marked interrupted, before the
interrupt (``RunInterrupted``) or the error (``RunCrashed``, its traceback in
the run's log file) is passed on.

A step's output is checked as the step finishes, with the rules ``load``
applies to a stored file (``harness.results.check_measurement`` and
``check_facts``): a measurement with no samples, a NaN, a tag that is not a
string, or facts JSON cannot hold mark that step failed with the reason, and
only the offending measurement or facts are dropped. So a run is never stored
in a form that cannot be read back, and ``save`` never fails on a NaN after the
whole run was measured.

Every run records how complete it is (``complete``, ``partial`` when the user
chose a subset of scenarios or options, ``interrupted``), the git state of the
tree it was made from (``source``), and its wall time against the spike's
budget (``harness/budgets.toml``). The estimate of how long a plan takes comes
from the durations of stored runs, so ``spike run all`` can show an ETA.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import secrets
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape

from harness import budget as budgets
from harness import complexity, hooks, machine, process
from harness.plugin import Measurement, NotRunnable, ScenarioContext, Spike, source_hash
from harness.results import MeasurementRecord, ResultsError, RunResult, ScenarioResult, check_facts, check_measurement, save

__all__ = [
    "RunPlan",
    "RunInterrupted",
    "RunCrashed",
    "run_spike",
    "plan_steps",
    "MAX_DIRTY_PATHS",
    "source_state",
    "committed_results_tree",
    "estimate_seconds",
    "OverallProgress",
]

#: At most this many uncommitted paths are stored with a run; the flag says whether there were any.
MAX_DIRTY_PATHS = 50


class RunInterrupted(Exception):
    """Ctrl-C during a run; ``run`` holds what was stored before it."""

    def __init__(self, run: RunResult):
        super().__init__("interrupted")
        self.run = run


class RunCrashed(Exception):
    """The harness itself broke during a run (not a scenario: those are isolated as failed steps).

    ``run`` is what was stored before the error (marked interrupted), ``error``
    the exception (also the ``__cause__``), ``log`` the run's log file holding
    its traceback.
    """

    def __init__(self, run: RunResult, error: BaseException, log: Path | None):
        super().__init__(f"{type(error).__name__}: {error}")
        self.run = run
        self.error = error
        self.log = log


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
    allow_dirty: bool = False

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
    def complete(self) -> bool:
        """Whether the plan covers every scenario and option of the spike (else the run is ``partial``)."""
        return set(self.scenario_keys) >= {s.key for s in self.spike.scenarios} and set(self.option_keys) >= {
            o.key for o in self.spike.options
        }

    @property
    def effective_weights(self) -> dict[str, int]:
        w = dict(self.spike.weights)
        w.update(self.weights)
        return w


def plan_steps(plan: RunPlan) -> list[tuple[str, str]]:
    """The (scenario, option) pairs of a plan, in run order."""
    return [(s, o) for s in plan.scenario_keys for o in plan.option_keys if plan.spike.scenario(s).applies_to(o)]


def _git(cwd: Path, *args: str) -> str | None:
    """The output of one git command, or ``None`` when git is missing or ``cwd`` is not in a work tree."""
    try:
        done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _existing(path: Path) -> Path:
    path = Path(path).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path if path.is_dir() else path.parent


def _work_tree(path: Path) -> Path | None:
    top = _git(_existing(path), "rev-parse", "--show-toplevel")
    return Path(top.strip()).resolve() if top and top.strip() else None


def committed_results_tree(out_dir: Path) -> Path | None:
    """The git work tree ``out_dir`` belongs to, when git tracks files under it (a committed results folder), else ``None``.

    A run into such a folder replaces documents that reviewers read in the
    repository, so ``spike run`` asks for a clean tree first; a scratch or
    ignored folder (``results/quick/``, a temp dir) is never guarded.
    """
    root = _work_tree(out_dir)
    if root is None:
        return None
    rel = Path(out_dir).resolve().relative_to(root).as_posix() if Path(out_dir).resolve() != root else "."
    tracked = _git(root, "ls-files", "-z", "--", rel)
    return root if tracked else None


def source_state(code_dir: Path, ignore: Path | None = None) -> dict[str, Any]:
    """The commit of the work tree holding ``code_dir``, and its uncommitted paths (modified, staged or untracked).

    Paths under ``ignore`` (the results folder the run writes to) are left
    out: they are the run's output, not its source, and the documents a
    previous spike of the same ``spike run all`` rewrote must not count.
    Outside a git work tree (an installed package) commit is ``None`` and the
    tree is taken as clean, since there is nothing to compare with.
    """
    root = _work_tree(code_dir)
    if root is None:
        return {"commit": None, "dirty": False, "dirty_paths": []}
    head = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all") or ""
    skip: str | None = None
    if ignore is not None:
        target = Path(ignore).resolve()
        if target == root or root in target.parents:
            skip = target.relative_to(root).as_posix()
    paths: list[str] = []
    entries = status.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        if entry[0] in "RC":  # a rename or copy is followed by its source path
            i += 1
        path = entry[3:]
        if skip is not None and (skip == "." or path == skip or path.startswith(skip.rstrip("/") + "/")):
            continue
        paths.append(path)
    return {"commit": head.strip() if head else None, "dirty": bool(paths), "dirty_paths": sorted(paths)}


def _missing_tools(requires: Sequence[str]) -> list[str]:
    """The required programs not installed here; a name no module registered counts as missing (the CLI refuses it at load)."""
    return [name for name in requires if name not in machine.EXTERNAL_TOOLS or machine.find_tool(name) is None]


def _install_hint(name: str) -> str:
    tool = machine.EXTERNAL_TOOLS.get(name)
    return f"{name} is not installed (install: {tool.install})" if tool else f"{name} is a program the harness does not describe"


_MetricKey = tuple[str, tuple[tuple[str, str], ...]]


def _merge(record: dict[_MetricKey, MeasurementRecord], output_measurements: Sequence[Measurement], repeat: int) -> None:
    for m in output_measurements:
        key = (m.name, tuple(sorted(m.tags.items())))
        rec = record.get(key)
        if rec is None:
            rec = record[key] = MeasurementRecord(m.name, m.unit, dict(m.tags), m.better, [])
        while len(rec.repeats) < repeat:
            rec.repeats.append([])  # a repeat that did not produce this metric
        rec.repeats.append(list(m.samples))


def _check_output(sr: ScenarioResult) -> list[str]:
    """Drop the measurements and facts of a finished step that could not be stored and loaded back; say why.

    The same rules ``load`` applies (``check_measurement``, ``check_facts``), so
    what the runner keeps is exactly what a results file may hold.
    """
    problems: list[str] = []
    kept: list[MeasurementRecord] = []
    for rec in sr.measurements:
        try:
            check_measurement(rec)
        except ResultsError as exc:
            problems.append(str(exc))
        else:
            kept.append(rec)
    facts: list[dict[str, Any]] = []
    for k, f in enumerate(sr.facts):
        try:
            check_facts(f)
        except ResultsError as exc:
            problems.append(f"repeat {k + 1}: {exc}")
        else:
            facts.append(f)
    sr.measurements, sr.facts = kept, facts
    return problems


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


#: Signals received during a run (SIGTERM, SIGHUP): the run ends as if interrupted, with what was measured stored.
_TERMINATED: list[int] = []


def _on_termination(signum: int, frame: object) -> None:
    """Stop every server at once, then end the run the way Ctrl-C does (the measured steps are stored, exit 130)."""
    _TERMINATED.append(signum)
    process.stop_all()
    raise KeyboardInterrupt(f"terminated by signal {signum}")


@contextlib.contextmanager
def _signals_deferred() -> Iterator[list[int]]:
    """While the run is being stored, Ctrl-C, SIGTERM and SIGHUP are noted instead of acted on: a second signal
    must not lose the file the first one asked to be written. Yields the signals that arrived."""
    arrived: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield arrived
        return
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.getsignal(sig) for sig in sigs}
    for sig in sigs:
        signal.signal(sig, lambda signum, frame: arrived.append(signum))
    try:
        yield arrived
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_spike(
    plan: RunPlan,
    out_dir: Path,
    *,
    on_step: Callable[[str, int, int], None] | None = None,
    on_advance: Callable[[float], None] | None = None,
    echo: Callable[[str], None] = lambda s: None,
    observers: Iterable[hooks.Observer] = (),
) -> RunResult:
    """Run a plan, store the run under ``out_dir/runs``, and return it.

    ``on_step(description, index, total)`` is called as each step starts,
    ``on_advance(fraction)`` as a step progresses (for progress bars), and
    ``echo`` for lines the user should read (failures, scenarios not run).
    ``observers`` hear this run's events (:mod:`harness.hooks`), with the spike's own and the global ones.
    A SIGTERM or SIGHUP during the run stops every server and ends the run as an interrupt (stored, then
    :class:`RunInterrupted`), even when a scenario's clean-up turned the interrupt into another error.
    """
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        process.install_signal_handlers()  # outside a run (or after it), a signal still stops the servers
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, _on_termination)
    _TERMINATED.clear()
    try:
        return _run_spike(plan, out_dir, on_step=on_step, on_advance=on_advance, echo=echo, observers=observers)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_spike(
    plan: RunPlan,
    out_dir: Path,
    *,
    on_step: Callable[[str, int, int], None] | None,
    on_advance: Callable[[float], None] | None,
    echo: Callable[[str], None],
    observers: Iterable[hooks.Observer] = (),
) -> RunResult:
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

    events = hooks.RunHooks(run_id, spike.key, [*spike.observers(), *observers], log=log)
    #: The end of a step's last repeat, emitted once the step's output is checked (so it carries the stored status).
    last_end: hooks.StepEnded | None = None

    def emit_last_end() -> None:
        nonlocal last_end
        if last_end is not None and current is not None:
            end, last_end = last_end, None
            events.emit(dataclasses.replace(end, status=current.status, reason=current.reason))

    # Hash the code before running it: an edit during a long run must not be credited to this run.
    code_hash = source_hash(spike)
    source = source_state(Path(spike.package_dir), ignore=Path(out_dir))
    meta = machine.collect(cwd=Path(spike.package_dir))
    complexity_by_option = {
        o.key: complexity.measure(spike.package_dir, spike.option(o.key)) for o in spike.options if o.key in plan.option_keys
    }
    steps = plan_steps(plan)
    results: list[ScenarioResult] = []
    measured_s = 0.0
    interrupted = False
    crash: Exception | None = None
    current: ScenarioResult | None = None

    try:
        with tempfile.TemporaryDirectory(prefix=f"spike-{spike.number}-") as tmp:
            for index, (scen_key, opt_key) in enumerate(steps):
                scenario = spike.scenario(scen_key)
                option = spike.option(opt_key)
                params = scenario.resolved_params(plan.quick)
                sr = current = ScenarioResult(scenario=scen_key, option=opt_key, status="ok", params=params)
                results.append(sr)
                if on_step:
                    on_step(f"{scenario.title} · {option.title}", index, len(steps))
                missing = _missing_tools((*scenario.requires, *option.requires))
                if missing:
                    sr.status = "not_run"
                    sr.reason = "; ".join(_install_hint(m) for m in missing)
                    echo(f"[yellow]not run[/]: {scenario.title} / {option.title}: {sr.reason}")
                    events.step_started(scen_key, opt_key, 0)
                    events.emit(events.ended_event(scen_key, opt_key, 0, sr.status, 0.0, sr.reason))
                    current = None
                    continue
                records: dict[_MetricKey, MeasurementRecord] = {}
                repeats = min(plan.repeats, scenario.max_repeats or plan.repeats)
                for r in range(repeats):
                    workdir = Path(tmp) / f"{scen_key}-{opt_key}-{r}"
                    workdir.mkdir()

                    def advance(fraction: float, _r: int = r, _n: int = repeats) -> None:
                        if on_advance:
                            on_advance((_r + max(0.0, min(1.0, fraction))) / _n)

                    ctx = ScenarioContext(
                        option=option,
                        params=dict(params),
                        repeat=r,
                        quick=plan.quick,
                        workdir=workdir,
                        log=log,
                        advance=advance,
                        on_fault=events.on_fault(scen_key, opt_key, r),
                    )
                    events.step_started(scen_key, opt_key, r)
                    t0 = time.perf_counter()
                    try:
                        out = scenario.run(ctx)
                        # Inside the try: an output the harness cannot take apart fails this step, not the run.
                        _merge(records, out.measurements, r)
                        sr.facts.append(out.facts)
                    except NotRunnable as exc:
                        sr.status = "not_run"
                        sr.reason = str(exc)
                        echo(f"[yellow]not run[/]: {scenario.title} / {option.title}: {sr.reason}")
                        break
                    except KeyboardInterrupt:
                        sr.status = "interrupted"
                        why = f"terminated by signal {_TERMINATED[0]}" if _TERMINATED else "interrupted by the user"
                        sr.reason = f"{why} during repeat {r + 1} of {repeats}"
                        interrupted = True
                        break
                    except Exception as exc:  # isolate: one broken scenario must not sink the run
                        if _TERMINATED:  # the signal's interrupt was replaced by an error of the clean-up it caused
                            sr.status = "interrupted"
                            sr.reason = f"terminated by signal {_TERMINATED[0]} during repeat {r + 1} of {repeats}"
                            interrupted = True
                            break
                        sr.status = "failed"
                        sr.reason = f"{type(exc).__name__}: {exc}"
                        log(f"--- {scen_key}/{opt_key} repeat {r} failed\n{traceback.format_exc()}")
                        echo(f"[red]failed[/]: {scenario.title} / {option.title}: {sr.reason} (traceback in {log_path})")
                        break
                    finally:
                        dt = time.perf_counter() - t0
                        measured_s += dt
                        sr.durations_s.append(round(dt, 6))
                        last_end = events.ended_event(scen_key, opt_key, r, sr.status, dt, sr.reason)
                        if sr.status == "ok" and r < repeats - 1:
                            events.emit(last_end)
                            last_end = None
                    advance(1.0)
                sr.measurements = list(records.values())
                problems = _check_output(sr)
                if problems:
                    why = "output that cannot be stored (dropped): " + "; ".join(problems)
                    if sr.status == "ok":
                        sr.status, sr.reason = "failed", why
                    else:
                        sr.reason = f"{sr.reason}; also {why}"
                    log(f"--- {scen_key}/{opt_key}: {why}")
                    echo(f"[red]failed[/]: {scenario.title} / {option.title}: {escape(why)}")
                emit_last_end()
                current = None
                if interrupted:
                    break
    except KeyboardInterrupt:  # between scenarios (a progress callback, a tool check, cleaning up)
        interrupted = True
        if current is not None and current.status == "ok":
            current.status = "interrupted"
            current.reason = "interrupted by the user"
        emit_last_end()
    except Exception as exc:  # the harness itself broke: store what was measured, then let the error through
        interrupted = True
        crash = exc
        log(f"--- the run stopped on an error in the harness\n{traceback.format_exc()}")
        if current is not None and current.status == "ok":
            current.status = "interrupted"
            current.reason = f"the run stopped on an error in the harness: {type(exc).__name__}: {exc}"
        emit_last_end()

    with _signals_deferred() as arrived:
        run = _store(
            plan, runs_dir, log_path, log_lines, run_id=run_id, started=started, t_start=t_start, meta=meta, profile=profile,
            code_hash=code_hash, complexity_by_option=complexity_by_option, results=results, measured_s=measured_s,
            interrupted=interrupted, source=source,
        )  # fmt: skip
    if arrived:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(f"--- signal(s) {', '.join(map(str, arrived))} arrived while the run was being stored: stored, then stopped\n")
    if crash is not None:
        raise RunCrashed(run, crash, log_path if log_lines else None) from crash
    if interrupted or arrived:
        raise RunInterrupted(run)
    return run


def _store(
    plan: RunPlan,
    runs_dir: Path,
    log_path: Path,
    log_lines: list[str],
    *,
    run_id: str,
    started: _dt.datetime,
    t_start: float,
    meta: dict[str, Any],
    profile: str,
    code_hash: str,
    complexity_by_option: dict[str, Any],
    results: list[ScenarioResult],
    measured_s: float,
    interrupted: bool,
    source: dict[str, Any],
) -> RunResult:
    """Build the run's record and write it (and its log) under ``runs_dir``."""
    spike = plan.spike
    finished = _now()
    duration = time.perf_counter() - t_start
    minutes = budgets.budget_minutes(spike.number, plan.quick)
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
        completion="interrupted" if interrupted else ("complete" if plan.complete else "partial"),
        source={
            "commit": source["commit"],
            "dirty": source["dirty"],
            "dirty_paths": source["dirty_paths"][:MAX_DIRTY_PATHS],
            "allow_dirty": plan.allow_dirty,
        },
        budget={"minutes": minutes, "over": minutes is not None and duration > minutes * 60},
    )
    save(run, runs_dir)
    if log_lines:
        log_path.write_text("\n".join(log_lines) + "\n", encoding="utf-8")
    return run


def estimate_seconds(plan: RunPlan, history: Iterable[RunResult]) -> tuple[float | None, str]:
    """How long ``plan`` should take, in seconds, and where the figure comes from.

    From the stored runs of the same spike and profile that completed (the
    median of the newest three, so one slow night does not swing it), scaled
    to the plan's share of the spike's steps and to its repeats; without such
    a run, the spike's budget; without a budget, ``None``.
    """
    spike = plan.spike
    profile = "quick" if plan.quick else "full"
    every = plan_steps(RunPlan(spike, quick=plan.quick))
    share = len(plan_steps(plan)) / len(every) if every else 1.0
    durations = []
    for run in history:
        if run.spike.get("number") != spike.number or run.profile != profile or run.completion != "complete":
            continue
        stored_repeat = run.parameters.get("repeat")
        scale = plan.repeats / stored_repeat if isinstance(stored_repeat, int) and stored_repeat > 0 else 1.0
        durations.append(run.duration_s * scale)
    if durations:
        recent = durations[-3:]
        return statistics.median(recent) * share, f"median of {len(recent)} earlier {profile} run(s)"
    minutes = budgets.budget_minutes(spike.number, plan.quick)
    if minutes is not None:
        return minutes * 60 * share, "the budget (no earlier run)"
    return None, "no earlier run and no budget"


def _time_left(seconds: float) -> str:
    if seconds < 60:
        return "under a minute left"
    minutes = round(seconds / 60)
    return f"about {minutes} min left" if minutes < 90 else f"about {minutes // 60} h {minutes % 60:02d} min left"


@dataclass
class OverallProgress:
    """Progress across the spikes of one ``spike run``, weighted by each spike's estimated seconds.

    ``completed``/``remaining`` take the index of the running spike and the
    fraction of its steps done; a spike with no estimate counts as zero and
    is named in the text, so the ETA never pretends to know it.
    """

    estimates: list[float | None]

    def _known(self, i: int) -> float:
        return self.estimates[i] or 0.0

    @property
    def total(self) -> float:
        return sum(self._known(i) for i in range(len(self.estimates)))

    def completed(self, index: int, fraction: float) -> float:
        done = sum(self._known(i) for i in range(min(index, len(self.estimates))))
        if index < len(self.estimates):
            done += self._known(index) * max(0.0, min(1.0, fraction))
        return done

    def remaining(self, index: int, fraction: float) -> float:
        return max(0.0, self.total - self.completed(index, fraction))

    def describe(self, index: int, fraction: float) -> str:
        n = len(self.estimates)
        text = f"spike {min(index + 1, n)} of {n}, {_time_left(self.remaining(index, fraction))}"
        unknown = sum(1 for e in self.estimates[index:] if e is None)
        if unknown:
            text += f" plus {unknown} spike(s) with no estimate"
        return text
