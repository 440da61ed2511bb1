from __future__ import annotations

import random

import pytest

from harness.stats import compare_samples, fmt_num, summarize


def _noisy(center: float, n: int = 30, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-0.02, 0.02)) for _ in range(n)]


def test_same_distribution_is_not_significant():
    c = compare_samples(_noisy(100, seed=1), _noisy(100, seed=2), "lower")
    assert not c.significant and not c.regression and c.verdict.startswith("not significant")


def test_clear_slowdown_is_a_regression():
    c = compare_samples(_noisy(100), _noisy(130, seed=3), "lower")
    assert c.significant and c.regression and c.verdict == "REGRESSION"
    assert c.p_value is not None and c.p_value < 0.05
    assert c.change == pytest.approx(0.30, abs=0.03)


def test_direction_follows_better():
    faster = compare_samples(_noisy(100), _noisy(70, seed=4), "lower")
    assert faster.significant and not faster.regression and faster.verdict == "improved"
    fewer = compare_samples(_noisy(100), _noisy(70, seed=4), "higher")
    assert fewer.regression


def test_significant_but_small_change_is_below_min_effect():
    base = [100.0 + i * 0.001 for i in range(50)]
    new = [102.0 + i * 0.001 for i in range(50)]
    c = compare_samples(base, new, "lower", min_effect=0.05)
    assert not c.significant and "below 5%" in c.verdict


def test_worse_but_under_threshold_is_not_a_regression():
    c = compare_samples(_noisy(100), _noisy(107, seed=5), "lower", min_effect=0.05, threshold=0.10)
    assert c.significant and not c.regression and "threshold" in c.verdict


def test_exact_values_need_no_test():
    assert compare_samples([512.0], [600.0], "lower").regression
    same = compare_samples([512.0, 512.0], [512.0], "lower")
    assert not same.significant and "no change" in same.verdict


def test_too_few_noisy_samples_say_so():
    c = compare_samples([1.0, 2.0], [5.0, 6.0], "lower")
    assert not c.significant and "too few samples" in c.verdict


def test_informational_metrics_never_regress():
    c = compare_samples([1.0], [3.0], None)
    assert c.significant and not c.regression


def test_summary_and_formatting():
    s = summarize([1, 2, 3, 4, 100])
    assert (s.n, s.median, s.minimum, s.maximum) == (5, 3, 1, 100)
    assert s.p25 == 2 and s.p75 == 4
    assert fmt_num(1234567) == "1,234,567" and fmt_num(0.01234) == "0.0123" and fmt_num(12.345, "ms") == "12.3 ms"
    with pytest.raises(ValueError):
        summarize([])


def test_relative_to_best_scales_each_option_to_the_best():
    from harness.stats import relative_to_best

    assert relative_to_best({"a": 2.0, "b": 4.0, "c": None}, lower_is_better=True) == {"a": 1.0, "b": 0.5, "c": None}
    assert relative_to_best({"a": 2.0, "b": 4.0, "c": 0.0}, lower_is_better=False) == {"a": 0.5, "b": 1.0, "c": None}
    assert relative_to_best({"a": None}, lower_is_better=True) == {"a": None}
