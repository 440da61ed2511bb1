"""A test-only feed server speaking the HTTP feed protocol (``harness.feed``), able to misbehave on purpose.

It runs on aiohttp in a thread of the test process, on a loopback port
chosen by the kernel, so a test can look at what it did (``stats``) and
make it drop a connection or restart mid-run:

- ``kick_after=N``: after the N-th broadcast, close one member's stream
  (SSE) or one held poll (long polling), the last to come, by
  aborting its TCP connection (``kick_mode="close"``) or answering the poll
  with 503 (``kick_mode="status"``);
- ``restart_after=N``: after the N-th broadcast, stop (every connection
  dropped, the port closed for ``down_s``) and start again on the same
  port with no history and every room's numbering back at 0, as a server
  process that was restarted;
  (a new epoch too, unless ``epoch=False``);
- ``refill=K``: on each restart, before the port opens again, the new
  server numbers K broadcasts of a foreign sender (``c`` =
  :data:`REFILL_SENDER`) in every room the old one had: a restarted
  server that has numbered past the clients' resume points by the time
  they are back;
- ``history``: broadcasts held per room (older resume points get a reset);
- ``epoch``: whether the server has an epoch (``e`` in every numbered
  message, ids and cursors ``E-N``, a reset with reason ``epoch`` for
  another epoch's resume point); ``False``: a server from before the
  epoch, for the clients' fallback to a plain ``N``.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

__all__ = ["FeedServer", "Stats", "REFILL_SENDER"]

_POINT = re.compile(r"(?:([0-9A-Za-z_]{1,32})-)?([0-9]+)")
#: The ``c`` of the broadcasts ``refill`` numbers (no client of a run has it).
REFILL_SENDER = 1_000_000
_FIELDS = {"room": str, "seq": int, "t": int, "c": int, "d": str}


@dataclass
class Stats:
    """What the server did, over all its lives."""

    accepted: int = 0  # broadcasts numbered
    bad_requests: int = 0  # 400 answers
    resets: list[tuple[str, int, int, str]] = field(default_factory=list)  # (room, resume point, HEAD, reason)
    kicked: int = 0
    restarts: int = 0
    heads_before_restart: list[int] = field(default_factory=list)  # the room's HEAD when each restart came
    epochs: list[str] = field(default_factory=list)  # each life's epoch, in order
    streams: int = 0
    polls: int = 0


class _Room:
    def __init__(self, history: int) -> None:
        self.head = 0
        self.held: deque[tuple[int, dict[str, Any]]] = deque(maxlen=history)
        self.streams: dict[asyncio.Queue[Any], None] = {}  # SSE members' queues, in the order they came
        self.changed = asyncio.Event()


def _error(text: str, status: int = 400) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"op": "error", "error": text}), content_type="application/json")


class FeedServer:
    """The feed protocol over aiohttp, in a background thread; ``with FeedServer() as server: server.port``."""

    def __init__(
        self,
        *,
        history: int = 1000,
        keepalive_s: float = 15.0,
        hold_cap_s: float = 30.0,
        kick_after: int = 0,
        kick_mode: str = "close",
        restart_after: int = 0,
        down_s: float = 0.05,
        refill: int = 0,
        epoch: bool = True,
    ) -> None:
        self.history = history
        self.keepalive_s = keepalive_s
        self.hold_cap_s = hold_cap_s
        self.kick_after = kick_after
        self.kick_mode = kick_mode
        self.restart_after = restart_after
        self.down_s = down_s
        self.refill = refill
        self.with_epoch = epoch
        self.epoch: str | None = None
        self.stats = Stats()
        self._new_epoch()
        self.port = 0
        self.rooms: dict[str, _Room] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="feed-server", daemon=True)
        self._runner: web.AppRunner | None = None
        self._requests: dict[int, web.Request] = {}  # open streams and held polls, by id (a Request is not hashable)
        self._polls: dict[int, web.Request] = {}  # held polls, in the order they came
        self._kicked: set[int] = set()  # held polls to answer with 503
        self._tasks: set[asyncio.Task[None]] = set()

    # -- life -------------------------------------------------------------------------------
    def __enter__(self) -> FeedServer:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _new_epoch(self) -> None:
        self.epoch = secrets.token_hex(4) if self.with_epoch else None
        self.stats.epochs.append(self.epoch or "")

    def point(self, n: int) -> str:
        """``n`` as this life's resume point text: ``E-N``, or ``N`` without an epoch."""
        return str(n) if self.epoch is None else f"{self.epoch}-{n}"

    def _stamp(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.epoch is not None:
            msg["e"] = self.epoch
        return msg

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restart(self) -> None:
        """Stop and start again on the same port, with no history (from the test's thread)."""
        self._call(self._restart())

    def kick(self, room: str) -> None:
        """Drop a member of ``room`` now (from the test's thread), as ``kick_after`` does."""

        async def kick() -> None:
            self._kick(self._room(room))

        self._call(kick())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/send", self._send)
        app.router.add_get("/sse", self._sse)
        app.router.add_get("/poll", self._poll)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        for request in list(self._requests.values()):
            if request.transport is not None:
                request.transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _shutdown(self) -> None:
        await self._stop()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _restart(self) -> None:
        self.stats.restarts += 1
        self.stats.heads_before_restart.append(max((r.head for r in self.rooms.values()), default=0))
        await self._stop()
        names = list(self.rooms)
        self.rooms = {}
        self._new_epoch()
        for name in names if self.refill else ():
            for seq in range(self.refill):
                self._number(self._room(name), {"op": "broadcast", "room": name, "seq": seq, "t": 0, "c": REFILL_SENDER, "d": "refill"})
        await asyncio.sleep(self.down_s)
        await self._start()

    def _room(self, name: str) -> _Room:
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = _Room(self.history)
        return room

    def _later(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the protocol -----------------------------------------------------------------------
    def _resume(self, room: _Room, name: str, text: str | None) -> tuple[list[dict[str, Any]], web.Response | None]:
        """What a client resuming after ``text`` gets before live events: the replay, or a reset; or a 400."""
        if text is None:
            return [], None
        m = _POINT.fullmatch(text)
        if m is None:
            self.stats.bad_requests += 1
            return [], _error(f"bad resume point {text[:40]!r}: expected E-N or a non-negative integer")
        epoch, after = m.group(1), int(m.group(2))
        oldest = room.held[0][0] if room.held else room.head + 1
        reason = "future" if after > room.head else "history" if after < room.head and oldest > after + 1 else ""
        if epoch is not None and epoch != self.epoch:
            reason = "epoch"
        if reason:
            self.stats.resets.append((name, after, room.head, reason))
            return [self._stamp({"op": "reset", "room": name, "n": room.head, "reason": reason})], None
        return [msg for n, msg in room.held if n > after], None

    async def _send(self, request: web.Request) -> web.Response:
        try:
            msg = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict) or msg.get("op") != "broadcast":
            self.stats.bad_requests += 1
            return _error("expected a JSON object with op 'broadcast'")
        for name, kind in _FIELDS.items():
            value = msg.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                self.stats.bad_requests += 1
                return _error(f"field {name!r} must be {kind.__name__}")
        room = self._room(msg["room"])
        self._number(room, msg)
        self.stats.accepted += 1
        if self.kick_after and self.stats.accepted == self.kick_after:
            self._kick(room)
        if self.restart_after and self.stats.accepted == self.restart_after:
            self._later(self._restart())
        return web.Response(
            body=orjson.dumps(self._stamp({"op": "ack", "c": msg["c"], "seq": msg["seq"], "n": msg["n"]})), content_type="application/json"
        )

    def _number(self, room: _Room, msg: dict[str, Any]) -> None:
        room.head += 1
        msg["n"] = room.head
        self._stamp(msg)
        room.held.append((room.head, msg))
        for queue in room.streams:
            queue.put_nowait(msg)
        room.changed.set()
        room.changed = asyncio.Event()

    def _kick(self, room: _Room) -> None:
        """Drop the member that came last: its SSE stream, or its held poll (all of them were just woken)."""
        self.stats.kicked += 1
        if room.streams:
            list(room.streams)[-1].put_nowait("kick")
            return
        if self._polls:
            request = list(self._polls.values())[-1]
            if self.kick_mode == "status":
                self._kicked.add(id(request))  # answered with 503 when it wakes, which the broadcast just made it do
            elif request.transport is not None:
                request.transport.abort()

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        name = request.query.get("room")
        if not name:
            self.stats.bad_requests += 1
            return _error("room is required")
        room = self._room(name)
        text = request.headers.get("Last-Event-ID", request.query.get("last_event_id"))
        first, bad = self._resume(room, name, text)
        if bad is not None:
            return bad
        self.stats.streams += 1
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for msg in first:
            queue.put_nowait(msg)
        head = room.head
        room.streams[queue] = None  # registered before any await: nothing numbered from here on is missed
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self._requests[id(request)] = request
        try:
            await resp.prepare(request)
            joined = self._stamp({"op": "joined", "room": name, "n": head})
            await resp.write(b"event: joined\ndata: " + orjson.dumps(joined) + b"\n\n")
            while True:
                try:
                    msg = await asyncio.wait_for(queue.get(), self.keepalive_s)
                except TimeoutError:
                    await resp.write(b": ka\n\n")
                    continue
                if msg == "kick":
                    if request.transport is not None:
                        request.transport.abort()
                    return resp
                if msg.get("op") == "reset":
                    await resp.write(b"event: reset\nid: %s\ndata: %s\n\n" % (self.point(msg["n"]).encode(), orjson.dumps(msg)))
                else:
                    await resp.write(b"id: %s\ndata: %s\n\n" % (self.point(msg["n"]).encode(), orjson.dumps(msg)))
        except (ConnectionResetError, asyncio.CancelledError):
            return resp
        finally:
            room.streams.pop(queue, None)
            self._requests.pop(id(request), None)

    async def _poll(self, request: web.Request) -> web.Response:
        self.stats.polls += 1
        name = request.query.get("room")
        if not name:
            self.stats.bad_requests += 1
            return _error("room is required")
        room = self._room(name)
        text = request.query.get("cursor")
        if text is None:
            joined = self._stamp({"op": "joined", "room": name, "n": room.head})
            return web.json_response({**joined, "events": [], "cursor": self.point(room.head)})
        try:
            hold = min(float(request.query.get("hold_s", "20")), self.hold_cap_s)
        except ValueError:
            self.stats.bad_requests += 1
            return _error("hold_s must be a number of seconds")
        first, bad = self._resume(room, name, text)
        if bad is not None:
            return bad
        if first and first[0].get("op") == "reset":
            return web.Response(body=orjson.dumps({"events": first, "cursor": self.point(room.head)}), content_type="application/json")
        after = int(text.rpartition("-")[2])
        self._requests[id(request)] = self._polls[id(request)] = request
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + hold
            while not first and (left := deadline - loop.time()) > 0:
                try:
                    await asyncio.wait_for(room.changed.wait(), left)
                except TimeoutError:
                    break
                if id(request) in self._kicked:
                    return _error("kicked", 503)
                first = [msg for n, msg in room.held if n > after]
        finally:
            self._polls.pop(id(request), None)
            self._requests.pop(id(request), None)
            self._kicked.discard(id(request))
        cursor = first[-1]["n"] if first else after
        return web.Response(body=orjson.dumps({"events": first, "cursor": self.point(cursor)}), content_type="application/json")
