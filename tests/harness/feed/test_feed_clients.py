"""The feed clients one at a time, against the test feed server; the event-stream parser and the resume adapter without sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

import harness.feed  # noqa: F401 - registers the feed's adapters
from harness.feed.client import FeedClient
from harness.feed.longpoll import LongPollClient
from harness.feed.resume import LastEventIdResume, LastSeqEpochResume
from harness.feed.sse import SSEClient, SSEParser, decode_event
from harness.load import LoadSpec, ReconnectPolicy, protocol
from harness.load.clients import ConnectError, get_client_class
from harness.load.clients.resume import get_resume_class
from tests.harness.feed.feed_server import FeedServer
from tests.utils import UNIT

CLIENTS = [SSEClient, LongPollClient]


class _Probe:
    """A client's callbacks, recorded."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.closes: list[str] = []

    def ops(self) -> list[str]:
        return [m["op"] for m in self.messages]

    def make(self, cls: type[FeedClient], url: str, shared: dict[str, Any]) -> FeedClient:
        return cls(url, self.messages.append, self.closes.append, shared=shared)


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5 * UNIT
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20 * UNIT))


# -- without sockets ----------------------------------------------------------------------------
def test_the_event_stream_parser_takes_any_line_ending_and_any_split():
    stream = b'event: joined\r\ndata: {"op":"joined"}\r\n\r\n: ka\n\nid: 7\ndata: {"n":\ndata: 7}\r\r: ka\r\nevent: nodata\n\n'
    for size in (1, 2, 5, len(stream)):
        parser = SSEParser()
        events = [e for i in range(0, len(stream), size) for e in parser.feed(stream[i : i + size])]
        assert events == [("joined", '{"op":"joined"}', None), ("message", '{"n":\n7}', "7")], size
        assert parser.comments == 2


def test_an_event_decodes_to_its_message():
    assert decode_event(("message", '{"op":"broadcast","n":3}', "3")) == {"op": "broadcast", "n": 3}
    assert decode_event(("reset", '{"room":"r","n":0}', None)) == {"op": "reset", "room": "r", "n": 0}
    assert decode_event(("message", "not json", None))["op"] == "error"
    assert decode_event(("message", "[1]", None))["op"] == "error"


def test_the_resume_adapter_resumes_after_the_last_broadcast_or_the_reset():
    resume = LastEventIdResume()
    resume.seen({"op": "joined", "room": "r", "n": 5})
    assert (resume.room, resume.last) == ("r", 5)  # a fresh member's view starts at the HEAD
    resume.seen({"op": "broadcast", "n": 6})
    resume.seen({"op": "ack", "c": 0, "seq": 9, "n": 9})  # the sender's ack may outrun the stream: not a resume point
    resume.seen({"op": "joined", "room": "r", "n": 8})  # a resumed member's joined names the HEAD, the replay follows
    assert resume.last == 6 and resume.join("r") == {"op": "join", "room": "r", "after": 6}
    resume.seen({"op": "reset", "room": "r", "n": 2, "reason": "future"})
    assert resume.last == 2 and resume.resets == 1
    client = SSEClient("http://127.0.0.1:9/feed/", lambda m: None, lambda r: None)
    resume.before_connect(client)
    assert (client.room, client.after, client.base) == ("r", 2, "http://127.0.0.1:9/feed")


def test_the_resume_adapters_keep_the_epoch_with_its_n():
    http, ws = LastEventIdResume(), LastSeqEpochResume()
    for resume in (http, ws):
        resume.seen({"op": "joined", "room": "r", "n": 5, "e": "0a0a0a0a"})
        resume.seen({"op": "broadcast", "n": 6, "e": "0a0a0a0a"})
        # A restarted server's joined (its epoch, its HEAD): the reset follows it. Were the epoch taken from here, a
        # drop before the reset would resume with the new epoch and the old 6: the silent gap again.
        resume.seen({"op": "joined", "room": "r", "n": 9, "e": "1b1b1b1b"})
        assert (resume.last, resume.epoch) == (6, "0a0a0a0a")
    assert http.point == "0a0a0a0a-6" and http.join("r") == {"op": "join", "room": "r", "after": "0a0a0a0a-6"}
    assert ws.join("r") == {"op": "join", "room": "r", "after": 6, "epoch": "0a0a0a0a"}
    for resume in (http, ws):
        resume.seen({"op": "reset", "room": "r", "n": 9, "e": "1b1b1b1b", "reason": "epoch"})
        assert (resume.last, resume.epoch, resume.resets, dict(resume.reset_reasons)) == (9, "1b1b1b1b", 1, {"epoch": 1})
    client = SSEClient("http://127.0.0.1:9", lambda m: None, lambda r: None)
    http.before_connect(client)
    assert (client.room, client.after) == ("r", "1b1b1b1b-9")
    assert ws.join("r") == {"op": "join", "room": "r", "after": 9, "epoch": "1b1b1b1b"}
    # A server without epochs: a plain N, as before.
    legacy = LastSeqEpochResume()
    legacy.seen({"op": "joined", "room": "r", "n": 2})
    assert legacy.join("r") == {"op": "join", "room": "r", "after": 2} and legacy.point == 2


def test_the_package_registers_its_adapters_and_the_spec_takes_them():
    assert get_client_class("sse") is SSEClient and get_client_class("longpoll") is LongPollClient
    assert get_resume_class("last-event-id") is LastEventIdResume
    assert get_resume_class("last-seq-epoch") is LastSeqEpochResume
    LoadSpec("http://127.0.0.1:9", transport="sse", mode="broadcast", reconnect=ReconnectPolicy(), resume="last-event-id")
    LoadSpec("ws://127.0.0.1:9", transport="ws", mode="broadcast", reconnect=ReconnectPolicy(), resume="last-seq-epoch")
    with pytest.raises(ValueError, match="needs transport"):
        LoadSpec("ws://127.0.0.1:9", transport="ws", reconnect=ReconnectPolicy(), resume="last-event-id")
    with pytest.raises(ValueError, match="needs transport"):
        LoadSpec("http://127.0.0.1:9", transport="sse", reconnect=ReconnectPolicy(), resume="last-seq-epoch")
    with pytest.raises(ValueError, match="http"):
        SSEClient("ws://127.0.0.1:9", lambda m: None, lambda r: None)


@pytest.mark.parametrize("cls", CLIENTS)
def test_echo_is_refused_clearly(cls):
    client = cls("http://127.0.0.1:9", lambda m: None, lambda r: None)
    with pytest.raises(ValueError, match="broadcasts only"):
        client.send(protocol.echo_message(0, 0, 0, ""))


# -- against the test server -----------------------------------------------------------------
@pytest.mark.parametrize("cls", CLIENTS)
@pytest.mark.slow  # a real server on a loopback socket
def test_a_client_joins_publishes_receives_counts_its_bytes_and_closes_cleanly(cls):
    async def go(server: FeedServer) -> None:
        shared: dict[str, Any] = {}
        probe = _Probe()
        ours = asyncio.all_tasks()  # the test's own
        client = probe.make(cls, server.base + "/", shared)
        await client.connect(5 * UNIT)
        client.send(protocol.join_message("r"))
        await _until(lambda: probe.ops() == ["joined"], "joined")
        for seq in range(3):
            client.send(protocol.broadcast_message("r", seq, time.time_ns(), 7, "x" * 100))
        await _until(lambda: probe.ops().count("broadcast") == 3 and probe.ops().count("ack") == 3, "3 broadcasts and their acks")
        assert [m["n"] for m in probe.messages if m["op"] == "broadcast"] == [1, 2, 3]
        assert [m["seq"] for m in probe.messages if m["op"] == "ack"] == [0, 1, 2]
        assert client.bytes_out > 3 * 100 and client.bytes_in > 3 * 100  # each payload went out once and came back once
        assert asyncio.all_tasks() - ours  # the receive loop, at least
        await client.close(2 * UNIT)
        await cls.close_shared(shared)
        assert probe.closes == []  # a close of ours is no drop
        assert asyncio.all_tasks() <= ours  # no task of the client's left behind
        client.send(protocol.broadcast_message("r", 3, time.time_ns(), 7, ""))  # dropped silently once closed
        await _until(lambda: not server.rooms["r"].streams and not server._polls, "the server saw the client go")

    with FeedServer() as server:
        _run(go(server))
        assert server.stats.accepted == 3


@pytest.mark.parametrize("cls", CLIENTS)
@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", ""])
@pytest.mark.slow  # a real server on a loopback socket
def test_a_malformed_resume_point_gets_the_servers_400_and_a_clear_error(cls, bad):
    async def go(server: FeedServer) -> None:
        shared: dict[str, Any] = {}
        probe = _Probe()
        if cls is SSEClient:  # the stream is the join: a connect that opens it fails with the server's reason
            client = probe.make(cls, server.base, shared)
            client.room, client.after = "r", bad
            with pytest.raises(ConnectError, match=r"sse: HTTP 400: bad resume point .*non-negative integer"):
                await client.connect(5 * UNIT)
            await client.close(1)
        client = probe.make(cls, server.base, shared)  # through the engine's join: the same reason, as a drop
        await client.connect(5 * UNIT)
        client.send({**protocol.join_message("r"), "after": bad})
        await _until(lambda: bool(probe.closes), "a close")
        what = "sse" if cls is SSEClient else "poll"
        assert len(probe.closes) == 1 and probe.closes[0].startswith(f"{what}: HTTP 400: bad resume point")
        await client.close(1)
        await cls.close_shared(shared)

    with FeedServer() as server:
        _run(go(server))
        assert server.stats.bad_requests == (2 if cls is SSEClient else 1)


@pytest.mark.parametrize("cls", CLIENTS)
@pytest.mark.slow  # a real server on a loopback socket
def test_a_resume_point_the_server_never_reached_brings_a_reset_the_client_hands_on(cls):
    async def go(server: FeedServer) -> None:
        shared: dict[str, Any] = {}
        probe = _Probe()
        resume = LastEventIdResume()
        for msg in ({"op": "joined", "room": "r", "n": 40}, {"op": "broadcast", "n": 41}):
            resume.seen(msg)  # what a client saw before the server restarted without its history
        client = probe.make(cls, server.base, shared)
        resume.before_connect(client)
        await client.connect(5 * UNIT)  # opened in connect: what came is held until the engine's join
        assert probe.messages == []
        client.send(resume.join("r"))
        await _until(lambda: "reset" in probe.ops(), "a reset")
        reset = next(m for m in probe.messages if m["op"] == "reset")
        assert reset == {"op": "reset", "room": "r", "n": 0, "e": server.epoch, "reason": "future"} and client.resets == 1
        for msg in probe.messages:
            resume.seen(msg)
        assert resume.last == 0 and resume.resets == 1
        client.send(protocol.broadcast_message("r", 0, time.time_ns(), 1, "x"))  # the stream goes on from the HEAD
        await _until(lambda: "broadcast" in probe.ops(), "the next broadcast")
        assert probe.ops()[0] == "joined" and probe.closes == []
        await client.close(1)
        await cls.close_shared(shared)

    with FeedServer() as server:
        _run(go(server))
        assert server.stats.resets == [("r", 41, 0, "future")]


@pytest.mark.parametrize("cls", CLIENTS)
@pytest.mark.parametrize("epoch", [True, False], ids=["epoch", "no-epoch"])
@pytest.mark.slow  # a real server on a loopback socket
def test_a_restarted_server_that_numbered_past_the_resume_point_gives_an_epoch_reset(cls, epoch):
    """The gap the epoch closes: the client saw 1..3, the restarted server numbered 1..5 before it came back.

    Without an epoch (a server from before it) the client resumes after 3 and silently gets the new 4 and 5
    only: the new server's 1..3 are gone with no word. With one, its ``E-3`` is of another epoch: a reset.
    """

    async def go(server: FeedServer) -> None:
        shared: dict[str, Any] = {}
        resume = LastEventIdResume()
        first, pub, again = _Probe(), _Probe(), _Probe()
        client = first.make(cls, server.base, shared)
        await client.connect(5 * UNIT)
        client.send(protocol.join_message("r"))
        for seq in range(3):
            client.send(protocol.broadcast_message("r", seq, time.time_ns(), 1, "old"))
        await _until(lambda: first.ops().count("broadcast") == 3, "3 broadcasts")
        for msg in first.messages:
            resume.seen(msg)
        old = server.point(3)
        assert resume.point == (old if epoch else 3) and client.last_id == old
        await client.close(1)
        await asyncio.to_thread(server.restart)
        publisher = pub.make(cls, server.base, shared)  # the new server numbers 1..5 before the client is back
        await publisher.connect(5 * UNIT)
        for seq in range(5):
            publisher.send(protocol.broadcast_message("r", seq, time.time_ns(), 2, "new"))
        await _until(lambda: pub.ops().count("ack") == 5, "5 acks")
        assert [m.get("e") for m in pub.messages] == [server.epoch] * 5
        client = again.make(cls, server.base, shared)
        resume.before_connect(client)
        await client.connect(5 * UNIT)
        client.send(resume.join("r"))
        if epoch:
            await _until(lambda: "reset" in again.ops(), "the reset")
            assert again.ops() == ["joined", "reset"]
            assert again.messages[1] == {"op": "reset", "room": "r", "n": 5, "e": server.epoch, "reason": "epoch"}
            assert client.resets == 1 and client.reset_reasons == {"epoch": 1}
            for msg in again.messages:
                resume.seen(msg)
            assert resume.point == server.point(5) and resume.reset_reasons == {"epoch": 1}
        else:
            await _until(lambda: again.ops().count("broadcast") == 2, "the replay")
            assert [m.get("n") for m in again.messages if m["op"] == "broadcast"] == [4, 5] and client.resets == 0
        publisher.send(protocol.broadcast_message("r", 5, time.time_ns(), 2, "live"))  # the stream goes on from the HEAD
        await _until(lambda: any(m.get("n") == 6 for m in again.messages), "the next broadcast")
        assert [m["n"] for m in again.messages if m["op"] == "broadcast"] == ([6] if epoch else [4, 5, 6])
        for c in (client, publisher):
            await c.close(1)
        await cls.close_shared(shared)

    with FeedServer(epoch=epoch) as server:
        _run(go(server))
        assert [reason for *_, reason in server.stats.resets] == (["epoch"] if epoch else [])
        assert len(set(server.stats.epochs)) == (2 if epoch else 1)


@pytest.mark.parametrize("cls", CLIENTS)
@pytest.mark.slow  # a real server on a loopback socket
def test_a_reconnect_to_a_server_that_is_down_fails_in_connect_at_once(cls):
    async def go(base: str) -> None:
        shared: dict[str, Any] = {}
        client = _Probe().make(cls, base, shared)
        client.room, client.after = "r", 3
        with pytest.raises(ConnectError, match="connection refused|ECONNREFUSED"):
            await client.connect(5 * UNIT)
        await client.close(1)
        await cls.close_shared(shared)

    with FeedServer() as server:
        base = server.base
    _run(go(base))


@pytest.mark.parametrize("cls", CLIENTS)
@pytest.mark.slow  # a real server on a loopback socket
def test_a_broadcast_the_server_refuses_comes_back_as_its_error(cls):
    async def go(server: FeedServer) -> None:
        shared: dict[str, Any] = {}
        probe = _Probe()
        client = probe.make(cls, server.base, shared)
        await client.connect(5 * UNIT)
        client.send(protocol.join_message("r"))
        client.send({**protocol.broadcast_message("r", 0, 0, 1, "x"), "seq": "zero"})
        await _until(lambda: "error" in probe.ops(), "the error")
        error = next(m for m in probe.messages if m["op"] == "error")
        assert error["status"] == 400 and "seq" in error["error"] and probe.closes == []
        await client.close(1)
        await cls.close_shared(shared)

    with FeedServer() as server:
        _run(go(server))


class _RawAck(asyncio.Protocol):
    """A bare HTTP/1.1 server that acknowledges every request and counts the bytes both ways, as they cross its socket."""

    counts = {"in": 0, "out": 0}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tr: Any = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.counts["in"] += len(data)
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
            if len(rest) < length:
                return
            self.buf = rest[length:]
            body = b'{"op":"ack","c":1,"seq":0,"n":1}'
            reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            self.counts["out"] += len(reply)
            self.tr.write(reply)


@pytest.mark.slow  # a real server on a loopback socket
def test_the_bytes_counted_are_the_bytes_on_the_wire():
    async def go() -> None:
        _RawAck.counts = {"in": 0, "out": 0}
        server = await asyncio.get_running_loop().create_server(_RawAck, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        shared: dict[str, Any] = {}
        probe = _Probe()
        client = probe.make(SSEClient, f"http://127.0.0.1:{port}", shared)
        await client.connect(5 * UNIT)
        for seq in range(5):
            client.send(protocol.broadcast_message("r", seq, time.time_ns(), 1, "x" * seq * 50))
        await _until(lambda: probe.ops().count("ack") == 5, "5 acks")
        await client.close(1)
        await SSEClient.close_shared(shared)
        server.close()
        await server.wait_closed()
        assert (client.bytes_out, client.bytes_in) == (_RawAck.counts["in"], _RawAck.counts["out"])
        assert client.bytes_out > 5 * 150  # headers and bodies

    _run(go())


@pytest.mark.parametrize("cls", CLIENTS)
@pytest.mark.slow  # a real server on a loopback socket
def test_a_drop_before_the_engines_join_is_reported_after_the_joined_it_held(cls):
    async def go(server: FeedServer) -> None:
        shared: dict[str, Any] = {}
        probe = _Probe()
        client = probe.make(cls, server.base, shared)
        client.room, client.after = "r", 0
        await client.connect(5 * UNIT)
        if cls is SSEClient:
            server.kick("r")
        else:  # a poll: the server answers the held one with 503
            server.kick_mode = "status"
            await _until(lambda: bool(server._polls), "a held poll")
            server.kick("r")
            client.send(protocol.broadcast_message("r", 0, 0, 1, "x"))  # wakes the held poll, which answers 503
        await asyncio.sleep(0.2 * UNIT)
        received = [op for op in probe.ops() if op != "ack"]  # the ack of the POST above is an answer, not a received event
        assert probe.closes == [] and received == []  # held: the engine has not joined yet
        client.send(protocol.join_message("r"))
        await _until(lambda: bool(probe.closes), "the drop")
        assert [op for op in probe.ops() if op != "ack"][0] == "joined" and len(probe.closes) == 1
        await client.close(1)
        await cls.close_shared(shared)

    with FeedServer() as server:
        _run(go(server))


@pytest.mark.slow  # a real server on a loopback socket
def test_echo_mode_fails_the_run_with_the_reason():
    from harness.load import run_load

    with FeedServer() as server:
        r = run_load(LoadSpec(server.base, transport="sse", mode="echo", rate=20, duration_s=0.3, connect_timeout_s=5 * UNIT, grace_s=0))
    assert any("broadcasts only" in e for e in r.errors), r.errors


@pytest.mark.slow  # a real server on a loopback socket
def test_keepalive_comments_are_read_and_counted():
    async def go(server: FeedServer) -> None:
        shared: dict[str, Any] = {}
        probe = _Probe()
        client = probe.make(SSEClient, server.base, shared)
        await client.connect(5 * UNIT)
        client.send(protocol.join_message("r"))
        await _until(lambda: client.keepalives >= 2, "two keep-alives")  # type: ignore[attr-defined]
        assert probe.ops() == ["joined"] and probe.closes == []
        await client.close(1)
        await SSEClient.close_shared(shared)

    with FeedServer(keepalive_s=0.02) as server:
        _run(go(server))
