"""Render outcome documents and the index from stored runs, through Jinja2 templates.

Nothing here measures or decides by hand: tables, charts and findings come from
the spike's ``report()``, scores from its ``score()``, the recommendation is
the best weighted total of the decision matrix, and every one of those reads
only the stored run.

A recommendation is a tie when the repeats cannot tell the best option from a
runner-up (:func:`decide`): each option's weighted total is also computed on
each repeat alone, and the per-repeat totals go through the same rule as
``spike compare`` (``harness.stats.tied``: the repeat is the unit of evidence).
The document, the index row and the ``spike run`` console line then say "tie"
instead of naming a winner.

Which run a spike's document shows: the newest full-profile, complete run in
the folder. A quick, partial or interrupted run never replaces it unless the
user asks (``--allow-partial``); its own document goes to ``OUT/partial/``
instead. Only when a folder holds no full, complete run of a spike does the
newest run of any kind get the main document (it replaces nothing). Every
document and index row name the run they come from.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from harness.plugin import Spike, source_hash
from harness.report.charts import draw
from harness.results import ResultsError, RunResult, ScoringError
from harness.stats import Separation, fmt_num, separate, tied

__all__ = [
    "Matrix",
    "decision_matrix",
    "repeat_winners",
    "repeat_totals",
    "Decision",
    "decide",
    "TOTAL_MIN_EFFECT",
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
    return env


def document_name(spike_number: int, slug: str) -> str:
    return f"spike-{spike_number:02d}-{slug}.md"


@dataclass
class Matrix:
    """The seed's decision matrix filled from a run's scores."""

    criteria: list[str]
    weights: dict[str, int]
    options: list[str]
    titles: dict[str, str]
    scores: dict[str, dict[str, float | None]]
    bases: dict[str, dict[str, str]]
    formulas: dict[str, str]
    totals: dict[str, float | None]

    @property
    def ranking(self) -> list[str]:
        """Options with a complete score, best weighted total first."""
        ok = [o for o in self.options if self.totals[o] is not None]
        return sorted(ok, key=lambda o: -self.totals[o])  # type: ignore[operator]

    @property
    def best(self) -> str | None:
        r = self.ranking
        return r[0] if r else None


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


def decision_matrix(spike: Spike, run: RunResult) -> Matrix:
    """Score the run and weigh the scores with the run's weights."""
    _check_options(spike, run)
    try:
        scoring = spike.score(run)
    except _DATA_ERRORS as exc:
        raise _cannot(spike, run, "score", exc) from exc
    weights = run.weights or dict(spike.weights)
    options = [o for o in run.options if o in scoring.scores]
    titles = {o.key: o.title for o in spike.options}
    scores: dict[str, dict[str, float | None]] = {}
    bases: dict[str, dict[str, str]] = {}
    totals: dict[str, float | None] = {}
    for opt in options:
        scores[opt] = {}
        bases[opt] = {}
        total = 0.0
        complete = True
        for crit, w in weights.items():
            cs = scoring.scores[opt].get(crit)
            value = None if cs is None else cs.score
            scores[opt][crit] = None if value is None else round(max(0.0, min(10.0, value)), 1)
            bases[opt][crit] = "not measured" if cs is None else cs.basis
            if value is None:
                complete = False
            else:
                total += w * max(0.0, min(10.0, value)) / 100
        totals[opt] = round(total, 2) if complete else None
    return Matrix(list(weights), weights, options, titles, scores, bases, scoring.formulas, totals)


def _repeat_view(run: RunResult, k: int) -> RunResult:
    """The run as if only repeat ``k`` had been made (steps with fewer repeats keep their last one)."""
    scenarios = []
    for sr in run.scenarios:
        ms = []
        for m in sr.measurements:
            if m.repeats:
                ms.append(dataclasses.replace(m, repeats=[m.repeats[min(k, len(m.repeats) - 1)]]))
        facts = [sr.facts[min(k, len(sr.facts) - 1)]] if sr.facts else []
        durations = [sr.durations_s[min(k, len(sr.durations_s) - 1)]] if sr.durations_s else []
        scenarios.append(dataclasses.replace(sr, measurements=ms, facts=facts, durations_s=durations))
    return dataclasses.replace(run, scenarios=scenarios)


#: The smallest difference between two weighted totals (0..10) that matters, relative to the best option's total.
#: 5%: 0.4 of 8 points, about what one criterion weighted 20% moves when its score shifts by two points; a smaller
#: lead is a tie whatever the repeats say (the rule's "small changes"), a larger one must also show in the repeats.
TOTAL_MIN_EFFECT = 0.05


def _repeat_count(run: RunResult) -> int:
    return max((len(m.repeats) for sr in run.scenarios for m in sr.measurements), default=0)


def _repeat_matrices(spike: Spike, run: RunResult) -> list[Matrix | None]:
    """The decision matrix of each repeat alone (``None`` where a repeat cannot be scored alone); empty with fewer than 2 repeats."""
    n = _repeat_count(run)
    if n < 2:
        return []
    out: list[Matrix | None] = []
    for k in range(n):
        try:
            out.append(decision_matrix(spike, _repeat_view(run, k)))
        except ScoringError:  # a score needing more samples than one repeat has
            out.append(None)
    return out


def _totals_of(matrices: Sequence[Matrix | None], options: Iterable[str]) -> dict[str, list[float | None]]:
    return {o: [None if m is None else m.totals.get(o) for m in matrices] for o in options}


def repeat_totals(spike: Spike, run: RunResult) -> dict[str, list[float | None]]:
    """Each option's weighted total scored on each repeat alone (``None`` for a repeat whose scores are incomplete).

    Empty with fewer than 2 repeats. These totals are the evidence behind a tie (:func:`decide`).
    """
    return _totals_of(_repeat_matrices(spike, run), run.options)


def repeat_winners(spike: Spike, run: RunResult) -> list[str | None]:
    """The best option of the decision matrix scored on each repeat alone.

    Shows whether the recommendation is stable across repeats or rests on the
    pooled medians only. A repeat whose scores are incomplete gives ``None``.
    """
    return [None if m is None else m.best for m in _repeat_matrices(spike, run)]


@dataclass
class Decision:
    """The recommendation: the pooled matrix, and whether the repeats separate its best option from the runners-up.

    ``tied_with`` holds the runners-up whose per-repeat totals are tied with the
    best's (:func:`harness.stats.tied`, min effect :data:`TOTAL_MIN_EFFECT`);
    ``evidence`` explains, for each runner-up, why it is or is not tied.
    Without a noise estimate (fewer than 2 repeats) nothing is tied and the
    pooled ranking stands, marked as such.
    """

    matrix: Matrix
    repeat_totals: dict[str, list[float | None]]
    repeat_winners: list[str | None]
    tied_with: list[str]
    evidence: dict[str, str]
    noise_estimate: bool
    more_repeats_could_separate: bool = False  # a tied runner-up differs by enough to matter; only the repeats do not settle it

    @property
    def best(self) -> str | None:
        return self.matrix.best

    @property
    def runner_up(self) -> str | None:
        r = self.matrix.ranking
        return r[1] if len(r) > 1 else None

    @property
    def tie(self) -> bool:
        return bool(self.tied_with)

    @property
    def tied(self) -> list[str]:
        """The options a tie is between, best pooled total first (just the best when not tied)."""
        return [self.best, *self.tied_with] if self.best else []

    @property
    def margin(self) -> float | None:
        """Points between the best pooled total and the next one."""
        if self.best is None or self.runner_up is None:
            return None
        return self.matrix.totals[self.best] - self.matrix.totals[self.runner_up]  # type: ignore[operator]

    @property
    def label(self) -> str:
        """One line for the index row and the ``spike run`` console: the winner, or "tie: A / B", with the totals."""
        t = self.matrix.titles
        if self.best is None:
            return "none: incomplete scores"
        if self.tie:
            names = " / ".join(t.get(o, o) for o in self.tied)
            return f"tie: {names} ({' / '.join(f'{self.matrix.totals[o]:.2f}' for o in self.tied)} of 10, within noise)"
        note = "" if self.noise_estimate or self.runner_up is None else f"; {self.no_noise_why}"
        return f"{t.get(self.best, self.best)} ({self.matrix.totals[self.best]:.2f} / 10{note})"

    @property
    def no_noise_why(self) -> str:
        """Why there is no noise estimate (empty when there is one)."""
        if self.noise_estimate:
            return ""
        if len(self.repeat_totals.get(self.best or "", [])) < 2:
            return "one repeat: no noise estimate"
        return f"{self.matrix.titles.get(self.best or '', self.best)} cannot be scored on two repeats alone: no noise estimate"

    def tie_names(self, bold: bool = False) -> str:
        """The tied options' titles, "A and B" or "A, B and C"."""
        names = [self.matrix.titles.get(o, o) for o in self.tied]
        return _and([f"**{n}**" if bold else n for n in names])

    def tie_totals(self) -> str:
        return _and([f"{self.matrix.totals[o]:.2f}" for o in self.tied])

    def tie_evidence(self) -> str:
        """Why each runner-up is tied with the best option, in words."""
        if len(self.tied_with) == 1:
            return self.evidence[self.tied_with[0]]
        return "; ".join(f"{self.matrix.titles.get(o, o)}: {self.evidence[o]}" for o in self.tied_with)

    def pooled_ranking(self) -> str:
        """The ranking of the pooled matrix, "1. A 8.10, 2. B 7.90"."""
        return ", ".join(f"{i}. {self.matrix.titles.get(o, o)} {self.matrix.totals[o]:.2f}" for i, o in enumerate(self.matrix.ranking, 1))

    def repeat_totals_text(self) -> str:
        """The per-repeat totals of the ranked options, e.g. "Option A 9.52, 8.70; Option B 4.88, 4.65"."""
        parts = []
        for o in self.matrix.ranking:
            values = ", ".join("n/a" if v is None else f"{v:.2f}" for v in self.repeat_totals.get(o, []))
            parts.append(f"{self.matrix.titles.get(o, o)} {values}")
        return "; ".join(parts)


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def _evidence_words(best: str, other: str, titles: Mapping[str, str], sep: Separation, tie: bool) -> str:
    """The per-repeat evidence between the best option and a runner-up, in words (``Separation.why``, made specific)."""
    a, b = titles.get(best, best), titles.get(other, other)
    reps = f"{sep.n_a} vs {sep.n_b} repeats"
    if not tie:
        if sep.evidence == "apart":
            return (
                f"separated: every repeat of {a} above every repeat of {b} "
                f"({reps}: a likely difference; too few repeats for a significance test, whose smallest possible p is {sep.min_p:.2g})"
            )
        if sep.evidence == "exact":
            return f"separated: every repeat gives {a} {sep.a:.2f} and {b} {sep.b:.2f}"
        return f"separated: {a} above {b} over the repeats ({sep.why})"
    if sep.change > 0 and sep.separated:
        return f"the per-repeat totals put {b} above {a} ({sep.why}), the pooled totals {a} above {b}"
    if sep.evidence == "too few repeats":
        return f"their per-repeat totals overlap ({sep.why})"
    if sep.evidence in ("below min effect", "same"):
        return (
            f"{b} is within {TOTAL_MIN_EFFECT:.0%} of {a}: the medians of their per-repeat totals, "
            f"{sep.a:.2f} and {sep.b:.2f}, differ by {abs(sep.change):.1%}"
        )
    if sep.evidence == "not significant":
        return f"their per-repeat totals do not differ significantly ({sep.why}; not below {sep.alpha:g})"
    return sep.why


def decide(spike: Spike, run: RunResult) -> Decision:
    """The decision matrix of the run, and which runners-up the per-repeat totals cannot tell from the best option.

    Each option is scored on each repeat alone (every repeat's weighted total);
    a runner-up is tied with the best when ``harness.stats.tied`` says so over
    those totals, one value per repeat, with :data:`TOTAL_MIN_EFFECT`. A runner-up
    that the per-repeat totals put *above* the best is tied too: the pooled and
    per-repeat orders disagree. With a single repeat (or a best option that
    cannot be scored on two repeats alone) there is no noise estimate: the
    pooled ranking stands and says so.
    """
    matrix = decision_matrix(spike, run)
    matrices = _repeat_matrices(spike, run)
    totals = _totals_of(matrices, matrix.options)
    winners = [None if m is None else m.best for m in matrices]
    best = matrix.best
    tied_with: list[str] = []
    evidence: dict[str, str] = {}
    more = False
    best_values = [t for t in totals.get(best, []) if t is not None] if best else []
    noise = len(best_values) >= 2
    if best is not None and noise:
        for other in matrix.ranking[1:]:
            values = [t for t in totals.get(other, []) if t is not None]
            if not values:
                evidence[other] = f"{matrix.titles.get(other, other)} cannot be scored on one repeat alone: no noise estimate"
                continue
            a, b = [[t] for t in best_values], [[t] for t in values]
            sep = separate(a, b, min_effect=TOTAL_MIN_EFFECT)  # the same rule as tied(), for its evidence in words
            tie = tied(a, b, TOTAL_MIN_EFFECT) or sep.change > 0
            evidence[other] = _evidence_words(best, other, matrix.titles, sep, tie)
            if tie:
                tied_with.append(other)
                more |= sep.evidence not in ("below min effect", "same")
    return Decision(matrix, totals, winners, tied_with, evidence, noise, more)


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
    matrix = decision.matrix
    chart_dir = out_dir / "charts"
    charts = []
    for chart in content.charts:
        path = draw(chart, chart_dir / f"spike-{spike.number:02d}-{chart.slug}.svg")
        if path is None:
            continue  # nothing was measured for it in this run (steps not run are listed in Method)
        charts.append({"title": chart.title, "path": _rel(path, out_dir), "caption": chart.caption})
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
    top_two = [t for t in (matrix.totals[o] for o in matrix.ranking[:2]) if t is not None]  # ranked totals are never None
    winners = decision.repeat_winners
    scen_titles = {s.key: s for s in spike.scenarios}
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
        "options": [spike.option(k) for k in run.options],
        "m": run.machine,
        "memory_gib": run.machine.get("memory_total_bytes", 0) / 2**30,
        "content": content,
        "charts": charts,
        "matrix": matrix,
        "decision": decision,
        "best": matrix.best,
        "runner_up": matrix.ranking[1] if len(matrix.ranking) > 1 else None,
        "close_call": len(top_two) == 2 and (top_two[0] - top_two[1]) < TOTAL_MIN_EFFECT * top_two[0],
        "min_effect_pct": f"{TOTAL_MIN_EFFECT:.0%}",
        "repeat_winners": [matrix.titles.get(w, w) if w else "incomplete" for w in winners],
        "repeat_wins": sum(1 for w in winners if w == matrix.best),
        "findings": {o: [f for f in content.findings if f.option == o] for o in matrix.options},
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


def _unscorable(spike: Spike, run: RunResult) -> str | None:
    """Why ``spike`` cannot score or render ``run`` (the error without the file name, which the row links), or ``None``.

    Rendering is checked too (``report()``, cheap: no I/O), so a row never links
    a document that ``spike report`` could not write for this run.
    """
    try:
        decision_matrix(spike, run)
        try:
            spike.report(run)
        except _DATA_ERRORS as exc:
            raise _cannot(spike, run, "render", exc) from exc
    except ResultsError as exc:
        text, prefix = str(exc), f"{run.path or run.run_id}: "
        return text[len(prefix) :] if text.startswith(prefix) else text
    return None


def render_index(
    spikes: Mapping[int, Spike], runs: Mapping[int, RunResult], out_dir: Path, newest: Mapping[int, RunResult] | None = None
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
        }
        cannot = None if run is None else _unscorable(spike, run)
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
            decision = decide(spike, run)  # a tie where the repeats cannot tell the best from a runner-up
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
            row.update(
                doc=document_name(number, spike.slug),
                status=status,
                recommendation=decision.label,
                last_run=run.started_at.replace("T", " ").replace("+00:00", " UTC"),
                run_file=_rel(run.path, out_dir) if run.path else None,
                profile=run.profile,
                completion=run.completion,
            )
        rows.append(row)
    text = _env().get_template("index.md.j2").render(rows=rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
