"""Render outcome documents and the index from stored runs, through Jinja2 templates.

Nothing here measures or decides by hand: tables and charts come from the
spike's ``report()``; scores, gates, ties, sensitivity and the criterion
findings from the harness's decision layer (:mod:`harness.decide`) applied to
the spike's declared criteria; every one of those reads only the stored run.
A tie or "none qualifies" is said the same way in the document, the index row
and the ``spike run`` console line.

Which run a spike's document shows: the newest full-profile, complete run in
the folder. A quick, partial or interrupted run never replaces it unless the
user asks (``--allow-partial``); its own document goes to ``OUT/partial/``
instead. Only when a folder holds no full, complete run of a spike does the
newest run of any kind get the main document (it replaces nothing). Every
document and index row name the run they come from.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

from harness.decide import Decision, NotMeasured, cost, evaluate
from harness.decide.engine import _and, criteria_of
from harness.decide.model import DEPENDENCY_LINES
from harness.plugin import Finding, Spike, Table, source_hash
from harness.report.charts import draw
from harness.results import ResultsError, RunResult, ScoringError
from harness.stats import fmt_num

__all__ = [
    "decide",
    "findings",
    "render_spike",
    "render_index",
    "document_name",
    "PARTIAL_DIR",
    "is_full_run",
    "document_run",
    "document_runs",
]

TEMPLATES = Path(__file__).parent / "templates"
#: Subfolder of a results folder for documents of runs that may not replace the main one.
PARTIAL_DIR = "partial"


def is_full_run(run: RunResult) -> bool:
    """A full-profile run that covered every scenario and option: the only kind that replaces a document by default."""
    return run.profile == "full" and run.completion == "complete"


def document_run(runs: Sequence[RunResult], allow_partial: bool = False) -> RunResult | None:
    """The run a spike's main document shows, from that spike's runs oldest first.

    The newest full, complete run; with ``allow_partial``, or when there is no
    such run, the newest run of any kind.
    """
    if not runs:
        return None
    if allow_partial:
        return runs[-1]
    full = [r for r in runs if is_full_run(r)]
    return full[-1] if full else runs[-1]


def document_runs(grouped: Mapping[int, Sequence[RunResult]], allow_partial: Iterable[int] = ()) -> dict[int, RunResult]:
    """The run each spike's main document shows; spikes in ``allow_partial`` take their newest run of any kind."""
    allowed = set(allow_partial)
    out: dict[int, RunResult] = {}
    for number, runs in grouped.items():
        run = document_run(runs, number in allowed)
        if run is not None:
            out[number] = run
    return out


def previous_runs(grouped: Mapping[int, Sequence[RunResult]], shown: Mapping[int, RunResult]) -> dict[int, RunResult]:
    """For each spike, the newest full, complete run older than the one its document shows (what "changed since" compares with)."""
    out: dict[int, RunResult] = {}
    for number, runs in grouped.items():
        now = shown.get(number)
        if now is None:
            continue
        older = [r for r in runs if is_full_run(r) and r.run_id != now.run_id and r.started_at <= now.started_at]
        if older:
            out[number] = older[-1]
    return out


#: What the app is built on whatever the spikes decide (the seed's stack): a choice needing another runtime is a conflict.
APP_STACK = {"node": "the app's front end, SvelteKit on Node.js (the seed's stack)"}
#: How components are named in the summary.
_COMPONENT = {"redis": "Redis", "postgres": "PostgreSQL", "nginx": "nginx", "node": "Node.js", "python": "Python"}
_RUNTIMES = ("node", "python")


def _needs(spike: Spike) -> Mapping[str, Sequence[str]]:
    """The components each option needs (``NEEDS`` in the spike's ``decision.py``), or none declared."""
    import importlib

    name = type(spike).__module__
    for package in (name, name.rpartition(".")[0]):  # the class lives in the package, or in a module of it (plugin.py)
        if not package or package == "__main__":
            continue
        try:
            mod = importlib.import_module(f"{package}.decision")
        except ImportError:
            continue
        return dict(getattr(mod, "NEEDS", {}))
    return {}


def _chosen(d: Decision) -> list[str]:
    return [] if d.best is None or d.none_qualifies else [d.best, *d.tied_with]


def cross_spike(spikes: Mapping[int, Spike], decisions: Mapping[int, Decision], runs: Mapping[int, RunResult]) -> list[str]:
    """Conflicts between the spikes' choices, each with its figures from the stored runs and the price table.

    Two kinds, from each spike's declared ``NEEDS``: a component one spike's choice needs that another
    spike prices as an option's extra (Redis for sessions in one, Redis pub/sub in another), and a
    runtime a choice needs beside the app's own (a Python server next to a Node.js front end).
    """
    out: list[str] = []
    needs = {n: _needs(s) for n, s in spikes.items()}
    prices = cost.current()
    for a, da in decisions.items():
        chosen = _chosen(da)
        if not chosen:
            continue
        wants = set.intersection(*(set(needs[a].get(o, ())) for o in chosen))
        what = f"Spike {a}'s {'choice' if len(chosen) == 1 else 'tie'} ({_and([da.title(o) for o in chosen])})"
        for comp in sorted(wants - set(_RUNTIMES)):
            for b, db in decisions.items():
                if b == a or not needs[b]:
                    continue
                with_c = [o for o in db.options if comp in needs[b].get(o, ())]
                without = [o for o in db.options if o not in with_c]
                if not with_c or not without:
                    continue
                money = cost.money_parts(criteria_of(spikes[b]))
                figures = ""
                if money:
                    _, m = money[0]
                    est = {}
                    for o in db.options:
                        try:
                            est[o] = m.estimate(runs[b], o)
                        except (NotMeasured, *_DATA_ERRORS):
                            continue
                    shown = [f"{db.title(o)} {e.text().split(':')[0]}" for o, e in est.items() if e.usd is not None]
                    if shown:
                        figures = f" (at {fmt_num(m.users)} users: {'; '.join(shown)})"
                machine = prices.redis if comp == "redis" else prices.postgres if comp == "postgres" else None
                cost_text = (
                    f" one {_COMPONENT[comp]} machine is {cost.fmt_usd(machine.monthly(prices.hours_per_month))}/month in the price table;"
                    if machine is not None
                    else ""
                )
                out.append(
                    f"{what} needs {_COMPONENT.get(comp, comp)}, which Spike {b} charges only to {_and([db.title(o) for o in with_c])}"
                    f"{figures}:{cost_text} with {_COMPONENT.get(comp, comp)} already in for Spike {a}, Spike {b}'s options that use it "
                    "cost that much less than its table says"
                )
        if len(chosen) > 1:  # a tie: where the tied options differ in runtime, the app's own runtime can break it
            same = [o for o in chosen if set(needs[a].get(o, ())) & set(APP_STACK)]
            other = [o for o in chosen if o not in same and set(needs[a].get(o, ())) & set(_RUNTIMES)]
            if same and other:
                extra = sorted({x for o in other for x in needs[a][o] if x in _RUNTIMES and x not in APP_STACK})
                out.append(
                    f"{what}: {_and([da.title(o) for o in same])} runs on {_and([_COMPONENT[x] for x in APP_STACK])} like "
                    f"{'; '.join(APP_STACK.values())}, while {_and([da.title(o) for o in other])} would add "
                    f"{_and([_COMPONENT.get(x, x) for x in extra])}: one runtime fewer to build, deploy and monitor is a reason to "
                    "break the tie"
                )
        runtimes = wants & set(_RUNTIMES)
        for rt in sorted(runtimes - set(APP_STACK)):
            others = [o for o in da.options if set(needs[a].get(o, ())) & set(APP_STACK)]
            alt = ""
            if others:
                alt = "; " + "; ".join(
                    f"{da.title(o)} runs on {_and([_COMPONENT[x] for x in needs[a][o] if x in APP_STACK])}, total "
                    f"{da.totals[o]:.2f} against {da.totals[chosen[0]] or 0:.2f}" + (" (fails a gate)" if o not in da.eligible else "")
                    for o in others
                    if da.totals.get(o) is not None
                )
            out.append(
                f"{what} runs on {_COMPONENT.get(rt, rt)}, beside {'; '.join(APP_STACK.values())}: two runtimes to build, deploy and "
                f"monitor{alt}"
            )
    return out


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML
    )
    env.filters["num"] = fmt_num
    env.filters["cell"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    env.filters["basename"] = lambda s: Path(str(s)).name
    env.tests["long_table"] = as_list
    return env


def document_name(spike_number: int, slug: str) -> str:
    return f"spike-{spike_number:02d}-{slug}.md"


def _check_options(spike: Spike, run: RunResult) -> None:
    known = {o.key for o in spike.options}
    unknown = [o for o in run.options if o not in known]
    if unknown:
        raise ResultsError(f"{run.path or run.run_id}: option(s) {', '.join(map(repr, unknown))} are not options of spike {spike.number}")


#: What a spike's ``score()`` or ``report()`` raises when a stored run lacks, or mangles, a measurement or fact it reads.
_DATA_ERRORS = (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError, AttributeError)


def _cannot(spike: Spike, run: RunResult, what: str, exc: Exception) -> ScoringError:
    """One line naming the run file and the cause (the CLI exits 4), instead of a traceback from inside the spike."""
    if isinstance(exc, KeyError) and exc.args and not (isinstance(exc.args[0], str) and " " in exc.args[0]):
        cause = f"{exc.args[0]!r} is missing"
    else:  # a KeyError that is already a sentence (ScenarioResult.measurement's), or any other error's own message
        cause = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc) or "no detail"
    cause = " ".join(cause.split())
    cause = cause if len(cause) <= 300 else cause[:297] + "..."
    return ScoringError(
        f"{run.path or run.run_id}: cannot {what} spike {spike.number} (a measurement or fact it reads is missing or malformed): "
        f"{cause} ({type(exc).__name__})"
    )


def decide(spike: Spike, run: RunResult) -> Decision:
    """The run judged by the spike's declared criteria and gates (:func:`harness.decide.evaluate`).

    A stored run that lacks or mangles a value a criterion reads is one line
    naming the file (:class:`ScoringError`, exit 4), never a traceback.
    """
    _check_options(spike, run)
    try:
        return evaluate(spike, run)
    except _DATA_ERRORS as exc:
        raise _cannot(spike, run, "score", exc) from exc


def findings(decision: Decision, good: float = 7.5, bad: float = 5.0) -> list[Finding]:
    """Good/Bad points from the decision: gate failures, then per criterion the best (and ties) and the worst.

    Good: at least ``good`` (and not the worst, unless tied best). Bad: under ``bad``, or the worst
    by a point or more while under ``good`` (a worst of 9.7 out of 10 is not a weakness).

    Each point cites the measured basis of its score, so no finding is written by hand.
    """
    out = [Finding(o, False, f"it {g.text} ({g.gate.why}).") for o in decision.options for g in decision.failed_gates(o)]
    for crit in decision.criteria:
        if crit in decision.left_out:
            continue
        have = {o: decision.cells[o][crit] for o in decision.options if decision.cells[o][crit].score is not None}
        if len(have) < 2:
            continue
        scores = {o: c.score or 0.0 for o, c in have.items()}
        best, worst = max(scores.values()), min(scores.values())
        for o, cell in have.items():
            shown = f"{crit.lower()} scores {scores[o]:.1f}"
            if scores[o] >= good and (cell.tied_best or scores[o] != worst):
                tied = [decision.title(x) for x in have if x != o and have[x].tied_best]
                note = (f" (tied best with {_and(tied)})" if tied else " (best)") if cell.tied_best else ""
                out.append(Finding(o, True, f"{shown}{note}: {cell.basis}."))
            elif scores[o] < bad or (scores[o] == worst and best - worst >= 1.0 and scores[o] < good):
                note = " (worst)" if scores[o] == worst else ""
                out.append(Finding(o, False, f"{shown}{note}: {cell.basis}."))
    return out


#: The longest table row a document holds; a table with a longer row is written as a list instead (long verdicts read as lists).
MAX_ROW_CHARS = 400


def _row_length(cells: Sequence[str]) -> int:
    return len("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")


def as_list(table: Table) -> bool:
    """Whether ``table`` has a row (or header) over :data:`MAX_ROW_CHARS` characters, and so is rendered as a list."""
    return any(_row_length(r) > MAX_ROW_CHARS for r in [table.headers, *table.rows])


def decision_box(decision: Decision, run: RunResult, content_caveats: Sequence[str], stale: bool) -> dict[str, Any]:
    """The answer first: the choice (or tie, or none), three measured reasons, failed gates, caveats, what would flip it.

    Every figure comes from the decision (itself from the stored run): nothing here is written by hand.
    """
    d = decision
    t = d.title
    if d.none_qualifies:
        headline = "**None qualifies at this load**: every option fails a gate."
    elif d.best is None:
        headline = "**No recommendation**: no option could be scored."
    elif d.tie:
        headline = f"**Tie within noise: {d.tie_names()}** (totals {d.tie_totals()} of 10)."
    else:
        nxt = f"; next {t(d.runner_up)} {d.totals[d.runner_up]:.2f}, margin {d.margin:.2f}" if d.runner_up else ""
        headline = f"**Choice: {t(d.best)}** ({d.totals[d.best]:.2f} of 10{nxt})."
    reasons: list[str] = []
    measured = [c for c in d.criteria if c in d.used]
    lead, rival = d.best, d.runner_up
    if lead is not None and rival is not None:
        gain = {c: d.used[c] * ((d.cells[lead][c].score or 0.0) - (d.cells[rival][c].score or 0.0)) / 100 for c in measured}
        for c in sorted(gain, key=lambda c: -abs(gain[c]))[:3]:
            who, other = (lead, rival) if gain[c] >= 0 else (rival, lead)
            reasons.append(
                f"{c}: {t(who)} {d.cells[who][c].score:.1f} ({d.cells[who][c].basis}) against {t(other)} "
                f"{d.cells[other][c].score:.1f} ({d.cells[other][c].basis}); {abs(gain[c]):.2f} points of the total"
            )
    elif lead is not None:
        for c in sorted(measured, key=lambda c: -d.used[c] * (d.cells[lead][c].score or 0.0))[:3]:
            reasons.append(f"{c}: {t(lead)} {d.cells[lead][c].score:.1f} ({d.cells[lead][c].basis})")
    gates = [f"{t(o)}: {'; '.join(g.text for g in d.failed_gates(o))}" for o in d.options if d.failed_gates(o)]
    caveats = list(content_caveats)
    if run.profile == "quick":
        caveats.append("a quick run: smoke-test scale, not the options' limits")
    if run.completion != "complete":
        caveats.append(f"a {run.completion} run: options or scenarios that did not run could change it")
    if stale:
        caveats.append("stale: the measuring code changed since this run; re-run before acting on it")
    if run.source.get("dirty"):
        caveats.append("run from a tree with local changes")
    cores = run.machine.get("cpu_count_logical") or 0
    load = run.machine.get("load_avg_1m_at_start")
    if cores and isinstance(load, int | float) and load >= 0.5 * cores:
        caveats.append(f"a busy machine: load average {load} at the start, on {cores} cores")
    if not d.noise_estimate and d.best is not None:
        caveats.append("one repeat: no estimate of the noise")
    if d.left_out:
        caveats.append(f"left out, not measured for every option: {', '.join(d.left_out)} (weights renormalised)")
    for o in d.ranking[:1]:
        caveats.extend(f"{t(o)}: {g.text}" for g in d.unverified_gates(o))
    flip = ""
    if d.sensitivities and (flip_to := d.sensitivities[0].flip_to):
        sens = d.sensitivities[0]
        moves = ", ".join(f"{m.points:.1f} from {m.source}" for m in sens.moves)
        flip = f"moving {sens.points:.1f} weight points ({moves}) to {sens.moves[0].target} makes {t(flip_to)} win"
    elif d.sensitivities and (winner := d.sensitivities[0].winner) and len(d.sensitivities[0].totals) > 1:
        flip = f"no weighting makes another option win: {t(winner)} scores at least as well on every criterion"
    change = ""
    if d.none_qualifies:
        change = "a deployment or load at which an option passes every gate (the gate cells give the highest load each passed, where several were measured)"
    elif d.tie:
        change = (
            "more repeats (`--repeat`) could separate them"
            if d.more_repeats_could_separate
            else f"no measurement: a lead under {d.tie_margin:.0%} of the total is too small to matter; decide on the Good/Bad points"
        )
    elif lead is not None and rival is not None and d.margin is not None:
        need = {
            c: 100 * d.margin / d.used[c]
            for c in measured
            if d.used[c] and 10 - (d.cells[rival][c].score or 0.0) >= 100 * d.margin / d.used[c]
        }
        if need:
            c = min(need, key=lambda c: need[c])
            change = f"{t(rival)} ties if its {c} score rises by {need[c]:.1f} points ({c} reads {d.cells[rival][c].basis})"
        else:
            change = f"no single criterion: {t(rival)} would need more than a perfect score on any one of them"
    return {"headline": headline, "reasons": reasons, "gates": gates, "caveats": caveats, "flip": flip, "change": change, "prices": ""}


#: Price multipliers tried, nearest first, when looking for the price change that flips a decision.
_PRICE_FACTORS = sorted((1.5, 2.0, 3.0, 5.0, 10.0, 1 / 1.5, 0.5, 1 / 3, 0.2, 0.1), key=lambda f: abs(math.log(f)))


def _outcome(d: Decision) -> tuple[Any, ...]:
    return (d.none_qualifies, tuple(sorted([d.best, *d.tied_with])) if d.best else ())


def price_flips(spike: Spike, run: RunResult, decision: Decision) -> list[str]:
    """For each price in the table, the nearest change (0.1x to 10x) that changes the decision, re-evaluated in full."""
    base = cost.current()

    def moved(item: str, f: float) -> Decision | None:
        with cost.using(base.scaled(item, f)):
            d = evaluate(spike, run, run.weights or None)
        return d if _outcome(d) != _outcome(decision) else None

    out = []
    for item in cost.Prices.ITEMS:
        for f in _PRICE_FACTORS:
            d = moved(item, f)
            if d is None:
                continue
            # The nearest change, not the first factor tried: bisect (in log space) between 1x and f.
            lo, hi = 0.0, math.log(f)
            for _ in range(7):
                mid = (lo + hi) / 2
                hit = moved(item, math.exp(mid))
                if hit is not None:
                    hi, d = mid, hit
                else:
                    lo = mid
            g = math.exp(hi)
            out.append(f"the {base.label(item)} price at {g:.3g}x ({base.price_text(item, g)}) gives {d.label}")
            break
        else:
            out.append(f"no {base.label(item)} price from 0.1x to 10x changes it")
    return out


def cost_section(spike: Spike, run: RunResult, decision: Decision) -> dict[str, Any] | None:
    """Money per month at 1k, 10k and 100k users for each option, the prices used, and the price changes that flip the decision."""
    parts = cost.money_parts(criteria_of(spike))
    if not parts:
        return None
    _, money = parts[0]
    prices = cost.current()
    rows = []
    notes = []
    used: set[str] = set()
    for o in decision.options:
        try:
            usage = money.usage(run, o)  # type: ignore[misc]
        except NotMeasured as exc:
            rows.append([decision.title(o), "not measured", *(["not priced"] * len(cost.SCALES))])
            notes.append(f"{decision.title(o)}: {exc}")
            continue
        except _DATA_ERRORS as exc:
            raise _cannot(spike, run, "price", exc) from exc
        ests = [cost.estimate(usage, n, prices) for n in cost.SCALES]
        used.add("app")
        used.update(k for k in ("redis", "postgres") if getattr(usage, k))
        if usage.egress_bytes_per_s > 0:
            used.add("egress")
        measured = f"{fmt_num(usage.users)} users" if usage.from_users else "per player (per-message model)"
        rows.append([decision.title(o), measured, *(e.text() for e in ests)])
        if usage.basis:
            notes.append(f"{decision.title(o)}: {usage.basis}")
    flips = price_flips(spike, run, decision)
    if all(f.startswith("no ") for f in flips):
        flips = [f"no single price from 0.1x to 10x changes it ({_and([prices.label(i) for i in prices.ITEMS])}, each alone)"]
    return {
        "headers": ["Option", "Measured at", *(f"{fmt_num(n)} users" for n in cost.SCALES)],
        "rows": rows,
        "notes": notes,
        "prices": prices.rows(),
        "prices_path": prices.path,
        "unverified": [prices.label(i) for i in prices.ITEMS if i in used and prices.status(i) == "unverified"],
        "flips": flips,
        "formula": cost.FORMULA,
        "scored_at": money.users,
        "limit": cost.EXTRAPOLATION_LIMIT,
    }


def _complexity_table(spike: Spike, run: RunResult) -> Table:
    """The harness's table behind the Complexity criterion: lines, and the dependencies counted and not counted."""
    anyway = set(spike.ships_anyway)
    rows = []
    for o in spike.options:
        cx = run.complexity.get(o.key)
        if o.key not in run.options or not cx:
            continue
        deps = list(cx.get("dependencies", []))
        counted = [d for d in deps if d not in anyway]
        rows.append(
            [
                o.title,
                str(cx.get("loc")),
                ", ".join(counted) or "none",
                ", ".join(d for d in deps if d in anyway) or "none",
                fmt_num(float(cx.get("loc", 0)) + DEPENDENCY_LINES * len(counted)),
            ]
        )
    note = f"Line-equivalents = lines of POC code + {DEPENDENCY_LINES} per dependency counted (the Complexity criterion)."
    if anyway:
        note += f" Not counted: what the app ships whichever option wins ({', '.join(sorted(anyway))})."
    return Table(
        "Implementation size (Complexity criterion)",
        ["Option", "Lines of POC code", "Dependencies counted", "Not counted", "Line-equivalents"],
        rows,
        note,
    )


def _rel(target: Path, start: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), Path(start).resolve())).as_posix()


def render_spike(spike: Spike, run: RunResult, out_dir: Path) -> Path:
    """Write ``spike-NN-slug.md`` and its charts into ``out_dir``; return the document path."""
    out_dir = Path(out_dir)
    _check_options(spike, run)
    try:
        content = spike.report(run)
    except _DATA_ERRORS as exc:
        raise _cannot(spike, run, "render", exc) from exc
    decision = decide(spike, run)
    content.tables.append(_complexity_table(spike, run))
    chart_dir = out_dir / "charts"
    charts = []
    for chart in content.charts:
        path = draw(chart, chart_dir / f"spike-{spike.number:02d}-{chart.slug}.svg")
        if path is None:
            continue  # nothing was measured for it in this run (steps not run are listed in Method)
        if chart.has_spread:
            spread = "Whiskers: the lowest and highest per-repeat median."
        elif chart.spread:
            spread = "No whiskers: every value shown ran once (no repeat spread to show)."
        else:
            spread = ""
        charts.append({"title": chart.title, "path": _rel(path, out_dir), "caption": " ".join(t for t in (chart.caption, spread) if t)})
    stale = run.spike.get("source_hash") != source_hash(spike)
    code = []
    for opt in spike.options:
        if opt.key not in run.options:
            continue
        cx = run.complexity.get(opt.key, {})
        files = [{"name": f, "path": _rel(Path(spike.package_dir) / f, out_dir), "loc": loc} for f, loc in cx.get("files", {}).items()]
        code.append({"title": opt.title, "files": files, "loc": cx.get("loc"), "deps": cx.get("dependencies", [])})
    not_ok = [sr for sr in run.scenarios if sr.status != "ok"]
    ran_scenarios = list(run.parameters.get("scenarios", []))
    left_out_scenarios = [s.key for s in spike.scenarios if s.key not in ran_scenarios]
    left_out_options = [o.key for o in spike.options if o.key not in run.options]
    command = f"spike run {spike.number}" + (" --quick" if run.profile == "quick" else "")
    if left_out_scenarios:
        command += "".join(f" --scenario {k}" for k in ran_scenarios)
    if left_out_options:
        command += "".join(f" --option {k}" for k in run.options)
    default_repeat = spike.quick_repeat if run.profile == "quick" else spike.default_repeat
    if run.parameters.get("repeat") not in (None, default_repeat):
        command += f" --repeat {run.parameters['repeat']}"
    budget_minutes = run.budget.get("minutes")
    winners = decision.repeat_winners
    points = findings(decision) + list(content.findings)
    scen_titles = {s.key: s for s in spike.scenarios}
    money = cost_section(spike, run, decision)
    box = decision_box(decision, run, content.caveats, stale)
    if money is not None:
        box["prices"] = "; ".join(money["flips"])
        if money["unverified"]:
            box["caveats"].append(f"unverified prices in the cost model: {', '.join(money['unverified'])}")
    ctx: dict[str, Any] = {
        "spike": spike,
        "run": run,
        "date": run.started_at[:10],
        "duration_min": run.duration_s / 60,
        "duration_h": run.duration_s / 3600,
        "quick": run.profile == "quick",
        "stale": stale,
        "current_hash": source_hash(spike),
        "scenarios": [scen_titles[k] for k in run.parameters.get("scenarios", []) if k in scen_titles],
        # The parameters each scenario ran with, as stored (the current defaults may have changed since the run).
        "scenario_params": {k: next((sr.params for sr in run.scenarios if sr.scenario == k), None) for k in scen_titles},
        "scenario_repeats": {
            k: max((len(m.repeats) for sr in run.scenarios if sr.scenario == k for m in sr.measurements), default=None) for k in scen_titles
        },
        "options": [spike.option(k) for k in run.options],
        "m": run.machine,
        "memory_gib": run.machine.get("memory_total_bytes", 0) / 2**30,
        "content": content,
        "charts": charts,
        "d": decision,
        "box": box,
        "money": money,
        "best": decision.best,
        "runner_up": decision.runner_up,
        "min_effect_pct": f"{decision.tie_margin:.0%}",
        "repeat_winners": [decision.title(w) if w else "incomplete" for w in winners],
        "repeat_wins": sum(1 for w in winners if w == decision.best),
        "findings": {o: [f for f in points if f.option == o] for o in decision.options},
        "code": code,
        "not_ok": not_ok,
        "run_file": _rel(run.path, out_dir) if run.path else None,
        "overhead_pct": 100 * run.harness.get("overhead_fraction", 0.0),
        "command": command,
        "completion": run.completion,
        "left_out_scenarios": left_out_scenarios,
        "left_out_options": left_out_options,
        "source": run.source,
        "dirty_shown": run.source.get("dirty_paths", [])[:10],
        "dirty_more": max(0, len(run.source.get("dirty_paths", [])) - 10),
        "budget_minutes": budget_minutes,
        "over_budget": bool(run.budget.get("over")),
    }
    text = _env().get_template("outcome.md.j2").render(**ctx)
    path = out_dir / document_name(spike.number, spike.slug)
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _budget_text(run: RunResult) -> str:
    minutes = run.budget.get("minutes")
    return f"over budget ({run.duration_s / 60:.1f} of {fmt_num(minutes)} min)" if run.budget.get("over") and minutes is not None else ""


def _judged(spike: Spike, run: RunResult) -> tuple[Decision | None, str | None]:
    """The run's decision, or why ``spike`` cannot score or render it (the error without the file name, which the row links).

    Rendering is checked too (``report()``, cheap: no I/O), so a row never links
    a document that ``spike report`` could not write for this run. One evaluation serves both the check and the row.
    """
    try:
        decision = decide(spike, run)
        try:
            spike.report(run)
        except _DATA_ERRORS as exc:
            raise _cannot(spike, run, "render", exc) from exc
    except ResultsError as exc:
        text, prefix = str(exc), f"{run.path or run.run_id}: "
        return None, text[len(prefix) :] if text.startswith(prefix) else text
    return decision, None


def render_index(
    spikes: Mapping[int, Spike],
    runs: Mapping[int, RunResult],
    out_dir: Path,
    newest: Mapping[int, RunResult] | None = None,
    previous: Mapping[int, RunResult] | None = None,
) -> Path:
    """Write ``results/README.md``: every registered spike, its status and recommendation.

    ``runs`` holds the run each spike's document shows (see :func:`document_runs`);
    ``newest``, the newest stored run of each spike, so a row can say when a
    newer quick, partial or interrupted run exists but was kept out.
    A run that loads but that its spike cannot score or render gets the status
    "cannot score: REASON" (or "cannot render spike N ...") and no document link;
    one such run never costs the index its other rows.
    """
    rows = []
    decisions: dict[int, Decision] = {}
    changed: dict[int, str] = {}
    for number, spike in spikes.items():
        run = runs.get(number)
        row: dict[str, Any] = {
            "spike": spike,
            "doc": None,
            "status": "no run stored yet",
            "recommendation": "",
            "last_run": "",
            "run_file": None,
            "profile": "",
            "completion": "",
            "caution": "",
        }
        judged, cannot = (None, None) if run is None else _judged(spike, run)
        if run is not None and cannot is not None:
            row.update(
                status=cannot if cannot.startswith(("cannot score", "cannot render")) else f"cannot score: {cannot}",
                recommendation="none (see the status)",
                last_run=run.started_at.replace("T", " ").replace("+00:00", " UTC"),
                run_file=_rel(run.path, out_dir) if run.path else None,
                profile=run.profile,
                completion=run.completion,
            )
        elif run is not None:
            assert judged is not None  # scored by _judged: a tie where the repeats cannot tell the best from a runner-up
            decision = judged
            stale = run.spike.get("source_hash") != source_hash(spike)
            failed = sum(1 for s in run.scenarios if s.status != "ok")
            if run.completion == "interrupted":
                status = "interrupted run only"
            elif run.completion == "partial":
                status = "partial run only"
            else:
                status = "quick run only" if run.profile == "quick" else "measured"
            if run.completion != "complete" and run.profile == "quick":
                status += " (quick)"
            if failed:
                status += f", {failed} step(s) not ok"
            if _budget_text(run):
                status += f", {_budget_text(run)}"
            if run.source.get("dirty"):
                status += ", run with local changes"
            if stale:
                status += ", stale (code changed since)"
            later = (newest or {}).get(number)
            if later is not None and later.run_id != run.run_id:
                status += (
                    f"; a newer {later.profile}, {later.completion} run (`{later.run_id}`) is not shown: "
                    f"`spike report {number} --allow-partial` shows it"
                )
            caution = [w for w, on in (("stale: re-run before acting on it", stale), (f"{run.profile} run", run.profile != "full")) if on]
            decisions[number] = decision
            before = (previous or {}).get(number)
            old = _judged(spike, before)[0] if before is not None else None
            if before is not None and old is not None:
                if _outcome(old) != _outcome(decision):
                    changed[number] = f"changed since run `{before.run_id}`, which gave: {old.label}"
                    differ = sorted(set(old.left_out) ^ set(decision.left_out))
                    if differ:  # not the same criteria scored: part of the change is what the older run could not measure
                        changed[number] += f" (scored on different criteria: {', '.join(differ)} measured in one run only)"
                    caution.append(f"decision {changed[number]}")
            row.update(
                caution="; ".join(caution),
                doc=document_name(number, spike.slug),
                status=status,
                recommendation=decision.label,
                last_run=run.started_at.replace("T", " ").replace("+00:00", " UTC"),
                run_file=_rel(run.path, out_dir) if run.path else None,
                profile=run.profile,
                completion=run.completion,
            )
        rows.append(row)
    from harness.budget import seed_spikes  # the seed's ten spikes: the ones without a plugin are listed as not built

    by_number: dict[int, Any] = {r["spike"].number: r for r in rows}
    for number, planned in seed_spikes().items():
        by_number.setdefault(number, {"planned": True, "number": number, "title": planned.title})
    build = [by_number[n] for n in sorted(by_number)]
    conflicts = cross_spike(spikes, decisions, runs)
    revisit = []
    for line in conflicts:
        moved = [n for n in changed if re.search(rf"\bSpike {n}\b", line)]
        revisit.append(f" (revisit: the decision of {_and([f'Spike {n}' for n in moved])} changed since its previous run)" if moved else "")
    text = _env().get_template("index.md.j2").render(rows=rows, build=build, conflicts=list(zip(conflicts, revisit)), changed=changed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
