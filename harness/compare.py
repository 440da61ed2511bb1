"""Compare stored runs metric by metric (``spike compare``): two runs, or the history of runs.

**Two runs.** Every metric of every step (scenario x option) that ran ok in the
base is compared with the new run by the per-repeat rule of ``harness.stats``
(the repeat is the unit of evidence; pooled samples never make a change
significant). Verdicts per metric: REGRESSION (significant, worse, past the
threshold: exit 1), "likely worse/better" (too few repeats for the test, but
every repeat of one side beyond every repeat of the other and past the
threshold: shown and counted, not a failure, since 3 vs 3 repeats fall apart 1
time in 10 with no change; the history decides), "too few repeats", and so on.

Strict about what is gone: a step that ran ok in the base and is failed, not
run, interrupted or absent in the new run, or a metric measured in the base and
absent from the new run, is a *problem*: one line each, and ``spike compare``
exits 5 (``EXIT_MISSING``), also when regressions were found. One exception: a
step absent from a *partial* new run (``--scenario``/``--option`` chose a
subset) was not asked for, and is only counted. Another: when the profiles
differ, a metric of the base absent from the new run is only counted, not a
problem: the tags carry the scale (connections=500 in full, fewer in quick), so
the metrics differ by design, and no verdict is given anyway. Steps that were
not ok in the base are not compared (the base run's exit status reported them).

Runs from different machines (CPU model, logical core count, OS and kernel:
``MACHINE_KEYS``) or different profiles give no regression verdict: the rows
are shown, the summary says why, and the exit status ignores them (they are
counted as ``regressions_withheld``, not ``regressions``), unless
``across_machines`` (``--across-machines``) asks for verdicts anyway (profiles
are never judged across: quick and full runs measure different scales).

**History** (``history``): per spike, the complete full-profile runs made on the
machine kind of the newest such run form a series; each metric of the newest
run is searched for step changes over that series (``harness.stats.find_steps``).
A step past the threshold, in the worse direction, starting at the newest run is
a regression (exit 1). With fewer than ``MIN_HISTORY`` comparable runs there is
no verdict: "history too short". The same holds per metric after an older step:
the newest run is judged only when at least ``MIN_HISTORY`` runs (the newest
included) lie since the last step before it, otherwise "history too short since
the step at <run>". A metric whose repeats per run are too few for any test to
show a step at the newest run (2 a run, against the 5 runs of the window:
``harness.stats.newest_reach``) is listed as such, never passed in silence.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.results import MeasurementRecord, ResultsError, RunResult, load, runs_by_spike, scan_runs
from harness.stats import Comparison, Reach, Step, compare_repeats, find_steps, fmt_num, newest_reach

__all__ = [
    "MACHINE_KEYS",
    "MIN_HISTORY",
    "MetricComparison",
    "Problem",
    "RunComparison",
    "HistoryStep",
    "History",
    "compare_runs",
    "machine_kind",
    "machine_differences",
    "pair_runs",
    "history",
    "short_id",
    "render_text",
    "render_markdown",
    "render_json",
    "render_history_text",
    "render_history_markdown",
    "render_history_json",
]

#: What makes two runs' machines the same kind: CPU model, logical cores, OS with kernel release.
MACHINE_KEYS = ("cpu_model", "cpu_count_logical", "os")
#: Fewer comparable runs than this in the history give "history too short", not a verdict.
MIN_HISTORY = 5
WIDTH = 80
Row = tuple[str, str, str, str, str]  # label, base, new, change, verdict: a row of the text tables


def machine_kind(run: RunResult) -> tuple[str, ...]:
    """The machine kind of a run, as the strings of ``MACHINE_KEYS``."""
    return tuple(str(run.machine.get(k)) for k in MACHINE_KEYS)


def short_id(run_id: str) -> str:
    """A run id short enough for an 80-column row: its timestamp and its random suffix."""
    parts = run_id.split("-")
    return f"{parts[0]}-{parts[-1]}" if len(parts) > 2 else run_id


def _tags(tags: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def _label(name: str, tags: str) -> str:
    return f"{name} [{tags}]" if tags else name


def _pct(change: float) -> str:
    if change == 0:
        return "0%"
    if math.isinf(change):
        return "+inf" if change > 0 else "-inf"
    return f"{change:+.1%}"


def _num(x: float) -> float | str:
    """A number for JSON: non-finite values as strings, since JSON has no infinity."""
    return x if math.isfinite(x) else ("+inf" if x > 0 else "-inf" if x < 0 else "nan")


@dataclass(frozen=True)
class MetricComparison:
    """One metric of one scenario and option, compared."""

    scenario: str
    option: str
    name: str
    tags: str
    unit: str
    result: Comparison

    @property
    def label(self) -> str:
        return _label(self.name, self.tags)


@dataclass(frozen=True)
class Problem:
    """Something the base measured that the new run does not have: a failure of ``compare``."""

    scenario: str
    option: str
    metric: str  # "" when the whole step is the problem
    kind: str  # failed, not_run, interrupted, absent, metric absent
    detail: str

    def line(self) -> str:
        where = f"{self.scenario}/{self.option}"
        if self.metric:
            return f"{where}: {self.metric} was measured in the base and is absent from the new run"
        if self.kind == "absent":
            return f"{where}: ran ok in the base, absent from the new run"
        reason = f": {self.detail}" if self.detail else ""
        return f"{where}: ran ok in the base, {self.kind.replace('_', ' ')} in the new run{reason}"


@dataclass
class RunComparison:
    """Two runs of one spike compared: rows, problems, notes, and whether a verdict is given."""

    base: RunResult
    new: RunResult
    rows: list[MetricComparison]
    problems: list[Problem]
    notes: list[str] = field(default_factory=list)
    withheld: str | None = None  # why no regression verdict is given; None when it is
    threshold: float = 0.10
    alpha: float = 0.05

    @property
    def regressions(self) -> list[MetricComparison]:
        """Regressions that count for the exit status: none when the verdict is withheld."""
        return [] if self.withheld else [r for r in self.rows if r.result.regression]

    @property
    def regressions_withheld(self) -> list[MetricComparison]:
        """Rows that would be regressions, had a verdict been given (different machines or profiles)."""
        return [r for r in self.rows if r.result.regression] if self.withheld else []

    def counts(self) -> dict[str, int]:
        """The summary counts; ``regressions`` are the judged ones (they set the exit status), ``regressions_withheld`` the others."""
        rows = [r.result for r in self.rows]
        return {
            "compared": len(rows),
            "significant": sum(c.significant for c in rows),
            "regressions": len(self.regressions),
            "regressions_withheld": len(self.regressions_withheld),
            "improved": sum(c.verdict == "improved" for c in rows),
            "likely": sum(c.likely for c in rows),
            "likely_worse": sum(c.likely_regression for c in rows),
            "too_few_repeats": sum(c.verdict == "too few repeats" for c in rows),
            "missing": len(self.problems),
        }

    def summary(self) -> list[str]:
        """The counts in three short lines: what was compared, what is decided, what is not."""
        c = self.counts()
        withheld = f", {c['regressions_withheld']} withheld (no verdict)" if c["regressions_withheld"] else ""
        return [
            f"{c['compared']} metrics compared, {c['missing']} missing",
            f"{c['significant']} significant: {c['regressions']} regression(s){withheld}, {c['improved']} improved",
            f"{c['likely']} likely ({c['likely_worse']} worse), {c['too_few_repeats']} too few repeats",
        ]


def machine_differences(base: RunResult, new: RunResult) -> list[str]:
    """What differs between the machines of two runs, in the ways that move numbers."""
    out = []
    for key in (*MACHINE_KEYS, "python"):
        if base.machine.get(key) != new.machine.get(key):
            out.append(f"{key}: {base.machine.get(key)} -> {new.machine.get(key)}")
    return out


def _metric_key(name: str, tags: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(tags.items()))


def compare_runs(
    base: RunResult,
    new: RunResult,
    *,
    alpha: float = 0.05,
    min_effect: float = 0.05,
    threshold: float = 0.10,
    across_machines: bool = False,
) -> RunComparison:
    """Compare every metric of every step that ran ok in ``base`` with ``new`` (rules: module docstring)."""
    rows: list[MetricComparison] = []
    problems: list[Problem] = []
    notes: list[str] = []
    partial = new.completion == "partial"
    # Across profiles the scale is in the tags (connections=50 in quick, 500 in full): metrics differ by design, and no verdict is given.
    profiles_differ = base.profile != new.profile
    not_asked = added = not_ok_base = scale_absent = 0
    base_steps = {(sr.scenario, sr.option): sr for sr in base.scenarios}
    for sr_base in base.scenarios:
        if sr_base.status != "ok":
            not_ok_base += 1
            continue
        sr_new = new.result(sr_base.scenario, sr_base.option)
        if sr_new is None:
            if partial:
                not_asked += 1
            else:
                problems.append(Problem(sr_base.scenario, sr_base.option, "", "absent", ""))
            continue
        if sr_new.status != "ok":
            problems.append(
                Problem(
                    sr_base.scenario,
                    sr_base.option,
                    "",
                    sr_new.status,
                    sr_new.reason.strip().splitlines()[0] if sr_new.reason.strip() else "",
                )
            )
            continue
        new_metrics: dict[tuple[str, tuple[tuple[str, str], ...]], MeasurementRecord] = {}
        for m in sr_new.measurements:
            new_metrics.setdefault(_metric_key(m.name, m.tags), m)
        seen = set()
        for m_base in sr_base.measurements:
            key = _metric_key(m_base.name, m_base.tags)
            if key in seen:
                continue
            seen.add(key)
            tags = _tags(m_base.tags)
            m_new = new_metrics.get(key)
            if m_new is None:
                if profiles_differ:
                    scale_absent += 1
                else:
                    problems.append(Problem(sr_base.scenario, sr_base.option, _label(m_base.name, tags), "metric absent", ""))
                continue
            better = m_new.better if m_new.better is not None else m_base.better
            cmp = compare_repeats(m_base.repeats, m_new.repeats, better, alpha=alpha, min_effect=min_effect, threshold=threshold)
            rows.append(MetricComparison(sr_base.scenario, sr_base.option, m_base.name, tags, m_new.unit, cmp))
        added += len(set(new_metrics) - seen)
    for sr_new in new.scenarios:
        if (sr_new.scenario, sr_new.option) not in base_steps and sr_new.status == "ok":
            added += len(sr_new.measurements)
    withheld = None
    if profiles_differ:
        withheld = f"the runs have different profiles ({base.profile} -> {new.profile}): they measure different scales"
    diffs = machine_differences(base, new)
    kind_diffs = [d for d in diffs if d.split(":")[0] in MACHINE_KEYS]
    if kind_diffs and withheld is None:
        if across_machines:
            notes.append(f"the runs come from different machines ({'; '.join(kind_diffs)}); judged anyway (--across-machines)")
        else:
            withheld = (
                f"the runs come from different machines ({'; '.join(kind_diffs)}), so differences may come from the hardware; "
                "pass --across-machines to judge anyway"
            )
    for d in diffs:
        if d.split(":")[0] not in MACHINE_KEYS:
            notes.append(f"the runs differ in {d}")
    if base.spike.get("source_hash") != new.spike.get("source_hash"):
        notes.append(f"the spike's code changed ({base.spike.get('source_hash')} -> {new.spike.get('source_hash')})")
    if not_asked:
        notes.append(f"{not_asked} step(s) of the base are not in the new run, a partial run (--scenario/--option chose a subset)")
    if not_ok_base:
        notes.append(f"{not_ok_base} step(s) did not run ok in the base: not compared")
    if scale_absent:
        notes.append(
            f"{scale_absent} metric(s) of the base are not in the new run: not counted as missing, since the profiles differ "
            "and the tags carry the scale"
        )
    if added:
        notes.append(f"{added} metric(s) only in the new run: no baseline")
    return RunComparison(base, new, rows, problems, notes, withheld, threshold, alpha)


def pair_runs(base: Path, new: Path, errors: list[ResultsError] | None = None) -> list[tuple[RunResult, RunResult]]:
    """Pair runs to compare: two files, or the newest run per spike and profile of two folders.

    With folders, a run is compared with the newest run of the same spike and
    profile in ``base`` that is not the same run, so a folder can be compared
    with a copy of itself taken before a nightly run. A file in a folder that
    cannot be loaded is skipped and appended to ``errors`` (if given).
    """
    base, new = Path(base), Path(new)
    if base.is_file() and new.is_file():
        b, n = load(base), load(new)
        if b.spike["number"] != n.spike["number"]:
            raise ResultsError(f"{base} is spike {b.spike['number']} and {new} is spike {n.spike['number']}: nothing to compare")
        return [(b, n)]
    for p in (base, new):
        if not p.exists():
            raise ResultsError(f"{p}: no such file or folder")
    if base.is_file() != new.is_file():
        raise ResultsError("give two results files, or two folders of them")
    new_runs, bad_new = scan_runs(new)
    base_runs, bad_base = scan_runs(base)
    if errors is not None:
        errors.extend(bad_base + bad_new)
    base_by_spike = runs_by_spike(base_runs)
    pairs = []
    for number, spike_runs in sorted(runs_by_spike(new_runs).items()):
        newest = {r.profile: r for r in spike_runs}  # oldest first: the newest run of each profile wins
        for profile, n in sorted(newest.items()):
            candidates = [
                r for r in base_by_spike.get(number, []) if r.profile == profile and r.run_id != n.run_id and r.started_at <= n.started_at
            ]
            if candidates:
                pairs.append((candidates[-1], n))  # oldest first: the newest earlier run
    return pairs


# ---------------------------------------------------------------- history


@dataclass(frozen=True)
class HistoryStep:
    """A step change of one metric in the run series of one spike."""

    scenario: str
    option: str
    name: str
    tags: str
    unit: str
    better: str | None
    run_id: str  # the first run of the new level
    newest: bool  # the step starts at the newest run
    step: Step
    threshold: float
    judged: bool = True  # False for a step at the newest run when the history since the step before it is too short

    @property
    def label(self) -> str:
        return _label(self.name, self.tags)

    @property
    def worse(self) -> bool | None:
        if self.better not in ("lower", "higher"):
            return None
        return (self.step.change > 0) if self.better == "lower" else (self.step.change < 0)

    @property
    def past_threshold(self) -> bool:
        return abs(self.step.change) >= self.threshold

    @property
    def regression(self) -> bool:
        """Worse, past the threshold, starting at the newest run, and judged: ``spike compare --history`` exits 1."""
        return self.newest and self.judged and bool(self.worse) and self.past_threshold

    @property
    def verdict(self) -> str:
        if self.regression:
            return "REGRESSION"
        if not self.judged:
            return "no verdict"
        if self.worse is None:
            return "changed"
        if not self.worse:
            return "improved"
        return "worse" if self.past_threshold else f"worse <{self.threshold:.0%}"


@dataclass(frozen=True)
class NotJudged:
    """A metric whose newest run gets no verdict: fewer than ``MIN_HISTORY`` runs since an older step of it."""

    label: str  # scenario/option metric [tags]
    since: str  # run id of the older step
    runs: int  # runs since that step, the newest included


@dataclass
class History:
    """The history of one spike: the comparable run series, and the steps found in it."""

    spike: int
    slug: str
    machine: tuple[str, ...]
    runs: list[RunResult]  # comparable runs, oldest first
    left_out: dict[str, int]  # why other runs of the spike are not in the series -> how many
    steps: list[HistoryStep] = field(default_factory=list)
    metrics: int = 0  # metrics of the newest run searched
    short_series: int = 0  # metrics with fewer than MIN_HISTORY runs that measured them
    blind: list[tuple[str, Reach]] = field(default_factory=list)  # metrics whose repeats cannot show a step at the newest run
    not_judged: list[NotJudged] = field(default_factory=list)  # metrics with too few runs since an older step
    threshold: float = 0.10

    @property
    def too_short(self) -> bool:
        return len(self.runs) < MIN_HISTORY

    @property
    def regressions(self) -> list[HistoryStep]:
        return [s for s in self.steps if s.regression]

    def summary(self) -> str:
        if self.too_short:
            return f"history too short: {len(self.runs)} comparable run(s), need {MIN_HISTORY}; no verdict"
        newest = [s for s in self.steps if s.newest]
        return (
            f"{self.metrics} metrics, {len(self.runs)} runs: {len(self.steps)} step(s), "
            f"{len(newest)} in the newest run, {len(self.regressions)} regression(s)"
        )

    def notes(self) -> list[str]:
        """What the summary does not decide: metrics not searched, not judged since an older step, or blind at the newest run."""
        if self.too_short:
            return []
        out = []
        if self.short_series:
            out.append(f"{self.short_series} metric(s) in fewer than {MIN_HISTORY} of these runs: not searched")
        since: dict[str, list[NotJudged]] = {}
        for nj in self.not_judged:
            since.setdefault(nj.since, []).append(nj)
        for run_id, items in sorted(since.items()):
            runs = sorted({nj.runs for nj in items})
            count = f"{runs[0]}" if len(runs) == 1 else f"{runs[0]}-{runs[-1]}"
            out.append(
                f"history too short since the step at {run_id} ({count} run(s) from it to the newest, need {MIN_HISTORY}): "
                f"no verdict on the newest run for {len(items)} metric(s)"
            )
        if self.blind:
            shapes = sorted({(r.n_before, r.n_newest, r.min_p, r.level) for _, r in self.blind})
            eg = "; ".join(f"{nb} values before against {nn}: smallest p {p:.2g}, need below {lv:.2g}" for nb, nn, p, lv in shapes[:2])
            out.append(
                f"{len(self.blind)} metric(s) have too few repeats per run to show a step at the newest run ({eg}); "
                "no verdict on them: repeat their scenarios more"
            )
        return out


def history(
    runs: Iterable[RunResult],
    *,
    alpha: float = 0.05,
    min_effect: float = 0.05,
    threshold: float = 0.10,
    across_machines: bool = False,
) -> list[History]:
    """Search each spike's comparable run series for step changes (module docstring), one ``History`` per spike.

    Comparable: full profile, complete, and the machine kind of the spike's
    newest such run (any machine with ``across_machines``).
    """
    out = []
    for number, spike_runs in sorted(runs_by_spike(sorted(runs, key=lambda r: r.started_at)).items()):
        left_out: dict[str, int] = {}
        usable = []
        for r in spike_runs:
            why = "quick profile" if r.profile != "full" else (r.completion if r.completion != "complete" else "")
            if why:
                left_out[why] = left_out.get(why, 0) + 1
            else:
                usable.append(r)
        slug = str(spike_runs[-1].spike.get("slug", ""))
        if not usable:
            out.append(History(number, slug, (), [], left_out, threshold=threshold))
            continue
        kind = machine_kind(usable[-1])
        series = usable if across_machines else [r for r in usable if machine_kind(r) == kind]
        if len(series) < len(usable):
            left_out["other machine"] = len(usable) - len(series)
        h = History(number, slug, kind, series, left_out, threshold=threshold)
        out.append(h)
        if h.too_short:
            continue
        _search(h, alpha=alpha, min_effect=min_effect)
    return out


def _search(h: History, *, alpha: float, min_effect: float) -> None:
    """Find the steps of every metric of the newest run; judge the newest run only on ``MIN_HISTORY`` runs since the last older step."""
    newest = h.runs[-1]
    for sr in newest.scenarios:
        if sr.status != "ok":
            continue
        seen = set()
        for m in sr.measurements:
            key = _metric_key(m.name, m.tags)
            if key in seen:
                continue
            seen.add(key)
            points: list[tuple[RunResult, list[list[float]]]] = []
            for run in h.runs:
                step = run.ok(sr.scenario, sr.option)
                if step is None:
                    continue
                rec = next((x for x in step.measurements if _metric_key(x.name, x.tags) == key), None)
                if rec is not None and any(rec.repeats):
                    points.append((run, rec.repeats))
            if len(points) < MIN_HISTORY:
                h.short_series += 1
                continue
            h.metrics += 1
            series = [reps for _, reps in points]
            steps = find_steps(series, alpha=alpha, min_effect=min_effect)
            # The newest run is judged on the runs since the last step before it: a verdict on fewer than
            # MIN_HISTORY runs would rest on as little evidence as the "history too short" it replaces.
            last = len(points) - 1
            lo = max((st.index for st in steps if st.index < last), default=0)
            label = f"{sr.scenario}/{sr.option} {_label(m.name, _tags(m.tags))}"
            judged = len(points) - lo >= MIN_HISTORY
            if not judged:
                h.not_judged.append(NotJudged(label, points[lo][0].run_id, len(points) - lo))
            else:
                reach = newest_reach(series, lo=lo, alpha=alpha)
                if reach.blind:
                    h.blind.append((label, reach))
            for st in steps:
                run = points[st.index][0]
                at_newest = run is newest
                h.steps.append(
                    HistoryStep(
                        sr.scenario,
                        sr.option,
                        m.name,
                        _tags(m.tags),
                        m.unit,
                        m.better,
                        run.run_id,
                        at_newest,
                        st,
                        h.threshold,
                        judged=judged or not at_newest,
                    )
                )


# ---------------------------------------------------------------- rendering


def _table(groups: list[tuple[str, list[Row]]], header: Row) -> list[str]:
    """Rows of (label, base, new, change, verdict) under group lines, in ``WIDTH`` columns where the cells allow.

    The number columns are as wide as their widest cell and end the line; a
    label too long for the room left gets a line of its own, with the numbers
    on the next line. A group named "" gets no group line.
    """
    cells = [header] + [row for _, rows in groups for row in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(1, 4)]
    verdict_w = max(len(c[4]) for c in cells)

    def numbers(row: Row) -> str:
        return "  ".join(f"{row[i]:>{w}}" for i, w in zip(range(1, 4), widths)) + f"  {row[4]:<{verdict_w}}"

    col = max(6, WIDTH - len(numbers(header)))  # where the numbers start

    def line(label: str, row: Row, indent: int = 4) -> list[str]:
        if len(label) <= col - 2 - indent:
            return [(" " * indent + f"{label:<{col - indent}}" + numbers(row)).rstrip()]
        return [" " * indent + label, (" " * col + numbers(row)).rstrip()]

    out = line(header[0], header, indent=2)
    for group, rows in groups:
        if group:
            out.append(f"  {group}")
        for row in rows:
            out += line(row[0], row)
    return out


def _evidence(p_value: float | None, exact: bool) -> str:
    return "exact" if exact else ("" if p_value is None else f"p {p_value:.2g}")


def _grouped(rows: list[MetricComparison]) -> list[tuple[str, list[MetricComparison]]]:
    groups: dict[str, list[MetricComparison]] = {}
    for r in rows:
        groups.setdefault(f"{r.scenario} / {r.option}", []).append(r)
    return list(groups.items())


def _shown(rc: RunComparison, show_all: bool) -> list[MetricComparison]:
    """Default: significant changes, and likely ones of metrics with a direction; ``--all``: every row."""
    return rc.rows if show_all else [r for r in rc.rows if r.result.significant or (r.result.likely and r.result.worse is not None)]


def _title(rc: RunComparison) -> str:
    return f"Spike {rc.new.spike['number']} ({rc.new.spike.get('slug', '')}), {rc.new.profile} profile"


def render_text(comparisons: list[RunComparison], *, show_all: bool = False) -> str:
    """Plain text for a terminal, readable in 80 columns: summary first, then problems, then the (changed) rows."""
    out: list[str] = []
    for rc in comparisons:
        out += [_title(rc), f"  base: {rc.base.run_id}", f"  new:  {rc.new.run_id}", *(f"  {line}" for line in rc.summary())]
        head = [f"no regression verdict: {rc.withheld}"] if rc.withheld else []
        head += [f"MISSING {p.line()}" for p in rc.problems]
        head += [f"note: {n}" for n in rc.notes]
        too_few = sorted({(r.result.n_base, r.result.n_new) for r in rc.rows if r.result.verdict == "too few repeats"})
        if too_few:
            shapes = ", ".join(f"{n} vs {m}" for n, m in too_few[:3]) + (", ..." if len(too_few) > 3 else "")
            head.append(f"too few repeats ({shapes}): no test can reach p < {rc.alpha:g}; the history decides")
        for line in head:
            out += textwrap.wrap(line, WIDTH, initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False)
        shown = _shown(rc, show_all)
        if shown:
            groups: list[tuple[str, list[Row]]] = []
            for group, rows in _grouped(shown):
                cells: list[Row] = []
                for r in rows:
                    c = r.result
                    verdict = f"{c.verdict} ({_evidence(c.p_value, c.evidence == 'exact')})" if c.significant else c.verdict
                    cells.append((r.label, fmt_num(c.base, r.unit), fmt_num(c.new, r.unit), _pct(c.change), verdict))
                groups.append((group, cells))
            out += ["", *_table(groups, ("metric", "base", "new", "change", "verdict"))]
            if any(r.result.likely for r in shown):
                out.append(f"  likely = too few repeats to test, all repeats apart, past {rc.threshold:.0%}: not a failure")
        hidden = len(rc.rows) - len(shown)
        if hidden:
            out.append(f"  {hidden} unchanged or undecided row(s) hidden; --all shows them")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|")


def render_markdown(comparisons: list[RunComparison], *, show_all: bool = False) -> str:
    """Markdown for a CI comment: a section per spike, summary bullets, problems, a table of the (changed) rows."""
    out: list[str] = []
    for rc in comparisons:
        out += [f"### {_title(rc)}", "", f"`{rc.base.run_id}` → `{rc.new.run_id}`", "", f"- **{'; '.join(rc.summary())}**"]
        if rc.withheld:
            out.append(f"- no regression verdict: {_md_cell(rc.withheld)}")
        out += [f"- **missing**: {_md_cell(p.line())}" for p in rc.problems]
        out += [f"- note: {_md_cell(n)}" for n in rc.notes]
        shown = _shown(rc, show_all)
        if shown:
            out += ["", "| Scenario | Option | Metric | Base | New | Change | Verdict | Evidence |", "|---|---|---|---:|---:|---:|---|---|"]
            for r in shown:
                c = r.result
                cells = [r.scenario, r.option, r.label, fmt_num(c.base, r.unit), fmt_num(c.new, r.unit), _pct(c.change), c.verdict, c.why]
                out.append("| " + " | ".join(_md_cell(x) for x in cells) + " |")
        hidden = len(rc.rows) - len(shown)
        if hidden:
            out += ["", f"{hidden} unchanged or undecided row(s) not shown."]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _comparison_json(rc: RunComparison, show_all: bool) -> dict[str, Any]:
    return {
        "spike": rc.new.spike["number"],
        "profile": rc.new.profile,
        "base": rc.base.run_id,
        "new": rc.new.run_id,
        "summary": rc.counts(),
        "verdict_withheld": rc.withheld,
        "problems": [
            {"scenario": p.scenario, "option": p.option, "metric": p.metric or None, "kind": p.kind, "line": p.line()} for p in rc.problems
        ],
        "notes": rc.notes,
        "rows": [
            {
                "scenario": r.scenario,
                "option": r.option,
                "metric": r.name,
                "tags": r.tags,
                "unit": r.unit,
                "base": _num(r.result.base),
                "new": _num(r.result.new),
                "change": _num(r.result.change),
                "p_value": r.result.p_value,
                "repeats": [r.result.n_base, r.result.n_new],
                "evidence": r.result.evidence,
                "significant": r.result.significant,
                "likely": r.result.likely,
                "worse": r.result.worse,
                "regression": r.result.regression,
                "verdict": r.result.verdict,
                "why": r.result.why,
            }
            for r in _shown(rc, show_all)
        ],
    }


def render_json(comparisons: list[RunComparison], *, show_all: bool = False) -> str:
    """JSON for tools: one object per compared pair, every count, problem and (shown) row."""
    return json.dumps({"comparisons": [_comparison_json(rc, show_all) for rc in comparisons]}, indent=1) + "\n"


def _history_head(h: History) -> list[str]:
    head = [f"Spike {h.spike} ({h.slug}), full profile, history"]
    if h.machine:
        head.append(f"  machine: {', '.join(h.machine)}")
    if len(h.runs) > 1:
        head.append(f"  runs: {len(h.runs)} comparable, {short_id(h.runs[0].run_id)} .. {short_id(h.runs[-1].run_id)}")
    elif h.runs:
        head.append(f"  runs: 1 comparable, {h.runs[0].run_id}")
    if h.left_out:
        head.append("  left out: " + ", ".join(f"{n} {why}" for why, n in sorted(h.left_out.items())))
    head.append(f"  {h.summary()}")
    head += [f"  note: {n}" for n in h.notes()]
    return head


def _steps_shown(h: History, show_all: bool) -> list[HistoryStep]:
    """Default: the steps in the newest run, and older steps past the threshold; ``--all``: every step."""
    return [s for s in h.steps if show_all or s.newest or s.past_threshold]


def render_history_text(histories: list[History], *, show_all: bool = False) -> str:
    """Plain text in 80 columns: per spike, the series and the summary, then the steps by the run they start at."""
    out: list[str] = []
    for h in histories:
        for line in _history_head(h):
            indent = " " * (len(line) - len(line.lstrip()))
            out += textwrap.wrap(line.strip(), WIDTH, initial_indent=indent, subsequent_indent=indent + "  ", break_on_hyphens=False)
        steps = _steps_shown(h, show_all)
        by_run: dict[str, list[HistoryStep]] = {}
        for s in sorted(steps, key=lambda s: (not s.newest, s.run_id), reverse=False):
            by_run.setdefault(s.run_id, []).append(s)
        for run_id, run_steps in sorted(by_run.items(), key=lambda kv: kv[0], reverse=True):
            cells: list[Row] = []
            for s in run_steps:
                st = s.step
                verdict = f"{s.verdict} ({_evidence(st.p_value, st.evidence == 'exact')})"
                cells.append(
                    (f"{s.scenario}/{s.option} {s.label}", fmt_num(st.before, s.unit), fmt_num(st.after, s.unit), _pct(st.change), verdict)
                )
            newest = " (newest)" if run_steps[0].newest else ""
            out += ["", f"  steps at run {run_id}{newest}", *_table([("", cells)], ("metric", "before", "after", "change", "verdict"))]
            if any(not s.judged for s in run_steps):
                out.append(f"  no verdict = fewer than {MIN_HISTORY} runs since an older step of the metric (notes above)")
        hidden = len(h.steps) - len(steps)
        if hidden:
            out.append(f"  {hidden} older step(s) under the {h.threshold:.0%} threshold hidden; --all shows them")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_history_markdown(histories: list[History], *, show_all: bool = False) -> str:
    """Markdown for a CI comment: per spike, the summary and a table of the steps."""
    out: list[str] = []
    for h in histories:
        head = _history_head(h)
        out += [f"### {head[0]}", ""] + [f"- {_md_cell(line.strip())}" for line in head[1:]]
        steps = _steps_shown(h, show_all)
        if steps:
            out += [
                "",
                "| Run | Scenario | Option | Metric | Before | After | Change | Verdict | Evidence |",
                "|---|---|---|---|---:|---:|---:|---|---|",
            ]
            for s in sorted(steps, key=lambda s: s.run_id, reverse=True):
                st = s.step
                ev = "exact values" if st.p_value is None else f"p = {st.p_value:.2g}"
                run = f"{s.run_id}{' (newest)' if s.newest else ''}"
                cells = [
                    run,
                    s.scenario,
                    s.option,
                    s.label,
                    fmt_num(st.before, s.unit),
                    fmt_num(st.after, s.unit),
                    _pct(st.change),
                    s.verdict,
                    ev,
                ]
                out.append("| " + " | ".join(_md_cell(x) for x in cells) + " |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_history_json(histories: list[History], *, show_all: bool = False) -> str:
    """JSON for tools: per spike, the series, the counts and every (shown) step."""
    data = []
    for h in histories:
        data.append(
            {
                "spike": h.spike,
                "machine": dict(zip(MACHINE_KEYS, h.machine)) if h.machine else None,
                "runs": [r.run_id for r in h.runs],
                "left_out": h.left_out,
                "too_short": h.too_short,
                "metrics": h.metrics,
                "short_series": h.short_series,
                "blind": len(h.blind),
                "blind_metrics": [label for label, _ in h.blind],
                "not_judged": [{"metric": nj.label, "since": nj.since, "runs": nj.runs} for nj in h.not_judged],
                "notes": h.notes(),
                "regressions": len(h.regressions),
                "steps": [
                    {
                        "run": s.run_id,
                        "newest": s.newest,
                        "scenario": s.scenario,
                        "option": s.option,
                        "metric": s.name,
                        "tags": s.tags,
                        "unit": s.unit,
                        "before": _num(s.step.before),
                        "after": _num(s.step.after),
                        "change": _num(s.step.change),
                        "p_value": s.step.p_value,
                        "evidence": s.step.evidence,
                        "worse": s.worse,
                        "regression": s.regression,
                        "verdict": s.verdict,
                    }
                    for s in _steps_shown(h, show_all)
                ],
            }
        )
    return json.dumps({"histories": data}, indent=1) + "\n"
