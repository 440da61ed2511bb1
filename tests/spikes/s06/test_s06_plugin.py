"""Spike 6's plugin end to end: a tiny real run through the runner, then the document rendered from it."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from harness.report.render import decide, render_spike
from harness.results import load
from harness.runner import RunPlan, run_spike
from spikes.s06_scalability import ScalabilitySpike, saturation, spike
from tests.spikes.s06.conftest import require

pytestmark = pytest.mark.slow

TINY = {
    "many-idle": {"connections": 20, "rate_per_min": 120.0, "ramp_s": 0.5, "hold_s": 2.0, "hz": 5.0},
    "few-busy": {"connections": 5, "rate": 10.0, "duration_s": 1.5},
    "burst": {"connections": 20, "burst_s": 1.0, "hold_s": 1.5},
    "capacity": {"connections": 4, "lo_rate": 2.0, "hi_rate": 8.0, "max_steps": 2, "step_s": 0.5, "settle_s": 1.0},
    "scale": {"targets": [30, 60], "per_process": 40, "per_generator": 40, "concurrency": 16, "hold_s": 0.2},
    "generator-idle": {"connections": 100, "hold_s": 0.5},
    "robustness": {},  # the hostile-frame battery: no size to scale down
}


class TinySpike(ScalabilitySpike):
    scenarios = tuple(dataclasses.replace(sc, quick_params={**sc.quick_params, **TINY[sc.key]}) for sc in spike.scenarios)


def test_tiny_run_is_stored_scored_and_rendered(tmp_path):
    require("postgres", "redis-server", "nginx")
    tiny = TinySpike()
    run = run_spike(RunPlan(tiny, options=["native", "socketio-redis"], quick=True), tmp_path)
    assert [(s.scenario, s.option, s.status) for s in run.scenarios if s.status != "ok"] == []
    stored = load(run.path)
    # What the scenarios measured is in the stored run: every chat message reached PostgreSQL, Redis carried the scaled-out option.
    for o in ("native", "socketio-redis"):
        for s in ("many-idle", "few-busy", "burst"):
            sr = stored.ok(s, o)
            assert sr.median("pg_rows") == sr.median("messages_in") > 0
            assert sr.median("pg_rows_missing") == 0
            assert sr.median("memory_per_connection_bytes") is not None
            assert (sr.median("redis_commands") is not None) == (o == "socketio-redis")
            assert len(sr.measurement("timeline_t_s").samples) == len(sr.measurement("timeline_server_rss_bytes").samples) > 0
            # The CPU baseline (no client connected) and the canary's drain are measured in every load scenario.
            assert sr.median("server_idle_cpu_cores") is not None and sr.median("server_idle_window_s") > 0
            assert sr.median("canary_answered_in_drain") + sr.median("canary_lost") == sr.median("canary_unanswered_at_stop")
            # Loss is the harness's account, whose counts add up to what was expected.
            parts = sr.median("delivered") + sr.median("lost_after_ack") + sr.median("lost_without_ack")
            assert parts == sr.median("expected") > 0
            # PostgreSQL's cumulative CPU (to the servers' stop, reaped backends included) covers at least what was sampled.
            assert sr.median("postgres_cpu_total_seconds") >= sr.median("postgres_cpu_seconds") - 0.02
    busy = stored.ok("few-busy", "socketio-redis")
    assert busy.median("received") + busy.median("lost") == busy.median("sent") * 5  # five members each get every message
    assert busy.median("expected") == busy.median("sent") * 5  # the account agrees
    for o in ("native", "socketio-redis"):
        cap = stored.ok("capacity", o)
        assert 1 <= cap.median("capacity_steps") <= 2 and len(cap.facts[0]["steps"]) == cap.median("capacity_steps")
        assert cap.median("capacity_deliveries_per_s") >= 0 and cap.median("capacity_deliveries_per_core") is not None
    # The room observer, a sixth member that only listens, was due every message sent; at this load it got them all.
    assert busy.median("observer_expected") == busy.median("sent")
    assert busy.median("observer_received_after_drain") == busy.median("observer_expected")
    assert busy.median("observer_undelivered_after_drain") == 0
    # The scale scenario held every connection: one process for the one-process option, two for the other at 60.
    for o, processes in (("native", [1, 1]), ("socketio-redis", [2, 2])):
        points = stored.ok("scale", o).fact["points"]
        assert [(pt["target"], pt["held"]) for pt in points] == [(30, 30), (60, 60)]
        assert [pt["processes"] for pt in points] == processes
    gen = stored.ok("generator-idle", "native")
    assert gen.median("generator_connected") == 100 and gen.median("generator_memory_per_connection_bytes") > 0
    # Scores and the document come from the stored run.
    d = decide(tiny, stored)
    assert d.options == ["native", "socketio-redis"]
    assert d.cells["native"]["Maintenance"].score is not None and not d.left_out
    doc = render_spike(tiny, stored, tmp_path).read_text()
    for title in (
        "Targets, what was reached, and where it saturated",
        "Memory per connection",
        "CPU, Redis, PostgreSQL and bandwidth",
        "Burst: connect time distribution",
        "Capacity: the busiest room each option holds within its bounds",
        "The load generator holding idle connections in one process",
        "Real connections at scale (measured, idle)",
        "Projection to 10k, 100k and 1M connections",
        "Hostile frames: the answer to each case",
        "**Quick profile**",
    ):
        assert title in doc
    links = re.findall(r"\]\((charts/[^)]+\.svg)\)", doc)
    assert links and all((tmp_path / link).is_file() for link in links)
    for s in ("many-idle", "few-busy", "burst"):
        for o in ("native", "socketio-redis"):
            reached, verdict = saturation(stored.ok(s, o), 2)
            # The verdict says what the flag says: "target reached" only when it was.
            assert verdict.startswith("target reached") == reached, (s, o, verdict)


def test_locust_plans_follow_the_scenarios():
    plan = spike.locust_plan("burst")
    assert (plan.users, plan.spawn_rate, plan.run_time_s, plan.messages.rate, plan.messages.send["op"]) == (500, 50, 13, 1.0, "echo")
    busy = spike.locust_plan("few-busy", transport="socketio")
    assert (busy.users, busy.messages.rate, busy.messages.send["op"], busy.messages.transport) == (50, 100.0, "broadcast", "socketio")
    assert spike.locust_plan("many-idle").messages.rate == pytest.approx(1 / 60)
    with pytest.raises(ValueError):
        spike.locust_plan("generator-idle")


def test_locust_room_is_spike_6s_own_parameter():
    """The room is Spike 6's parameter: declared in its package, handed to the users through --spike-params, filling $room."""
    from harness.load.locust import master_command
    from spikes.s06_scalability import locust_users

    busy = spike.locust_plan("few-busy")
    assert busy.params == locust_users.SPIKE_PARAMS == {"room": "table-1"}
    assert busy.messages.setup == (({"op": "join", "room": "$room"}, "joined"),)
    assert busy.messages.send == {"op": "broadcast", "room": "$room"} and busy.messages.reply_ops == ("broadcast",)
    m = master_command(busy, "ws://10.0.0.5:8000")
    assert json.loads(m[m.index("--spike-params") + 1]) == {"room": "table-1"}
    assert not any(a.startswith("--s06") for a in m)


def test_every_load_scenario_repeats_and_their_declared_durations_leave_room_in_the_budget():
    """Each scenario the decision compares runs at least twice (many-idle ran once when it capped its repeats), and the
    load time its parameters declare alone (ramps, holds, baselines, the capacity search's steps at most) takes at most
    80 % of the spike's budget: the rest is stack starts, drains, the scale and generator scenarios and the hostile frames."""
    from harness.budget import table_minutes

    assert spike.default_repeat >= 2
    for key in ("many-idle", "few-busy", "burst", "capacity"):
        cap = spike.scenario(key).max_repeats
        assert cap is None or cap >= 2, key
    p = {s.key: s.resolved_params(False) for s in spike.scenarios}
    per_option = (
        p["many-idle"]["baseline_s"]
        + p["many-idle"]["ramp_s"]
        + p["many-idle"]["hold_s"]
        + p["few-busy"]["baseline_s"]
        + p["few-busy"]["duration_s"]
        + p["burst"]["baseline_s"]
        + p["burst"]["burst_s"]
        + p["burst"]["hold_s"]
        + p["capacity"]["max_steps"] * (p["capacity"]["step_s"] + p["capacity"]["grace_s"])
    )
    assert len(spike.options) * spike.default_repeat * per_option <= 0.8 * table_minutes(spike.number, False) * 60
