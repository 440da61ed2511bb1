"""Feature probes: each a small real check against a running POC server, answering with a value and its evidence.

Every probe takes the server's client URL (``ws://127.0.0.1:N/`` or
``http://127.0.0.1:N`` for Socket.IO, as :func:`build.server_command` gives it)
and its transport (``"ws"`` or ``"socketio"``), talks to it over loopback, and
returns ``{"value": bool, "evidence": str}``. Each is bounded in time. The
clients are the reference Python ones (``websockets``, ``python-socketio``);
the browser clients are checked by :mod:`reconnect` and the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import socketio
from websockets.asyncio.client import connect as ws_connect
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from spikes.s01_websocket_impl import build

if TYPE_CHECKING:
    from harness.faults import FaultLog

__all__ = [
    "FEATURES",
    "BACKPRESSURE_MECHANISMS",
    "Feature",
    "probe_rooms",
    "probe_acknowledgements",
    "probe_binary",
    "probe_fallback",
    "probe_reconnect",
    "probe_backpressure",
    "probe_all",
]

Feature = dict[str, Any]  # {"value": bool, "evidence": str}

#: Feature keys, in the order the features table shows them.
FEATURES = ("rooms", "acknowledgements", "binary", "fallback", "reconnect", "backpressure")

#: How long a probe waits for any one answer, in seconds.
TIMEOUT_S = 5.0
#: Backpressure: how much a client that never reads tries to push, in frames of this size.
FLOOD_BYTES = 64 * 2**20
FLOOD_FRAME = 64 * 2**10
#: A send blocked this long means TCP flow control stopped the sender.
STALL_S = 1.0

#: Why each server behaves as the backpressure probe finds: the library's mechanism, read in its source.
BACKPRESSURE_MECHANISMS = {
    "native": "websockets: send() waits while the write buffer is above write_limit (32 KiB), "
    "and reading pauses once max_queue (16) frames wait unread",
    "socketio": "python-engineio: outgoing packets wait in an unbounded asyncio.Queue per client, and the server keeps reading",
    "socketio-node": "engine.io (Node): outgoing packets wait in the socket's unbounded writeBuffer until ws has written the previous "
    "batch, and the WebSocket's message handler keeps reading",
    "sveltekit": "ws: send() always goes to socket.write(), which buffers in memory past the kernel's buffer; "
    "watching bufferedAmount is left to the app",
}


def _feature(value: bool, evidence: str) -> Feature:
    return {"value": bool(value), "evidence": evidence}


@contextlib.asynccontextmanager
async def _sio_client(url: str, transports: list[str] | None = None):
    """A connected python-socketio client that never reconnects on its own (a probe must end)."""
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, transports=transports or ["websocket"], wait_timeout=TIMEOUT_S)
    try:
        yield client
    finally:
        if client.transport() == "polling":
            # disconnect() would wait for the pending long-poll GET, up to the 25 s ping interval.
            await client.eio.disconnect(abort=True)
        else:
            await client.disconnect()


def _sio_inbox(client: socketio.AsyncClient, *events: str) -> asyncio.Queue[tuple[str, Any]]:
    """Queue every ``(event, data)`` the client receives for ``events``."""
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    for event in events:
        client.on(event, lambda data, event=event: queue.put_nowait((event, data)))
    return queue


async def _ws_until(ws: Any, op: str) -> dict[str, Any]:
    """Read JSON frames until one with ``op`` arrives."""
    while True:
        msg = json.loads(await ws.recv())
        if msg.get("op") == op:
            return msg


async def probe_rooms(url: str, transport: str) -> Feature:
    """Two clients join a room, one broadcasts: both must get it, and a third client outside the room must not."""
    room = f"probe-{uuid.uuid4().hex[:8]}"
    msg = {"room": room, "seq": 1, "t": time.time_ns(), "c": 0, "d": "roll"}
    quiet = 0.2  # how long the outsider listens for a message it must not get
    if transport == "socketio":
        async with _sio_client(url) as a, _sio_client(url) as b, _sio_client(url) as outsider:
            inboxes = [_sio_inbox(c, "joined", "broadcast") for c in (a, b, outsider)]
            for client, inbox in zip((a, b), inboxes):
                await client.emit("join", {"room": room})
                await asyncio.wait_for(inbox.get(), TIMEOUT_S)
            await a.emit("broadcast", msg)
            got = [await asyncio.wait_for(inbox.get(), TIMEOUT_S) for inbox in inboxes[:2]]
            await asyncio.sleep(quiet)
            leaked = not inboxes[2].empty()
            members_ok = all(event == "broadcast" and data == msg for event, data in got)
    else:
        async with ws_connect(url, proxy=None) as a, ws_connect(url, proxy=None) as b, ws_connect(url, proxy=None) as outsider:
            for ws in (a, b):
                await ws.send(json.dumps({"op": "join", "room": room}))
                await asyncio.wait_for(_ws_until(ws, "joined"), TIMEOUT_S)
            await a.send(json.dumps({"op": "broadcast", **msg}))
            got = [await asyncio.wait_for(_ws_until(ws, "broadcast"), TIMEOUT_S) for ws in (a, b)]
            try:
                await asyncio.wait_for(outsider.recv(), quiet)
                leaked = True
            except TimeoutError:
                leaked = False
            members_ok = all(m == {"op": "broadcast", **msg} for m in got)
    members = "both members received it unchanged" if members_ok else f"the members received {got!r}"
    outsider_saw = "a client outside the room got it too" if leaked else "a client outside the room did not"
    return _feature(members_ok and not leaked, f"2 clients joined a room, one broadcast: {members}; {outsider_saw}")


async def probe_acknowledgements(url: str, transport: str) -> Feature:
    """Socket.IO: an ``echo`` emitted with a callback must be acknowledged with its data; WebSocket has no acks."""
    if transport != "socketio":
        # Nothing to probe: the protocol has no acknowledgement, so this cell is a fact about RFC 6455, and says so.
        return _feature(
            False, "protocol fact, not probed: RFC 6455 frames carry no message id or acknowledgement; the app must add ids and answers"
        )
    data = {"seq": 7, "t": time.time_ns(), "c": 0, "d": "ack?"}
    async with _sio_client(url) as client:
        t0 = time.perf_counter()
        answer = await client.call("echo", data, timeout=TIMEOUT_S)
        ms = (time.perf_counter() - t0) * 1000
    ok = answer == data
    return _feature(ok, f"emit('echo', data, callback) was acknowledged {'with the data' if ok else f'with {answer!r}'} in {ms:.1f} ms")


async def probe_binary(url: str, transport: str) -> Feature:
    """Send 1 KiB of bytes (every byte value): they must come back as bytes, unchanged."""
    payload = bytes(range(256)) * 4
    if transport == "socketio":
        async with _sio_client(url) as client:
            inbox = _sio_inbox(client, "echo")
            await client.emit("echo", payload)
            _, back = await asyncio.wait_for(inbox.get(), TIMEOUT_S)
        how = "emit('echo', bytes) came back as a binary attachment"
    else:
        async with ws_connect(url, proxy=None) as ws:
            await ws.send(payload)
            back = await asyncio.wait_for(ws.recv(), TIMEOUT_S)
        how = "a binary frame came back as a binary frame"
    ok = isinstance(back, bytes) and back == payload
    return _feature(ok, f"{how}, {len(payload)} bytes {'unchanged' if ok else f'but different: {type(back).__name__} of {len(back)}'}")


def _http_base(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


async def probe_fallback(url: str, transport: str) -> Feature:
    """Socket.IO: connect with HTTP long-polling only and echo; WebSocket servers: look for any HTTP fallback."""
    if transport == "socketio":
        data = {"seq": 1, "t": time.time_ns(), "c": 0, "d": "polled"}
        async with _sio_client(url, transports=["polling"]) as client:
            inbox = _sio_inbox(client, "echo")
            t0 = time.perf_counter()
            await client.emit("echo", data)
            _, back = await asyncio.wait_for(inbox.get(), TIMEOUT_S)
            ms = (time.perf_counter() - t0) * 1000
            used = client.transport()
        ok = back == data and used == "polling"
        return _feature(ok, f"connected with transports=['polling'] (engine.io HTTP long-polling, no WebSocket), echo in {ms:.1f} ms")
    # A plain GET of the WebSocket path, and of the Engine.IO polling endpoint: would either open a session?
    base, path = _http_base(url), urlsplit(url).path or "/"
    statuses, polls = {}, False
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session:
        for probe in (path, "/socket.io/?EIO=4&transport=polling"):
            async with session.get(base + probe) as response:
                statuses[probe] = response.status
                polls |= response.status == 200 and (await response.text()).startswith("0{")  # an Engine.IO open packet
    answered = ", ".join(f"GET {p} -> HTTP {s}" for p, s in statuses.items())
    if polls:
        return _feature(True, f"an HTTP long-polling endpoint answered with a session ({answered})")
    return _feature(
        False, f"no HTTP long-polling fallback ({answered}): a client whose network blocks the WebSocket upgrade cannot connect"
    )


async def probe_reconnect(option: str, url: str, faults: FaultLog | None = None) -> Feature:
    """Cut the browser client's connection in Chromium: it must reconnect and echo again (see :mod:`reconnect`).

    The cut goes into ``faults`` (whose listener, wired to the run's observers, hears it as it begins).
    """
    from spikes.s01_websocket_impl import reconnect  # Playwright is only needed for this probe

    result = await reconnect.measure_reconnect(option, url, mode="drop", warmup_s=0.5, settle_s=0.5, faults=faults)
    client = "client.js (native WebSocket)" if build.TRANSPORTS[option] == "ws" else "socket.io-client"
    if not result["recovered"]:
        return _feature(False, f"{client} did not echo again within {result['timeout_s']:g} s after the connection was cut")
    return _feature(
        True,
        f"{client} in Chromium echoed again {result['recovery_ms']:.0f} ms after the connection was cut; of {result['sent']} "
        f"messages sent, {result['delivered']} delivered, {result['lost_after_ack']} lost after acknowledgement and "
        f"{result['lost_without_ack']} lost without",
    )


# -- backpressure -----------------------------------------------------------------------------


def _ws_target(url: str, transport: str) -> str:
    if transport == "socketio":
        parts = urlsplit(url)
        return f"ws://{parts.netloc}/socket.io/?EIO=4&transport=websocket"
    return url


def _flood(url: str, transport: str, total: int, frame_size: int, stall_s: float) -> tuple[int, float, bool, int]:
    """Push echo requests into a server from a client that does not read; return (bytes sent, seconds, stalled, bytes read back).

    A raw socket with the ``websockets`` sans-I/O protocol, so nothing on our
    side buffers: every byte counted was taken by the kernel, and a send that
    blocks ``stall_s`` means the server stopped reading. If the sender never
    stalled, the client then reads what the server held for it.
    """
    uri = parse_uri(_ws_target(url, transport))
    proto = ClientProtocol(uri)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Small client buffers, set before connect so the TCP window follows: the client absorbs next to nothing.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sock.settimeout(TIMEOUT_S)
        sock.connect((uri.host, uri.port))

        def pump_out() -> None:
            for data in proto.data_to_send():
                sock.sendall(data)

        pending: list[Any] = []  # events parsed but not consumed yet: one read may carry several

        def read_until(done: Callable[[Any], bool]) -> None:
            while True:
                while pending:
                    if done(pending.pop(0)):
                        return
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed the connection during the handshake")
                proto.receive_data(data)
                pending.extend(proto.events_received())

        proto.send_request(proto.connect())
        pump_out()
        read_until(lambda e: isinstance(e, Response))
        if proto.handshake_exc is not None:
            raise ConnectionError(f"WebSocket handshake failed: {proto.handshake_exc}")
        if transport == "socketio":
            # Engine.IO sends its open packet, then the client connects to the namespace "/".
            read_until(lambda e: isinstance(e, Frame) and e.opcode is Opcode.TEXT and e.data.startswith(b"0"))
            proto.send_text(b"40")
            pump_out()
            read_until(lambda e: isinstance(e, Frame) and e.opcode is Opcode.TEXT and e.data.startswith(b"40"))
        body = {"seq": 0, "t": 0, "c": 0, "d": "x" * (frame_size - 100)}
        payload = (f'42["echo",{json.dumps(body)}]' if transport == "socketio" else json.dumps({"op": "echo", **body})).encode()
        sock.settimeout(stall_s)
        sent, t0 = 0, time.perf_counter()
        while sent < total:
            proto.send_text(payload)
            for data in proto.data_to_send():
                view = memoryview(data)
                while view:
                    try:
                        n = sock.send(view)
                    except TimeoutError:
                        return sent, time.perf_counter() - t0, True, 0
                    sent += n
                    view = view[n:]
        seconds, received = time.perf_counter() - t0, 0
        # The kernel buffers hold a few MB: echoes beyond that waited in the server's memory.
        with contextlib.suppress(TimeoutError):
            while received < total and (data := sock.recv(2**20)):
                received += len(data)
        return sent, seconds, False, received


async def probe_backpressure(url: str, transport: str, total: int = FLOOD_BYTES) -> Feature:
    """Flood the server with echo requests from a client that does not read: does the server stop reading, or buffer?

    With backpressure the server's writes to the non-reading client block, it
    stops reading, and TCP flow control stops the sender after a few MB (the
    kernel's socket buffers plus the library's limits). Without, the server
    reads everything and holds the unread echoes in its memory; the client
    then reads them back to show it.
    """
    sent, seconds, stalled, received = await asyncio.to_thread(_flood, url, transport, total, FLOOD_FRAME, STALL_S)
    mb = sent / 2**20
    if stalled:
        return _feature(
            True,
            f"a client that did not read could push {mb:.1f} of {total / 2**20:.0f} MB of echo requests before its sends "
            f"blocked for {STALL_S:g} s: the server stopped reading while it could not write",
        )
    return _feature(
        False,
        f"the server read all {mb:.0f} MB of echo requests from a client that did not read ({seconds:.1f} s), never blocking "
        f"the sender; the client then read back {received / 2**20:.0f} MB of echoes the server had held in memory",
    )


# -- all at once ------------------------------------------------------------------------------


async def probe_all(option: str, url: str, reconnect: bool = True, faults: FaultLog | None = None) -> dict[str, Feature]:
    """Every probe against one running server of ``option``; a probe that fails says so in its evidence.

    ``reconnect=False`` skips the Chromium probe (its entry is then absent); its cut goes into ``faults``.
    Raises :class:`build.ToolMissing` if Chromium is needed and missing.
    """
    transport = build.TRANSPORTS[option]
    probes: dict[str, Callable[[], Awaitable[Feature]]] = {
        "rooms": lambda: probe_rooms(url, transport),
        "acknowledgements": lambda: probe_acknowledgements(url, transport),
        "binary": lambda: probe_binary(url, transport),
        "fallback": lambda: probe_fallback(url, transport),
        "backpressure": lambda: probe_backpressure(url, transport),
    }
    if reconnect:
        probes["reconnect"] = lambda: probe_reconnect(option, url, faults)
    out: dict[str, Feature] = {}
    for key in FEATURES:
        if key not in probes:
            continue
        try:
            out[key] = await asyncio.wait_for(probes[key](), 60)
            if key == "backpressure" and option in BACKPRESSURE_MECHANISMS:
                out[key]["evidence"] += f" (why, from the library's source, not measured: {BACKPRESSURE_MECHANISMS[option]})"
        except build.ToolMissing:
            raise
        except Exception as exc:  # a probe that cannot run is a finding, not a crash of the others
            # Unknown, not absent: a crashed probe must not count against the option.
            out[key] = {"value": None, "evidence": f"probe failed: {type(exc).__name__}: {exc}"}
    return out
