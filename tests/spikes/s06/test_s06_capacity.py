"""Spike 6's capacity search: the cumulative CPU reading and one small real search (the bisection: tests/harness/test_capacity.py)."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from harness.capacity import search_capacity
from spikes.s06_scalability import scenarios as sc
from spikes.s06_scalability.scenarios import cumulative_cpu_s
from tests.harness.test_capacity import Curve

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
