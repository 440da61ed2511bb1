"""Spike 4's three feed servers for real: subprocesses on free loopback ports, driven by plain aiohttp and websockets clients.

Each delivers a known sequence exactly once across a dropped connection (resuming
from the last event seen), answers bad resume points as the protocol says, tells a
client of a restarted server to reload (``reset``; reason ``epoch`` once the client
names the old server's epoch, even when the new server has numbered past its point),
refuses hostile input clearly while serving other clients, and exits 0 on SIGTERM
with clients connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from harness import frames
from harness.poc import REPO_ROOT
from harness.process import ServerProcess
from tests.spikes.s04.conftest import SseStream, event, no_traceback, poll, post, running
from tests.utils import UNIT

pytestmark = pytest.mark.slow  # real servers

ROOM = "table-1"
#: Each transport on its own server, and on the combined one (``all``).
OWN = {"sse": "sse_server", "poll": "longpoll_server", "ws": "ws_server"}
CASES = [pytest.param(OWN[t], t, id=f"{t}-{OWN[t]}") for t in OWN] + [pytest.param("all", t, id=f"{t}-all") for t in OWN]
HTTP_CASES = [c for c in CASES if c.values[1] != "ws"]


def _base(server: ServerProcess) -> str:
    return f"http://{server.host}:{server.port}"


def _ws_url(server: ServerProcess) -> str:
    return f"ws://{server.host}:{server.port}/ws"


def _ds(events: list[dict[str, Any]]) -> list[str]:
    return [e["d"] for e in events]


def _expected(first: int, last: int) -> list[str]:
    return [f"e{i}" for i in range(first, last + 1)]


def _epoch(server: ServerProcess) -> str:
    """The server's epoch, as ``/health`` says."""
    epoch = asyncio.run(_health(f"{_base(server)}/health"))["epoch"]
    assert isinstance(epoch, str) and len(epoch) == 8
    return epoch


# -- clients ---------------------------------------------------------------------------------------


def _ws(url: str) -> Any:
    return connect(url, open_timeout=10 * UNIT, close_timeout=2 * UNIT, compression=None, ping_interval=None, proxy=None)


async def _recv(ws: ClientConnection, op: str | None = None) -> dict[str, Any]:
    """The next message (of ``op``, others passed over)."""
    while True:
        msg = orjson.loads(await asyncio.wait_for(ws.recv(), 10 * UNIT))
        if op is None or msg.get("op") == op:
            return msg


class Publisher:
    """Publishes the protocol's broadcasts the transport's way: ``POST /send``, or over its own WebSocket (acked)."""

    def __init__(self, kind: str, server: ServerProcess, session: aiohttp.ClientSession) -> None:
        self.kind, self.server, self.session = kind, server, session
        self.ws: ClientConnection | None = None

    async def open(self) -> None:
        if self.kind == "ws" and self.ws is None:
            self.ws = await _ws(_ws_url(self.server))

    async def send(self, room: str, first: int, last: int) -> None:
        for i in range(first, last + 1):
            if self.kind == "ws":
                await self.open()
                assert self.ws is not None
                await self.ws.send(orjson.dumps(event(room, i)).decode())
                ack = await _recv(self.ws)
                assert ack["op"] == "ack" and ack["seq"] == i, ack
            else:
                status, ack = await post(self.session, _base(self.server), event(room, i))
                assert status == 200 and ack["op"] == "ack" and ack["seq"] == i and ack["c"] == 1, ack

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def _until_held(s: aiohttp.ClientSession, base: str) -> None:
    """Until the server holds a long poll (``/health`` counts them)."""
    async with asyncio.timeout(10 * UNIT):
        while True:
            async with s.get(f"{base}/health") as resp:
                if orjson.loads(await resp.read())["waiting_polls"]:
                    return
            await asyncio.sleep(0.01)


# -- exactly once across a dropped connection ----------------------------------------------------------


async def _sse_once(server: ServerProcess, by_query: bool) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    url = f"{_base(server)}/sse?room={ROOM}"
    async with aiohttp.ClientSession() as s:
        pub = Publisher("sse", server, s)
        async with SseStream(s, url) as st:
            joined = await st.next()
            epoch = joined["json"]["e"]
            assert joined["event"] == "joined" and joined["json"] == {"op": "joined", "room": ROOM, "n": 0, "e": epoch}
            assert joined["id"] == f"{epoch}-0"
            await pub.send(ROOM, 1, 5)
            for _ in range(3):
                e = await st.next()
                assert e["id"] == f"{epoch}-{e['json']['n']}" and e["json"]["e"] == epoch
                got.append(e["json"])
        last = got[-1]["n"]  # dropped with 4 and 5 in flight
        await pub.send(ROOM, 6, 10)
        # The header as EventSource sends it (the last id, E-N); the query with a plain N, as a hand-written client may.
        again = f"{url}&last_event_id={last}" if by_query else url
        async with SseStream(s, again, {} if by_query else {"Last-Event-ID": f"{epoch}-{last}"}) as st:
            joined = await st.next()
            assert joined["event"] == "joined" and joined["json"]["n"] == last and joined["id"] == f"{epoch}-{last}"
            await pub.send(ROOM, 11, 15)
            while len(got) < 15:
                got.append((await st.next())["json"])
    return got


async def _poll_once(server: ServerProcess) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    base = _base(server)
    async with aiohttp.ClientSession() as s:
        pub = Publisher("poll", server, s)
        status, joined = await poll(s, base, room=ROOM)
        epoch = joined["e"]
        assert status == 200 and joined == {"op": "joined", "room": ROOM, "n": 0, "e": epoch, "events": [], "cursor": f"{epoch}-0"}
        await pub.send(ROOM, 1, 5)
        status, answer = await poll(s, base, room=ROOM, cursor=0)  # a plain N: taken, answered with an E-N cursor
        assert status == 200 and answer["cursor"] == f"{epoch}-5"
        got += answer["events"]
        # A poll held, then dropped by the client; what is published meanwhile waits in the history.
        held = asyncio.create_task(poll(s, base, room=ROOM, cursor=f"{epoch}-5"))
        await _until_held(s, base)
        held.cancel()
        await pub.send(ROOM, 6, 10)
        cursor = f"{epoch}-5"
        publishing = asyncio.create_task(pub.send(ROOM, 11, 15))
        while len(got) < 15:
            status, answer = await poll(s, base, room=ROOM, cursor=cursor, hold_s=10 * UNIT)
            assert status == 200 and "op" not in answer, answer
            got += answer["events"]
            cursor = answer["cursor"]
        await publishing
    return got


async def _ws_once(server: ServerProcess) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as s:
        pub = Publisher("ws", server, s)
        async with _ws(_ws_url(server)) as ws:
            await ws.send(json.dumps({"op": "join", "room": ROOM}))
            joined = await _recv(ws)
            epoch = joined["e"]
            assert joined == {"op": "joined", "room": ROOM, "n": 0, "e": epoch}
            await pub.send(ROOM, 1, 5)
            got += [await _recv(ws) for _ in range(3)]
        last = got[-1]["n"]
        await pub.send(ROOM, 6, 10)
        async with _ws(_ws_url(server)) as ws:
            await ws.send(json.dumps({"op": "join", "room": ROOM, "after": last, "epoch": epoch}))
            assert await _recv(ws) == {"op": "joined", "room": ROOM, "n": last, "e": epoch}
            await pub.send(ROOM, 11, 15)
            while len(got) < 15:
                got.append(await _recv(ws))
        await pub.close()
    return got


@pytest.mark.parametrize(("module", "transport"), [*CASES, pytest.param("sse_server", "sse-query", id="sse-query-sse_server")])
def test_a_known_sequence_arrives_exactly_once_across_a_dropped_connection(module, transport, tmp_path):
    with running(module, tmp_path) as server:
        if transport.startswith("sse"):
            got = asyncio.run(_sse_once(server, by_query=transport == "sse-query"))
        elif transport == "poll":
            got = asyncio.run(_poll_once(server))
        else:
            got = asyncio.run(_ws_once(server))
    assert _ds(got) == _expected(1, 15)
    assert [e["n"] for e in got] == list(range(1, 16))
    assert all(e["op"] == "broadcast" and e["room"] == ROOM and e["c"] == 1 for e in got)
    assert len({e["e"] for e in got}) == 1  # one server, one epoch


# -- bad resume points, and resets ---------------------------------------------------------------------


@pytest.mark.parametrize(("module", "kind"), HTTP_CASES)
def test_a_malformed_resume_point_is_a_400_with_the_reason(module, kind, tmp_path):
    async def go(server: ServerProcess) -> None:
        base = _base(server)
        async with aiohttp.ClientSession() as s:
            for bad in ("abc", "-1", "1.5", "0x10", "1e3", "9" * 40, "a-b", "0a0a0a0a-", "0a0a-1-2", "x" * 33 + "-1"):
                if kind == "sse":
                    for url, headers in (
                        (f"{base}/sse?room={ROOM}", {"Last-Event-ID": bad}),
                        (f"{base}/sse?room={ROOM}&last_event_id={bad}", {}),
                    ):
                        async with s.get(url, headers=headers) as resp:
                            body = orjson.loads(await resp.read())
                            assert resp.status == 400 and body["op"] == "error" and "non-negative integer" in body["error"], (bad, body)
                else:
                    status, body = await poll(s, base, room=ROOM, cursor=bad)
                    assert status == 400 and body["op"] == "error" and "non-negative integer" in body["error"], (bad, body)
            path = "sse" if kind == "sse" else "poll"
            async with s.get(f"{base}/{path}") as resp:  # no room
                assert resp.status == 400 and "room" in orjson.loads(await resp.read())["error"]
            if kind == "poll":
                status, body = await poll(s, base, room=ROOM, cursor=0, hold_s="soon")
                assert status == 400 and "hold_s" in body["error"]

    with running(module, tmp_path) as server:
        asyncio.run(go(server))


@pytest.mark.parametrize("module", ["ws_server", "all"])
def test_a_malformed_after_gets_an_error_and_close_1008(module, tmp_path):
    async def go(server: ServerProcess) -> None:
        bads = [({"after": bad}, "non-negative integer") for bad in ("5", -1, 1.5, True, None, [3])]
        bads += [({"after": 1, "epoch": bad}, "epoch must be") for bad in (5, "", "a b", "x" * 33, ["0a"])]
        for fields, reason in bads:
            async with _ws(_ws_url(server)) as ws:
                await ws.send(json.dumps({"op": "join", "room": ROOM, **fields}))
                msg = await _recv(ws)
                assert msg["op"] == "error" and reason in msg["error"], (fields, msg)
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10 * UNIT)
                assert ws.close_code == 1008, fields

    with running(module, tmp_path) as server:
        asyncio.run(go(server))


async def _resume(kind: str, server: ServerProcess, after: int, epoch: str | None = None) -> tuple[list[dict[str, Any]], Any]:
    """What a client resuming after ``after`` (of ``epoch``; None: a plain N) gets first (joined, reset...), then the
    next broadcast published (n = head + 1)."""
    first: list[dict[str, Any]] = []
    point = str(after) if epoch is None else f"{epoch}-{after}"
    async with aiohttp.ClientSession() as s:
        pub = Publisher(kind, server, s)
        if kind == "sse":
            async with SseStream(s, f"{_base(server)}/sse?room={ROOM}", {"Last-Event-ID": point}) as st:
                for _ in range(2):
                    e = await st.next()
                    first.append({**e["json"], "event": e["event"]} | ({"id": e["id"]} if "id" in e else {}))
                await pub.send(ROOM, 100, 100)
                nxt = (await st.next())["json"]
        elif kind == "poll":
            status, answer = await poll(s, _base(server), room=ROOM, cursor=point, hold_s=0)
            assert status == 200
            first.append(answer)
            await pub.send(ROOM, 100, 100)
            status, answer = await poll(s, _base(server), room=ROOM, cursor=answer["cursor"], hold_s=0)
            nxt = answer["events"][0]
        else:
            async with _ws(_ws_url(server)) as ws:
                join = {"op": "join", "room": ROOM, "after": after} | ({} if epoch is None else {"epoch": epoch})
                await ws.send(json.dumps(join))
                first += [await _recv(ws), await _recv(ws)]
                await pub.send(ROOM, 100, 100)
                nxt = await _recv(ws, "broadcast")
        await pub.close()
    return first, nxt


def _assert_reset(kind: str, first: list[dict[str, Any]], head: int, reason: str, epoch: str) -> None:
    reset = {"op": "reset", "room": ROOM, "n": head, "e": epoch, "reason": reason}
    if kind == "sse":
        # The joined carries no id with a reset: a client cut between the two resumes from its old point again.
        assert first[0] == {"op": "joined", "room": ROOM, "n": head, "e": epoch, "event": "joined"}
        assert first[1] == {**reset, "event": "reset", "id": f"{epoch}-{head}"}
    elif kind == "poll":
        assert first[0] == {"events": [reset], "cursor": f"{epoch}-{head}"}
    else:
        assert first == [{"op": "joined", "room": ROOM, "n": head, "e": epoch}, reset]


async def _publish(kind: str, server: ServerProcess, first: int, last: int) -> None:
    async with aiohttp.ClientSession() as s:
        pub = Publisher(kind, server, s)
        await pub.send(ROOM, first, last)
        await pub.close()


@pytest.mark.parametrize("named", ["epoch", "plain"])
@pytest.mark.parametrize(("module", "kind"), CASES)
def test_a_restart_that_lost_the_history_gives_a_reset_then_the_stream_goes_on(module, kind, named, tmp_path):
    """Resuming after 5 on a restarted server at 0: ``epoch`` when the point names the old epoch, ``future`` when it
    is a plain 5 (the old rules: a restart shows only while the new server is behind)."""
    with running(module, tmp_path) as server:
        asyncio.run(_publish(kind, server, 1, 5))
        old = _epoch(server)
        server.restart()  # same port, empty memory, a new epoch
        new = _epoch(server)
        first, nxt = asyncio.run(_resume(kind, server, 5, old if named == "epoch" else None))
    assert new != old
    _assert_reset(kind, first, 0, "epoch" if named == "epoch" else "future", new)
    assert nxt["n"] == 1 and nxt["d"] == "e100" and nxt["e"] == new


@pytest.mark.parametrize("named", ["epoch", "plain"])
@pytest.mark.parametrize(("module", "kind"), CASES)
def test_a_restarted_server_that_numbered_past_the_resume_point_gives_an_epoch_reset(module, kind, named, tmp_path):
    """The gap the epoch closes: the client saw 1..5 of the old server; the new one has numbered 1..8 by the time it
    is back. Named with the old epoch: a reset (``epoch``) at 8, then 9 live. A plain 5 (a client that never saw an
    epoch, the load engine's ``last-seq`` on a WebSocket): 6, 7, 8 replayed and the new 1..5 silently missed, which
    is why an epoch-aware client never sends one."""
    with running(module, tmp_path) as server:
        asyncio.run(_publish(kind, server, 1, 5))
        old = _epoch(server)
        server.restart()
        new = _epoch(server)
        asyncio.run(_publish(kind, server, 11, 18))  # n 1..8 on the new server
        first, nxt = asyncio.run(_resume(kind, server, 5, old if named == "epoch" else None))
    if named == "epoch":
        _assert_reset(kind, first, 8, "epoch", new)
        assert nxt["n"] == 9 and nxt["d"] == "e100"
        return
    # The old rules: no reset, the new server's 6.. as if they came after the old 5.
    if kind == "poll":
        assert [e["n"] for e in first[0]["events"]] == [6, 7, 8] and first[0]["cursor"] == f"{new}-8"
    else:
        assert first[0]["op"] == "joined" and first[0]["n"] == 5 and first[1]["n"] == 6 and first[1]["op"] == "broadcast"


def test_the_engines_websocket_client_resumes_with_last_seq_epoch_and_a_restart_is_an_epoch_reset_in_the_account(tmp_path):
    """The load engine's ``ws`` client with the ``last-seq-epoch`` adapter through a restart of the WebSocket server:
    every member rejoins naming the old epoch and gets a reset with reason ``epoch`` (the server logs each), and the
    account has each of them as an unexpected arrival, as it has every reset."""
    import harness.feed  # noqa: F401 - registers last-seq-epoch
    from harness.load import LoadSpec, ReconnectPolicy, run_load

    with running("ws_server", tmp_path) as server:
        restarted: list[str] = []

        def restart_midway() -> None:
            deadline = time.monotonic() + 30 * UNIT
            while time.monotonic() < deadline:
                if asyncio.run(_health(f"{_base(server)}/health"))["published"] >= 20:
                    old = _epoch(server)
                    server.restart()
                    restarted.extend([old, _epoch(server)])
                    return
                time.sleep(0.02)

        thread = threading.Thread(target=restart_midway, name="restart-midway")
        thread.start()
        spec = LoadSpec(
            _ws_url(server),
            transport="ws",
            mode="broadcast",
            senders=1,
            connections=3,
            rate=40,
            duration_s=5 * UNIT,
            connect_timeout_s=5 * UNIT,
            grace_s=1 * UNIT,
            reconnect=ReconnectPolicy(base_s=0.1 * UNIT, cap_s=0.3 * UNIT),
            resume="last-seq-epoch",
        )
        r = run_load(spec)
        thread.join()
        log = server.log_since_start()  # the new server's
    assert len(restarted) == 2 and restarted[0] != restarted[1], r.errors
    resets = re.findall(r"ws \S+ to .*: reset \((\w+)\)", log)
    assert r.account is not None and r.reconnected >= 3, r.errors
    assert resets and set(resets) == {"epoch"}, log[-3000:]
    total = r.account["total"]
    assert total["unexpected"]["count"] == len(resets) and total["duplicated"]["count"] == 0
    assert total["delivered"]["count"] + total["lost_after_ack"]["count"] + total["lost_without_ack"]["count"] == total["expected"]


@pytest.mark.parametrize(("module", "kind"), CASES)
def test_a_resume_point_older_than_the_history_gives_a_reset(module, kind, tmp_path):
    async def go(server: ServerProcess) -> tuple[Any, Any]:
        async with aiohttp.ClientSession() as s:
            pub = Publisher(kind, server, s)
            await pub.send(ROOM, 1, 6)
            await pub.close()
        kept = await _resume(kind, server, 3)  # publishes one more: n 7
        return await _resume(kind, server, 3), kept

    with running(module, tmp_path, "--history", "3") as server:
        (lost, nxt), (kept, _) = asyncio.run(go(server))
        epoch = _epoch(server)
    _assert_reset(kind, lost, 7, "history", epoch)  # 4 is gone now: the history is 5, 6, 7
    assert nxt["n"] == 8
    # Before that, after 3 the history (4, 5, 6) was enough: joined at 3, then 4.
    if kind == "poll":
        assert [e["n"] for e in kept[0]["events"]] == [4, 5, 6]
    else:
        assert kept[0]["op"] == "joined" and kept[0]["n"] == 3 and kept[1]["n"] == 4


# -- hostile input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["ws_server", "all"])
def test_the_websocket_server_passes_the_hostile_frame_battery(module, tmp_path):
    plan = frames.protocol_plan("ws")
    with running(module, tmp_path) as server:
        report = frames.run_battery_sync(
            _ws_url(server),
            plan.probe,
            base_message=plan.base_message,
            cases=plan.cases,
            server_log=server.log_since_start,
            timeout=3 * UNIT,
        )
    assert report.passed, report.markdown()
    assert {r.case for r in report.results} >= {"not-json", "big-text", "bad-utf8", "unknown-type", "wrong-field-types"}


def _hostile_bodies() -> dict[str, bytes]:
    good = event(ROOM, 1)
    big = orjson.dumps({**good, "d": "x" * (10 * 1024 * 1024)})
    return {
        "not-json": b"this is not JSON {",
        "json-array": b"[1,2,3]",
        "number": b"42",
        "null": b"null",
        "empty": b"",
        "deep-nesting": b'{"a":' * 9_999 + b"{}" + b"}" * 9_999,
        "10-mb": big,
        "bad-utf8": b'{"op":"broadcast","room":"\xff\xfe\xc3\x28"}',
        "wrong-field-types": orjson.dumps({"op": "broadcast", "room": 5, "seq": "1", "t": "x", "c": None, "d": 12345}),
        "wrong-d": orjson.dumps({**good, "d": {"k": "roll"}}),
        "unknown-op": orjson.dumps({"op": "no-such-op", "room": ROOM}),
        "no-op": orjson.dumps({"type": "broadcast"}),
    }


@pytest.mark.parametrize(("module", "kind"), HTTP_CASES)
def test_hostile_bodies_on_send_get_a_clear_4xx_and_other_clients_are_still_served(module, kind, tmp_path):
    async def go(server: ServerProcess) -> dict[str, tuple[int, Any]]:
        answers: dict[str, tuple[int, Any]] = {}
        base = _base(server)
        async with aiohttp.ClientSession() as s, contextlib.AsyncExitStack() as stack:
            if kind == "sse":  # a subscriber connected all along
                st = await stack.enter_async_context(SseStream(s, f"{base}/sse?room={ROOM}"))
                assert (await st.next())["event"] == "joined"
            for i, (name, body) in enumerate(_hostile_bodies().items(), start=1):
                async with aiohttp.ClientSession() as hostile:  # its own connection, as an attacker's would be
                    answers[name] = await post(hostile, base, None, raw=body)
                status, ack = await post(s, base, event(ROOM, i))
                assert status == 200 and ack["n"] == i, (name, status, ack)
                if kind == "sse":  # the open stream still gets what is published
                    assert (await st.next())["json"]["d"] == f"e{i}", name
                else:
                    status, answer = await poll(s, base, room=ROOM, cursor=i - 1, hold_s=0)
                    assert _ds(answer["events"]) == [f"e{i}"], name
                no_traceback(server)
        return answers

    with running(module, tmp_path) as server:
        answers = asyncio.run(go(server))
    for name, (status, body) in answers.items():
        assert status == (413 if name == "10-mb" else 400), (name, status, body)
        assert body["op"] == "error" and body["error"], (name, body)
    assert "unknown op" in answers["unknown-op"][1]["error"] and "room must be a string" in answers["wrong-field-types"][1]["error"]


# -- the rest of each server's surface ---------------------------------------------------------------------


def test_sse_headers_and_keepalive_comments(tmp_path):
    async def go(server: ServerProcess) -> None:
        async with aiohttp.ClientSession() as s, SseStream(s, f"{_base(server)}/sse?room={ROOM}") as st:
            assert st.resp is not None
            headers = st.resp.headers
            assert headers["Content-Type"].startswith("text/event-stream")
            assert headers["Cache-Control"] == "no-store" and headers["X-Accel-Buffering"] == "no"
            joined = await st.next()
            assert joined["retry"] == "500"  # EventSource's reconnection delay, when the server is told one
            async with asyncio.timeout(10 * UNIT):
                while ": ka" not in st.comments:
                    line = await st.resp.content.readline()
                    if line.startswith(b":"):
                        st.comments.append(line.decode().strip())

    with running("sse_server", tmp_path, "--keepalive-s", "0.1", "--retry-ms", "500") as server:
        asyncio.run(go(server))


def test_a_long_poll_is_answered_by_the_next_broadcast_or_at_once_with_hold_zero(tmp_path):
    async def go(server: ServerProcess) -> None:
        base = _base(server)
        async with aiohttp.ClientSession() as s:
            epoch = (await _health(f"{base}/health"))["epoch"]
            status, answer = await poll(s, base, room=ROOM, cursor=f"{epoch}-0", hold_s=0)
            assert status == 200 and answer == {"events": [], "cursor": f"{epoch}-0"}
            held = asyncio.create_task(poll(s, base, room=ROOM, cursor=f"{epoch}-0", hold_s=30 * UNIT))
            await _until_held(s, base)
            await post(s, base, event(ROOM, 1))
            status, answer = await held
            assert status == 200 and _ds(answer["events"]) == ["e1"] and answer["cursor"] == f"{epoch}-1"

    with running("longpoll_server", tmp_path) as server:
        asyncio.run(go(server))


@pytest.mark.parametrize(("module", "kind"), CASES)
def test_health_static_files_and_a_clean_exit_on_sigterm_with_clients_connected(module, kind, tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "page.html").write_text("<!doctype html><title>feed</title>")

    async def go(server: ServerProcess) -> str:
        base = _base(server)
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/health") as resp:
                assert resp.status == 200 and orjson.loads(await resp.read())["ok"] is True
            async with s.get(f"{base}/static/page.html") as resp:
                assert resp.status == 200 and "<title>feed</title>" in await resp.text()
            async with s.get(f"{base}/static/../conftest.py") as resp:
                assert resp.status == 404
            # A client connected while the server is told to stop.
            if kind == "sse":
                async with SseStream(s, f"{base}/sse?room={ROOM}") as st:
                    await st.next()
                    stopping = asyncio.create_task(asyncio.to_thread(server.stop))
                    last = await st.next()
                    await stopping
                    return last["event"]
            if kind == "poll":
                held = asyncio.create_task(poll(s, base, room=ROOM, cursor=0, hold_s=30 * UNIT))
                await _until_held(s, base)
                epoch = (await _health(f"{base}/health"))["epoch"]
                await asyncio.to_thread(server.stop)
                status, answer = await held
                return f"{status} {answer}".replace(epoch, "E")
            async with _ws(_ws_url(server)) as ws:
                await ws.send(json.dumps({"op": "join", "room": ROOM}))
                await _recv(ws)
                await asyncio.to_thread(server.stop)
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10 * UNIT)
                return str(ws.close_code)

    with running(module, tmp_path, "--static", str(static)) as server:
        ended = asyncio.run(go(server))
    assert server.returncode == 0
    assert ended == {"sse": "dropped", "poll": "200 {'events': [], 'cursor': 'E-0'}", "ws": "1001"}[kind]


def test_a_static_dir_that_does_not_exist_is_a_usage_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "spikes.s04_transport.poc.sse_server", "--static", str(tmp_path / "missing")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60 * UNIT,
    )
    assert out.returncode == 2 and "not a directory" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(("module", "kind"), [c for c in CASES if c.values[1] != "poll"])
def test_a_subscriber_that_stops_reading_is_dropped_with_a_reason_and_memory_stays_bounded(module, kind, tmp_path):
    """Enough bytes to fill the socket buffers of a client that reads nothing, then the outbox's 5 events: the server drops it."""
    big = "x" * 60_000

    async def flood(s: aiohttp.ClientSession, base: str) -> None:
        pub = Publisher(kind, server, s)
        await pub.open()
        try:
            for i in range(1, 1000):
                if kind == "ws":
                    assert pub.ws is not None
                    await pub.ws.send(orjson.dumps({**event(ROOM, i), "d": big}).decode())
                    assert (await _recv(pub.ws))["op"] == "ack"
                else:
                    status, _ = await post(s, base, {**event(ROOM, i), "d": big})
                    assert status == 200
                async with s.get(f"{base}/health") as resp:
                    if orjson.loads(await resp.read())["dropped"]:
                        return
        finally:
            await pub.close()
        raise AssertionError("1,000 events of 60 kB and the subscriber was not dropped")

    async def go(server: ServerProcess) -> str:
        base = _base(server)
        async with aiohttp.ClientSession() as s:
            if kind == "sse":
                async with SseStream(s, f"{base}/sse?room={ROOM}") as st:
                    await st.next()
                    await flood(s, base)
                    while True:  # what was in the socket, then the reason
                        e = await st.next(30 * UNIT)
                        if e["event"] == "dropped":
                            return str(e["json"]["error"])
            async with _ws(_ws_url(server)) as ws:
                await ws.send(json.dumps({"op": "join", "room": ROOM}))
                await _recv(ws)
                await flood(s, base)
                with pytest.raises(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), 30 * UNIT)
                return f"{ws.close_code} {ws.close_reason}"

    with running(module, tmp_path, "--queue", "5", "--max-bytes", "100000") as server:
        reason = asyncio.run(go(server))
    assert "slow consumer" in reason
    if kind == "ws":
        assert reason.startswith("1013 ")


@pytest.mark.parametrize("transport", ["sse", "poll", "ws", "all"])
def test_each_declaration_starts_through_the_harness(transport, tmp_path):
    from harness.plugin import Option
    from harness.poc import poc_server
    from spikes.s04_transport import poc

    option = Option(transport, f"{transport} feed", server=poc.server(transport, "--history", "50"))
    with poc_server(option, tmp_path) as (proc, url):
        assert url.startswith("ws://" if transport == "ws" else "http://") and f":{proc.port}" in url
        health = asyncio.run(_health(f"http://{proc.host}:{proc.port}/health"))
        assert health["ok"] is True
    assert proc.returncode == 0


async def _health(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        assert resp.status == 200
        return dict(orjson.loads(await resp.read()))
