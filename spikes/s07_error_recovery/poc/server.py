"""Spike 7's POC server: the tabletop rooms on Python ``websockets``, with one recovery strategy (``--strategy``).

Speaks the load engine's protocol (``harness.load.protocol``): ``join`` (with ``after`` to resume), ``broadcast``
(applied to the room's state, ``core.Room``, then sent to every member), plus ``{"op": "state", "room": r}``,
answered with the room's state hash and counters (what the scenarios compare replicas against).

- ``reconnect``: broadcasts to the members present; nothing numbered, nothing replayed.
- ``queue``: an explicit ``ack`` for every broadcast (``{"op": "ack", "c", "seq"}``); a message applied before
  (same ``c`` and ``seq``: a client's outbox sending it again) is acknowledged again and not broadcast twice.
- ``reconstruct``: every broadcast numbered (``n``) in the room's log (in memory, bounded by ``--log-len`` and
  ``--log-age``; with ``--redis``, also a Redis stream per room, ``XADD`` before the broadcast, trimmed to about
  ``--log-len``, from which a restarted server rebuilds the room); a join with ``after`` gets every entry since,
  or, when the log no longer holds them, a full ``snapshot`` (counted).
- ``queue-reconstruct``: both.
- ``fallback``: queuing plus reconstruction that keeps serving while Redis is down: a stream write that fails goes
  into a write-behind queue (at most 10,000 entries; when full, new broadcasts are refused with a ``read-only``
  error and not acknowledged, so clients' outboxes keep them), drained in order once Redis answers; a stream that
  Redis lost is re-seeded from the memory log first.
- ``checkpoint``: both, plus a snapshot of every room that moved written to PostgreSQL every ``--checkpoint-every``
  seconds (one row a room: its number ``n`` and its state); a restarted server rebuilds a room from its checkpoint
  plus the stream's entries after ``n``.

A malformed resume (``after`` negative, not an integer, past the room's head, or into a room that does not
exist) gets an ``error`` frame and a close code (``core.CLOSE_CODES``); other bad input gets an ``error`` frame.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import deque
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from spikes.s07_error_recovery import core

MAX_MESSAGE_BYTES = 64 * 1024


class Outbound:
    """A connection's outgoing frames, written by a task of its own: a broadcast never waits for a slow member."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._write())

    def put(self, data: str) -> None:
        self.queue.put_nowait(data)

    async def _write(self) -> None:
        while (data := await self.queue.get()) is not None:
            try:
                await self.ws.send(data)
            except ConnectionClosed:
                return

    async def close(self) -> None:
        self.queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 5)


class Hub:
    """Every room of this process, its members and its log."""

    def __init__(self, strategy: str, log_len: int, log_age: float, redis: Any = None, pg: Any = None) -> None:
        self.strategy = strategy
        self.acks = strategy.startswith("queue") or strategy in ("checkpoint", "fallback")
        self.numbered = strategy.endswith("reconstruct") or strategy in ("checkpoint", "fallback")
        self.fallback = strategy == "fallback"
        self.queue_max = 10_000
        self.behind: deque[tuple[str, int, str]] = deque()  # fallback: (room, n, entry) not yet in Redis, in order
        self.down_since: float | None = None
        self.pg = pg
        self.checkpointed: dict[str, int] = {}  # room -> the n of its last checkpoint
        self.log_len = log_len
        self.log_age = log_age
        self.redis = redis
        self.rooms: dict[str, core.Room] = {}
        self.logs: dict[str, core.RoomLog] = {}
        self.members: dict[str, set[Outbound]] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.load_locks: dict[str, asyncio.Lock] = {}
        self.hooks: list[Any] = []  # called (room, broadcast) after each broadcast: relay.py, chat_store.py
        self.counters = {
            "snapshots": 0,
            "duplicates_dropped": 0,
            "store_errors": 0,
            "rebuilt_entries": 0,
            "rebuild_ms": 0.0,
            "checkpoints": 0,
            "checkpoint_errors": 0,
            "rebuilt_from_checkpoint": 0,
            "queue_high_water": 0,
            "refused_read_only": 0,
            "drain_ms": 0.0,
            "reseeded": 0,
        }

    async def load(self, name: str) -> bool:
        """Make sure room ``name`` is here: from the Redis stream if it is there (a restarted server); False if unknown.

        One load of a room at a time: two members joining a new room together each awaited the stream, then each created
        the room, the second replacing the first's members (only the last joiner stayed a member)."""
        if name in self.rooms:
            return True
        if self.redis is None or not self.numbered:
            return False
        async with self.load_locks.setdefault(name, asyncio.Lock()):
            return name in self.rooms or await self._load(name)

    async def _load(self, name: str) -> bool:
        t0 = time.perf_counter()
        checkpoint = None
        if self.pg is not None:
            try:
                checkpoint = await self.pg.fetchrow("SELECT n, state FROM s07_checkpoints WHERE room = $1", name)
            except Exception:
                self.counters["checkpoint_errors"] += 1
        try:
            entries = await self.redis.xrange(f"s07:{name}")
        except Exception:
            self.counters["store_errors"] += 1
            entries = []
        if not entries and checkpoint is None:
            return False
        room, log = self._create(name)
        base = 0
        if checkpoint is not None:
            base = checkpoint["n"]
            room = self.rooms[name] = core.Room.restore(name, json.loads(checkpoint["state"]))
            log.head = base
            self.checkpointed[name] = base
            self.counters["rebuilt_from_checkpoint"] += 1
        for entry_id, fields in entries:
            msg = json.loads(fields[b"m"])
            n = int(entry_id.split(b"-")[0])
            if n > base:  # older entries are in the checkpoint already
                room.apply(msg["c"], msg["seq"], msg["t"])
            # The log keeps what the stream still holds, for clients resuming from before the checkpoint.
            if n > log.head or not log.entries:
                log.head = n - 1
                log.append(msg)
        log.head = max(log.head, base)  # a stream emptier than the checkpoint (Redis lost it) leaves a hole, not a rewind
        self.counters["rebuilt_entries"] += len(entries)
        self.counters["rebuild_ms"] += (time.perf_counter() - t0) * 1000
        return True

    def _create(self, name: str) -> tuple[core.Room, core.RoomLog]:
        room = self.rooms[name] = core.Room(name)
        log = self.logs[name] = core.RoomLog(self.log_len, self.log_age)
        self.members[name] = set()
        return room, log

    async def checkpoint_loop(self, every_s: float) -> None:
        """Every ``every_s``: each room that moved since its last checkpoint is written to PostgreSQL (one row a room)."""
        while True:
            await asyncio.sleep(every_s)
            await self.checkpoint_all()

    async def checkpoint_all(self) -> None:
        for name, log in list(self.logs.items()):
            if log.head <= self.checkpointed.get(name, 0):
                continue
            async with self.locks.setdefault(name, asyncio.Lock()):  # a consistent cut: no broadcast half applied
                n, state = log.head, json.dumps(self.rooms[name].checkpoint())
            for attempt in range(2):  # asyncpg: a pooled connection may be dead after a PostgreSQL restart (asyncpg#447)
                try:
                    await self.pg.execute(
                        "INSERT INTO s07_checkpoints (room, n, state, at) VALUES ($1, $2, $3, now()) "
                        "ON CONFLICT (room) DO UPDATE SET n = EXCLUDED.n, state = EXCLUDED.state, at = EXCLUDED.at",
                        name,
                        n,
                        state,
                    )
                except Exception:
                    if attempt:
                        self.counters["checkpoint_errors"] += 1
                    continue
                self.checkpointed[name] = n
                self.counters["checkpoints"] += 1
                break

    def heads(self) -> dict[str, int]:
        return {name: log.head for name, log in self.logs.items()}

    async def join(self, out: Outbound, msg: dict[str, Any], joined: set[str]) -> None:
        name = msg.get("room")
        if isinstance(name, str) and "after" in msg:
            await self.load(name)
        room_name, after = core.parse_resume(msg, self.heads())
        if room_name not in self.rooms:
            if not await self.load(room_name) and room_name not in self.rooms:  # no await between this check and the creation
                self._create(room_name)
        # Under the room's lock, as every broadcast: no live message slips between the replay and membership
        # (it would arrive twice, or out of order).
        async with self.locks.setdefault(room_name, asyncio.Lock()):
            self.members[room_name].add(out)
            joined.add(room_name)
            log = self.logs[room_name]
            if not self.numbered:
                out.put(json.dumps({"op": "joined", "room": room_name}))
                return
            # ``n``: the number this member's view starts after (the head for a new member), so that a member that
            # saw no broadcast before a drop still resumes from here rather than missing what came meanwhile.
            out.put(json.dumps({"op": "joined", "room": room_name, "n": log.head if after is None else after}))
            if after is None:
                return
            try:
                missed = log.since(after)
            except core.Gap:
                self.counters["snapshots"] += 1
                room = self.rooms[room_name]
                out.put(json.dumps({"op": "snapshot", "room": room_name, "n": log.head, "hash": room.state_hash(), "state": room.state()}))
                return
            for m in missed:
                out.put(json.dumps(m))

    async def broadcast(self, sender: Outbound, msg: dict[str, Any], joined: set[str]) -> None:
        name, c, seq, t = msg.get("room"), msg.get("c"), msg.get("seq"), msg.get("t")
        if name not in joined:
            sender.put(json.dumps({"op": "error", "code": "not-a-member", "reason": f"join {name!r} first"[:200]}))
            return
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (c, seq, t)):
            sender.put(json.dumps({"op": "error", "code": "bad-message", "reason": "c, seq and t must be integers"}))
            return
        assert isinstance(name, str) and isinstance(c, int) and isinstance(seq, int) and isinstance(t, int)
        room = self.rooms[name]
        if self.fallback and len(self.behind) >= self.queue_max and (c, seq) not in room.applied:
            # Overflow policy: read-only until the queue drains. Refused, not acknowledged: the client's outbox keeps it.
            self.counters["refused_read_only"] += 1
            sender.put(json.dumps({"op": "error", "code": "read-only", "reason": "the store is down and the write-behind queue is full"}))
            return
        fresh = room.apply(c, seq, t)
        if not fresh:
            self.counters["duplicates_dropped"] += 1
            if self.acks:
                sender.put(json.dumps({"op": "ack", "c": c, "seq": seq}))
                return
        out = {"op": "broadcast", "room": name, "seq": seq, "t": t, "c": c, "d": msg.get("d", "")}
        # One broadcast at a time per room: stream ids reach Redis in the order they were numbered, and every
        # member sees the room's messages in one order.
        async with self.locks.setdefault(name, asyncio.Lock()):
            if self.numbered:
                n = self.logs[name].append(out)
                if self.redis is not None and self.fallback and self.behind:
                    self._queue(name, n, out)  # behind a queue already: keep the stream's order
                elif self.redis is not None:
                    try:
                        await self.redis.xadd(f"s07:{name}", {"m": json.dumps(out)}, id=f"{n}-0", maxlen=self.log_len, approximate=True)
                    except Exception as exc:
                        self.counters["store_errors"] += 1
                        print(f"store error: {exc!r}", flush=True)
                        if self.fallback:
                            self._queue(name, n, out)
            if self.acks:
                sender.put(json.dumps({"op": "ack", "c": c, "seq": seq}))
            data = json.dumps(out)
            for member in self.members[name]:
                member.put(data)
            for hook in self.hooks:
                hook(name, out)

    def _queue(self, name: str, n: int, out: dict[str, Any]) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
        self.behind.append((name, n, json.dumps(out)))
        self.counters["queue_high_water"] = max(self.counters["queue_high_water"], len(self.behind))

    async def drain_loop(self) -> None:
        """Fallback: write what queued up while Redis was down, in order, once it answers; re-seed a stream Redis lost."""
        while True:
            await asyncio.sleep(0.1)
            if not self.behind:
                continue
            try:
                name, n, _ = self.behind[0]
                if await self.redis.xlen(f"s07:{name}") == 0:  # Redis came back empty: write what memory still holds first
                    older = [m for m in self.logs[name].entries if m.n < n]
                    for e in older:
                        await self.redis.xadd(f"s07:{name}", {"m": json.dumps(e.msg)}, id=f"{e.n}-0", maxlen=self.log_len, approximate=True)
                    self.counters["reseeded"] += len(older)
                while self.behind:
                    name, n, entry = self.behind[0]
                    await self.redis.xadd(f"s07:{name}", {"m": entry}, id=f"{n}-0", maxlen=self.log_len, approximate=True)
                    self.behind.popleft()
            except Exception:
                continue
            if self.down_since is not None:
                self.counters["drain_ms"] += (time.monotonic() - self.down_since) * 1000
                self.down_since = None

    async def stream_len(self, name: str) -> int | None:
        if self.redis is None:
            return None
        try:
            return int(await self.redis.xlen(f"s07:{name}"))
        except Exception:
            return None

    def state(self, name: Any) -> dict[str, Any]:
        room = self.rooms.get(name) if isinstance(name, str) else None
        if room is None:
            return {"op": "error", "code": "unknown-room", "reason": f"no room {name!r}"}
        log = self.logs[name]
        return {
            "op": "state",
            "room": name,
            "hash": room.state_hash(),
            "applied": len(room.applied),
            "head": log.head,
            "first": log.first,
            "strategy": self.strategy,
            "queue_now": len(self.behind),
            "checkpoint_n": self.checkpointed.get(name, 0),
            **self.counters,
        }

    async def handle(self, ws: ServerConnection) -> None:
        joined: set[str] = set()
        out = Outbound(ws)
        try:
            async for data in ws:
                if isinstance(data, bytes):
                    await ws.close(1003, "binary frames are not accepted")
                    return
                try:
                    msg = json.loads(data)
                except ValueError:
                    out.put(json.dumps({"op": "error", "code": "not-json", "reason": "a frame must be a JSON object"}))
                    continue
                except RecursionError:
                    out.put(json.dumps({"op": "error", "code": "too-deep", "reason": "JSON nested too deeply"}))
                    continue
                if not isinstance(msg, dict):
                    out.put(json.dumps({"op": "error", "code": "not-an-object", "reason": "a frame must be a JSON object"}))
                    continue
                op = msg.get("op")
                if op == "broadcast":
                    await self.broadcast(out, msg, joined)
                elif op == "join":
                    try:
                        await self.join(out, msg, joined)
                    except core.ResumeError as exc:
                        out.put(json.dumps(exc.frame()))
                        await out.close()  # the error frame first, then the close code
                        await ws.close(exc.close, exc.code)
                        return
                elif op == "echo":
                    out.put(data)
                elif op == "applied":  # read-only: the seqs of one client the room applied (the client-crash scenario)
                    name = msg.get("room")
                    out.put(json.dumps(core.applied_of(self.rooms.get(name) if isinstance(name, str) else None, name, msg.get("c"))))
                elif op == "state":
                    state = self.state(msg.get("room"))
                    if state["op"] == "state":
                        state["stream_len"] = await self.stream_len(state["room"])
                    out.put(json.dumps(state))
                else:
                    out.put(json.dumps({"op": "error", "code": "unknown-op", "reason": f"unknown op {op!r}"[:200]}))
        except ConnectionClosed:
            pass
        finally:
            for name in joined:
                self.members.get(name, set()).discard(out)
            out.queue.put_nowait(None)  # the writer ends after what is queued


async def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategy", choices=core.STRATEGIES, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--redis", default="", help="redis://... URL: the log also goes to a Redis stream per room")
    ap.add_argument("--log-len", type=int, default=10_000)
    ap.add_argument("--log-age", type=float, default=300.0)
    ap.add_argument("--pg", default="", help="PostgreSQL DSN: checkpoint strategy writes room snapshots there")
    ap.add_argument("--checkpoint-every", type=float, default=1.0, help="seconds between checkpoints")
    ap.add_argument("--ping-interval", type=float, default=5.0)
    ap.add_argument("--ping-timeout", type=float, default=5.0)
    ap.add_argument("--relay", choices=("none", "pubsub", "stream"), default="none", help="cross-process relay (poc/relay.py)")
    ap.add_argument("--relay-redis", default="", help="redis://... URL of the relay (default: --redis)")
    ap.add_argument("--node", default="", help="this process's name among the relay's processes (default: the port)")
    ap.add_argument("--persist-chat", default="", help="PostgreSQL DSN: every chat line a row (poc/chat_store.py)")
    ap.add_argument("--chat-queue-max", type=int, default=10_000, help="write-behind queue bound, lines")
    args = ap.parse_args(argv)
    redis = None
    if args.redis:
        import redis.asyncio as aioredis

        redis = aioredis.from_url(args.redis)
    pg = None
    if args.pg:
        import asyncpg

        pg = await asyncpg.create_pool(args.pg, min_size=1, max_size=2)
        await pg.execute(
            "CREATE TABLE IF NOT EXISTS s07_checkpoints (room text PRIMARY KEY, n bigint NOT NULL, state text NOT NULL, at timestamptz)"
        )
    hub = Hub(args.strategy, args.log_len, args.log_age, redis, pg)
    relay = chat = None
    if args.relay != "none":
        import redis.asyncio as aioredis

        from spikes.s07_error_recovery.poc.relay import make_relay

        relay = make_relay(args.relay, hub, aioredis.from_url(args.relay_redis or args.redis), args.node or str(args.port))
        assert relay is not None
        hub.hooks.append(relay.publish)
        relay.start()
    if args.persist_chat:
        from spikes.s07_error_recovery.poc.chat_store import ChatStore

        chat = ChatStore(args.persist_chat, hub.counters, max_len=args.chat_queue_max)
        await chat.start()
        hub.hooks.append(chat.on_broadcast)
    if pg is not None:
        checkpoints = asyncio.get_running_loop().create_task(hub.checkpoint_loop(args.checkpoint_every))
    if hub.fallback and redis is not None:
        drain = asyncio.get_running_loop().create_task(hub.drain_loop())
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    async with serve(
        hub.handle,
        args.host,
        args.port,
        max_size=MAX_MESSAGE_BYTES,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
    ):
        print(f"listening on {args.host}:{args.port} strategy={args.strategy}", flush=True)
        await stop  # graceful: stop accepting, close every connection with 1001
    if pg is not None:
        checkpoints.cancel()
        await hub.checkpoint_all()  # graceful: the last checkpoint before going
        await pg.close()
    if hub.fallback and redis is not None:
        drain.cancel()
    if relay is not None:
        await relay.stop()
    if chat is not None:
        await chat.stop()
    if redis is not None:
        await redis.aclose()


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    asyncio.run(main())
