"""Spike 7's POC server over real sockets: malformed resume requests, acknowledgements and idempotent apply, replay."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from harness.faults import kill_and_restart
from harness.poc import poc_server
from harness.services import PostgresService, RedisService
from spikes.s07_error_recovery import core, spike
from tests.utils import UNIT, require_program

pytestmark = pytest.mark.slow

VALUES = {"redis": "", "pg": "", "log_len": 4, "ping": 2.0, "ping_timeout": 2.0, "every": 1.0}


def _server(key: str, tmp_path, **values):
    return poc_server(spike.option(key), tmp_path, values={**VALUES, **values}, ready_timeout=20 * UNIT)


async def _recv(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 5 * UNIT))


async def _join(ws, room: str = "r", **kw) -> dict:
    await ws.send(json.dumps({"op": "join", "room": room, **kw}))
    return await _recv(ws)


def _bc(c: int, seq: int) -> str:
    return json.dumps({"op": "broadcast", "room": "r", "c": c, "seq": seq, "t": 1000 + seq, "d": "x"})


@pytest.mark.parametrize(
    ("after", "room", "code", "close"),
    [
        (99, "r", "future-after", core.CLOSE_FUTURE_SEQ),
        (-1, "r", "bad-after", core.CLOSE_BAD_RESUME),
        ("two", "r", "bad-after", core.CLOSE_BAD_RESUME),
        (0, "nowhere", "unknown-room", core.CLOSE_UNKNOWN_ROOM),
    ],
)
def test_a_malformed_resume_gets_an_error_frame_and_a_close_code_and_the_server_serves_on(tmp_path, after, room, code, close):
    async def go(url: str) -> None:
        async with connect(url) as ws:
            assert (await _join(ws))["op"] == "joined"
            await ws.send(_bc(1, 0))
            assert (await _recv(ws))["n"] == 1
        async with connect(url) as bad:
            frame = await _join(bad, room, after=after)
            assert frame["op"] == "error" and frame["code"] == code
            with pytest.raises(ConnectionClosed) as closed:
                await _recv(bad)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == close
        async with connect(url) as ws:  # still serving, nothing crashed
            assert (await _join(ws, after=0))["op"] == "joined"
            assert (await _recv(ws))["n"] == 1

    with _server("reconstruct", tmp_path) as (server, url):
        asyncio.run(go(url))
        assert "Traceback" not in server.log_since_start()


def test_queue_acknowledges_and_drops_a_copy_it_already_applied(tmp_path):
    async def go(url: str) -> None:
        async with connect(url) as a, connect(url) as b:
            await _join(a)
            await _join(b)
            await a.send(_bc(1, 0))
            first = [await _recv(a), await _recv(a)]
            assert {m["op"] for m in first} == {"ack", "broadcast"}
            assert (await _recv(b))["seq"] == 0
            await a.send(_bc(1, 0))  # the outbox sends it again after a reconnect
            assert await _recv(a) == {"op": "ack", "c": 1, "seq": 0}
            await a.send(json.dumps({"op": "state", "room": "r"}))
            state = await _recv(a)
            assert state["applied"] == 1 and state["duplicates_dropped"] == 1
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(b.recv(), 0.3 * UNIT)  # no second broadcast

    with _server("queue", tmp_path) as (_, url):
        asyncio.run(go(url))


def test_reconstruct_replays_after_the_last_seq_and_sends_a_snapshot_for_a_gap_older_than_the_log(tmp_path):
    async def go(url: str) -> None:
        async with connect(url) as a:
            await _join(a)
            for seq in range(6):  # the log holds 4 (VALUES["log_len"])
                await a.send(_bc(1, seq))
                await _recv(a)
        async with connect(url) as b:
            await _join(b, after=3)
            assert [(await _recv(b))["n"] for _ in range(3)] == [4, 5, 6]
        async with connect(url) as c:
            await _join(c, after=1)
            snap = await _recv(c)
            assert snap["op"] == "snapshot" and snap["n"] == 6
            await c.send(json.dumps({"op": "state", "room": "r"}))
            state = await _recv(c)
            assert state["snapshots"] == 1 and snap["hash"] == state["hash"]

    with _server("reconstruct", tmp_path) as (_, url):
        asyncio.run(go(url))


def test_a_killed_checkpoint_server_rebuilds_the_room_from_postgresql_and_the_stream(tmp_path):
    require_program("redis-server", "postgres")

    async def before(url: str) -> str:
        async with connect(url) as a:
            await _join(a)
            for seq in range(30):
                await a.send(_bc(1, seq))
            got = [await _recv(a) for _ in range(60)]  # an ack and the broadcast of each
            assert sum(m["op"] == "broadcast" for m in got) == 30
            for _ in range(int(20 * UNIT / 0.1)):  # wait for the checkpoint (every 0.2 s here)
                await a.send(json.dumps({"op": "state", "room": "r"}))
                state = await _recv(a)
                if state["checkpoints"]:
                    break
                await asyncio.sleep(0.1)
            assert state["checkpoints"] >= 1
            await a.send(_bc(1, 30))  # after the checkpoint: only in the stream
            await _recv(a)
            await _recv(a)
            await a.send(json.dumps({"op": "state", "room": "r"}))
            return (await _recv(a))["hash"]

    async def after(url: str) -> dict:
        async with connect(url) as b:
            await _join(b, after=31)  # resumes at the head: the room is known again after the restart
            await b.send(json.dumps({"op": "state", "room": "r"}))
            return await _recv(b)

    with RedisService(base_dir=tmp_path) as redis, PostgresService(base_dir=tmp_path) as pg:
        with _server("checkpoint", tmp_path, redis=redis.url, pg=pg.dsn, every=0.2, log_len=1000) as (server, url):
            expected = asyncio.run(before(url))
            kill_and_restart(server)
            state = asyncio.run(after(url))
    assert state["hash"] == expected and state["head"] == 31
    assert state["rebuilt_from_checkpoint"] == 1 and state["applied"] == 31


def test_fallback_keeps_serving_while_redis_is_down_and_drains_its_queue_into_a_reseeded_stream(tmp_path):
    require_program("redis-server")
    import threading

    from harness.faults import crash_redis

    async def go(url: str, redis: RedisService) -> dict:
        async with connect(url) as a:
            await _join(a)
            for seq in range(5):
                await a.send(_bc(1, seq))
                await _recv(a)
                await _recv(a)
            crash = threading.Thread(target=crash_redis, args=(redis,), kwargs={"down_for": 1.0 * UNIT})
            crash.start()
            await asyncio.sleep(0.3 * UNIT)
            for seq in range(5, 15):  # while Redis is down: still acknowledged and broadcast
                await a.send(_bc(1, seq))
                got = {(await _recv(a))["op"], (await _recv(a))["op"]}
                assert got == {"ack", "broadcast"}
            await asyncio.to_thread(crash.join)
            for _ in range(int(10 * UNIT / 0.1)):
                await a.send(json.dumps({"op": "state", "room": "r"}))
                state = await _recv(a)
                if state["queue_now"] == 0 and state["stream_len"] == state["head"]:
                    break
                await asyncio.sleep(0.1)
            return state

    with RedisService(base_dir=tmp_path) as redis:
        with _server("fallback", tmp_path, redis=redis.url, log_len=1000) as (_, url):
            state = asyncio.run(go(url, redis))
    assert state["head"] == 15 and state["stream_len"] == 15  # nothing missing from the stream once drained
    assert state["queue_high_water"] >= 1 and state["queue_now"] == 0 and state["drain_ms"] > 0
    assert state["reseeded"] >= 5  # the entries written before the crash, which the restarted Redis had lost
