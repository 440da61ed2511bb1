"""Chat persistence shared by Spike 6's POC servers: every chat message becomes a PostgreSQL row.

Writes are batched: a message is appended to an in-memory buffer, and one
writer task sends the buffer with ``COPY`` (asyncpg's
``copy_records_to_table``, one transaction per batch) every ``flush_ms`` or
as soon as ``max_batch`` rows wait, over a pool of at most two connections.
One ``INSERT`` per message would cost a round trip and a commit (WAL flush)
each: at 5,000 messages/s that is the database's limit, not the server's.
The price is durability: a crash loses at most ``flush_ms`` of messages.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import asyncpg

__all__ = ["SCHEMA", "ChatStore"]

#: The table every server writes to (created by the harness before the servers start).
SCHEMA = """
CREATE TABLE IF NOT EXISTS chat_messages (
    id bigserial PRIMARY KEY,
    room text NOT NULL,
    sender integer NOT NULL,
    seq integer NOT NULL,
    body text NOT NULL,
    server smallint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""

_COLUMNS = ("room", "sender", "seq", "body", "server")


class ChatStore:
    """Buffered writer of chat messages; ``add`` never waits for the database."""

    def __init__(self, dsn: str, server_id: int, flush_ms: float = 50.0, max_batch: int = 1000, close_timeout_s: float = 3.0) -> None:
        self.dsn = dsn
        self.close_timeout_s = close_timeout_s  # under the harness's 5 s between SIGTERM and SIGKILL, so the tally still prints
        self.server_id = server_id
        self.flush_s = flush_ms / 1000
        self.max_batch = max_batch
        self.buffer: list[tuple[Any, ...]] = []
        self.written = 0
        self.batches = 0
        self.failed = 0
        self._pool: asyncpg.Pool | None = None
        self._task: asyncio.Task[None] | None = None
        self._full = asyncio.Event()
        self._closing = False

    async def start(self) -> None:
        self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=2)
        self._task = asyncio.create_task(self._writer())

    def add(self, room: str, msg: dict[str, Any]) -> None:
        """Queue one chat message (its room, sender, sequence number and text)."""
        try:
            row = (str(room), int(msg.get("c", 0)), int(msg.get("seq", 0)), str(msg.get("d", "")), self.server_id)
        except (TypeError, ValueError):
            self.failed += 1
            return
        self.buffer.append(row)
        if len(self.buffer) >= self.max_batch:
            self._full.set()

    async def _flush(self) -> None:
        if not self.buffer or self._pool is None:
            return
        rows, self.buffer = self.buffer, []
        try:
            async with self._pool.acquire() as conn:
                await conn.copy_records_to_table("chat_messages", records=rows, columns=_COLUMNS)
            self.written += len(rows)
            self.batches += 1
        except asyncio.CancelledError:
            self.buffer[:0] = rows  # not written: back in front of the buffer, for whoever flushes next
            raise
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:  # counted, and the writer goes on
            self.failed += len(rows)
            print(f"persist: {len(rows)} rows lost: {exc}", file=sys.stderr, flush=True)

    async def _writer(self) -> None:
        while not self._closing:
            deadline = time.monotonic() + self.flush_s
            try:
                await asyncio.wait_for(self._full.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                pass
            self._full.clear()
            await self._flush()

    async def close(self) -> None:
        """Write what is buffered and close the pool."""
        self._closing = True
        self._full.set()  # wake the writer now; it ends after the batch it is on
        hung = False
        if self._task is not None:
            # Awaited, not cancelled: a cancel landing mid-COPY used to drop that batch uncounted (a test caught
            # "0 rows, 0 lost" for a message the server had broadcast). A database that does not answer is given
            # close_timeout_s; then the COPY is cancelled, its rows go back to the buffer, and are counted lost.
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.close_timeout_s)
            except TimeoutError:
                hung = True
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        if hung:
            print(
                f"persist: {len(self.buffer)} rows lost: the database did not answer within {self.close_timeout_s:g} s",
                file=sys.stderr,
                flush=True,
            )
            self.failed += len(self.buffer)
            self.buffer = []
        else:
            await self._flush()
        if self._pool is not None:
            if hung:
                self._pool.terminate()
            else:
                await self._pool.close()
        print(f"persist: {self.written} rows in {self.batches} batches, {self.failed} lost", flush=True)
