"""Compare two stored runs of the same spike, metric by metric (``spike compare``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.results import ResultsError, RunResult, iter_runs, load
from harness.stats import Comparison, compare_samples, summarize

__all__ = ["MetricComparison", "compare_runs", "machine_differences", "pair_runs"]


@dataclass(frozen=True)
class MetricComparison:
    """One metric of one scenario and option, compared."""

    scenario: str
    option: str
    name: str
    tags: str
    unit: str
    result: Comparison
    spread: float  # the larger relative interquartile range of the two samples


def compare_runs(
    base: RunResult, new: RunResult, *, alpha: float = 0.05, min_effect: float = 0.05, threshold: float = 0.10
) -> list[MetricComparison]:
    """Every metric present in both runs (steps that ran ok in both), compared."""
    rows = []
    for sr_new in new.scenarios:
        sr_base = base.ok(sr_new.scenario, sr_new.option)
        if sr_base is None or sr_new.status != "ok":
            continue
        for m_new in sr_new.measurements:
            try:
                m_base = sr_base.measurement(m_new.name, **m_new.tags)
            except KeyError:
                continue
            if m_base.tags != m_new.tags or not m_base.samples or not m_new.samples:
                continue
            cmp = compare_samples(m_base.samples, m_new.samples, m_new.better, alpha=alpha, min_effect=min_effect, threshold=threshold)
            tags = ", ".join(f"{k}={v}" for k, v in sorted(m_new.tags.items()))
            spread = max(summarize(m_base.samples).rel_spread, summarize(m_new.samples).rel_spread)
            rows.append(MetricComparison(sr_new.scenario, sr_new.option, m_new.name, tags, m_new.unit, cmp, spread))
    return rows


def machine_differences(base: RunResult, new: RunResult) -> list[str]:
    """What differs between the machines of two runs, in the ways that move numbers."""
    out = []
    for key in ("cpu_model", "cpu_count_logical", "python", "os"):
        if base.machine.get(key) != new.machine.get(key):
            out.append(f"{key}: {base.machine.get(key)} -> {new.machine.get(key)}")
    if base.profile != new.profile:
        out.append(f"profile: {base.profile} -> {new.profile}")
    return out


def _latest(runs: list[RunResult]) -> dict[tuple[int, str], RunResult]:
    out: dict[tuple[int, str], RunResult] = {}
    for run in sorted(runs, key=lambda r: r.started_at):
        out[(int(run.spike["number"]), run.profile)] = run
    return out


def pair_runs(base: Path, new: Path) -> list[tuple[RunResult, RunResult]]:
    """Pair runs to compare: two files, or the newest run per spike and profile of two folders.

    With folders, a run is compared with the newest run of the same spike and
    profile in ``base`` that is not the same run, so a folder can be compared
    with a copy of itself taken before a nightly run.
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
    new_latest = _latest(list(iter_runs(new)))
    base_runs = list(iter_runs(base))
    pairs = []
    for (number, profile), n in sorted(new_latest.items()):
        candidates = [
            r
            for r in base_runs
            if int(r.spike["number"]) == number and r.profile == profile and r.run_id != n.run_id and r.started_at <= n.started_at
        ]
        if candidates:
            pairs.append((max(candidates, key=lambda r: r.started_at), n))
    return pairs
