"""Spike 6's declared criteria and gates, checked against values computed by hand from a small stored run.

The capacity and the cores at 100k connections come from the spike's projection (``extrapolate.py``,
tested on its own in ``test_s06_extrapolate.py``); here the check is that each criterion reads the
right scenario, statistic and utility.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from harness.report.render import decide
from harness.results import load
from spikes.s06_scalability import ScalabilitySpike, spike
from spikes.s06_scalability import extrapolate as x
from tests.spikes import handcheck as h

STORED = Path(__file__).parent / "data" / "tiny-run.json"


def _p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


def test_criteria_and_gates_match_hand_computed_values_from_the_stored_run():
    data = h.load_json(STORED)
    run = load(STORED)
    d = decide(spike, run)
    machine = ScalabilitySpike.machine(run)
    assert not d.left_out
    for o in d.options:
        few = x.max_connections(ScalabilitySpike.costs(run, "few-busy", o), machine)
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
                h.logu(h.value(data, "many-idle", o, "memory_per_connection_bytes"), 10 * 1024, 100 * 1024)
                + h.logu(statistics.median(_p99(r) for r in h.repeats(data, "burst", o, "connect_ms")), 50, 1000)
                + h.logu(min(few, 1e12), 100_000, 1000)
            )
            / 3,
            "Cost": h.logu(p.server_cores + p.redis_cores + p.pg_cores, 4, 64),
            "Maintenance": h.lin(components, 2, 10),
            "Complexity": h.complexity(data, o),
        }
        for crit, v in expected.items():
            assert d.cells[o][crit].score == pytest.approx(v), (o, crit)
        gates = {g.gate.name: g for g in d.gates[o]}
        feasible = gates["feasible at 100,000 connections"]
        assert feasible.value == pytest.approx(min(idle, 1e12)) and (feasible.status == "pass") == (idle >= 100_000)
        busy = gates["the busy room holds its latency"]
        assert busy.value == max(h.repeats(data, "few-busy", o, "latency_p99_ms")[0]) and (busy.status == "pass") == (busy.value <= 1000)
