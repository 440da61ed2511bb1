"""The capacity search's bisection on synthetic curves: brackets, step counts, "at least" and bad bounds."""

from __future__ import annotations

import math

import pytest

from harness.capacity import CapacityStep, search_capacity


class Curve:
    """A synthetic option: passes at rates up to ``capacity``; the generator is client-bound from ``generator`` on."""

    def __init__(self, capacity: float, generator: float = math.inf) -> None:
        self.capacity, self.generator = capacity, generator
        self.tried: list[float] = []

    def __call__(self, rate: float) -> CapacityStep:
        self.tried.append(rate)
        return CapacityStep(rate, rate <= self.capacity, rate >= self.generator, {"rate": rate})


@pytest.mark.parametrize("capacity", [2.5, 7.0, 37.3, 120.0, 160.0])
def test_the_search_brackets_the_capacity_of_a_synthetic_curve_within_the_ratio(capacity):
    curve = Curve(capacity)
    found = search_capacity(curve, 2.0, 200.0, ratio=1.2, max_steps=8)
    assert found.rate is not None and found.fail_rate is not None
    assert found.rate <= capacity < found.fail_rate
    assert found.fail_rate / found.rate <= 1.2
    assert (found.at_least, found.why) == (False, "server")
    assert len(found.steps) == len(curve.tried) <= 8
    assert all(2.0 <= r <= 200.0 for r in curve.tried)
    assert found.passing_step is not None and found.passing_step.rate == found.rate and found.passing_step.passed


def test_the_number_of_steps_is_what_the_ratio_asks_and_never_more_than_max_steps():
    # log2(log(100) / log(1.2)) = 4.66: five halvings of the log-range bring the bracket within 1.2x.
    curve = Curve(37.3)
    found = search_capacity(curve, 2.0, 200.0, ratio=1.2, max_steps=8)
    assert len(found.steps) == 5
    short = search_capacity(Curve(37.3), 2.0, 200.0, ratio=1.01, max_steps=3)
    assert len(short.steps) == 3 and short.rate is not None and short.rate <= 37.3 < short.fail_rate


def test_a_capacity_above_the_generators_limit_is_reported_as_at_least():
    # The server would hold 100 msg/s, but the generator is the limit from 60 on: the search cannot see past it.
    curve = Curve(100.0, generator=60.0)
    found = search_capacity(curve, 2.0, 200.0, ratio=1.2, max_steps=8)
    assert found.at_least and found.why == "generator"
    assert found.rate is not None and found.rate < 100.0 and found.fail_rate is None
    assert max(curve.tried) < 100.0  # no step above the generator's limit was tried


def test_a_failure_where_the_generator_was_client_bound_is_not_the_servers():
    # The server fails above 10 and the generator is client-bound from 11: the lowest failing step was client-bound,
    # so it cannot be told whether the server or the generator failed there.
    found = search_capacity(Curve(10.0, generator=11.0), 2.0, 200.0, ratio=1.2, max_steps=8)
    assert found.at_least and found.why == "generator"
    assert found.rate is not None and found.rate <= 10.0 and found.fail_rate >= 11.0
    # The same curve with the generator never the limit: the failure is the server's, and the capacity is no lower bound.
    plain = search_capacity(Curve(10.0), 2.0, 200.0, ratio=1.2, max_steps=8)
    assert (plain.at_least, plain.why) == (False, "server")


def test_a_client_bound_pass_ends_the_search():
    curve = Curve(math.inf, generator=10.0)  # every step passes; from 10 on the generator is at its limit
    found = search_capacity(curve, 2.0, 200.0, ratio=1.2, max_steps=8)
    assert found.steps[-1].client_bound and found.steps[-1].passed
    assert found.rate == found.steps[-1].rate and found.at_least and found.why == "generator"


def test_nothing_failing_up_to_the_top_of_the_range_is_at_least():
    found = search_capacity(Curve(math.inf), 2.0, 200.0, ratio=1.2, max_steps=8)
    assert found.at_least and found.why == "range" and found.fail_rate is None
    assert 200.0 / 1.2 <= found.rate < 200.0


def test_an_option_that_fails_even_the_lowest_rate_has_no_capacity():
    curve = Curve(1.0)
    found = search_capacity(curve, 2.0, 200.0, ratio=1.2, max_steps=8)
    assert found.rate is None and found.passing_step is None
    assert found.fail_rate == 2.0 and curve.tried[-1] == 2.0  # the lowest rate itself was tried last
    assert (found.at_least, found.why) == (False, "none passed")


def test_the_lowest_rate_is_tried_only_when_nothing_above_it_passed_and_within_max_steps():
    curve = Curve(2.2)  # every midpoint fails; the floor passes
    found = search_capacity(curve, 2.0, 200.0, ratio=1.2, max_steps=8)
    assert found.rate == 2.0 and curve.tried[-1] == 2.0 and found.fail_rate is not None
    capped = search_capacity(Curve(1.0), 2.0, 200.0, ratio=1.2, max_steps=2)
    assert len(capped.steps) == 2 and capped.rate is None


@pytest.mark.parametrize(
    ("lo", "hi", "ratio", "steps"), [(0, 10, 1.2, 5), (5, 5, 1.2, 5), (1, math.inf, 1.2, 5), (1, 10, 1.0, 5), (1, 10, 1.2, 0)]
)
def test_bad_search_bounds_are_refused(lo, hi, ratio, steps):
    with pytest.raises(ValueError):
        search_capacity(Curve(5.0), lo, hi, ratio=ratio, max_steps=steps)
