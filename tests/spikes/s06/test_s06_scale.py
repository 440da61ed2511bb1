"""Spike 6's scale scenario: real connections held over several server and generator processes, and a shape that stops short.

The servers are the option's own POC processes on loopback (PostgreSQL and Redis started by the harness); the
generators are spawned processes of the load engine's clients. Small counts stand in for 10k and 100k: what is
checked is the spreading, the counts, the stop at a limit and what the document says of it, not speed.
"""

from __future__ import annotations

import math

import psutil
import pytest

from harness.plugin import ScenarioContext
from spikes.s06_scalability import extrapolate as _x
from spikes.s06_scalability import scale_limit, scale_points, spike
from spikes.s06_scalability.deploy import Deployment
from spikes.s06_scalability.scale import generators_for, hold_at_scale, processes_for, run_scale
from tests.spikes.s06.conftest import require
from tests.utils import UNIT


def test_a_one_process_shape_stays_one_process_and_a_multi_process_one_grows_with_the_target():
    assert processes_for(100_000, 15_000, multi_process=False, minimum=1) == 1
    assert processes_for(100_000, 15_000, multi_process=True, minimum=2) == 7
    assert processes_for(10_000, 15_000, multi_process=True, minimum=2) == 2
    assert generators_for(100_000, 15_000) == 7 and generators_for(10, 15_000) == 1


def test_the_connections_are_spread_over_every_server_process_and_all_are_held(tmp_path):
    """Two server processes behind Redis, two generators: each server holds about half, every connection is counted as held."""
    require("postgres", "redis-server")
    params = {"targets": [120, 300], "per_process": 150, "per_generator": 160, "concurrency": 32, "connect_timeout_s": 10 * UNIT}
    params |= {"max_failures": 20, "hold_s": 0.2, "open_for_s": 60 * UNIT}
    ctx = ScenarioContext(spike.option("native-redis"), params, 0, True, tmp_path, log=lambda s: None)
    out = run_scale(ctx)
    points = out.facts["points"]
    assert [pt["target"] for pt in points] == [120, 300]
    assert [pt["processes"] for pt in points] == [2, 2]
    assert [pt["generators"] for pt in points] == [1, 2]
    for pt in points:
        assert pt["held"] == pt["connected"] == pt["target"], pt
        assert pt["failed"] == {} and pt["exited"] == []
        assert pt["server_rss_held"] > pt["server_rss_base"]
    m = {x.name: x.samples for x in out.measurements}
    assert m["scale_high_held"] == [300.0] and m["scale_low_held"] == [120.0]
    assert m["scale_high_memory_per_connection_bytes"][0] > 0


def test_a_server_out_of_descriptors_stops_the_generators_early_and_the_limit_is_named(tmp_path):
    """A server process allowed 150 files cannot hold 400 connections: the generators stop after their failures, and the
    point says the server's descriptor limit stopped it (its open descriptors at the limit while held)."""
    require("postgres")
    with Deployment("native", tmp_path, log=lambda s: None) as dep:
        server = psutil.Process(dep.pids()["server"][0])
        server.rlimit(psutil.RLIMIT_NOFILE, (150, 150))
        hold, fds = hold_at_scale(
            dep.server_urls(),
            dep.transport,
            400,
            per_generator=200,
            concurrency=16,
            connect_timeout_s=3 * UNIT,
            max_failures=10,
            during_hold=server.num_fds,
        )
        assert dep.servers[0].alive  # out of descriptors, not dead
    assert 0 < hold.alive < 150
    assert hold.stopped_early == 2 and hold.connect_failed >= 20
    point = {
        "target": 400,
        "held": hold.alive,
        "connected": hold.connected,
        "failed": hold.failed,
        "server_fds_held": [fds],
        "server_nofile": [[150, 150]],
        "exited": [],
    }
    text = scale_limit(point)
    assert "failed attempts" in text
    assert f"descriptor limit: {fds:,} of 150 descriptors open while held" in text


def test_a_measured_stop_caps_the_projection_and_the_first_hard_limit():
    machine = _x.Machine(cores=2, memory_bytes=24 * 2**30)
    costs = _x.Costs(connections=1000, memory_per_connection=15_000, server_cores=0.01, multi_process=False, held_limit=19_985)
    assert _x.max_connections(costs, machine) == 19_985
    p = _x.project(costs, 100_000, machine)
    assert not p.feasible and "held at most 19,985 connections when measured" in p.limit
    assert _x.project(costs, 10_000, machine).feasible
    free = _x.Costs(connections=1000, memory_per_connection=15_000, server_cores=0.0, multi_process=True)
    assert math.isinf(_x.max_connections(free, machine))


@pytest.mark.parametrize("held, expected", [(100_000, True), (19_985, False)])
def test_the_scale_gate_reads_the_largest_target_and_a_quick_target_is_not_measured(held, expected):
    from harness.decide import NotMeasured
    from spikes.s06_scalability.decision import GATES, TARGET

    class _SR:
        def __init__(self, points):
            self.fact = {"points": points}

    class _Run:
        def __init__(self, points):
            self._sr = _SR(points)

        def ok(self, scenario, option):
            return self._sr if scenario == "scale" else None

    gate = GATES[0]
    full = _Run([{"target": 10_000, "held": 10_000}, {"target": TARGET, "held": held}])
    value = gate.source.fn(full, "native")
    assert value == held and (value >= gate.at_least) is expected
    assert scale_points(full, "native")[1]["held"] == held
    with pytest.raises(NotMeasured, match="quick run"):
        gate.source.fn(_Run([{"target": 1000, "held": 1000}, {"target": 3000, "held": 3000}]), "native")


def test_a_shape_too_slow_to_open_its_target_stops_at_the_time_limit_and_says_so(tmp_path):
    """With a time to open far shorter than the target needs, the generators stop at the limit, the point is marked timed
    out, and the document's reason names the time limit and the rate the shape was opening at, not a server limit."""
    require("postgres")
    with Deployment("native", tmp_path, log=lambda s: None) as dep:
        hold, _ = hold_at_scale(
            dep.server_urls(), dep.transport, 5000, per_generator=5000, concurrency=4, connect_timeout_s=5 * UNIT, open_for_s=0.3
        )
    assert 0 < hold.alive < 5000 and hold.timed_out == 1 and hold.stopped_early == 0
    point = {
        "target": 5000,
        "held": hold.alive,
        "connected": hold.connected,
        "failed": hold.failed,
        "timed_out": hold.timed_out,
        "open_s": hold.open_s,
        "open_for_s": 0.3,
        "exited": [],
    }
    text = scale_limit(point)
    assert "the time to open ran out (0.3 s;" in text and "descriptor" not in text
