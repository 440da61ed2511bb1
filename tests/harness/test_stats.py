from __future__ import annotations

import math
import random

import pytest

from harness.stats import (
    compare_repeats,
    exact_value,
    find_steps,
    fmt_num,
    min_p_value,
    newest_reach,
    separate,
    split_level,
    summarize,
    tied,
)


def _repeats(centers: list[float], n: int = 30, spread: float = 0.02, seed: int = 1) -> list[list[float]]:
    """One repeat per center: n samples scattered by +/- spread around it."""
    rng = random.Random(seed)
    return [[c * (1 + rng.uniform(-spread, spread)) for _ in range(n)] for c in centers]


def test_within_repeat_noise_is_not_significant_however_many_samples_a_repeat_holds():
    # Each repeat has its own level (the machine's state that minute) and 1,500 samples around it.
    base = _repeats([100, 103, 98, 101, 97], n=1500, spread=0.5, seed=1)
    new = _repeats([102, 99, 104, 100, 103], n=1500, spread=0.5, seed=2)
    from scipy.stats import mannwhitneyu

    pooled = mannwhitneyu([s for r in base for s in r], [s for r in new for s in r]).pvalue
    assert pooled < 1e-3  # what the old pooled test would have called significant
    c = compare_repeats(base, new, "lower", min_effect=0.0)
    assert not c.significant and not c.regression and not c.likely
    assert c.verdict == "not significant" and c.n_base == 5 and c.n_new == 5


def test_a_change_every_repeat_shows_is_a_regression():
    c = compare_repeats(_repeats([100, 102, 99, 101, 98]), _repeats([130, 128, 133, 131, 129], seed=3), "lower")
    assert c.significant and c.regression and c.verdict == "REGRESSION"
    assert c.p_value is not None and c.p_value < 0.05 and c.evidence == "significant"
    assert c.change == pytest.approx(0.30, abs=0.03)


def test_direction_follows_better():
    base, new = _repeats([100, 101, 99, 100]), _repeats([70, 71, 69, 70], seed=4)
    assert compare_repeats(base, new, "lower").verdict == "improved"
    assert compare_repeats(base, new, "higher").regression
    info = compare_repeats(base, new, None)
    assert info.significant and not info.regression and info.verdict == "changed" and info.worse is None


def test_three_repeats_cannot_be_significant_but_apart_past_the_threshold_is_likely():
    assert min_p_value(3, 3) == pytest.approx(0.10)
    base, new = _repeats([100, 101, 99]), _repeats([130, 131, 129], seed=5)
    c = compare_repeats(base, new, "lower")
    assert not c.significant and not c.regression and c.likely and c.likely_regression
    assert c.verdict == "likely worse" and "do not overlap" in c.why and c.p_value is None
    small = compare_repeats(base, _repeats([107, 108, 106], seed=5), "lower")  # apart, but under the 10% threshold
    assert not small.likely and small.verdict == "too few repeats" and "threshold" in small.why
    overlapping = compare_repeats(base, _repeats([130, 95, 129], seed=5), "lower")
    assert not overlapping.likely and overlapping.verdict == "too few repeats" and "smallest possible p 0.1" in overlapping.why


def test_small_changes_are_below_min_effect():
    c = compare_repeats(_repeats([100, 100.1, 99.9, 100, 100.2]), _repeats([102, 102.1, 101.9, 102, 102.2], n=5), "lower", min_effect=0.05)
    assert not c.significant and c.verdict == "within 5%"


def test_worse_but_under_threshold_is_not_a_regression():
    c = compare_repeats(_repeats([100, 100.5, 99.5, 100, 100.2]), _repeats([107, 107.5, 106.5, 107, 107.2], seed=6), "lower")
    assert c.significant and not c.regression and c.verdict == "worse <10%"


@pytest.mark.parametrize(
    ("base", "new", "evidence"),
    [
        ([[512.0], [512.0]], [[600.0], [600.0], [600.0]], "exact"),  # a size seen repeat after repeat
        ([[1.5, 1.5]], [[2.5], [2.5]], "exact"),  # a fractional value seen twice without spread
        ([[512.0]], [[600.0]], "too few repeats"),  # a lone whole number may be noise too (RSS bytes of a 1-repeat scenario)
        ([[0.0]], [[3.0]], "too few repeats"),  # one count of lost messages per side
        ([[512.0], [512.0]], [[600.0]], "too few repeats"),  # one side a single value
        ([[10.5]], [[12.5]], "too few repeats"),  # a lone fractional value
        ([[10.0, 11.0]], [[15.0, 16.0]], "too few repeats"),  # whole numbers, but with spread: one repeat each
    ],
)
def test_exact_values_need_no_test_and_a_single_value_is_too_few(base, new, evidence):
    c = compare_repeats(base, new, "lower")
    assert c.evidence == evidence
    assert c.regression == (evidence == "exact")
    if evidence == "too few repeats":
        assert c.verdict == "too few repeats" and not c.likely


def test_exact_same_value_is_no_change_and_zero_to_some_is_infinite():
    assert compare_repeats([[512.0, 512.0]], [[512.0]], "lower").verdict == "same"
    lost = compare_repeats([[0.0], [0.0], [0.0]], [[3.0], [3.0], [3.0]], "lower")
    assert lost.regression and math.isinf(lost.change)


def test_ties_use_the_same_per_repeat_rule():
    a = _repeats([100, 102, 99, 101, 98], n=1500, spread=0.3)
    b = _repeats([101, 99, 103, 100, 102], n=1500, spread=0.3, seed=7)
    assert tied(a, b, 0.02)  # 7,500 samples each, but the repeats overlap
    assert not tied(a, _repeats([120, 121, 119, 122, 118], seed=8), 0.05)  # significant over 5 vs 5 repeats
    assert not tied(_repeats([100, 101, 99]), _repeats([120, 121, 119]), 0.05)  # 3 vs 3, apart
    assert tied(_repeats([100, 101, 99]), _repeats([120, 98, 119]), 0.05)  # 3 vs 3, overlapping
    assert tied([[10.2]], [[30.7]], 0.05)  # one noisy value each shows no noise to beat
    assert tied([[4.0]], [[5.0]], 0.05)  # one whole number each: no more exact than one fraction
    assert not tied([[4.0], [4.0]], [[5.0], [5.0]], 0.05)  # exact counts that differ, each seen twice
    assert tied(_repeats([100, 101, 99, 100, 100]), _repeats([103, 104, 102, 103, 103]), 0.05)  # below the smallest difference
    s = separate(_repeats([100, 101, 99]), _repeats([120, 98, 119]))
    assert not s.separated and "3 vs 3 repeats" in s.why


def _history(levels: list[float], *, repeats: int = 3, run_noise: float = 0.03, seed: int = 11) -> list[list[list[float]]]:
    """Runs at the given levels; each run moves by up to run_noise, each repeat a little more, 50 samples a repeat."""
    rng = random.Random(seed)
    runs = []
    for level in levels:
        run_level = level * (1 + rng.uniform(-run_noise, run_noise))
        runs.append(_repeats([run_level * (1 + rng.uniform(-0.01, 0.01)) for _ in range(repeats)], n=50, seed=rng.randrange(1 << 30)))
    return runs


def test_a_planted_step_is_found_at_the_run_where_it_happened():
    steps = find_steps(_history([100] * 6 + [150] * 4))
    assert [s.index for s in steps] == [6]
    assert steps[0].change == pytest.approx(0.5, abs=0.08) and steps[0].evidence == "significant"
    newest = find_steps(_history([100] * 7 + [140]))
    assert [s.index for s in newest] == [7]


def test_two_steps_are_both_found():
    steps = find_steps(_history([100] * 5 + [150] * 5 + [100] * 5))
    assert [s.index for s in steps] == [5, 10]


@pytest.mark.parametrize("seed", range(10))
def test_run_to_run_noise_alone_makes_no_step_past_the_threshold(seed):
    # Whole runs move by up to 20% while their repeats agree closely: a test over the pooled repeats alone
    # (wobble=0) finds a step of 10% or more in 6 of these 10 histories.
    steps = find_steps(_history([100] * 10, run_noise=0.20, seed=seed))
    assert [s for s in steps if abs(s.change) >= 0.10] == []


def test_one_unlucky_run_is_not_a_step_when_runs_wobble_that_much():
    # Runs wobble by 15%, so a newest run 18% off the level is within that wobble, however tight its repeats.
    runs = [[[v]] * 3 for v in (100.0, 115.0, 88.0, 103.0, 97.0, 110.0, 86.0)] + [[[118.0], [118.5], [117.5]]]
    runs = [[[x + 0.1 * i for x in r] for i, r in enumerate(run)] for run in runs]
    assert find_steps(runs) == []


def test_exact_counts_step_without_a_test():
    steps = find_steps([[[843.0]]] * 4 + [[[1200.0]]] * 2)
    assert len(steps) == 1 and steps[0].index == 4 and steps[0].evidence == "exact" and steps[0].p_value is None


def test_exact_needs_two_identical_values():
    assert exact_value([843.0, 843.0]) == 843.0 and exact_value([1.5, 1.5, 1.5]) == 1.5
    assert exact_value([843.0]) is None and exact_value([0.0]) is None  # a single value, whole or not
    assert exact_value([10.0, 11.0]) is None and exact_value([]) is None


def test_a_single_count_at_the_newest_run_is_not_exact_and_is_reported_blind():
    runs = [[[843.0]]] * 5 + [[[1200.0]]]
    assert find_steps(runs) == []  # one value of the new level: no more than one noisy reading
    reach = newest_reach(runs)
    assert reach.blind and (reach.n_before, reach.n_newest) == (5, 1)
    assert not newest_reach([[[843.0]]] * 5 + [[[1200.0], [1200.0]]]).blind  # seen twice: exact, no test needed


@pytest.mark.parametrize("n_runs", [30, 60])
def test_a_step_at_the_newest_run_is_found_however_long_the_history(n_runs):
    # Dividing alpha by every split of the series made this impossible from about 22 runs of 3 repeats.
    runs = _history([100] * (n_runs - 1) + [150])
    steps = find_steps(runs)
    assert [s.index for s in steps] == [n_runs - 1] and steps[0].change == pytest.approx(0.5, abs=0.08)
    assert not newest_reach(runs).blind
    assert split_level(n_runs) == pytest.approx(0.05 / 10)  # 2 * window splits at most


def test_two_repeats_a_run_cannot_show_a_step_at_the_newest_run_and_say_so():
    runs = _history([100] * 29 + [150], repeats=2)
    reach = newest_reach(runs)
    assert find_steps(runs) == [] and reach.blind  # never found: the caller must report it
    assert (reach.n_before, reach.n_newest) == (10, 2) and reach.min_p == pytest.approx(min_p_value(10, 2)) and reach.level == 0.005
    assert not newest_reach(_history([100] * 29 + [150])).blind  # 3 repeats a run can


def test_summary_and_formatting():
    s = summarize([1, 2, 3, 4, 100])
    assert (s.n, s.median, s.minimum, s.maximum) == (5, 3, 1, 100)
    assert s.p25 == 2 and s.p75 == 4
    assert fmt_num(1234567) == "1,234,567" and fmt_num(0.01234) == "0.0123" and fmt_num(12.345, "ms") == "12.3 ms"
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        separate([[]], [[1.0]])


def test_a_step_after_identical_runs_is_found_despite_the_ties():
    # Twelve copies of one run, then the same run 50% slower: the tied values must not weaken the test.
    run = [[0.23], [0.233], [0.224]]
    steps = find_steps([run] * 12 + [[[x * 1.5 for x in r] for r in run]])
    assert [(s.index, s.p_value) for s in steps] == [(12, pytest.approx(min_p_value(15, 3)))]  # 5 runs before it (the window)
