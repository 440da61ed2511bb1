"""Summaries of raw samples, and the significance test behind ``spike compare``.

A difference is called significant only when two things hold, as pyperf and
asv do: a statistical test over the raw samples rejects "same distribution"
(two-sided Mann-Whitney U, which assumes nothing about the shape of latency
distributions), and the change of the median is at least a minimum effect
size. Otherwise the verdict says "not significant" in words.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Summary", "summarize", "Comparison", "compare_samples", "fmt_num", "geomean", "relative_to_best"]


def relative_to_best(values: dict[str, float | None], lower_is_better: bool) -> dict[str, float | None]:
    """Each option's value as a fraction of the best one (1.0 for the best); None where nothing positive was measured."""
    have = {o: v for o, v in values.items() if v is not None and v > 0}
    if not have:
        return {o: None for o in values}
    best = min(have.values()) if lower_is_better else max(have.values())
    return {o: ((best / v) if lower_is_better else (v / best)) if o in have else None for o, v in values.items()}


def geomean(xs: Sequence[float]) -> float:
    """Geometric mean of positive numbers (ratios to the best option, in the spikes' scores)."""
    return math.exp(sum(math.log(max(x, 1e-12)) for x in xs) / len(xs))


@dataclass(frozen=True)
class Summary:
    """Median, spread and extremes of a sample."""

    n: int
    median: float
    mean: float
    stdev: float
    p25: float
    p75: float
    minimum: float
    maximum: float

    @property
    def rel_spread(self) -> float:
        """Interquartile range relative to the median (0 when the median is 0)."""
        return (self.p75 - self.p25) / abs(self.median) if self.median else 0.0


def summarize(samples: Sequence[float]) -> Summary:
    """Summarize a non-empty sample."""
    if not samples:
        raise ValueError("no samples")
    xs = sorted(samples)
    if len(xs) >= 2:
        q = statistics.quantiles(xs, n=4, method="inclusive")
        p25, p75 = q[0], q[2]
        sd = statistics.stdev(xs)
    else:
        p25 = p75 = xs[0]
        sd = 0.0
    return Summary(len(xs), statistics.median(xs), statistics.fmean(xs), sd, p25, p75, xs[0], xs[-1])


@dataclass(frozen=True)
class Comparison:
    """The verdict on one metric between a base run and a new run."""

    base: float
    new: float
    change: float  # relative change of the median, new/base - 1
    p_value: float | None
    significant: bool
    regression: bool
    verdict: str


def compare_samples(
    base: Sequence[float],
    new: Sequence[float],
    better: str | None,
    *,
    alpha: float = 0.05,
    min_effect: float = 0.05,
    threshold: float = 0.10,
) -> Comparison:
    """Compare two samples of one metric.

    ``min_effect``: smallest relative change of the median that can be called
    significant. ``threshold``: a significant change in the worse direction at
    least this large is a regression (``spike compare`` then exits 1).
    Samples without any spread on both sides (byte sizes, counts) are exact:
    any change of at least ``min_effect`` is significant without a test.
    """
    b, n = statistics.median(base), statistics.median(new)
    if b == n:
        change = 0.0
    elif b == 0:
        change = math.copysign(math.inf, n)
    else:
        change = n / b - 1.0
    exact = len(set(base)) == 1 and len(set(new)) == 1
    p: float | None
    if exact:
        p = None
        significant = b != n and abs(change) >= min_effect
    elif len(base) < 3 or len(new) < 3:
        return Comparison(b, n, change, None, False, False, f"not significant: too few samples ({len(base)} vs {len(new)}; need 3 each)")
    else:
        from scipy import stats as sps  # here, not at the top: every load-generator process imports this module, and scipy costs ~0.8 s

        p = float(sps.mannwhitneyu(base, new, alternative="two-sided").pvalue)
        significant = p < alpha and abs(change) >= min_effect
    if not significant:
        why = "no change" if change == 0 else (f"change below {min_effect:.0%}" if abs(change) < min_effect else f"p = {p:.3g}")
        return Comparison(b, n, change, p, False, False, f"not significant ({why})")
    if better is None:
        return Comparison(b, n, change, p, True, False, "changed (informational metric)")
    worse = (change > 0) if better == "lower" else (change < 0)
    regression = worse and abs(change) >= threshold
    if worse:
        verdict = "REGRESSION" if regression else f"worse, below the {threshold:.0%} threshold"
    else:
        verdict = "improved"
    return Comparison(b, n, change, p, True, regression, verdict)


def fmt_num(x: float, unit: str = "") -> str:
    """A number with 3 significant digits and thousands separators, and its unit."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        s = "n/a"
    elif isinstance(x, float) and math.isinf(x):
        s = "inf"
    elif x == int(x) and abs(x) >= 1:
        s = f"{int(x):,}"
    elif abs(x) >= 100:
        s = f"{x:,.0f}"
    elif abs(x) >= 10:
        s = f"{x:.1f}"
    elif abs(x) >= 1:
        s = f"{x:.2f}"
    else:
        s = f"{x:.3g}"
    return f"{s} {unit}".strip() if unit else s
