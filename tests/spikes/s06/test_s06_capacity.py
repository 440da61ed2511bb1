"""Spike 6's capacity search: the pure bisection on synthetic curves, the cumulative CPU reading, and one small real search."""

from __future__ import annotations

import math
import subprocess
import sys

import psutil
import pytest

from spikes.s06_scalability import scenarios as sc
from spikes.s06_scalability.scenarios import CapacityStep, cumulative_cpu_s, search_capacity


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


_BURN = "import time\nwhile time.process_time() < 0.3: pass"


def test_cumulative_cpu_counts_a_child_that_came_and_went():
    """A child that burned 0.3 s of CPU and exited still counts (reaped children's times): a sampler could miss it."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys\nsys.stdin.readline()\nsubprocess.run([sys.executable, '-c', {_BURN!r}])\n"
            "print('done', flush=True)\nsys.stdin.readline()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        before = cumulative_cpu_s(parent.pid)
        assert before is not None
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.stdout.readline().strip() == "done"
        after = cumulative_cpu_s(parent.pid)
        own = psutil.Process(parent.pid).cpu_times()
        assert psutil.Process(parent.pid).children() == []  # the child is gone
        assert after - before >= 0.25  # its 0.3 s, to the 10 ms tick
        assert own.user + own.system < after - before  # the parent's own times alone would have missed it
    finally:
        parent.stdin.write("end\n")
        parent.stdin.flush()
        parent.wait(30)
    assert cumulative_cpu_s(parent.pid) is None  # gone: unreadable, not zero


def test_the_full_profile_search_fits_its_step_budget():
    """The declared search ends within max_steps steps for every capacity inside its range (the budget's assumption)."""
    p = sc.CAPACITY
    for capacity in (p["lo_rate"] * 1.01, 10.0, 50.0, p["hi_rate"] * 0.75):
        found = search_capacity(Curve(capacity), p["lo_rate"], p["hi_rate"], ratio=p["ratio"], max_steps=p["max_steps"])
        assert len(found.steps) <= p["max_steps"]
        assert found.fail_rate is not None and found.fail_rate / found.rate <= p["ratio"]


@pytest.mark.slow
def test_a_small_real_search_stores_the_capacity_its_steps_account_for(tmp_path):
    """Two short steps against the native deployment: every step's account adds up, and the capacity is its best pass."""
    from harness.plugin import ScenarioContext
    from spikes.s06_scalability import spike
    from tests.spikes.s06.conftest import require
    from tests.utils import UNIT

    require("postgres")
    members = 4
    params = {
        **sc.CAPACITY,
        "connections": members,
        "lo_rate": 2.0,
        "hi_rate": 8.0,
        "ratio": 1.5,
        "max_steps": 2,
        "step_s": 0.5,
        "settle_s": 1.0 * UNIT,
        "p99_ms": 1000.0 * UNIT,  # a bound no healthy server misses at 4 x 4 msg/s: the test checks the bookkeeping
    }
    ctx = ScenarioContext(option=spike.option("native"), params=params, repeat=0, quick=True, workdir=tmp_path, log=lambda line: None)
    out = sc.run_capacity(ctx)
    m = {x.name: x.samples for x in out.measurements}
    steps = out.facts["steps"]
    assert 1 <= len(steps) == m["capacity_steps"][0] <= params["max_steps"]
    for st in steps:
        assert st["connected"] == members and st["sent"] > 0
        assert st["expected"] == st["sent"] * members  # every member is due every message: the harness's account
        assert st["delivered"] + st["lost_after_ack"] + st["lost_without_ack"] == st["expected"]
        judged = st["dropped"] == 0 and st["delivered_fraction"] >= params["min_delivered"] and st["p99_ms"] <= params["p99_ms"]
        assert st["passed"] == judged
    passing = [st for st in steps if st["passed"]]
    assert passing, steps
    best = max(passing, key=lambda st: st["rate"])
    assert m["capacity_rate"] == [pytest.approx(best["rate"], rel=1e-3)]
    assert m["capacity_deliveries_per_s"] == [pytest.approx(best["deliveries_per_s"])]
    if best["server_cpu_s"] > 0:  # CPU is read in 10 ms ticks: a tiny step may show none
        assert m["capacity_deliveries_per_core"][0] == pytest.approx(best["delivered"] / best["server_cpu_s"], rel=1e-2)
    assert m["capacity_at_least"] == [1.0 if out.facts["capacity_at_least"] else 0.0]
    assert out.facts["capacity_why"] in ("server", "generator", "range")
