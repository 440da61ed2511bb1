"""Spike 7's cross-process relay (poc/relay.py) and the two-process Redis failure behind nginx (cluster.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from harness.plugin import ScenarioContext
from spikes.s07_error_recovery import cluster, spike
from spikes.s07_error_recovery.poc import relay as rl
from spikes.s07_error_recovery.poc.server import Hub
from tests.utils import UNIT, require_program


class FakeMember:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def put(self, data: str) -> None:
        self.frames.append(json.loads(data))


def test_pending_keeps_order_and_drops_its_oldest_when_full():
    q = rl.Pending(3)
    for i in range(5):
        q.put("r", f"m{i}")
    assert [d for _, d in q.items] == ["m2", "m3", "m4"]
    assert q.dropped == 2 and q.high_water == 3 and len(q) == 3
    assert q.peek() == ("r", "m2") and q.pop() == ("r", "m2") and len(q) == 2
    with pytest.raises(ValueError):
        rl.Pending(0)


def test_recent_forgets_entries_older_than_its_window():
    r = rl.Recent(window_s=10, max_len=100)
    r.add("a", "old", now=0.0)
    r.add("a", "new", now=8.0)
    assert r.since(now=9.0) == [("a", "old"), ("a", "new")]
    assert r.since(now=15.0) == [("a", "new")]  # "old" is past the window, gone for good
    assert r.since(now=100.0) == []


def test_recent_is_bounded_by_length():
    r = rl.Recent(window_s=1e9, max_len=2)
    for i in range(4):
        r.add("a", str(i), now=float(i))
    assert r.since(now=4.0) == [("a", "2"), ("a", "3")]


def _hub(strategy: str = "queue-reconstruct") -> Hub:
    return Hub(strategy, 100, 300.0)


def test_apply_remote_creates_the_room_numbers_it_here_delivers_once_and_drops_a_copy():
    async def go() -> None:
        hub = _hub()
        msg = {"op": "broadcast", "room": "r", "c": 1, "seq": 4, "t": 10, "d": "x", "n": 77}
        assert await rl.apply_remote(hub, msg)  # the room did not exist here: created
        member = FakeMember()
        hub.members["r"].add(member)  # type: ignore[arg-type]
        assert await rl.apply_remote(hub, {**msg, "seq": 5})
        assert not await rl.apply_remote(hub, {**msg, "seq": 5})  # a copy (a re-seeded entry): not delivered again
        assert [f["seq"] for f in member.frames] == [5]
        assert member.frames[0]["n"] == 2  # numbered in this process's log, not the publisher's
        assert hub.logs["r"].head == 2 and len(hub.rooms["r"].applied) == 2
        assert not await rl.apply_remote(hub, {"room": "r", "c": "x", "seq": 1, "t": 1})  # malformed: ignored

    asyncio.run(go())


def test_the_relay_skips_what_its_own_process_published_and_counts_copies_per_origin():
    async def go() -> None:
        hub = _hub("queue")
        relay = rl.make_relay("pubsub", hub, redis=None, node="p1")
        assert relay is not None and rl.make_relay("none", hub, None, "p1") is None
        msg = {"op": "broadcast", "room": "r", "c": 1, "seq": 1, "t": 1}
        await relay.deliver(json.dumps({"o": "p1", "m": msg}))  # our own: skipped
        assert "r" not in hub.rooms
        await relay.deliver(json.dumps({"o": "p2", "m": msg}))
        await relay.deliver(json.dumps({"o": "p2", "m": msg}))
        await relay.deliver(b"not json")
        c = hub.counters
        assert c["relay_received"] == 1 and c["relay_dup"] == 1 and c["relay_received_from"] == {"p2": 1}
        assert c["relay_got"] == [["r", 1, 1]]
        relay.publish("r", {"op": "broadcast", "room": "r", "c": 2, "seq": 1, "t": 2})
        assert c["relay_published"] == 1 and c["relay_own"] == [["r", 2, 1]] and len(relay.pending) == 1

    asyncio.run(go())


def test_cross_lost_counts_what_one_process_applied_and_the_other_never_did():
    states = {
        "p1": {"relay_own": [["r", 1, 1], ["r", 1, 2], ["r", 1, 3]], "relay_got": [["r", 2, 1]]},
        "p2": {"relay_own": [["r", 2, 1], ["r", 2, 2]], "relay_got": [["r", 1, 1], ["r", 1, 3]]},
    }
    assert cluster.cross_lost(states) == {"p1->p2": 1, "p2->p1": 1}


def test_the_server_keeps_one_process_behaviour_without_relay_flags():
    import inspect

    from spikes.s07_error_recovery.poc import server

    src = inspect.getsource(server.main)
    assert '"--relay", choices=("none", "pubsub", "stream"), default="none"' in src
    assert _hub().hooks == []


def _cluster(tmp_path, relays: list[str]) -> tuple[Any, list[dict[str, Any]]]:
    p = {**cluster.CLUSTER_PARAMS, **cluster.CLUSTER_QUICK, "relays": relays, "connections": 4, "down_s": 1.5 * UNIT, "grace_s": 2 * UNIT}
    out = cluster.run_cluster_redis(ScenarioContext(spike.option("queue-reconstruct"), p, 0, True, tmp_path))
    return out, out.facts["runs"]


def _invariants(t: dict[str, Any]) -> None:
    assert t["delivered"]["count"] + t["lost_after_ack"]["count"] + t["lost_without_ack"]["count"] == t["expected"]


@pytest.mark.slow
def test_the_stream_relay_across_two_processes_behind_nginx_delivers_everything_after_a_redis_kill(tmp_path):
    require_program("redis-server")
    require_program("nginx")
    out, (run,) = _cluster(tmp_path, ["stream"])
    t = run["account"]
    _invariants(t)
    (fault,) = run["faults"]
    assert fault["kind"] == "redis-kill" and fault["details"]["restarted"]
    p1, p2 = run["servers"]["p1"], run["servers"]["p2"]
    assert p1["relay_members_max"] >= 1 and p2["relay_members_max"] >= 1  # nginx spread the clients over both
    assert p1["relay_errors"] + p2["relay_errors"] > 0  # the kill was seen
    assert t["sent"]["count"] > 0 and t["expected"] == 4 * t["sent"]["count"]
    assert t["lost_after_ack"]["count"] == t["lost_without_ack"]["count"] == 0
    assert t["duplicated"]["count"] == t["unexpected"]["count"] == 0
    assert run["cross_lost"] == {"p1->p2": 0, "p2->p1": 0}
    assert p1["hash"] == p2["hash"]
    assert p1["relay_reseeded"] + p2["relay_reseeded"] > 0  # Redis came back empty: recent entries written again


@pytest.mark.slow
def test_the_pubsub_relay_loses_at_least_every_publish_it_gave_up_on(tmp_path):
    require_program("redis-server")
    require_program("nginx")
    out, (run,) = _cluster(tmp_path, ["pubsub"])
    t = run["account"]
    _invariants(t)
    given_up = sum(s["relay_dropped"] for s in run["servers"].values())
    # A publish that failed reached nobody (Redis was gone for every subscriber too): lost across processes.
    assert sum(run["cross_lost"].values()) >= given_up
    assert t["duplicated"]["count"] == 0
    lost_x = sum(run["cross_lost"].values())
    if lost_x:
        assert t["lost_after_ack"]["count"] > 0  # the account sees it too: members on the other process missed them
        assert run["servers"]["p1"]["hash"] != run["servers"]["p2"]["hash"]


def test_cluster_tables_render_from_a_stored_run(tmp_path):
    from harness.plugin import Measurement

    class SR:
        params = {"down_s": 10.0}

        def __init__(self) -> None:
            self.ms = [
                Measurement("lost", "messages", [3.0], {"relay": "pubsub"}, "lower"),
                Measurement("replicas_differ", "replicas", [1.0], {"relay": "pubsub"}, "lower"),
            ]

        def find(self, name: str) -> list[Measurement]:
            return [m for m in self.ms if m.name == name]

        def measurement(self, name: str, **tags: str) -> Measurement:
            for m in self.ms:
                if m.name == name and all(m.tags.get(k) == v for k, v in tags.items()):
                    return m
            raise KeyError(name)

    class Run:
        options = ["fallback"]

        def ok(self, scen: str, o: str) -> SR | None:
            return SR() if scen == "redis-cluster" else None

    (table,) = cluster.cluster_tables(Run(), {"fallback": "Fallback modes"})  # type: ignore[arg-type]
    assert table.headers == ["", "relay: pubsub"]
    rows = {r[0]: r[1] for r in table.rows}
    assert rows["lost (after + without acknowledgement)"] == "3" and rows["sent"] == "n/a"
    assert rows["the two processes' room states"].startswith("**differ**")
