"""Spike 4's WebSocket feed server: ``websockets``, the load protocol with numbered broadcasts and resume.

Run: ``python -m spikes.s04_transport.poc.ws_server --host 127.0.0.1 --port N
[--history H] [--keepalive-s K] [--static DIR]``; prints ``READY port=<n>``.

``ws://host:port/ws`` (``/`` too, the load engine's default) speaks
``harness/load/protocol.py`` as ``harness/load/reference_server.py --numbered``
does, on the feed's room model (``feed.py``): ``join`` (with ``"after": N`` and
``"epoch": E`` to resume) is answered ``{"op": "joined", "room": R, "n": S, "e":
E}`` (S: where the view starts, the head for a new member, N for a resuming one;
E: this server's epoch), then every held broadcast after N, then live ones; a
resume point the history cannot honour, or of another epoch, adds ``{"op":
"reset", ...}`` after ``joined``, and one that is not a non-negative integer (or
an epoch that is not 1 to 32 letters, digits or ``_``) gets ``{"op": "error",
...}`` and close 1008. A join with ``"after"`` and no ``"epoch"`` (the load
engine's ``last-seq`` adapter) keeps the old rules: it cannot see a restart unless
N > HEAD; ``"epoch"`` without ``"after"`` says nothing (it is checked, then ignored). A
``broadcast`` is numbered (``n``, with ``e``), delivered to every member of its
room (the sender too, if a member) and acknowledged to its sender with ``{"op":
"ack", "c", "seq", "n", "e"}`` (what ``POST /send`` answers on the HTTP servers; a
publisher need not be a member). ``echo``
comes back unchanged. Any other message gets ``{"op": "error", ...}`` and the
connection stays open; a frame over ``--max-bytes`` is closed 1009 and invalid
UTF-8 1007 by websockets.

Everything a connection is sent goes through its one outbox (``feed.Subscriber``)
and one writer task, so answers and live broadcasts keep their order; a
connection ``--queue`` events behind is closed 1013 (try again later) and
resumes. Pings every ``--keepalive-s`` (like SSE's ``: ka``). ``GET /health``
answers over plain HTTP on the same port; ``--static DIR`` is served at
``/static/``.

:class:`Session` is the protocol on one connection without the socket, so
``all.py`` can run it over aiohttp's WebSocket too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import mimetypes
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from spikes.s04_transport.poc import common
from spikes.s04_transport.poc.feed import (
    SHUTDOWN,
    Feed,
    ProtocolError,
    Subscriber,
    ack_message,
    error_message,
    parse_epoch,
    parse_resume,
    validate_broadcast,
    validate_room,
)

__all__ = ["Session", "pump", "serve_ws", "main", "MAX_ROOMS_PER_CONNECTION", "CLOSE_BAD_RESUME", "CLOSE_SLOW"]

#: Rooms one connection may join (a client could otherwise join every room of the server).
MAX_ROOMS_PER_CONNECTION = 64
CLOSE_BAD_RESUME = 1008  # policy violation: the protocol's answer to a malformed resume point
CLOSE_GOING_AWAY = 1001
CLOSE_SLOW = 1013  # try again later: the client is dropped for lagging and should reconnect and resume
_WS_PATHS = ("/ws", "/")
_log = logging.getLogger("s04.ws")


def _text(msg: dict[str, Any]) -> str:
    return orjson.dumps(msg).decode()


class Session:
    """The feed protocol on one connection: each message in, its answers into the connection's outbox."""

    def __init__(self, feed: Feed, on_drop: Callable[[str], None] | None = None, peer: object = None) -> None:
        self.feed = feed
        self.sub: Subscriber = feed.subscriber(on_drop)
        self.peer = peer  # who, for the log

    def _error(self, reason: str) -> None:
        _log.info("ws error to %s: %s", self.peer, reason)
        self.sub.offer(0, _text(error_message(reason)))

    def handle(self, raw: str | bytes) -> tuple[int, str] | None:
        """Answer one message; return ``(code, reason)`` when the connection must close after its answers."""
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self._error(f"not JSON ({str(exc)[:80]})")
            return None
        if not isinstance(msg, dict):
            self._error(f"expected a JSON object, got {'null' if msg is None else type(msg).__name__}")
            return None
        op = msg.get("op")
        if op == "echo":
            self.sub.offer(0, raw if isinstance(raw, str) else _text(msg))
        elif op == "broadcast":
            try:
                validate_broadcast(msg)
                n = self.feed.publish(msg)
            except ProtocolError as exc:
                self._error(str(exc))
            else:
                self.sub.offer(0, _text(ack_message(msg["c"], msg["seq"], n, self.feed.epoch)))
        elif op == "join":
            return self._join(msg)
        elif isinstance(op, str):
            self._error(f"unknown op {op[:40]!r}")
        else:
            self._error(f"op must be a string, not {'null' if op is None else type(op).__name__}")
        return None

    def _join(self, msg: dict[str, Any]) -> tuple[int, str] | None:
        try:
            room = validate_room(msg.get("room"))
            if room not in self.sub.rooms and len(self.sub.rooms) >= MAX_ROOMS_PER_CONNECTION:
                raise ProtocolError(f"a connection may join {MAX_ROOMS_PER_CONNECTION} rooms at most")
        except ProtocolError as exc:
            self._error(str(exc))
            return None
        try:
            after = parse_resume(msg["after"], text=False) if "after" in msg else None
            if after is None and "after" in msg:
                raise ProtocolError("resume point must be a non-negative integer, not null")
            epoch = parse_epoch(msg.get("epoch"))
        except ProtocolError as exc:
            self._error(str(exc))
            return CLOSE_BAD_RESUME, "bad resume point"
        try:
            resume = self.feed.join(self.sub, room, after, epoch)
        except ProtocolError as exc:  # the server holds too many rooms
            self._error(str(exc))
            return None
        # joined, the reset or the replay, then live broadcasts: all queued here, with no await between.
        self.sub.push(0, _text(resume.joined()))
        if (reset := resume.reset_msg()) is not None:
            _log.info("ws %s to %s: reset (%s) at %d", room, self.peer, resume.reset, resume.start)
            self.sub.push(0, _text(reset))
        for n, text in resume.replay:
            self.sub.push(n, text)
        return None

    def close(self) -> None:
        self.feed.leave(self.sub)


async def pump(sub: Subscriber, send: Callable[[str], Awaitable[Any]]) -> None:
    """The connection's one writer: everything its outbox gets, in order, until it is dropped or the socket closes."""
    with contextlib.suppress(ConnectionClosed, ConnectionError):
        while sub.dropped is None:
            await sub.wake.wait()
            for _, text in sub.take():
                await send(text)


def _static_response(conn: ServerConnection, root: Path, path: str) -> Response:
    rel = path[len("/static/") :].split("?", 1)[0]
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()) or not target.is_file():
        return conn.respond(404, "not found\n")
    body = target.read_bytes()
    ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
    return Response(200, "OK", headers, body)


async def serve_ws(feed: Feed, args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Serve the protocol until ``stop``; then drop every subscriber and close every connection (1001)."""
    log = _log

    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/health":
            return conn.respond(200, _text(feed.stats()))
        if args.static is not None and path.startswith("/static/"):
            return _static_response(conn, args.static, path)
        if path not in _WS_PATHS:
            return conn.respond(404, "not found\n")
        return None

    async def handler(ws: ServerConnection) -> None:
        closing: set[asyncio.Task[None]] = set()

        def on_drop(reason: str) -> None:
            log.info("ws %s dropped: %s", ws.remote_address, reason)
            code = CLOSE_GOING_AWAY if reason == SHUTDOWN else CLOSE_SLOW
            closing.add(asyncio.get_running_loop().create_task(ws.close(code, reason[:100])))

        session = Session(feed, on_drop, ws.remote_address)
        writer = asyncio.create_task(pump(session.sub, ws.send))
        try:
            async for raw in ws:
                action = session.handle(raw)
                if action is not None:
                    writer.cancel()
                    for _, text in session.sub.take():  # the answers, the error above all, before the close
                        await ws.send(text)
                    log.info("ws %s closed %d: %s", ws.remote_address, *action)
                    await ws.close(*action)
                    break
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
            session.close()
            if closing:
                await asyncio.gather(*closing, return_exceptions=True)

    async with serve(
        handler,
        args.host,
        args.port,
        process_request=process_request,
        compression=None,  # as the SSE and long-poll bodies: no compression on any transport
        max_size=args.max_bytes,
        ping_interval=args.keepalive_s,
        ping_timeout=args.keepalive_s,
        backlog=4096,
    ) as server:
        log.info("feed epoch %s", feed.epoch)
        print(f"READY port={server.sockets[0].getsockname()[1]}", flush=True)
        await stop.wait()
    feed.close()  # after websockets closed every connection with 1001 (going away)


def main(argv: Sequence[str] | None = None) -> int:
    args = common.parse(common.parser("python -m spikes.s04_transport.poc.ws_server", __doc__.splitlines()[0]), argv)
    common.setup_logging(args)  # websockets' line per connection is off: it would cost more than the feed under load

    async def run() -> None:
        stop = asyncio.Event()
        common.on_signal_stop(stop)
        await serve_ws(common.feed_from(args), args, stop)

    common.run_loop(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
