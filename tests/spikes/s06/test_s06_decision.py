"""Spike 6's declared criteria and gates, checked against values computed by hand from a small stored run.

The cores at 100k connections come from the spike's projection (``extrapolate.py``,
tested on its own in ``test_s06_extrapolate.py``); here the check is that each criterion reads the
right scenario, statistic and utility. The stored tiny run predates the capacity search: its results
are added by hand, two repeats per option, one option under the busy-room gate; so are the scale scenario's points
(one repeat), two options short of 100,000.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from harness.report.render import decide
from harness.results import RunResult
from spikes.s06_scalability import ScalabilitySpike, spike
from spikes.s06_scalability import extrapolate as x
from tests.spikes import handcheck as h

STORED = Path(__file__).parent / "data" / "tiny-run.json"

#: Per option: deliveries/s at the capacity and per server core, two repeats each.
CAPACITY = {
    "native": ([60_000.0, 65_000.0], [90_000.0, 110_000.0]),
    "native-redis": ([30_000.0, 31_000.0], [40_000.0, 42_000.0]),
    "socketio": ([2_000.0, 2_400.0], [3_000.0, 3_500.0]),
    "socketio-redis": ([15_000.0, 16_000.0], [20_000.0, 21_000.0]),
}


def with_capacity(data: dict) -> dict:
    """The stored run plus a capacity step per option (its measurements as the scenario stores them)."""
    for o, (dps, per_core) in CAPACITY.items():
        data["scenarios"].append(
            {
                "scenario": "capacity",
                "option": o,
                "status": "ok",
                "reason": "",
                "params": {"connections": 50, "p99_ms": 100.0},
                "measurements": [
                    {
                        "name": "capacity_deliveries_per_s",
                        "unit": "deliveries/s",
                        "tags": {},
                        "better": "higher",
                        "repeats": [[v] for v in dps],
                    },
                    {
                        "name": "capacity_deliveries_per_core",
                        "unit": "deliveries/s/core",
                        "tags": {},
                        "better": "higher",
                        "repeats": [[v] for v in per_core],
                    },
                ],
                "facts": [{}, {}],
                "durations_s": [30.0, 30.0],
            }
        )
    return data


#: Per option: connections held at 10k and at 100k, and server memory per connection at the most held (one repeat each).
SCALE = {
    "native": (10_000, 19_985, 15_000.0),
    "native-redis": (10_000, 100_000, 15_500.0),
    "socketio": (10_000, 18_200, 40_000.0),
    "socketio-redis": (10_000, 100_000, 41_000.0),
}


def with_scale(data: dict) -> dict:
    """The stored run plus the scale scenario per option (its measurements and points as the scenario stores them)."""
    for o, (low, high, mem) in SCALE.items():
        points = [
            {
                "rank": rank,
                "target": t,
                "held": held,
                "connected": held,
                "processes": 1,
                "server_rss_base": 0,
                "server_rss_held": mem * held,
            }
            for rank, t, held in (("low", 10_000, low), ("high", 100_000, high))
        ]
        data["scenarios"].append(
            {
                "scenario": "scale",
                "option": o,
                "status": "ok",
                "reason": "",
                "params": {"targets": [10_000, 100_000]},
                "measurements": [
                    {"name": "scale_high_held", "unit": "connections", "tags": {}, "better": "higher", "repeats": [[high]]},
                    {
                        "name": "scale_high_memory_per_connection_bytes",
                        "unit": "bytes",
                        "tags": {},
                        "better": "lower",
                        "repeats": [[mem]],
                    },
                ],
                "facts": [{"points": points}],
                "durations_s": [60.0],
            }
        )
    return data


def _p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


def test_criteria_and_gates_match_hand_computed_values_from_the_stored_run():
    data = with_scale(with_capacity(h.load_json(STORED)))
    run = RunResult.from_dict(data)
    d = decide(spike, run)
    machine = ScalabilitySpike.machine(run)
    assert not d.left_out
    for o in d.options:
        idle = x.max_connections(ScalabilitySpike.costs(run, "many-idle", o), machine)
        p = x.project(ScalabilitySpike.costs(run, "many-idle", o), 100_000, machine)
        components = sum(
            next(sr for sr in data["scenarios"] if sr["scenario"] == "many-idle" and sr["option"] == o)["facts"][-1]["components"].values()
        )
        expected = {
            "Performance": (
                h.logu(h.value(data, "few-busy", o, "latency_p99_ms"), 50, 1000)
                + h.logu(h.value(data, "burst", o, "latency_p99_ms"), 50, 1000)
            )
            / 2,
            "Scalability": (
                h.logu(SCALE[o][2], 10 * 1024, 100 * 1024)
                + h.logu(statistics.median(_p99(r) for r in h.repeats(data, "burst", o, "connect_ms")), 50, 1000)
                + h.logu(statistics.median(CAPACITY[o][1]), 100_000, 5_000)
            )
            / 3,
            "Cost": h.logu(p.server_cores + p.redis_cores + p.pg_cores, 4, 64),
            "Maintenance": h.lin(components, 2, 10),
            "Complexity": h.complexity(data, o),
        }
        for crit, v in expected.items():
            assert d.cells[o][crit].score == pytest.approx(v), (o, crit)
        gates = {g.gate.name: g for g in d.gates[o]}
        held = gates["holds 100,000 real connections"]
        assert held.value == SCALE[o][1] and (held.status == "pass") == (SCALE[o][1] >= 100_000)
        # The projection's first hard limit never goes past a measured stop.
        assert idle <= SCALE[o][1] or SCALE[o][1] >= 100_000
        busy = gates["holds a busy room within its bounds"]
        # At least: judged on the worst repeat, the lower one.
        assert busy.value == min(CAPACITY[o][0]) and (busy.status == "pass") == (busy.value >= 2_500)
    busy_failed = {o for o in d.options if any(g.status != "pass" for g in d.gates[o] if g.gate.name.startswith("holds a busy"))}
    assert busy_failed == {"socketio"}
    scale_failed = {o for o in d.options if any(g.status != "pass" for g in d.gates[o] if g.gate.name.startswith("holds 100,000"))}
    assert scale_failed == {"native", "socketio"}
