"""Spike 7's cross-process relay: rooms served by several POC server processes, broadcasts carried through Redis.

``server.py --relay none|pubsub|stream`` (default ``none``: one process, nothing relayed). Each process has an
``--node`` name; every broadcast a process applies from one of its own clients is handed to :meth:`Relay.publish`
(after it was sent to the local members) and carried to the other processes, which apply it to their copy of
the room (``core.Room.apply``: idempotent by ``(c, seq)``), number it in their own log and send it to their own
members. A process skips what it published itself.

- ``pubsub``: ``PUBLISH s07relay:{room}``; every process ``PSUBSCRIBE s07relay:*``. At most once, as Redis pub/sub
  (and the Socket.IO Redis adapter on it) is: a publish that fails (Redis down) is dropped and counted
  (``relay_errors``); what is published while another process is not subscribed (between its reconnect
  attempts) reaches nobody there, and nothing says so.
- ``stream``: ``XADD s07relay:{room} *`` (trimmed to about ``maxlen``), one ordered publisher per process that
  retries a failed write (the entries wait in a bounded queue, :class:`Pending`; overflow: the oldest is dropped
  and counted); each process tails the rooms it holds with ``XREAD BLOCK`` from the last id it saw.
  Redis restarted *empty* loses the stream: entries written but not yet read by the other processes are gone,
  and a tail from an old id still works only because automatic ids are times (new ids sort after old ones).
  So each process keeps what it published in the last ``reseed_s`` seconds (:class:`Recent`) and a marker key
  of its own (``s07relay:alive:{node}``); a marker missing after a reconnect means Redis lost its data, and
  the process writes those recent entries again. The receivers drop the copies they had (``relay_dup``):
  at least once on the wire, once in the room.

Counters (in the server's ``state`` answer): ``relay_published`` (local broadcasts handed to the relay),
``relay_written`` (accepted by Redis), ``relay_received`` (remote broadcasts applied and delivered here, also
per origin in ``relay_received_from``), ``relay_dup`` (remote copies already applied), ``relay_errors`` (Redis
commands that failed), ``relay_dropped`` (publishes given up: pub/sub on error, stream on overflow),
``relay_reseeded`` (entries written again after Redis came back empty), ``relay_members_max``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["RELAYS", "Pending", "Recent", "Relay", "make_relay", "apply_remote", "PREFIX", "TRACK_MAX"]

RELAYS = ("none", "pubsub", "stream")
PREFIX = "s07relay:"
#: At most this many message ids kept per process for the scenario's exact count of cross-process losses.
TRACK_MAX = 200_000


class Pending:
    """Entries waiting for Redis, oldest first, at most ``max_len``; a full queue drops its oldest (counted)."""

    def __init__(self, max_len: int = 10_000) -> None:
        if max_len < 1:
            raise ValueError("the queue must hold at least one entry")
        self.max_len = max_len
        self.items: deque[tuple[str, str]] = deque()
        self.dropped = 0
        self.high_water = 0

    def put(self, room: str, data: str) -> None:
        if len(self.items) >= self.max_len:
            self.items.popleft()
            self.dropped += 1
        self.items.append((room, data))
        self.high_water = max(self.high_water, len(self.items))

    def peek(self) -> tuple[str, str] | None:
        return self.items[0] if self.items else None

    def pop(self) -> tuple[str, str]:
        return self.items.popleft()

    def __len__(self) -> int:
        return len(self.items)


class Recent:
    """What this process published in the last ``window_s`` seconds (at most ``max_len``): re-written after Redis lost it."""

    def __init__(self, window_s: float = 30.0, max_len: int = 10_000) -> None:
        self.window_s = window_s
        self.items: deque[tuple[float, str, str]] = deque(maxlen=max_len)

    def add(self, room: str, data: str, now: float | None = None) -> None:
        self.items.append((time.monotonic() if now is None else now, room, data))

    def since(self, now: float | None = None) -> list[tuple[str, str]]:
        """The entries still inside the window, oldest first (older ones are forgotten)."""
        now = time.monotonic() if now is None else now
        while self.items and now - self.items[0][0] > self.window_s:
            self.items.popleft()
        return [(room, data) for _, room, data in self.items]


async def apply_remote(hub: Any, msg: dict[str, Any]) -> bool:
    """Apply a broadcast another process published: to this process's room, its log (numbered here) and members.

    Returns False when the room had it already (a copy). Under the room's lock, as a local broadcast: members see
    the log's order. The store write of the numbered strategies is left to the process that published it (its
    own store, its own numbers)."""
    name, c, seq, t = msg.get("room"), msg.get("c"), msg.get("seq"), msg.get("t")
    if not isinstance(name, str) or not all(isinstance(v, int) and not isinstance(v, bool) for v in (c, seq, t)):
        return False
    if name not in hub.rooms:
        hub._create(name)
    async with hub.locks.setdefault(name, asyncio.Lock()):
        if not hub.rooms[name].apply(c, seq, t):
            return False
        out = {"op": "broadcast", "room": name, "seq": seq, "t": t, "c": c, "d": msg.get("d", "")}
        if hub.numbered:
            hub.logs[name].append(out)
        data = json.dumps(out)
        for member in hub.members[name]:
            member.put(data)
    return True


class Relay:
    """The relay of one process: ``publish`` (from the broadcast hook) and a background task that delivers."""

    kind = "none"

    def __init__(self, hub: Any, redis: Any, node: str, *, maxlen: int = 10_000, queue_max: int = 10_000, reseed_s: float = 30.0) -> None:
        self.hub = hub
        self.redis = redis
        self.node = node
        self.maxlen = maxlen
        self.pending = Pending(queue_max)
        self.recent = Recent(reseed_s, queue_max)
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.counters = hub.counters
        for k in ("published", "written", "received", "dup", "errors", "dropped", "reseeded", "members_max", "queue_high_water"):
            self.counters[f"relay_{k}"] = 0
        self.counters["relay_received_from"] = {}
        # Which messages: ``[room, c, seq]`` published from here, and applied here from another process (at most
        # TRACK_MAX each): a scenario computes the cross-process deliveries lost from them exactly.
        self.own: list[list[Any]] = []
        self.got: list[list[Any]] = []
        self.counters["relay_own"] = self.own
        self.counters["relay_got"] = self.got
        self.counters["relay_error_kinds"] = {}

    def publish(self, room: str, out: dict[str, Any]) -> None:
        """Hand a local broadcast to the relay (called under the room's lock, after the local members got it)."""
        self.counters["relay_published"] += 1
        if len(self.own) < TRACK_MAX:
            self.own.append([room, out.get("c"), out.get("seq")])
        members = len(self.hub.members.get(room, ()))
        self.counters["relay_members_max"] = max(self.counters["relay_members_max"], members)
        self.pending.put(room, json.dumps({"o": self.node, "m": out}))
        self.counters["relay_dropped"] = self.pending.dropped + getattr(self, "given_up", 0)
        self.counters["relay_queue_high_water"] = self.pending.high_water
        self.wake.set()

    def _error(self, exc: BaseException) -> None:
        self.counters["relay_errors"] += 1
        kinds = self.counters["relay_error_kinds"]
        kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1

    async def deliver(self, raw: bytes | str) -> None:
        try:
            env = json.loads(raw)
            origin, msg = env["o"], env["m"]
        except (ValueError, KeyError, TypeError):
            return
        if origin == self.node:
            return
        if await apply_remote(self.hub, msg):
            self.counters["relay_received"] += 1
            if len(self.got) < TRACK_MAX:
                self.got.append([msg.get("room"), msg.get("c"), msg.get("seq")])
            by = self.counters["relay_received_from"]
            by[origin] = by.get(origin, 0) + 1
        else:
            self.counters["relay_dup"] += 1

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._publisher()), loop.create_task(self._receiver())]

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(BaseException):
                await t

    async def _publisher(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def _receiver(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class PubSubRelay(Relay):
    """At most once: ``PUBLISH`` in order; a publish that fails is dropped; ``PSUBSCRIBE`` again after a drop."""

    kind = "pubsub"
    given_up = 0

    async def _publisher(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while (item := self.pending.peek()) is not None:
                room, data = item
                try:
                    await self.redis.publish(PREFIX + room, data)
                    self.counters["relay_written"] += 1
                except Exception as exc:
                    self._error(exc)
                    self.given_up += 1
                self.pending.pop()
                self.counters["relay_dropped"] = self.pending.dropped + self.given_up

    async def _receiver(self) -> None:
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(PREFIX + "*")
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "pmessage":
                        await self.deliver(msg["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._error(exc)
                await asyncio.sleep(0.1)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()


class StreamRelay(Relay):
    """Ordered, retried ``XADD``; ``XREAD BLOCK`` from the last id seen; recent entries written again after Redis lost them."""

    kind = "stream"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_ids: dict[str, bytes] = {}
        self.marker = f"{PREFIX}alive:{self.node}"
        self.marked = False
        self.reseed_lock = asyncio.Lock()

    async def _ensure_marker(self) -> None:
        """Set our marker once; when it is gone (Redis restarted empty), write our recent entries again first."""
        async with self.reseed_lock:
            await self._ensure_marker_locked()

    async def _ensure_marker_locked(self) -> None:
        if not self.marked:
            await self.redis.set(self.marker, "1")
            self.marked = True
            return
        if await self.redis.exists(self.marker):
            return
        recent = self.recent.since()
        queued = set(self.pending.items)
        for room, data in recent:
            if (room, data) in queued:
                continue  # still queued: it goes in order below
            await self.redis.xadd(PREFIX + room, {"d": data}, maxlen=self.maxlen, approximate=True)
            self.counters["relay_reseeded"] += 1
        await self.redis.set(self.marker, "1")

    async def _publisher(self) -> None:
        failing = False
        while True:
            if not failing:
                await self.wake.wait()
                self.wake.clear()
            try:
                if failing:
                    await self._ensure_marker()
                while (item := self.pending.peek()) is not None:
                    room, data = item
                    await self.redis.xadd(PREFIX + room, {"d": data}, maxlen=self.maxlen, approximate=True)
                    self.pending.pop()
                    self.recent.add(room, data)
                    self.counters["relay_written"] += 1
                if not self.marked:
                    await self._ensure_marker()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._error(exc)
                failing = True
                self.counters["relay_dropped"] = self.pending.dropped
                await asyncio.sleep(0.1)

    async def _receiver(self) -> None:
        while True:
            rooms = list(self.hub.rooms)
            if not rooms:
                await asyncio.sleep(0.05)
                continue
            streams = {PREFIX + r: self.last_ids.get(r, b"0-0") for r in rooms}
            try:
                got = await self.redis.xread(streams, block=500, count=1000)
                if self.marked and not await self.redis.exists(self.marker):
                    self.wake.set()  # Redis came back empty: let the publisher re-seed even if nothing is queued
                    self._reseed_needed()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._error(exc)
                await asyncio.sleep(0.1)
                continue
            for key, entries in got or []:
                room = (key.decode() if isinstance(key, bytes) else key)[len(PREFIX) :]
                for entry_id, fields in entries:
                    self.last_ids[room] = entry_id if isinstance(entry_id, bytes) else str(entry_id).encode()
                    await self.deliver(fields[b"d"])

    def _reseed_needed(self) -> None:
        # The publisher only re-seeds on its failure path; a process that published nothing during the outage
        # learns of the empty Redis here.
        task = asyncio.get_running_loop().create_task(self._reseed_now())
        self.tasks.append(task)

    async def _reseed_now(self) -> None:
        with contextlib.suppress(Exception):
            await self._ensure_marker()


def make_relay(kind: str, hub: Any, redis: Any, node: str, **kwargs: Any) -> Relay | None:
    """The relay for ``--relay KIND`` (None for ``none``)."""
    if kind == "none":
        return None
    cls: Callable[..., Relay] = {"pubsub": PubSubRelay, "stream": StreamRelay}[kind]
    return cls(hub, redis, node, **kwargs)
