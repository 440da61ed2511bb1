"""Summaries of raw samples, and the significance rule behind ``spike compare``, ties and history.

**The unit of evidence is the repeat.** Samples inside one repeat share the
server process, the machine's state and the minute, so they are not
independent: with 1,500 connection times per side any shift of the median
looks "significant". Significance, ties and steps in the history are therefore
computed over per-repeat summaries (the median of each repeat, which is the
repeat's own figure when it holds one sample); the pooled samples are for
distributions and percentiles only. The rule, in ``separate`` (used by
``compare_repeats`` for ``spike compare`` and by ``tied`` for the decision layer):

1. *Exact values.* A side is exact when it holds at least two values and all
   of them are identical: a deterministic value (a size, a count, a pass/fail)
   seen repeat after repeat. When both sides are exact, a change of at least
   ``min_effect`` counts without a test. A single value is never exact, whole
   or not: one RSS reading of a one-repeat scenario, or one count of lost
   messages, shows no noise to beat, so one value on either side falls to
   rule 3 and is "too few repeats".
2. *Small changes.* A relative change of the central value (the median of the
   per-repeat medians) below ``min_effect`` is never called a difference.
3. *The test.* A two-sided Mann-Whitney U test over the per-repeat medians; it
   assumes nothing about the shape of the distribution. With n and m repeats
   the smallest p it can give is 2 / C(n+m, n): 0.33 for 2 vs 2, 0.10 for 3 vs 3,
   0.057 for 3 vs 4, 0.029 for 4 vs 4. When that cannot get below ``alpha`` the
   test is not run and the result says "too few repeats"; if then every repeat
   of one side lies beyond every repeat of the other (at least 2 repeats per
   side) the sides are *apart*: a *likely* difference, never called significant
   (under no change that happens with exactly the smallest p above, e.g. 1 in
   10 for 3 vs 3). The stored history is what gives enough repeats for a real
   test (``find_steps``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Summary",
    "summarize",
    "Separation",
    "separate",
    "tied",
    "Comparison",
    "compare_repeats",
    "Step",
    "WINDOW",
    "split_level",
    "Reach",
    "newest_reach",
    "find_steps",
    "repeat_values",
    "min_p_value",
    "exact_value",
    "relative_change",
    "fmt_num",
]


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


Evidence = Literal["same", "below min effect", "exact", "significant", "not significant", "apart", "too few repeats"]


def repeat_values(repeats: Sequence[Sequence[float]]) -> list[float]:
    """The evidence of a metric: one figure per repeat (its median), empty repeats left out."""
    return [float(statistics.median(r)) for r in repeats if len(r)]


def min_p_value(n: int, m: int) -> float:
    """The smallest two-sided p an exact Mann-Whitney U test can give with n against m values: 2 / C(n+m, n)."""
    if n < 1 or m < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n + m, n))


def relative_change(before: float, after: float) -> float:
    """``after`` relative to ``before`` (+0.1 = 10% higher); +/-inf when ``before`` is 0 and ``after`` is not."""
    if after == before:
        return 0.0
    if before == 0:
        return math.copysign(math.inf, after)
    return (after - before) / abs(before)


def exact_value(samples: Sequence[float]) -> float | None:
    """The value of a side that is exact (rule 1 of the module docstring: at least two values, all identical), else None."""
    if len(samples) < 2 or len(set(samples)) != 1:
        return None
    return float(samples[0])


def _mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value.

    When the sides do not overlap at all the exact p is 2 / C(n+m, n) even with
    ties inside a side (only one arrangement is that extreme each way); scipy
    would switch to the normal approximation on ties, which is far off for
    small samples (15 runs' values against 3: 0.009 instead of 0.0025).
    """
    if max(a) < min(b) or max(b) < min(a):
        return min_p_value(len(a), len(b))
    from scipy import stats as sps  # here, not at the top: every load-generator process imports this module, and scipy costs ~0.8 s

    return float(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)


@dataclass(frozen=True)
class Separation:
    """Whether two sets of repeats of one metric differ, and on what evidence (see the module docstring)."""

    a: float  # central value of side a: the median of its per-repeat medians
    b: float
    change: float  # b relative to a (relative_change)
    n_a: int  # repeats holding samples
    n_b: int
    p_value: float | None  # None when no test was run
    min_p: float  # the smallest p the test could give with these repeat counts
    evidence: Evidence
    alpha: float
    min_effect: float

    @property
    def separated(self) -> bool:
        """True when the sides differ: exact values, a significant test, or (with too few repeats) ranges apart."""
        return self.evidence in ("exact", "significant", "apart")

    @property
    def why(self) -> str:
        """The evidence in a few words, for tables and tie explanations."""
        reps = f"{self.n_a} vs {self.n_b} repeats"
        if self.evidence == "same":
            return "no change"
        if self.evidence == "below min effect":
            return f"change below {self.min_effect:.0%}"
        if self.evidence == "exact":
            return "exact values"
        if self.evidence in ("significant", "not significant"):
            return f"p = {self.p_value:.2g}, {reps}"
        if self.evidence == "apart":
            return f"{reps} do not overlap; a test needs more (smallest p {self.min_p:.2g})"
        return f"{reps}: smallest possible p {self.min_p:.2g}, not below {self.alpha:g}"


def separate(
    a_repeats: Sequence[Sequence[float]], b_repeats: Sequence[Sequence[float]], *, min_effect: float = 0.05, alpha: float = 0.05
) -> Separation:
    """Apply the per-repeat rule of the module docstring to two sets of repeats (``repeats[k]`` = samples of repeat k)."""
    va, vb = repeat_values(a_repeats), repeat_values(b_repeats)
    if not va or not vb:
        raise ValueError("no samples")
    a, b = float(statistics.median(va)), float(statistics.median(vb))
    change = relative_change(a, b)
    n, m = len(va), len(vb)
    min_p = min_p_value(n, m)

    def result(evidence: Evidence, p: float | None = None) -> Separation:
        return Separation(a, b, change, n, m, p, min_p, evidence, alpha, min_effect)

    ea = exact_value([s for r in a_repeats for s in r])
    eb = exact_value([s for r in b_repeats for s in r])
    if ea is not None and eb is not None:  # then a == ea and b == eb: every sample of a side is that value
        return result("same" if change == 0 else "below min effect" if abs(change) < min_effect else "exact")
    if change == 0:
        return result("same")
    if abs(change) < min_effect:
        return result("below min effect")
    if min_p >= alpha:
        apart = n >= 2 and m >= 2 and (max(va) < min(vb) or max(vb) < min(va))
        return result("apart" if apart else "too few repeats")
    p = _mann_whitney_p(va, vb)
    return result("significant" if p < alpha else "not significant", p)


def tied(a_repeats: Sequence[Sequence[float]], b_repeats: Sequence[Sequence[float]], min_effect: float, *, alpha: float = 0.05) -> bool:
    """True when two options' values of one metric are indistinguishable across repeats: a tie within noise.

    For the decision layer (criteria -> scores): give it the per-repeat samples
    of the metric for option A and for option B (``MeasurementRecord.repeats``,
    never pooled samples) and the criterion's smallest difference that matters
    as ``min_effect`` (relative: 0.05 = 5%). The options are *not* tied only when
    their central values (median of per-repeat medians) differ by at least
    ``min_effect`` and the repeats show it: exact values that differ (each
    seen at least twice), a Mann-Whitney U test over the per-repeat medians
    below ``alpha``, or, when there are too few repeats for the test to reach
    ``alpha`` (3 vs 3), per-repeat ranges that do not overlap with at least 2
    repeats per side. A single value against a single value is always a tie,
    whole number or not: it shows no noise to beat. Use ``separate`` for the
    evidence in words (``Separation.why``) to explain a tie.
    """
    return not separate(a_repeats, b_repeats, min_effect=min_effect, alpha=alpha).separated


@dataclass(frozen=True)
class Comparison:
    """The verdict on one metric between a base run and a new run, from their repeats."""

    base: float
    new: float
    change: float  # new relative to base
    p_value: float | None
    n_base: int  # repeats
    n_new: int
    evidence: Evidence
    significant: bool  # exact values or a test below alpha, and at least min_effect
    likely: bool  # too few repeats for the test, ranges apart, and at least the threshold
    worse: bool | None  # None for an informational metric or no change
    regression: bool  # significant, worse, and at least the threshold: ``spike compare`` exits 1
    verdict: str  # short label for a table column
    why: str  # the evidence in a few words

    @property
    def likely_regression(self) -> bool:
        return self.likely and bool(self.worse)

    @property
    def changed(self) -> bool:
        """Shown by default in ``spike compare``: significant or likely."""
        return self.significant or self.likely


def compare_repeats(
    base_repeats: Sequence[Sequence[float]],
    new_repeats: Sequence[Sequence[float]],
    better: str | None,
    *,
    alpha: float = 0.05,
    min_effect: float = 0.05,
    threshold: float = 0.10,
) -> Comparison:
    """Compare one metric between two runs by the per-repeat rule (module docstring).

    ``better`` is "lower", "higher" or None (informational: it can change, never
    regress). A significant change in the worse direction of at least
    ``threshold`` is a REGRESSION. A change that is only *apart* (too few repeats
    for the test) and at least ``threshold`` is "likely worse/better": shown and
    counted, but not a regression, since with 3 vs 3 repeats it happens 1 time in
    10 with no change at all; the history (``find_steps``) decides those.
    """
    s = separate(base_repeats, new_repeats, min_effect=min_effect, alpha=alpha)
    worse: bool | None = None
    if better in ("lower", "higher") and s.change != 0:
        worse = (s.change > 0) if better == "lower" else (s.change < 0)
    past = abs(s.change) >= threshold
    significant = s.evidence in ("exact", "significant")
    likely = s.evidence == "apart" and past
    why = s.why
    if significant:
        if worse is None:
            verdict = "changed"
        elif not worse:
            verdict = "improved"
        else:
            verdict = "REGRESSION" if past else f"worse <{threshold:.0%}"
    elif likely:
        verdict = "likely changed" if worse is None else ("likely worse" if worse else "likely better")
    elif s.evidence == "apart":
        verdict, why = "too few repeats", f"{why}; under the {threshold:.0%} threshold"
    else:
        verdict = {
            "same": "same",
            "below min effect": f"within {min_effect:.0%}",
            "not significant": "not significant",
            "too few repeats": "too few repeats",
        }[s.evidence]
    regression = significant and bool(worse) and past
    return Comparison(s.a, s.b, s.change, s.p_value, s.n_a, s.n_b, s.evidence, significant, likely, worse, regression, verdict, why)


@dataclass(frozen=True)
class Step:
    """A step change in a series of runs: the level moved at run ``index`` (the first run of the new level)."""

    index: int
    before: float  # median of the per-run figures before the step (within its segment)
    after: float
    change: float  # after relative to before
    p_value: float | None  # None for exact values
    evidence: Literal["exact", "significant"]


#: Runs on either side of a split that ``find_steps`` compares.
WINDOW = 5


def split_level(n_runs: int, *, alpha: float = 0.05, window: int = WINDOW) -> float:
    """The level each split of a segment of ``n_runs`` runs is tested at in ``find_steps``.

    ``alpha`` over the number of split points tried (Bonferroni), but over at
    most ``2 * window`` of them: each split is tested on ``window`` runs either
    side, so only that many other splits share runs with it, and a step at the
    newest run is judged on the same evidence in a series of 12 runs or 60.
    Dividing by every split of a long series would make a recent step
    impossible to find (from about 22 runs of 3 repeats a +50% step at the
    newest run could no longer reach the level). The price: over a long
    series a false step somewhere far back is likelier than ``alpha``; it
    fails nothing, since only a step at the newest run is a regression.
    """
    return alpha / max(1, min(n_runs - 1, 2 * window))


def _windows(k: int, lo: int, hi: int, window: int) -> tuple[int, int]:
    """The runs a split at ``k`` of segment [lo, hi) is tested on: [a, k) against [k, b)."""
    return max(lo, k - window), min(hi, k + window)


@dataclass(frozen=True)
class Reach:
    """Whether a step at the newest run of a segment could be found at all, with these repeats."""

    min_p: float  # the smallest p a test of that split can give (0 when both sides are exact: no test needed)
    level: float  # what it must get below (``split_level``)
    n_before: int  # per-repeat values on the left of the split (within the window)
    n_newest: int  # per-repeat values of the newest run

    @property
    def blind(self) -> bool:
        """True when no step at the newest run can be found: even the most extreme arrangement misses the level."""
        return self.min_p >= self.level


def newest_reach(runs: Sequence[Sequence[Sequence[float]]], *, lo: int = 0, alpha: float = 0.05, window: int = WINDOW) -> Reach:
    """What ``find_steps`` needs to call the newest run of ``runs[lo:]`` a step, and whether these repeats can give it.

    With 2 repeats a run, for example, the newest run's 2 values against the 10
    of the 5 runs before it give at least p = 0.03, never below 0.05 / 10: a
    step there goes unseen, and the caller must say so.
    """
    hi = len(runs)
    k = hi - 1
    if k <= lo:
        raise ValueError("a segment needs at least two runs")
    a, _ = _windows(k, lo, hi, window)
    level = split_level(hi - lo, alpha=alpha, window=window)
    left, right = [repeat_values(r) for r in runs[a:k]], repeat_values(runs[k])
    n_left = sum(len(v) for v in left)
    if (
        exact_value([s for r in runs[a:k] for rep in r for s in rep]) is not None
        and exact_value([s for rep in runs[k] for s in rep]) is not None
    ):
        return Reach(0.0, level, n_left, len(right))
    return Reach(min_p_value(n_left, len(right)), level, n_left, len(right))


def find_steps(
    runs: Sequence[Sequence[Sequence[float]]], *, alpha: float = 0.05, min_effect: float = 0.05, wobble: float = 3.0, window: int = WINDOW
) -> list[Step]:
    """Step changes in one metric over a series of runs, oldest first (``runs[i]`` = the repeats of run i).

    Binary segmentation, in the spirit of asv's step detection: within a segment
    of runs, try every split point, each against up to ``window`` runs on either
    side of it (within the segment: a local comparison, so a step undone later,
    or long ago, does not hide it); a split is a candidate when

    * the level (median of the per-run figures, each run's figure being the
      median of its per-repeat medians) moves by at least ``min_effect``;
    * the evidence holds: both sides exact (module docstring, rule 1) with
      different values, or a two-sided Mann-Whitney U test over the pooled
      per-repeat medians of the runs on each side below ``split_level``:
      ``alpha`` divided by the number of split points tried, at most
      ``2 * window`` (Bonferroni: scanning every split would otherwise find
      steps in noise; the cap keeps a long series from hiding a recent step);
    * the move is at least ``wobble`` times the largest run-to-run wobble on
      either side: the largest deviation of a run's figure from its own side's
      level. Repeats of one run share the run's machine state, so the test
      above alone would take one unlucky run for a step (on a shared 2-core
      machine whole runs move by 20%); with this rule every run after the step
      lies beyond every run before it (within the window), by a margin that
      grows with the noise. The price: a noisy metric needs a larger step to
      be flagged.

    The best candidate (smallest p, then largest move) is a step; both halves are
    then searched again. Returns the steps in run order. A run without repeats
    for the metric must be left out of ``runs`` by the caller. Whether a step
    at the newest run could be found at all with the repeats given:
    ``newest_reach`` (with 2 repeats a run it cannot).

    What to expect (simulated: 3 repeats a run, runs moving uniformly by up to
    +/-X% as a whole): with X = 5 no step of 10% or more in 150 histories of 5
    to 12 runs; with X = 10 or 20, a step of 10% or more at the newest run in
    1-3% of histories (noise that large defeats a 10% threshold; such a metric
    needs more repeats, or a larger threshold). A 15% step at the newest run
    is found 9 times in 10 when runs move by 3%; with runs moving by 10%, a 30%
    step is found 6 times in 10 and a 50% step 9 times in 10. Over 30 and 60
    runs (the ``split_level`` cap): with X = 5 no step of 10% or more in 80
    histories; with X = 10 or 20, one at the newest run in 80; a 50% step at
    the newest run is found.
    """
    values = [repeat_values(r) for r in runs]
    samples = [[s for rep in r for s in rep] for r in runs]
    levels = [float(statistics.median(v)) if v else math.nan for v in values]
    steps: list[Step] = []

    def segment(lo: int, hi: int) -> None:
        if hi - lo < 2:
            return
        level = split_level(hi - lo, alpha=alpha, window=window)
        best: tuple[float, float, int, Step] | None = None
        for k in range(lo + 1, hi):
            a, b = _windows(k, lo, hi, window)
            before = float(statistics.median(levels[a:k]))
            after = float(statistics.median(levels[k:b]))
            ex_l = exact_value([s for r in samples[a:k] for s in r])
            ex_r = exact_value([s for r in samples[k:b] for s in r])
            if ex_l is not None and ex_r is not None:
                change = relative_change(ex_l, ex_r)
                if change == 0 or abs(change) < min_effect:
                    continue
                cand = Step(k, ex_l, ex_r, change, None, "exact")
                key: tuple[float, float, int, Step] = (0.0, -abs(change), k, cand)
            else:
                change = relative_change(before, after)
                if change == 0 or abs(change) < min_effect:
                    continue
                left = [v for r in values[a:k] for v in r]
                right = [v for r in values[k:b] for v in r]
                if min_p_value(len(left), len(right)) >= level:
                    continue
                noise = max([abs(x - before) for x in levels[a:k]] + [abs(x - after) for x in levels[k:b]])
                if abs(after - before) < wobble * noise:
                    continue
                p = _mann_whitney_p(left, right)
                if p >= level:
                    continue
                cand = Step(k, before, after, change, p, "significant")
                key = (p, -abs(change), k, cand)
            if best is None or key[:3] < best[:3]:
                best = key
        if best is None:
            return
        step = best[3]
        steps.append(step)
        segment(lo, step.index)
        segment(step.index, hi)

    segment(0, len(runs))
    return sorted(steps, key=lambda s: s.index)


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
