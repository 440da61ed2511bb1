"""Reference servers of the load protocol: what a POC server must do, in the fewest lines.

``python -m harness.load.reference_server --transport ws --port 0`` prints
``PORT <n>`` on its first line of output once it listens, then serves until
SIGTERM or SIGINT, or until its parent process exits. Transports:

- ``ws``: the ``websockets`` asyncio server speaking the whole protocol
  (echo, join, broadcast), permessage-deflate off;
- ``socketio``: python-socketio's AsyncServer on aiohttp, the same protocol
  as Socket.IO events;
- ``raw-echo``: a bare asyncio protocol that returns every text frame as it
  came, without parsing JSON: the cheapest echo Python can serve, which is
  what the generator self-test needs so the server is not the bottleneck.

``--stall-after N --stall-ms M`` blocks the server's event loop for M ms
once, at its N-th message, like a long garbage-collection pause; the tests
use it to show coordinated-omission correction at work.

``--numbered`` (``ws`` only) numbers each room's broadcasts (``"n": 1, 2,
...`` added to the object), keeps the last ``--replay-buffer`` of them in
memory, and answers a join carrying ``"after": n`` with ``joined`` and then
every broadcast it holds after ``n``, in order: the server a ``last-seq``
resume adapter (``harness.load.clients.resume``) resumes against. The
buffer lives as long as the process: a killed server forgets it.
``--kick-after N`` closes, once, the connection of one member of the room
other than the sender, after the N-th broadcast: a drop with the server up,
for the tests of reconnecting and resuming clients.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import signal
import sys
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import orjson

from harness.load import protocol
from harness.load.clients.ws_raw import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, FrameParser, build_frame

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

__all__ = ["Stall", "Numbering", "serve_ws", "serve_socketio", "serve_raw_echo", "main"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Stall:
    """Blocks the calling thread once, at the ``after``-th call, for ``ms`` milliseconds."""

    def __init__(self, after: int = 0, ms: float = 0.0) -> None:
        self.after = after
        self.ms = ms
        self.count = 0

    def tick(self) -> None:
        """Count one message; sleep (blocking the whole event loop, on purpose) when its turn comes."""
        self.count += 1
        if self.after and self.count == self.after and self.ms > 0:
            time.sleep(self.ms / 1000)


def _announce(port: int) -> None:
    print(f"PORT {port}", flush=True)


async def _until_signalled() -> None:
    """Wait for SIGTERM or SIGINT, or for the parent process to go away (no orphaned servers)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()

    async def watch_parent() -> None:
        while os.getppid() == parent:
            await asyncio.sleep(0.5)
        stop.set()

    watcher = asyncio.create_task(watch_parent())
    await stop.wait()
    watcher.cancel()


class Numbering:
    """``--numbered``: each room's broadcasts numbered and the last ``keep`` of them held for replay."""

    def __init__(self, keep: int = 100_000, kick_after: int = 0) -> None:
        self.keep = keep
        self.kick_after = kick_after
        self.count: dict[str, int] = defaultdict(int)
        self.held: dict[str, deque[tuple[int, str]]] = defaultdict(lambda: deque(maxlen=self.keep))
        self.total = 0

    def number(self, room: str, msg: dict[str, Any]) -> str:
        """The broadcast as sent to members: with its room sequence number ``n``; held for replay."""
        n = self.count[room] = self.count[room] + 1
        msg["n"] = n
        text = orjson.dumps(msg).decode()
        self.held[room].append((n, text))
        self.total += 1
        return text

    def after(self, room: str, n: int) -> list[str]:
        """The held broadcasts of ``room`` numbered above ``n``, in order."""
        return [text for k, text in self.held.get(room, ()) if k > n]

    def kick_now(self) -> bool:
        """Whether this broadcast is the one after which a member is kicked (once)."""
        return bool(self.kick_after) and self.total == self.kick_after


async def serve_ws(host: str, port: int, stall: Stall, numbering: Numbering | None = None) -> None:
    """The whole protocol over ``websockets``; with ``numbering``, numbered broadcasts and replay after a join's ``after``."""
    from websockets.asyncio.server import broadcast, serve

    rooms: dict[str, set[ServerConnection]] = defaultdict(set)
    kicks: set[asyncio.Task[None]] = set()

    async def handler(ws: ServerConnection) -> None:
        joined: list[str] = []
        try:
            async for raw in ws:
                stall.tick()
                try:
                    msg = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                op = msg.get("op")
                if op == protocol.OP_ECHO:
                    await ws.send(raw)  # the same object, unchanged
                elif op == protocol.OP_BROADCAST and numbering is not None:
                    room = str(msg.get("room"))
                    members = rooms.get(room, set())
                    broadcast(members, numbering.number(room, msg))
                    if numbering.kick_now():
                        others = [m for m in members if m is not ws]
                        if others:  # closed in a task of its own: the sender's messages keep flowing
                            kicks.add(task := asyncio.create_task(others[0].close()))
                            task.add_done_callback(kicks.discard)
                elif op == protocol.OP_BROADCAST:
                    broadcast(rooms.get(msg.get("room"), ()), raw)
                elif op == protocol.OP_JOIN and numbering is not None:
                    room = str(msg.get("room"))
                    joined.append(room)
                    # Joined, then the replay, then live broadcasts: no await in between, so none slips past in the gap.
                    after = msg.get("after")
                    frames = [orjson.dumps(protocol.joined_message(room)).decode()]
                    frames += numbering.after(room, after) if isinstance(after, int) else []
                    for frame in frames:
                        broadcast([ws], frame)
                    rooms[room].add(ws)
                elif op == protocol.OP_JOIN:
                    room = str(msg.get("room"))
                    rooms[room].add(ws)
                    joined.append(room)
                    await ws.send(orjson.dumps(protocol.joined_message(room)).decode())
        except Exception:  # a client vanishing mid-message is routine under load
            pass
        finally:
            for room in joined:
                rooms[room].discard(ws)

    async with serve(handler, host, port, compression=None, ping_interval=None, max_size=None) as server:
        _announce(server.sockets[0].getsockname()[1])
        await _until_signalled()


async def serve_socketio(host: str, port: int, stall: Stall) -> None:
    """The whole protocol as Socket.IO events, on aiohttp."""
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)

    @sio.on(protocol.OP_ECHO)
    async def echo(sid: str, data: Any) -> None:
        stall.tick()
        await sio.emit(protocol.OP_ECHO, data, to=sid)

    @sio.on(protocol.OP_JOIN)
    async def join(sid: str, data: Any) -> None:
        stall.tick()
        room = str(data.get("room"))
        await sio.enter_room(sid, room)
        await sio.emit(protocol.OP_JOINED, {"room": room}, to=sid)

    @sio.on(protocol.OP_BROADCAST)
    async def broadcast(sid: str, data: Any) -> None:
        stall.tick()
        await sio.emit(protocol.OP_BROADCAST, data, room=data.get("room"))

    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    _announce(runner.addresses[0][1])
    try:
        await _until_signalled()
    finally:
        await runner.cleanup()


class _RawEchoProtocol(asyncio.Protocol):
    """Handshake, then every text frame straight back: no JSON, no queue, one write per read."""

    def __init__(self, stall: Stall) -> None:
        self.stall = stall
        self.tr: asyncio.Transport  # set by connection_made, before any data arrives
        self.head = bytearray()
        self.open = False
        self.parser = FrameParser()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tr = cast(asyncio.Transport, transport)  # create_server gives stream transports

    def data_received(self, data: bytes) -> None:
        if not self.open:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.head[:end]).decode("latin-1").split("\r\n")
            data = bytes(self.head[end + 4 :])
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            key = headers.get("sec-websocket-key", "")
            accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
            self.tr.write(
                f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n".encode()
            )
            self.open = True
            if not data:
                return
        out = []
        for opcode, payload in self.parser.feed(data):
            if opcode == OP_TEXT:
                self.stall.tick()
                out.append(build_frame(payload, OP_TEXT, mask=False))
            elif opcode == OP_PING:
                out.append(build_frame(payload, OP_PONG, mask=False))
            elif opcode == OP_CLOSE:
                out.append(build_frame(payload[:2], OP_CLOSE, mask=False))
                self.tr.write(b"".join(out))
                self.tr.close()
                return
        if out:
            self.tr.write(b"".join(out))


async def serve_raw_echo(host: str, port: int, stall: Stall) -> None:
    """Echo only, at the lowest cost per message Python allows."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _RawEchoProtocol(stall), host, port, backlog=4096)
    _announce(server.sockets[0].getsockname()[1])
    try:
        await _until_signalled()
    finally:
        server.close()


_SERVERS = {"ws": serve_ws, "socketio": serve_socketio, "raw-echo": serve_raw_echo}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and serve until signalled."""
    ap = argparse.ArgumentParser(prog="python -m harness.load.reference_server", description=__doc__.splitlines()[0])
    ap.add_argument("--transport", choices=sorted(_SERVERS), default="ws")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--stall-after", type=int, default=0, help="stall once at this message (0: never)")
    ap.add_argument("--stall-ms", type=float, default=0.0)
    ap.add_argument("--numbered", action="store_true", help="ws: number broadcasts per room and replay after a join's 'after'")
    ap.add_argument("--replay-buffer", type=int, default=100_000, help="--numbered: broadcasts held per room for replay")
    ap.add_argument("--kick-after", type=int, default=0, help="--numbered: close one non-sending member once, after this broadcast")
    ap.add_argument("--no-uvloop", action="store_true")
    args = ap.parse_args(argv)
    stall = Stall(args.stall_after, args.stall_ms)
    if args.numbered and args.transport != "ws":
        ap.error("--numbered needs --transport ws")
    if args.kick_after and not args.numbered:
        ap.error("--kick-after needs --numbered")
    if args.numbered:
        coro = serve_ws(args.host, args.port, stall, Numbering(args.replay_buffer, args.kick_after))
    else:
        coro = _SERVERS[args.transport](args.host, args.port, stall)
    if args.no_uvloop:
        asyncio.run(coro)
    else:
        import uvloop

        uvloop.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
