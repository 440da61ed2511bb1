"""Spike 7's chat persistence: every chat line a POC server broadcasts, one row in PostgreSQL, through a write-behind queue.

``server.py --persist-chat DSN`` (off by default). Which broadcasts are chat lines: ``core.op_kind(seq) == "chat"``.
The broadcast hook hands each one to :meth:`ChatStore.on_broadcast` after the room's members got it (and the
sender its ack): the queue is always the path, so a PostgreSQL outage never holds a broadcast back.

- The table ``s07_chat`` is keyed by ``(room, c, seq)`` and written with ``ON CONFLICT DO NOTHING``: a batch sent
  again after its commit's answer was lost cannot duplicate a row. What the key refused is counted
  (``chat_conflicts``): the rows an unkeyed table would have held twice.
- :class:`WriteBehind`: the queue, oldest first, at most ``max_len`` lines. Overflow policy: a line that finds
  the queue full is not persisted and is counted (``chat_dropped``); it was broadcast already, so it is a row
  lost, never a broadcast refused. Lines leave the queue only when the batch holding them committed, so the
  table receives them in the order they were broadcast.
- The writer: batches of at most ``batch`` lines, one ``INSERT ... SELECT FROM unnest(...)`` each, through an
  asyncpg pool; a failed batch stays at the head and is tried again every ``retry_s``. After a PostgreSQL restart
  the pool's idle connections are dead (asyncpg does not test a connection when it hands it out): the first
  attempt on each fails and the pool replaces it; the errors after PostgreSQL was back are in ``chat_error_log``.

Counters (the server's ``state`` answer): ``chat_enqueued``, ``chat_written``, ``chat_conflicts``, ``chat_dropped``,
``chat_queue_now``, ``chat_queue_high_water``, ``chat_errors`` (and ``chat_error_kinds``, ``chat_error_log``:
``[time.time(), exception name]``, the last 200), ``chat_down_ms`` (first failed batch to the next committed one),
``chat_drain_ms`` (that commit to the queue empty), ``chat_drained_at`` (``time.time()`` the queue was empty again
after the last outage), ``chat_outages``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

from spikes.s07_error_recovery import core

__all__ = ["WriteBehind", "ChatStore", "TABLE_SQL", "INSERT_SQL"]

TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS s07_chat (room text NOT NULL, c integer NOT NULL, seq integer NOT NULL, t bigint NOT NULL, "
    "line text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (room, c, seq))"
)
INSERT_SQL = (
    "INSERT INTO s07_chat (room, c, seq, t, line) SELECT * FROM unnest($1::text[], $2::integer[], $3::integer[], $4::bigint[], $5::text[]) "
    "ON CONFLICT DO NOTHING RETURNING 1"
)

Line = tuple[str, int, int, int, str]  # room, c, seq, t, line


class WriteBehind:
    """Chat lines waiting for PostgreSQL, oldest first; at most ``max_len``: a line that finds it full is dropped (counted)."""

    def __init__(self, max_len: int = 10_000) -> None:
        if max_len < 1:
            raise ValueError("the queue must hold at least one line")
        self.max_len = max_len
        self.items: deque[Line] = deque()
        self.dropped = 0
        self.high_water = 0

    def put(self, line: Line) -> bool:
        """Queue ``line``; False (and counted) when the queue is full."""
        if len(self.items) >= self.max_len:
            self.dropped += 1
            return False
        self.items.append(line)
        self.high_water = max(self.high_water, len(self.items))
        return True

    def head(self, n: int) -> list[Line]:
        """The oldest ``n`` lines, left in the queue until :meth:`done`."""
        return [self.items[i] for i in range(min(n, len(self.items)))]

    def done(self, n: int) -> None:
        """The oldest ``n`` lines were committed: forget them."""
        for _ in range(n):
            self.items.popleft()

    def __len__(self) -> int:
        return len(self.items)


class ChatStore:
    """The writer of one server process: :meth:`on_broadcast` queues, a task writes."""

    def __init__(self, dsn: str, counters: dict[str, Any], *, max_len: int = 10_000, batch: int = 500, retry_s: float = 0.2) -> None:
        self.dsn = dsn
        self.queue = WriteBehind(max_len)
        self.batch = batch
        self.retry_s = retry_s
        self.counters = counters
        self.pool: Any = None
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.failing_since: float | None = None
        self.back_at: float | None = None
        for k in ("enqueued", "written", "conflicts", "dropped", "queue_now", "queue_high_water", "errors", "outages"):
            counters[f"chat_{k}"] = 0
        counters["chat_down_ms"] = 0.0
        counters["chat_drain_ms"] = 0.0
        counters["chat_drained_at"] = None
        counters["chat_error_kinds"] = {}
        counters["chat_error_log"] = []

    async def start(self) -> None:
        import asyncpg

        self.pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=2, timeout=5, command_timeout=5)
        await self.pool.execute(TABLE_SQL)
        self.task = asyncio.get_running_loop().create_task(self._writer())

    def on_broadcast(self, room: str, out: dict[str, Any]) -> None:
        """The broadcast hook: a chat line goes into the queue (or is dropped, counted, when it is full)."""
        seq, c, t = out.get("seq"), out.get("c"), out.get("t")
        if not isinstance(seq, int) or core.op_kind(seq) != "chat":
            return
        assert isinstance(c, int) and isinstance(t, int)
        if self.queue.put((room, c, seq, t, f"{c}: line {seq}")):
            self.counters["chat_enqueued"] += 1
        self._update()
        self.wake.set()

    def _update(self) -> None:
        self.counters["chat_queue_now"] = len(self.queue)
        self.counters["chat_queue_high_water"] = self.queue.high_water
        self.counters["chat_dropped"] = self.queue.dropped

    async def write_once(self) -> int:
        """Write one batch from the head of the queue; the number of lines committed (raises on failure)."""
        lines = self.queue.head(self.batch)
        if not lines:
            return 0
        cols = list(zip(*lines, strict=True))
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(INSERT_SQL, *[list(col) for col in cols])
        self.queue.done(len(lines))
        self.counters["chat_written"] += len(rows)
        self.counters["chat_conflicts"] += len(lines) - len(rows)
        return len(lines)

    async def _writer(self) -> None:
        while True:
            if not len(self.queue):
                self.wake.clear()
                await self.wake.wait()
            try:
                await self.write_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(exc)
                await asyncio.sleep(self.retry_s)
                continue
            now = time.monotonic()
            if self.failing_since is not None:  # the first commit after an outage
                self.counters["chat_down_ms"] += (now - self.failing_since) * 1000
                self.counters["chat_outages"] += 1
                self.failing_since = None
                self.back_at = now
            if self.back_at is not None and not len(self.queue):
                self.counters["chat_drain_ms"] += (now - self.back_at) * 1000
                self.counters["chat_drained_at"] = time.time()
                self.back_at = None
            self._update()

    def _failed(self, exc: BaseException) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self.counters["chat_errors"] += 1
        name = type(exc).__name__
        kinds = self.counters["chat_error_kinds"]
        kinds[name] = kinds.get(name, 0) + 1
        log = self.counters["chat_error_log"]
        log.append([time.time(), name])
        del log[:-200]

    async def stop(self, flush_s: float = 5.0) -> None:
        """Graceful: give the writer ``flush_s`` to empty the queue, then close the pool."""
        deadline = time.monotonic() + flush_s
        while len(self.queue) and time.monotonic() < deadline and self.task is not None and not self.task.done():
            await asyncio.sleep(0.05)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 5)
