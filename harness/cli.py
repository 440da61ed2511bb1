"""The ``spike`` command: list, run, report, compare, doctor.

Exit status: 0 success; 1 ``compare`` found a regression; 2 a usage error (an
unknown spike, option, scenario or criterion); 3 a run finished but some steps
failed (their results are stored and shown), or a ``load`` run finished but a
connection failed or was dropped, messages were lost or errors were counted; 4 a data or file error (malformed
results, a stored run its spike cannot score or render, unwritable output folder,
broken plugin), or the harness itself crashed during ``run`` (what was measured
is stored, the traceback is in the run's ``runs/RUN.log``, and ``SPIKE_DEBUG=1``
prints it too); 4 outranks 3 and 6; 5 ``compare`` found a step
or metric that the base measured missing, failed, not run or interrupted in the
new run; ``compare`` exits with the first of 5, 1 and 4 (a results file in a
folder it read was skipped as unreadable) that applies; 6 ``run``: a spike took longer
than its budget in ``harness/budgets.toml`` (used only when no worse status
applies, so the nightly job fails on it); 130 interrupted by Ctrl-C (what was
measured so far is stored).
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

import harness.feed  # noqa: F401  (registers the feed clients sse, longpoll, sse-h2, longpoll-h2 and their resume adapters)
from harness import machine
from harness.load.clients import get_client_class, transports
from harness.load.schedules import ARRIVALS
from harness.load.spec import MODES, ReconnectPolicy
from harness.plugin import Spike, SpikeLoadError, discover, source_hash
from harness.report.render import PARTIAL_DIR, decide, document_run, document_runs, previous_runs, render_index, render_spike
from harness.results import ResultsError, RunResult, runs_by_spike, scan_runs
from harness.runner import (
    OverallProgress,
    RunCrashed,
    RunInterrupted,
    RunPlan,
    committed_results_tree,
    estimate_seconds,
    run_spike,
    source_state,
)
from harness.stats import fmt_num

if TYPE_CHECKING:
    from harness.load.spec import LoadResult

__all__ = [
    "app",
    "main",
    "EXIT_OK",
    "EXIT_REGRESSION",
    "EXIT_USAGE",
    "EXIT_FAILED_STEPS",
    "EXIT_DATA",
    "EXIT_MISSING",
    "EXIT_OVER_BUDGET",
    "EXIT_INTERRUPTED",
]

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2
EXIT_FAILED_STEPS = 3
EXIT_DATA = 4
EXIT_MISSING = 5
EXIT_OVER_BUDGET = 6
EXIT_INTERRUPTED = 130

app = typer.Typer(
    help="Run the realtime-spikes experiments, store raw results, and render the outcome documents.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def _fail(code: int, message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def user_errors(fn: F) -> F:
    """Turn expected failures into one line and an exit status, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ResultsError, SpikeLoadError) as exc:
            raise _fail(EXIT_DATA, str(exc)) from None
        except PermissionError as exc:
            raise _fail(EXIT_DATA, f"{exc.filename or ''}: permission denied") from None
        except OSError as exc:  # writing a document or chart: the run itself is already stored
            raise _fail(EXIT_DATA, f"{exc.filename or ''}: {exc.strerror or exc}") from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def _register_programs() -> None:
    """Import the harness modules that register programs: the servers (services) and the browser engines with Xvfb."""
    import harness.browser  # noqa: F401
    import harness.services  # noqa: F401


def _registered() -> dict[int, Spike]:
    """The registered spikes, with every program the harness describes registered."""
    _register_programs()
    return discover()


def _spikes() -> dict[int, Spike]:
    """The registered spikes; a scenario requiring a program nobody described is a load error naming the spike."""
    from harness.load.clients import transports

    spikes = _registered()
    for s in spikes.values():
        for o in s.options:
            if o.client and o.client not in transports():
                raise SpikeLoadError(
                    f"spike {s.number} ({s.slug}), option {o.key!r}: unknown client adapter {o.client!r} (known: {', '.join(transports())}); "
                    "register it with harness.load.clients.register before the spike is loaded"
                )
        declared = [(f"scenario {sc.key!r}", sc.requires) for sc in s.scenarios] + [(f"option {o.key!r}", o.requires) for o in s.options]
        for where, requires in declared:
            unknown = [r for r in requires if r not in machine.EXTERNAL_TOOLS]
            if unknown:
                raise SpikeLoadError(
                    f"spike {s.number} ({s.slug}), {where}: requires {', '.join(map(repr, unknown))}, a program the harness "
                    f"does not describe (known: {', '.join(sorted(machine.EXTERNAL_TOOLS))}); register it with "
                    "harness.machine.EXTERNAL_TOOLS before the spike is loaded"
                )
    return spikes


def _names(spikes: dict[int, Spike]) -> str:
    return ", ".join(f"{n} ({s.slug})" for n, s in spikes.items())


def resolve_spikes(which: str, spikes: dict[int, Spike]) -> list[Spike]:
    """``all``, a number (``9``, ``09``), a slug, or ``sNN-slug``; exit 2 when unknown.

    A spike the seed plans but no plugin implements yet gets its own answer
    ("planned, not implemented yet"), so a user of ``spike run 3`` learns the
    number is right and the work is missing, not that they mistyped.
    """
    from harness.budget import seed_spikes

    if which == "all":
        return list(spikes.values())
    for n, s in spikes.items():
        if which.lstrip("0") == str(n) or which in (s.slug, s.key):
            return [s]
    for n, planned in seed_spikes().items():
        if n not in spikes and (which.lstrip("0") == str(n) or which in (planned.slug, f"s{n:02d}-{planned.slug}")):
            implemented = ", ".join(str(k) for k in sorted(spikes)) or "none"
            raise _fail(EXIT_USAGE, f"spike {n} ({planned.title}) is planned, not implemented yet; implemented: {implemented}")
    raise _fail(EXIT_USAGE, f"unknown spike {which!r}; valid: all, {_names(spikes)}")


def _parse_weights(items: list[str] | None) -> dict[str, int]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise _fail(EXIT_USAGE, f"--weight {item!r}: expected CRITERION=PERCENT, e.g. Performance=40")
        out[name.strip()] = int(value)
    return out


def _check_out(out: Path) -> None:
    try:
        (out / "runs").mkdir(parents=True, exist_ok=True)
        probe = out / "runs" / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise _fail(EXIT_DATA, f"cannot write to --out {out}: {exc.strerror or exc}") from None


class _CountOrEtaColumn(ProgressColumn):
    """``M/N`` for the step bars; the estimated time left for the bar across spikes."""

    def __init__(self) -> None:
        super().__init__()
        self._count = MofNCompleteColumn()

    def render(self, task: Task) -> Text:
        eta = task.fields.get("eta")
        return Text(str(eta)) if eta is not None else self._count.render(task)


def _progress_callbacks(
    progress: Progress, overall: Any, step_task: list[Any], across: tuple[OverallProgress, Any, int] | None = None
) -> tuple[Callable[[str, int, int], None], Callable[[float], None]]:
    """The runner's step and advance callbacks, drawing one bar per step under an overall bar.

    ``across`` (the estimate across spikes, its task, this spike's index) also
    moves the bar of ``spike run all`` and its ETA.
    """
    where = [0, 1]  # the running step's index, and the number of steps

    def move_across(fraction: float) -> None:
        if across is not None:
            estimate, task, index = across
            progress.update(task, completed=estimate.completed(index, fraction), eta=estimate.describe(index, fraction))

    def on_step(desc: str, index: int, total: int) -> None:
        where[:] = [index, max(total, 1)]
        progress.update(overall, total=total, completed=index)
        if step_task[0] is not None:
            progress.update(step_task[0], completed=100)
        step_task[0] = progress.add_task(f"  {escape(desc)}", total=100)
        move_across(index / where[1])

    def on_advance(fraction: float) -> None:
        if step_task[0] is not None:
            progress.update(step_task[0], completed=100 * fraction)
        move_across((where[0] + fraction) / where[1])

    return on_step, on_advance


Out = Annotated[Path, typer.Option("--out", "-o", help="Results folder: runs are stored in OUT/runs, documents in OUT.")]
RunOut = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Results folder: runs are stored in OUT/runs, documents in OUT. Default: results, or results/quick with --quick, "
        "so a quick run never replaces the committed documents.",
        show_default=False,
    ),
]
AllowPartial = Annotated[
    bool,
    typer.Option(
        "--allow-partial",
        help="Let a quick, partial (--scenario/--option) or interrupted run replace the spike's full-profile document and index row; "
        "without it, such a run's document goes to OUT/partial/.",
    ),
]
#: Where ``spike run`` writes by default, and where ``--quick`` runs go when ``--out`` is not given.
DEFAULT_OUT = Path("results")
QUICK_OUT = Path("results") / "quick"


def _stored_runs(out: Path, bad: list[ResultsError] | None = None) -> list[RunResult]:
    """Every good run in OUT/runs, oldest first; each bad file is named on one warning line and skipped.

    ``bad``, when given, collects the errors, for a command whose exit status should say a file was bad.
    """
    runs, errors = scan_runs(out / "runs")
    for exc in errors:
        err.print(f"[yellow]warning[/]: skipped {escape(str(exc))}", soft_wrap=True)
    if bad is not None:
        bad.extend(errors)
    return runs


def _write_index(spikes: dict[int, Spike], runs: list[RunResult], out: Path, allow_partial: set[int]) -> Path:
    grouped = runs_by_spike(runs)
    shown = document_runs(grouped, allow_partial)
    return render_index(spikes, shown, out, {n: rs[-1] for n, rs in grouped.items()}, previous_runs(grouped, shown))


def _render_run(spike: Spike, run: RunResult, runs: list[RunResult], out: Path, allow_partial: bool) -> tuple[Path, bool]:
    """Render ``run``'s document: into OUT when it is the run the spike's document shows, else into OUT/partial.

    Returns the document and whether it is the spike's main document.
    """
    chosen = document_run([r for r in runs if r.spike.get("number") == spike.number], allow_partial)
    main = chosen is not None and chosen.run_id == run.run_id
    return render_spike(spike, run, out if main else out / PARTIAL_DIR), main


def _cannot_render(spike: Spike, run: RunResult, exc: ResultsError, problems: list[str]) -> None:
    """One error line for a run that loads but that its spike cannot score or render; counted for exit 4 at the end.

    Not fatal to the command: the other spikes' documents and the index (whose row
    says "cannot score") are still written.
    """
    err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    problems.append(f"spike {spike.number}: run {run.run_id} cannot be scored or rendered")


def _try_render(spike: Spike, run: RunResult, folder: Path, problems: list[str]) -> Path | None:
    """``render_spike``, or ``None`` (after :func:`_cannot_render`) when the spike cannot score or render the run."""
    try:
        return render_spike(spike, run, folder)
    except ResultsError as exc:
        _cannot_render(spike, run, exc, problems)
        return None


def _report_crash(spike: Spike, exc: RunCrashed, problems: list[str]) -> None:
    """One line for a crash of the harness (its traceback is in the run's log file; ``SPIKE_DEBUG=1`` prints it too)."""
    where = f"; traceback in {exc.log}" if exc.log else ""
    err.print(
        f"[bold red]error:[/] spike {spike.number}: the harness crashed ({escape(str(exc))}); "
        f"what was measured is stored in {exc.run.path}{escape(where)}",
        soft_wrap=True,
    )
    if os.environ.get("SPIKE_DEBUG", "") not in ("", "0"):
        err.print("".join(traceback.format_exception(exc.error)), markup=False, highlight=False, soft_wrap=True)
    problems.append(f"spike {spike.number}: the harness crashed")


def _refuse_dirty(out: Path, allow_dirty: bool) -> None:
    """Exit 2 when OUT is a committed results folder and its work tree has uncommitted changes (unless --allow-dirty)."""
    root = committed_results_tree(out)
    if root is None or allow_dirty:
        return
    state = source_state(root, ignore=out)
    paths: list[str] = state["dirty_paths"]
    if not paths:
        return
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    raise _fail(
        EXIT_USAGE,
        f"{out} is committed in {root}, which has uncommitted changes ({shown}); commit or stash them so the documents "
        "can be reproduced, or pass --allow-dirty (the documents then say so)",
    )


@app.command("list")
@user_errors
def list_cmd(out: Out = DEFAULT_OUT) -> None:
    """Show the registered spikes: number, title, priority, hours, options, scenarios, and the run their document shows."""
    spikes = _spikes()
    grouped = runs_by_spike(_stored_runs(out))
    shown = document_runs(grouped)
    table = Table(title="Registered spikes")
    for col in ("#", "Title", "Priority", "Planned h", "Options", "Scenarios", "Document's run"):
        table.add_column(col)
    for n, s in spikes.items():
        run = shown.get(n)
        last = "never"
        if run:
            last = f"{run.started_at[:16].replace('T', ' ')} ({run.profile}, {run.completion})"
            if run.spike.get("source_hash") != source_hash(s):
                last += " [yellow]stale[/]"
            if run.budget.get("over"):
                last += " [red]over budget[/]"
            newest = grouped[n][-1]
            if newest.run_id != run.run_id:
                last += f"\n[dim]newer: {newest.started_at[:16].replace('T', ' ')} ({newest.profile}, {newest.completion})[/]"
        table.add_row(
            str(n),
            f"{s.title}\n[dim]{s.slug}[/]",
            s.priority,
            fmt_num(s.planned_hours),
            ", ".join(o.key for o in s.options),
            ", ".join(sc.key for sc in s.scenarios),
            last,
        )
    console.print(table)


@app.command()
@user_errors
def run(
    which: Annotated[str, typer.Argument(help="Spike number, slug, or 'all'.")],
    scenario: Annotated[list[str] | None, typer.Option("--scenario", "-s", help="Run only this scenario (repeatable).")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", help="Run only this option (repeatable).")] = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="Scaled-down profile for tests and smoke runs; the document says so. Writes to results/quick/ unless --out."
        ),
    ] = False,
    repeat: Annotated[
        int | None,
        typer.Option("--repeat", "-r", min=1, help="Repeats per scenario and option (default: the spike's, usually 5; quick 3)."),
    ] = None,
    out: RunOut = None,
    author: Annotated[str, typer.Option("--author", help="Name written as the document's Developer.")] = os.environ.get(
        "SPIKE_AUTHOR", "realtime-spikes harness"
    ),
    weight: Annotated[
        list[str] | None,
        typer.Option("--weight", "-w", help="Override a criterion weight for this run, e.g. Performance=40 (weights must add up to 100)."),
    ] = None,
    allow_partial: AllowPartial = False,
    allow_dirty: Annotated[
        bool,
        typer.Option(
            "--allow-dirty",
            help="Run into a committed results folder from a tree with uncommitted changes; the run records them and the documents say so.",
        ),
    ] = False,
) -> None:
    """Run spikes, store raw results under OUT/runs, and render their documents.

    Exit status: 0 done; 2 usage error, or a committed results folder and uncommitted changes
    (--allow-dirty overrides); 3 some steps failed; 4 a run its spike cannot score, or a crash of
    the harness (the partial run is stored, the traceback in its .log file, printed too with
    SPIKE_DEBUG=1; the other spikes still run); 6 a spike ran longer than its budget
    (harness/budgets.toml) and nothing worse happened; 130 interrupted (what was measured is stored).
    """
    spikes = _spikes()
    chosen = resolve_spikes(which, spikes)
    weights = _parse_weights(weight)
    plans = []
    for s in chosen:
        if scenario:
            bad = [k for k in scenario if k not in {sc.key for sc in s.scenarios}]
            if bad:
                raise _fail(
                    EXIT_USAGE,
                    f"spike {s.number} has no scenario {', '.join(map(repr, bad))}; valid: {', '.join(sc.key for sc in s.scenarios)}",
                )
        if option:
            bad = [k for k in option if k not in {o.key for o in s.options}]
            if bad:
                raise _fail(
                    EXIT_USAGE, f"spike {s.number} has no option {', '.join(map(repr, bad))}; valid: {', '.join(o.key for o in s.options)}"
                )
        unknown = [k for k in weights if k not in s.weights]
        if unknown:
            raise _fail(EXIT_USAGE, f"unknown criterion {', '.join(map(repr, unknown))}; valid: {', '.join(s.weights)}")
        plan = RunPlan(s, scenario, option, quick, repeat, author, weights, allow_dirty=allow_dirty)
        if sum(plan.effective_weights.values()) != 100:
            raise _fail(EXIT_USAGE, f"weights add up to {sum(plan.effective_weights.values())}, not 100: {plan.effective_weights}")
        plans.append(plan)
    if out is None:
        out = QUICK_OUT if quick else DEFAULT_OUT
    _refuse_dirty(out, allow_dirty)
    _check_out(out)

    runs = _stored_runs(out)
    estimate = OverallProgress([estimate_seconds(p, runs)[0] for p in plans]) if len(plans) > 1 else None
    allowed = {p.spike.number for p in plans} if allow_partial else set()
    failed_steps = 0
    over_budget: list[str] = []
    problems: list[str] = []  # crashes and runs that cannot be scored: exit 4 once every spike is done
    for index, plan in enumerate(plans):
        s = plan.spike
        console.rule(f"Spike {s.number}: {s.title}{' (quick)' if quick else ''}")
        with Progress(
            TextColumn("{task.description}"), BarColumn(), _CountOrEtaColumn(), TimeElapsedColumn(), console=console, transient=False
        ) as progress:
            across = None
            if estimate is not None:
                task = progress.add_task("all spikes", total=estimate.total or 1, eta=estimate.describe(index, 0.0))
                progress.update(task, completed=estimate.completed(index, 0.0))
                across = (estimate, task, index)
            overall = progress.add_task("all steps", total=None)
            step_task: list[Any] = [None]
            on_step, on_advance = _progress_callbacks(progress, overall, step_task, across)

            try:
                result = run_spike(plan, out, on_step=on_step, on_advance=on_advance, echo=progress.console.print)
            except RunInterrupted as exc:
                progress.stop()
                runs.append(exc.run)
                try:
                    doc: Path | None = _render_run(s, exc.run, runs, out, allow_partial)[0]
                except ResultsError as bad_run:
                    _cannot_render(s, exc.run, bad_run, problems)
                    doc = None
                err.print(f"[yellow]interrupted[/]: partial results stored in {exc.run.path}; document {doc or 'none'}")
                _write_index(spikes, runs, out, allowed)
                raise typer.Exit(EXIT_INTERRUPTED) from None
            except RunCrashed as exc:  # a bug in the harness, not a regression: one line, exit 4, the other spikes still run
                crashed: RunCrashed | None = exc
            else:
                crashed = None
                progress.update(overall, completed=progress.tasks[overall].total)
                if step_task[0] is not None:
                    progress.update(step_task[0], completed=100)
                if across is not None and estimate is not None:
                    left = estimate.describe(index + 1, 0.0) if index + 1 < len(plans) else "all spikes done"
                    progress.update(across[1], completed=estimate.completed(index + 1, 0.0), eta=left)
        if crashed is not None:
            runs.append(crashed.run)
            _report_crash(s, crashed, problems)
            try:
                doc, main = _render_run(s, crashed.run, runs, out, allow_partial)
                console.print(f"document of the interrupted run: [bold]{doc}[/]")
            except ResultsError as bad_run:
                _cannot_render(s, crashed.run, bad_run, problems)
            continue
        runs.append(result)
        try:
            doc, main = _render_run(s, result, runs, out, allow_partial)
        except ResultsError as exc:  # stored, but its spike cannot score or render it: named, and the other spikes go on
            console.print(f"stored [bold]{result.path}[/] in {fmt_num(result.duration_s)} s; no document")
            _cannot_render(s, result, exc, problems)
            failed_steps += sum(1 for sr in result.scenarios if sr.status == "failed")
            continue
        failed = [sr for sr in result.scenarios if sr.status == "failed"]
        not_run = [sr for sr in result.scenarios if sr.status == "not_run"]
        failed_steps += len(failed)
        decision = decide(s, result)  # the winner, or a tie when the repeats cannot separate the best from a runner-up
        console.print(f"stored [bold]{result.path}[/] in {fmt_num(result.duration_s)} s; document [bold]{doc}[/]")
        if not main:
            console.print(
                f"a {result.profile}, {result.completion} run does not replace the full-profile document in {out}; "
                "--allow-partial lets it (`spike report --allow-partial` does it later)"
            )
        if decision.best or decision.none_qualifies:
            color = "yellow" if decision.tie or decision.none_qualifies else "green"
            console.print(f"recommendation: [bold {color}]{escape(decision.label)}[/]")
        if not_run:
            console.print(f"[yellow]{len(not_run)} step(s) not run[/] (missing programs; see the document's Method)")
        if failed:
            console.print(f"[red]{len(failed)} step(s) failed[/] (reasons in the document and {out / 'runs'})")
        minutes = result.budget.get("minutes")
        if result.budget.get("over") and minutes is not None:
            over_budget.append(f"spike {s.number} took {result.duration_s / 60:.1f} min (budget {fmt_num(minutes)})")
            console.print(
                f"[red]over budget[/]: {result.duration_s / 60:.1f} min, budget {fmt_num(minutes)} min for the "
                f"{result.profile} profile (harness/budgets.toml)"
            )
    _write_index(spikes, runs, out, allowed)
    if problems:
        raise _fail(EXIT_DATA, "; ".join(problems) + " (details above); the other documents and the index are written")
    if failed_steps:
        raise typer.Exit(EXIT_FAILED_STEPS)
    if over_budget:
        err.print(f"[red]over budget[/]: {'; '.join(over_budget)}", soft_wrap=True)
        raise typer.Exit(EXIT_OVER_BUDGET)


@app.command()
@user_errors
def report(
    which: Annotated[str, typer.Argument(help="Spike number, slug, or 'all'.")] = "all",
    out: Out = DEFAULT_OUT,
    allow_partial: AllowPartial = False,
) -> None:
    """Re-render documents and the index from stored runs, running nothing.

    A spike's document shows its newest full-profile, complete run; a newer quick, partial or
    interrupted run gets its document in OUT/partial/ instead, unless --allow-partial.
    A results file that cannot be read, or a run its spike cannot score or render, is named
    on one line, skipped (the index row says "cannot score"), and makes the exit status 4 once
    everything else is rendered, so a nightly job notices a corrupt stored run.
    """
    spikes = _spikes()
    chosen = resolve_spikes(which, spikes)
    bad: list[ResultsError] = []
    problems: list[str] = []
    runs = _stored_runs(out, bad)
    grouped = runs_by_spike(runs)
    allowed = {s.number for s in chosen} if allow_partial else set()
    for s in chosen:
        mine = grouped.get(s.number, [])
        run = document_run(mine, s.number in allowed)
        if run is None:
            console.print(f"spike {s.number}: no stored run in {out / 'runs'}; run `spike run {s.number}` first")
            continue
        doc = _try_render(s, run, out, problems)
        if doc is not None:
            console.print(f"spike {s.number}: rendered {doc} from {run.path} ({run.profile}, {run.completion})")
        newest = mine[-1]
        if newest.run_id != run.run_id and (other := _try_render(s, newest, out / PARTIAL_DIR, problems)) is not None:
            console.print(
                f"spike {s.number}: the newer {newest.profile}, {newest.completion} run {newest.run_id} is rendered to {other}, "
                "not over the full-profile document (--allow-partial lets it)"
            )
    index = _write_index(spikes, runs, out, allowed)
    console.print(f"index: {index}")
    if bad or problems:
        unread = [f"{len(bad)} results file(s) in {out / 'runs'} could not be read and were skipped"] if bad else []
        raise _fail(EXIT_DATA, "; ".join(unread + problems) + " (named above)")


@app.command()
@user_errors
def compare(
    base: Annotated[Path | None, typer.Argument(help="Baseline: a results file, or a folder of them (newest run per spike).")] = None,
    new: Annotated[Path | None, typer.Argument(help="New: a results file, or a folder of them.")] = None,
    history: Annotated[
        Path | None,
        typer.Option(
            "--history", help="Instead of BASE and NEW: find step changes over the stored runs in this folder (5 or more per spike)."
        ),
    ] = None,
    threshold: Annotated[float, typer.Option(help="A significant change this much worse (relative, >= 0) is a regression: exit 1.")] = 0.10,
    min_effect: Annotated[float, typer.Option(help="Smallest relative change (>= 0) that can be called a difference.")] = 0.05,
    alpha: Annotated[float, typer.Option(help="Significance level of the Mann-Whitney U test over per-repeat medians, in (0, 1).")] = 0.05,
    across_machines: Annotated[
        bool, typer.Option("--across-machines", help="Give a verdict even when the runs come from different machines.")
    ] = False,
    show_all: Annotated[bool, typer.Option("--all", help="Show every row, not only the changed ones.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="text (80 columns), markdown (CI comments) or json (tools).")] = "text",
    only_changed: Annotated[bool, typer.Option("--only-changed", hidden=True, help="The default; kept for old scripts.")] = False,
) -> None:
    """Compare two runs metric by metric, or find steps over the stored history (rules: harness/compare.py).

    Exit 1 on a regression past the threshold (in the newest run, with --history);
    5 when a step that ran ok in the base failed, did not run or is gone, or a
    metric vanished; 4 when a results file in a folder read was skipped as
    unreadable (after the normal output); 0 otherwise, also when the runs come
    from different machines (no verdict then, unless --across-machines) or the
    history is too short. When several apply: 5, then 1, then 4. A missing step
    and a regression are findings about the code among the runs that could be
    read, and stand whatever the unreadable file holds; 4 says only that the
    comparison may be incomplete (the skipped file may be the newest run or its
    baseline), so it shows when nothing worse does: a corrupt run never leaves
    the nightly green.
    """
    from harness import compare as cmp

    if not (0 < alpha < 1):  # also false for nan
        raise _fail(EXIT_USAGE, f"--alpha {alpha}: expected a number between 0 and 1 (exclusive), such as 0.05")
    for name, value in (("--threshold", threshold), ("--min-effect", min_effect)):
        if not (math.isfinite(value) and value >= 0):
            raise _fail(EXIT_USAGE, f"{name} {value}: expected a finite relative change >= 0, such as 0.10 for 10%")
    if fmt not in ("text", "markdown", "json"):
        raise _fail(EXIT_USAGE, f"--format {fmt!r}: expected text, markdown or json")
    if history is not None:
        if base is not None or new is not None:
            raise _fail(EXIT_USAGE, "give --history DIR, or BASE and NEW, not both")
        if not history.is_dir():
            raise _fail(EXIT_DATA, f"{history}: no such folder of results")
        runs, bad = scan_runs(history)
        for e in bad:
            err.print(f"[yellow]warning[/]: skipped {escape(str(e))}", soft_wrap=True)
        regressions = 0
        if not runs:
            typer.echo(f"no runs in {history}: history too short; no verdict")
        else:
            hist = cmp.history(runs, alpha=alpha, min_effect=min_effect, threshold=threshold, across_machines=across_machines)
            render_h = {"text": cmp.render_history_text, "markdown": cmp.render_history_markdown, "json": cmp.render_history_json}[fmt]
            typer.echo(render_h(hist, show_all=show_all), nl=False)
            regressions = sum(len(h.regressions) for h in hist)
        if regressions:
            err.print(f"[bold red]{regressions} step regression(s)[/] in the newest run past the {threshold:.0%} threshold")
        _compare_exit(0, regressions, bad)
        return
    if base is None or new is None:
        raise _fail(EXIT_USAGE, "give BASE and NEW (two results files or two folders), or --history DIR")
    bad_files: list[ResultsError] = []
    pairs = cmp.pair_runs(base, new, bad_files)
    for e in bad_files:
        err.print(f"[yellow]warning[/]: skipped {escape(str(e))}", soft_wrap=True)
    if not pairs:
        typer.echo(f"no baseline: {base} has no earlier run of the spikes in {new}; nothing to compare")
        _compare_exit(0, 0, bad_files)
        return
    done = [
        cmp.compare_runs(b, n, alpha=alpha, min_effect=min_effect, threshold=threshold, across_machines=across_machines) for b, n in pairs
    ]
    render = {"text": cmp.render_text, "markdown": cmp.render_markdown, "json": cmp.render_json}[fmt]
    typer.echo(render(done, show_all=show_all), nl=False)
    regressions = sum(len(rc.regressions) for rc in done)
    missing = sum(len(rc.problems) for rc in done)
    if regressions:
        err.print(f"[bold red]{regressions} regression(s)[/] past the {threshold:.0%} threshold")
    if missing:
        err.print(f"[bold red]{missing} step(s) or metric(s) missing[/] from the new run that the base measured")
    _compare_exit(missing, regressions, bad_files)


def _compare_exit(missing: int, regressions: int, skipped: list[ResultsError]) -> None:
    """Exit with the first status of ``compare`` that applies: 5 missing, 1 regression, 4 unreadable files skipped (docstring)."""
    if missing:
        raise typer.Exit(EXIT_MISSING)
    if regressions:
        raise typer.Exit(EXIT_REGRESSION)
    if skipped:
        err.print(f"[bold red]{len(skipped)} results file(s) skipped as unreadable[/]: the comparison may be incomplete")
        raise typer.Exit(EXIT_DATA)


@app.command()
@user_errors
def doctor() -> None:
    """Show which external programs and browser engines are present, and which scenarios need the missing ones."""
    _register_programs()
    spikes = _registered()
    needs: dict[str, list[str]] = {}
    for s in spikes.values():
        for sc in s.scenarios:
            for r in sc.requires:
                needs.setdefault(r, []).append(f"{s.number}/{sc.key}")
            for o in s.options:
                if sc.options and o.key not in sc.options:
                    continue
                for r in o.requires:
                    if r not in sc.requires:
                        needs.setdefault(r, []).append(f"{s.number}/{sc.key} ({o.key})")
    table = Table(title="External programs")
    for col in ("Program", "Present", "Version", "Path", "Scenarios needing it", "Install"):
        table.add_column(col, no_wrap=col in ("Program", "Present"), overflow="fold")
    missing = 0
    for name in machine.EXTERNAL_TOOLS:
        st = machine.tool_status(name)
        missing += not st["present"]
        table.add_row(
            name,
            "[green]yes[/]" if st["present"] else "[red]no[/]",
            st["version"] or "",
            st["path"] or "",
            ", ".join(needs.get(name, [])) or "none yet",
            "" if st["present"] else st["install"],
        )
    # A requirement the machine module does not describe can be neither found nor installed: a broken plugin, said so.
    undescribed = sorted(name for name in needs if name not in machine.EXTERNAL_TOOLS)
    for name in undescribed:
        table.add_row(name, "[red]?[/]", "", "", ", ".join(needs[name]), "not described in harness/machine.py EXTERNAL_TOOLS")
    console.print(table)
    blocked = sorted({sc for name in machine.EXTERNAL_TOOLS if machine.find_tool(name) is None for sc in needs.get(name, [])})
    if blocked:
        console.print(f"[yellow]would not run[/]: {', '.join(blocked)}")
    elif not undescribed:
        console.print("every registered scenario has what it needs")
    if undescribed:
        raise _fail(
            EXIT_DATA,
            "; ".join(
                f"{', '.join(needs[n])} require(s) {n!r}, which harness/machine.py EXTERNAL_TOOLS does not describe" for n in undescribed
            ),
        )


# -- spike load: one load run from the command line (``python -m harness.load`` runs this same command) ------------------

#: The largest payload ``spike load`` accepts: far above any real-time message, and small enough that building it cannot exhaust memory.
LOAD_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
#: Descriptors a generator process needs besides its connections (interpreter, pipes, event loop, timer).
_LOAD_OWN_DESCRIPTORS = 64
#: Transports that speak plain WebSocket, so an http:// URL is a mistake (it belongs to Socket.IO).
_WS_TRANSPORTS = ("ws", "ws-websockets")

_LOAD_EPILOG = (
    "URLs: ws://127.0.0.1:PORT/PATH for --transport ws or ws-websockets; http://127.0.0.1:PORT for --transport socketio or "
    "socketio-raw; a feed's base http://127.0.0.1:PORT for --transport sse or longpoll (broadcast mode; the clients add /sse, /poll "
    "and /send: the protocol is in harness/feed), https:// through an HTTP/2 front for sse-h2 or longpoll-h2. Only servers on "
    "this machine, unless --allow-remote.\n\n"
    "Exit status: 0 every connection connected, no message was lost and nothing failed; "
    "2 a usage error (an unknown option, a bad value, a server not on this machine without --allow-remote; one line names it); "
    "3 the run finished but a connection did not connect or was dropped, messages were lost, a generator process failed "
    "or errors were counted (one line says which; the table or JSON is printed too when anything connected); "
    "4 the load engine itself failed (SPIKE_DEBUG=1 prints the traceback); 130 interrupted by Ctrl-C. "
    "With --reconnect a dropped connection that came back is no failure: the account's losses, duplicates and unexpected "
    "messages are, and so is a connection that never came back."
)


def _choice(names: Sequence[str]) -> Callable[[str], str]:
    """A parser accepting one of ``names`` (read when parsing, so an adapter registered at run time counts)."""

    def parse(text: str) -> str:
        if text not in names:
            raise typer.BadParameter(f"{text!r} is not one of {', '.join(names)}")
        return text

    return parse


def _transport(text: str) -> str:
    return _choice(transports())(text)


def _resume(text: str) -> str:
    from harness.load.clients.resume import resume_adapters

    return _choice(resume_adapters())(text)


def _reconnect_policy(text: str) -> ReconnectPolicy:
    try:
        return ReconnectPolicy.parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _count(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """A parser of whole numbers from ``minimum`` (to ``maximum``), the value named in the error."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not a whole number") from None
        if maximum is not None and not minimum <= n <= maximum:
            raise typer.BadParameter(f"{n}: expected {minimum} to {maximum}")
        if n < minimum:
            raise typer.BadParameter(f"{n}: expected {'at least 1' if minimum == 1 else f'{minimum} or more'}")
        return n

    return parse


def _number(*, zero_ok: bool, inf_ok: bool = False) -> Callable[[str], float]:
    """A parser of a float >= 0 (> 0 unless ``zero_ok``); NaN refused, infinity too unless ``inf_ok``: the value named in the error."""

    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not a number") from None
        bound = ">= 0" if zero_ok else "> 0"
        if inf_ok and (math.isnan(x) or x < 0):
            raise typer.BadParameter(
                f"{x:g}: expected messages per second >= 0 (0: idle connections; inf: back to back, with --closed-loop)"
            )
        if not inf_ok and not (math.isfinite(x) and (x > 0 or (zero_ok and x == 0))):
            raise typer.BadParameter(f"{x:g}: expected a finite number of seconds {bound}")
        return x

    return parse


def _load_prog(ctx: typer.Context) -> str:
    """``spike load`` under ``spike`` (whatever the program is called), else the standalone name (``python -m harness.load``)."""
    return "spike load" if ctx.parent is not None else ctx.command_path


def _load_error(ctx: typer.Context, code: int, message: str) -> typer.Exit:
    """One line on stderr, ``PROG: error: MESSAGE``, and the exit status to raise."""
    err.print(f"{escape(_load_prog(ctx))}: [bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def _usage_line(ctx: typer.Context, exc: typer.TyperException) -> str:
    """A usage error as one line: the option and the value first, then what was expected."""
    prog = _load_prog(ctx)
    param = getattr(exc, "param", None)
    opts = getattr(param, "opts", None) or []
    if getattr(param, "name", None) == "url" and "Missing" in exc.format_message():
        return f"no URL given: {prog} ws://127.0.0.1:PORT/ (WebSocket) or http://127.0.0.1:PORT (Socket.IO); `{prog} --help` lists every option"
    if isinstance(exc, typer.BadParameter) and opts:
        return f"{opts[0]} {exc.message}"
    if "No such option" in exc.format_message():
        return f"{exc.format_message()}; `{prog} --help` lists every option"
    return exc.format_message()


class _LoadCommand(TyperCommand):
    """``spike load``: a usage error is one line naming the option (exit 2), not a usage block and a panel."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own Context class is private
        try:
            return super().parse_args(ctx, args)
        except typer.TyperException as exc:  # the usage errors: unknown option, bad value, missing URL
            raise _load_error(ctx, EXIT_USAGE, _usage_line(ctx, exc)) from None


def _cpu_list(cpus: Sequence[int]) -> str:
    """``0-3,6`` for {0, 1, 2, 3, 6}: the notation ``taskset -c`` and ``--cpus`` use."""
    xs = sorted(set(cpus))
    runs: list[str] = []
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        runs.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    return ",".join(runs)


def parse_cpus(text: str) -> tuple[int, ...]:
    """``--cpus`` as CPU numbers: ``0,1`` or ``0-3`` ranges; ``ValueError`` naming the flag for anything else.

    A CPU this process may not run on is refused here: the kernel would
    otherwise fail the generator with a bare EINVAL, or quietly pin to the
    valid subset of the list.
    """
    out: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"--cpus {text!r}: expected CPU numbers such as 0,1 or 0-3")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise ValueError(f"--cpus {text!r}: the range {part.strip()} runs backwards")
        out.extend(range(first, last + 1))
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    unknown = sorted(set(out) - set(allowed))
    if unknown:
        where = "this machine has" if allowed == list(range(os.cpu_count() or 0)) else "this process may run on"
        raise ValueError(f"--cpus {_cpu_list(unknown)}: {where} CPUs {_cpu_list(allowed)}")
    return tuple(dict.fromkeys(out))


def _descriptor_ceiling() -> int:
    """The most descriptors one generator process can open: the hard RLIMIT_NOFILE (or ``nr_open`` when unlimited)."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        return int(hard)
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def _check_load_url(url: str, transport: str, allow_remote: bool) -> None:
    from urllib.parse import urlsplit

    from harness.load.system import is_loopback_host

    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss", "http", "https") or not parts.netloc:
        raise ValueError(f"URL {url!r}: expected ws://HOST:PORT/PATH (WebSocket) or http://HOST:PORT (Socket.IO)")
    if not parts.hostname:
        raise ValueError(f"URL {url!r} names no host; expected e.g. ws://127.0.0.1:8000/")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"URL {url!r}: the port must be a number from 1 to 65535") from None
    if port == 0:
        raise ValueError(f"URL {url!r}: port 0 is not a server's port; use the port the server listens on (1 to 65535)")
    if transport in _WS_TRANSPORTS and parts.scheme in ("http", "https"):
        secure = "s" if parts.scheme == "https" else ""
        raise ValueError(
            f"URL {url!r} with --transport {transport}: {parts.scheme}:// URLs are for --transport socketio (Socket.IO); "
            f"a WebSocket server takes ws{secure}://{parts.netloc}{parts.path or '/'}"
        )
    if not allow_remote and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"refusing to send load to {parts.hostname}: not this machine (localhost, 127.0.0.0/8, ::1); "
            "pass --allow-remote to load a server of your own elsewhere"
        )


def _ms(values: dict[str, float | None]) -> str:
    if not values or values.get("p50") is None:
        return "-"
    return "  ".join(f"{k} {v:.3f}" for k, v in values.items() if v is not None)


def load_summary_table(result: LoadResult) -> Table:
    """A rich table summarising a load run."""
    spec = result.spec
    t = Table(title=f"load: {spec['transport']} {spec['mode']} {spec['url']}", show_header=True)
    t.add_column("metric")
    t.add_column("value")
    t.add_row("connections", f"{result.connected}/{result.connections} connected, {result.connect_failed} failed, {result.dropped} dropped")
    if result.failed_connects:
        t.add_row("failed connects", "; ".join(f"{k} (x{v})" for k, v in result.failed_connects.items()))
    if result.connect_ms:
        xs = sorted(result.connect_ms)
        t.add_row("connect ms", f"p50 {xs[len(xs) // 2]:.2f}  p99 {xs[min(len(xs) - 1, int(len(xs) * 0.99))]:.2f}  max {xs[-1]:.2f}")
    t.add_row(
        "messages",
        f"sent {result.sent}, received {result.received} of {result.expected} expected, lost {result.lost}, unsent {result.unsent}",
    )
    t.add_row("rate msg/s", f"sent {result.achieved_rate:,.0f}, received {result.received_rate:,.0f} over {result.duration_s:.1f} s")
    t.add_row("latency ms (from intended send)", _ms(result.latency_ms))
    t.add_row("service ms (from actual send)", _ms(result.service_ms))
    t.add_row("send lag ms (generator)", _ms(result.send_lag_ms))
    t.add_row("bytes", f"out {result.bytes_out:,}, in {result.bytes_in:,}")
    t.add_row("generator CPU", ", ".join(f"{c:.0%}" for c in result.generator_cpu) or "-")
    bound = "YES: " + "; ".join(result.client_bound_reasons) if result.client_bound else "no"
    t.add_row("client bound", f"[bold red]{escape(bound)}[/]" if result.client_bound else bound)
    if result.errors:
        t.add_row("errors", escape(f"{result.error_count}: " + "; ".join(result.errors[:5])))
    if result.account is not None:
        _account_rows(t, result)
    return t


def _account_rows(t: Table, result: LoadResult) -> None:
    """The account's total (``harness.load.account``: the counts and their fractions) and the recovery after each fault."""
    from harness.load.account import OUTCOMES

    account = result.account or {}
    total = account.get("total", {})

    def cell(name: str) -> str:
        entry = total.get(name, {})
        frac = entry.get("fraction")
        return f"{name.replace('_', ' ')} {entry.get('count', 0):,}" + (f" ({frac:.2%})" if frac is not None else "")

    t.add_row("account (total)", ", ".join(cell(name) for name in OUTCOMES))
    t.add_row(
        "account basis",
        f"{total.get('expected', 0):,} expected deliveries, {total.get('arrivals', 0):,} arrivals, {total.get('unsent', 0):,} unsent",
    )
    if result.spec.get("reconnect") is not None:
        t.add_row("reconnections", f"{result.reconnected} after {result.dropped} drop(s)")
    for rec in account.get("recovery", []):
        first = rec.get("first_delivery_ms")
        slowest = rec.get("slowest_connection_ms")
        t.add_row(
            f"recovery after {rec.get('kind')}",
            ("no delivery after it" if first is None else f"first delivery {first:.1f} ms after its end")
            + f"; {rec.get('connections_recovered')}/{rec.get('connections')} connections"
            + ("" if slowest is None else f", the slowest after {slowest:.1f} ms"),
        )


def _errors_besides(result: LoadResult, prefixes: tuple[str, ...]) -> int:
    """Errors counted in ``result`` other than those whose message starts with one of ``prefixes``."""
    import re

    excluded = 0
    for entry in result.errors:
        m = re.fullmatch(r"(.*) \(x(\d+)\)", entry, flags=re.S)
        if m and m.group(1).startswith(prefixes):
            excluded += int(m.group(2))
    return result.error_count - excluded


def load_outcome(result: LoadResult) -> str | None:
    """One line saying what went wrong in a finished load run (exit 3), or ``None`` when everything worked.

    Connections still connecting when the sending window closed are not
    counted as failed by the engine, but they did not connect either: a run
    that measured nothing must never look like a success. Nor must one whose
    server swallowed messages: the latency of the replies that came says
    nothing of those that did not.
    """
    from urllib.parse import urlsplit

    addr = urlsplit(str(result.spec.get("url", ""))).netloc
    n = result.connections
    problems: list[str] = []
    if result.connected < n:
        reasons = [
            (reason if reason.startswith("generator process") else f"{reason} at {addr}") + (f" (x{k})" if k > 1 else "")
            for reason, k in result.failed_connects.items()
        ]
        pending = n - result.connected - result.connect_failed
        if pending > 0:
            reasons.append(f"{pending} still connecting when the run ended (a longer --duration or a faster server helps)")
        process = [e for e in result.errors if e.startswith("generator process")]
        problems.append(f"{result.connected}/{n} connected: " + "; ".join(reasons + process[:1]))
    reconnecting = result.spec.get("reconnect") is not None
    if reconnecting:
        # A drop after the sending window (in the grace period, or a backoff that ended past it) had no time to come back.
        gone = result.dropped - result.reconnected - result.reconnect_window_over
        if gone > 0:
            problems.append(f"{gone} of {result.dropped} dropped connection(s) did not come back")
    elif result.dropped:
        problems.append(f"{result.dropped} connection(s) dropped by the server")
    grace = result.spec.get("grace_s")
    within = f" within --grace {grace:g} s of the last send" if isinstance(grace, int | float) else ""
    if result.account is not None:
        total = result.account.get("total", {})
        count = {
            name: int(total.get(name, {}).get("count", 0)) for name in ("lost_after_ack", "lost_without_ack", "duplicated", "unexpected")
        }
        if count["lost_after_ack"] or count["lost_without_ack"]:
            problems.append(
                f"{count['lost_after_ack'] + count['lost_without_ack']} of {total.get('expected', 0)} expected deliveries lost "
                f"({count['lost_after_ack']} after acknowledgement, {count['lost_without_ack']} without){within}"
            )
        if count["duplicated"] or count["unexpected"]:
            problems.append(f"{count['duplicated']} duplicated and {count['unexpected']} unexpected message(s) arrived")
    elif result.lost:
        problems.append(f"{result.lost} of {result.expected} expected message(s) lost: no reply or delivery{within}")
    # With --reconnect, drops and reconnection attempts are the faults under test: the account measures what they cost.
    errors = _errors_besides(result, ("dropped: ", "reconnect: ")) if reconnecting else result.error_count
    if errors and not problems:
        problems.append(f"{errors} error(s): " + "; ".join(result.errors[:3]))
    return "; ".join(problems) or None


@app.command(cls=_LoadCommand, epilog=_LOAD_EPILOG)
@user_errors
def load(
    ctx: typer.Context,
    url: Annotated[
        str,
        typer.Argument(help="The server: ws://127.0.0.1:PORT/PATH (WebSocket) or http://127.0.0.1:PORT (Socket.IO).", metavar="URL"),
    ],
    transport: Annotated[
        str,
        typer.Option(
            "--transport",
            parser=_transport,
            metavar="NAME",
            help=f"Client adapter: {', '.join(transports())} (ws: the lean raw WebSocket client; socketio-raw: Socket.IO on it).",
        ),
    ] = "ws",
    connections: Annotated[
        int, typer.Option("--connections", "-c", parser=_count(1), metavar="N", help="Connections to open (>= 1).")
    ] = 10,
    rate: Annotated[
        float,
        typer.Option(
            "--rate",
            "-r",
            parser=_number(zero_ok=True, inf_ok=True),
            metavar="MSG/S",
            help="Messages per second per connection (0: idle connections; inf: back to back, with --closed-loop only).",
        ),
    ] = 1.0,
    duration: Annotated[
        float,
        typer.Option(
            "--duration", "-d", parser=_number(zero_ok=False), metavar="SECONDS", help="Seconds of sending after the last arrival (> 0)."
        ),
    ] = 10.0,
    arrival: Annotated[
        str,
        typer.Option(
            "--arrival",
            parser=_choice(ARRIVALS),
            metavar="|".join(ARRIVALS),
            help="How connections arrive: all at once, evenly over --arrival-s (ramp), or at random within it (burst).",
        ),
    ] = "instant",
    arrival_s: Annotated[
        float,
        typer.Option(
            "--arrival-s", parser=_number(zero_ok=True), metavar="SECONDS", help="Seconds over which connections arrive (ramp, burst)."
        ),
    ] = 0.0,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            parser=_choice(MODES),
            metavar="|".join(MODES),
            help="echo: each message comes back to its sender; broadcast: to every connection in --room.",
        ),
    ] = "echo",
    room: Annotated[str, typer.Option("--room", help="The room every connection joins in broadcast mode.")] = "load",
    senders: Annotated[
        int | None,
        typer.Option(
            "--senders",
            parser=_count(0),
            metavar="N",
            help="Only the first N connections send; the others only receive (fan-out). Default: all.",
            show_default=False,
        ),
    ] = None,
    payload: Annotated[
        int,
        typer.Option(
            "--payload",
            parser=_count(0, LOAD_MAX_PAYLOAD_BYTES),
            metavar="BYTES",
            help=f"Payload bytes per message (0 to {LOAD_MAX_PAYLOAD_BYTES}).",
        ),
    ] = 64,
    processes: Annotated[
        int,
        typer.Option("--processes", "-p", parser=_count(1), metavar="N", help="Generator processes (>= 1; never more than connections)."),
    ] = 1,
    closed_loop: Annotated[bool, typer.Option("--closed-loop", help="Send the next message only after the reply (closed model).")] = False,
    window: Annotated[
        int,
        typer.Option(
            "--window",
            parser=_count(1),
            metavar="N",
            help="Requests outstanding per connection (needs --closed-loop --rate inf --mode echo): a throughput run, "
            "its latencies include the wait behind the window.",
        ),
    ] = 1,
    connect_timeout: Annotated[
        float,
        typer.Option("--connect-timeout", parser=_number(zero_ok=False), metavar="SECONDS", help="Seconds one connect may take (> 0)."),
    ] = 10.0,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            parser=_number(zero_ok=True),
            metavar="SECONDS",
            help="Seconds to wait for replies after the last send; a message still unanswered then is lost.",
        ),
    ] = 2.0,
    compression: Annotated[
        bool, typer.Option("--compression", help="Negotiate permessage-deflate (--transport ws-websockets only).")
    ] = False,
    cpus: Annotated[
        str | None,
        typer.Option("--cpus", metavar="LIST", help="Pin the generator processes to these CPUs, e.g. 0,1 or 0-3.", show_default=False),
    ] = None,
    account: Annotated[
        bool,
        typer.Option(
            "--account",
            help="Count every message: sent, delivered, lost after or without acknowledgement, duplicated, unexpected, "
            "reordered, per connection and in total (on with --reconnect; costs generator CPU).",
        ),
    ] = False,
    reconnect: Annotated[
        ReconnectPolicy | None,
        typer.Option(
            "--reconnect",
            parser=_reconnect_policy,
            metavar="BASE[,CAP[,N]]",
            help="Bring dropped connections back: exponential backoff from BASE s up to CAP s (default 5) with full jitter, "
            "at most N attempts in a row (default: no limit); 'on' for 0.1,5. Open model only.",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        str,
        typer.Option(
            "--resume",
            parser=_resume,
            metavar="NAME",
            help="How a reconnected client asks for what it missed (with --reconnect): none; last-seq (rejoin after "
            "the last room sequence number seen; the server replays); last-seq-epoch (the same with the server's epoch, "
            "so a restarted server answers with a reset); last-event-id (a feed's Last-Event-ID or cursor, --transport sse, "
            "longpoll, sse-h2 or longpoll-h2); socketio-recovery (Socket.IO connection state recovery, --transport "
            "socketio-raw); outbox, outbox-last-seq (resend what the server did not acknowledge).",
        ),
    ] = "none",
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow a server that is not on this machine.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the full result as JSON instead of a table.")] = False,
) -> None:
    """Drive any WebSocket or Socket.IO server on this machine and print latency, counts and bytes.

    The load engine the spikes use: sends on a schedule (or closed-loop), times from each intended send, flags a client-bound run.
    """
    from harness.load.engine import run_load
    from harness.load.spec import LoadSpec

    try:  # what no single option can check: combinations, the URL, the machine's limits
        _check_load_url(url, transport, allow_remote)
        per_process = math.ceil(connections / min(processes, connections))
        ceiling = _descriptor_ceiling()
        if per_process + _LOAD_OWN_DESCRIPTORS > ceiling:
            raise ValueError(
                f"--connections {connections}: {per_process} per generator process, but a process may open only {ceiling} "
                "descriptors here (RLIMIT_NOFILE); spread them with --processes or raise the limit"
            )
        if math.isinf(rate) and not closed_loop:
            raise ValueError(
                "--rate inf needs --closed-loop (each connection sends its next message when the reply arrives); "
                "the open model sends on a schedule, which needs a finite rate"
            )
        if arrival == "instant" and arrival_s > 0:
            raise ValueError(f"--arrival-s {arrival_s:g} has no effect with --arrival instant; add --arrival ramp or --arrival burst")
        if arrival != "instant" and arrival_s == 0:
            raise ValueError(f"--arrival {arrival} needs --arrival-s > 0, the seconds over which connections arrive")
        if window > 1 and not (closed_loop and math.isinf(rate) and mode == "echo"):
            raise ValueError(f"--window {window} needs --closed-loop --rate inf --mode echo (a throughput run)")
        if compression and not get_client_class(transport).supports_compression:
            raise ValueError(f"--compression: the {transport} client does not negotiate permessage-deflate; use --transport ws-websockets")
        if resume != "none" and reconnect is None:
            raise ValueError(f"--resume {resume} needs --reconnect: only a reconnecting client resumes")
        if reconnect is not None and closed_loop:
            raise ValueError("--reconnect needs the open model: drop --closed-loop")
        spec = LoadSpec(
            url=url,
            transport=transport,
            connections=connections,
            rate=rate,
            duration_s=duration,
            arrival=arrival,
            arrival_s=arrival_s,
            mode=mode,
            room=room,
            senders=senders,
            payload_bytes=payload,
            processes=processes,
            closed_loop=closed_loop,
            window=window,
            connect_timeout_s=connect_timeout,
            grace_s=grace,
            compression=compression,
            cpu_affinity=parse_cpus(cpus) if cpus is not None else None,
            allow_remote=allow_remote,
            account=account,
            reconnect=reconnect,
            resume=resume,
        )
    except ValueError as exc:
        raise _load_error(ctx, EXIT_USAGE, str(exc)) from None
    try:
        result = run_load(spec)
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as exc:  # the engine's own failure, not the server's: exit 4, never a traceback (or exit 1)
        if os.environ.get("SPIKE_DEBUG", "") not in ("", "0"):
            err.print("".join(traceback.format_exception(exc)), markup=False, highlight=False, soft_wrap=True)
        raise _load_error(ctx, EXIT_DATA, f"the load engine failed: {type(exc).__name__}: {exc}") from None
    problem = load_outcome(result)
    if json_out:
        print(json.dumps(result.to_dict(), indent=2))
    elif result.connected or problem is None:  # a table of zeros says less than the one line below
        Console().print(load_summary_table(result))
    if problem is not None:
        raise _load_error(ctx, EXIT_FAILED_STEPS, problem)


@app.command("locust")
@user_errors
def locust_cmd(
    which: Annotated[str, typer.Argument(help="Spike number or slug.")],
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="The scenario to run as Locust users.")],
    host: Annotated[
        str, typer.Option("--host", help="The server under test, as every worker reaches it (ws://HOST:PORT).")
    ] = "ws://127.0.0.1:8000",
    transport: Annotated[str, typer.Option("--transport", help="ws (native WebSocket) or socketio (websocket transport).")] = "ws",
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes the master waits for.")] = 2,
    quick: Annotated[bool, typer.Option("--quick", help="The scenario's quick profile.")] = False,
    write: Annotated[Path | None, typer.Option("--write", help="Write the locustfile here (the commands then refer to it).")] = None,
) -> None:
    """Print the Locust master and worker commands for a spike's scenario (and write the locustfile with --write)."""
    from urllib.parse import urlsplit

    from harness.load.locust import LOCUSTFILE, instructions, locustfile_text

    spikes = _spikes()
    with_locust = ", ".join(f"{n} ({x.slug})" for n, x in spikes.items() if hasattr(x, "locust_plan")) or "none"
    if which == "all":
        raise _fail(EXIT_USAGE, f"spike locust takes one spike, not 'all'; spikes with Locust users: {with_locust}")
    (s,) = resolve_spikes(which, spikes)
    plan_fn = getattr(s, "locust_plan", None)
    if plan_fn is None:
        raise _fail(EXIT_USAGE, f"spike {s.number} has no Locust users; spikes with them: {with_locust}")
    if transport not in ("ws", "socketio"):
        raise _fail(EXIT_USAGE, f"--transport {transport!r}: expected ws or socketio")
    parts = urlsplit(host)
    try:
        port_ok = parts.port != 0
    except ValueError:  # a port out of range
        port_ok = False
    if parts.scheme not in ("ws", "wss", "http", "https") or not parts.hostname or not port_ok:
        raise _fail(EXIT_USAGE, f"--host {host!r}: expected a URL such as ws://10.0.0.5:8000")

    def locust_form(key: str) -> bool:
        try:
            plan_fn(key, quick=quick, transport=transport)
        except ValueError:
            return False
        return True

    if scenario not in {sc.key for sc in s.scenarios}:
        valid = ", ".join(sc.key for sc in s.scenarios if locust_form(sc.key)) or "none"
        raise _fail(EXIT_USAGE, f"spike {s.number} has no scenario {scenario!r}; scenarios with Locust users: {valid}")
    try:
        plan = plan_fn(scenario, quick=quick, transport=transport)
    except ValueError as exc:  # the spike's own words: a scenario without a Locust form, or a plan it cannot make
        raise _fail(EXIT_USAGE, f"spike {s.number}: {exc}") from None
    path = str(LOCUSTFILE)
    if write is not None:
        write.parent.mkdir(parents=True, exist_ok=True)
        write.write_text(locustfile_text(), encoding="utf-8")
        path = str(write)
        err.print(f"wrote {escape(path)}")
    console.print(instructions(plan, host, path, workers), markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - outside a command
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
