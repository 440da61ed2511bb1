"""Spike 6's batched chat writer: what it does with a batch still on its way when the server shuts down.

The database is a fake here: the point is the order of events around a COPY in flight, which a real
PostgreSQL makes a matter of luck (it was one: a test saw "0 rows, 0 lost" for a broadcast message).
"""

from __future__ import annotations

import asyncio
import contextlib

from spikes.s06_scalability.poc.persist import ChatStore
from tests.utils import UNIT


class SlowCopyPool:
    """Stands in for asyncpg's pool: each COPY waits until ``release`` is set, and records its rows."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.copied: list[tuple] = []

    @contextlib.asynccontextmanager
    async def acquire(self):
        yield self

    async def copy_records_to_table(self, table: str, records: list[tuple], columns: list[str]) -> None:
        self.entered.set()
        await self.release.wait()
        self.copied += records

    async def close(self) -> None:
        pass

    def terminate(self) -> None:
        self.terminated = True


async def _close_during_copy() -> tuple[ChatStore, SlowCopyPool]:
    store = ChatStore("postgresql://unused", server_id=3, flush_ms=1.0)
    pool = store._pool = SlowCopyPool()
    store._task = asyncio.create_task(store._writer())
    store.add("table-7", {"c": 1, "seq": 1, "d": "in flight"})
    await asyncio.wait_for(pool.entered.wait(), 5 * UNIT)  # the writer took the batch and is inside COPY
    store.add("table-7", {"c": 1, "seq": 2, "d": "still buffered"})
    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0.01)
    pool.release.set()
    await asyncio.wait_for(closing, 5 * UNIT)
    return store, pool


def test_closing_waits_for_the_batch_in_flight_and_writes_the_rest():
    store, pool = asyncio.run(_close_during_copy())
    assert [r[3] for r in pool.copied] == ["in flight", "still buffered"]
    assert store.written == 2 and store.failed == 0 and store.buffer == []


async def _cancelled_mid_copy() -> tuple[ChatStore, SlowCopyPool]:
    store = ChatStore("postgresql://unused", server_id=3)
    pool = store._pool = SlowCopyPool()
    store.add("table-7", {"c": 1, "seq": 1, "d": "in flight"})
    flush = asyncio.create_task(store._flush())
    await asyncio.wait_for(pool.entered.wait(), 5 * UNIT)
    flush.cancel()
    await asyncio.gather(flush, return_exceptions=True)
    return store, pool


def test_a_cancelled_copy_puts_its_rows_back_rather_than_dropping_them():
    store, pool = asyncio.run(_cancelled_mid_copy())
    assert pool.copied == [] and store.written == 0
    assert [r[3] for r in store.buffer] == ["in flight"]


async def _close_with_the_database_hung() -> tuple[ChatStore, SlowCopyPool]:
    store = ChatStore("postgresql://unused", server_id=3, flush_ms=1.0, close_timeout_s=0.2 * UNIT)
    pool = store._pool = SlowCopyPool()  # release is never set: the COPY never returns
    store._task = asyncio.create_task(store._writer())
    store.add("table-7", {"c": 1, "seq": 1, "d": "in flight"})
    await asyncio.wait_for(pool.entered.wait(), 5 * UNIT)
    store.add("table-7", {"c": 1, "seq": 2, "d": "still buffered"})
    await asyncio.wait_for(store.close(), 5 * UNIT)  # bounded: the server must still print its tally before SIGKILL
    return store, pool


def test_a_database_that_never_answers_costs_a_bounded_wait_and_the_rows_are_counted_lost():
    store, pool = asyncio.run(_close_with_the_database_hung())
    assert pool.copied == [] and store.written == 0
    assert store.failed == 2 and store.buffer == [] and pool.terminated
