"""Spike 7's chat persisted per message (poc/chat_store.py) and the PostgreSQL crash under it (cluster.run_chat_db)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from harness.faults import crash_postgres
from harness.plugin import ScenarioContext
from harness.services import PostgresService
from spikes.s07_error_recovery import cluster, spike
from spikes.s07_error_recovery.poc.chat_store import ChatStore, WriteBehind
from tests.utils import UNIT, require_program


def test_the_write_behind_queue_keeps_order_and_refuses_what_does_not_fit():
    q = WriteBehind(3)
    lines = [("r", 1, s, s, f"1: line {s}") for s in range(5)]
    assert [q.put(x) for x in lines] == [True, True, True, False, False]
    assert q.dropped == 2 and q.high_water == 3
    assert q.head(2) == lines[:2] and len(q) == 3  # looked at, still queued
    q.done(2)
    assert q.head(10) == [lines[2]]  # the oldest left, the overflow never entered
    assert q.put(lines[3]) and q.head(10) == [lines[2], lines[3]]
    with pytest.raises(ValueError):
        WriteBehind(0)


def test_only_chat_broadcasts_are_queued():
    async def go() -> dict[str, Any]:
        counters: dict[str, Any] = {}
        store = ChatStore("postgresql://unused", counters, max_len=2)
        for seq in range(9):  # op_kind: seq % 3 == 1 is a chat line: 1, 4, 7
            store.on_broadcast("r", {"op": "broadcast", "room": "r", "c": 3, "seq": seq, "t": 100 + seq})
        assert [x[2] for x in store.queue.items] == [1, 4]
        assert store.queue.items[0] == ("r", 3, 1, 101, "3: line 1")
        return counters

    c = asyncio.run(go())
    assert c["chat_enqueued"] == 2 and c["chat_dropped"] == 1 and c["chat_queue_now"] == 2 and c["chat_queue_high_water"] == 2


@pytest.mark.slow
def test_a_batch_sent_again_cannot_duplicate_a_row_and_the_writer_recovers_through_a_postgres_restart(tmp_path):
    """The key absorbs a retried batch; after an immediate shutdown while the writer was idle (its pooled connection
    dead: the asyncpg failure mode), the next batch fails at most once per pooled connection, then commits."""
    require_program("postgres")
    import asyncpg

    with PostgresService(base_dir=tmp_path) as pg:

        async def first() -> tuple[ChatStore, dict[str, Any]]:
            counters: dict[str, Any] = {}
            store = ChatStore(pg.dsn, counters, retry_s=0.05)
            await store.start()
            store.task.cancel()  # type: ignore[union-attr]  # drive the writer by hand
            line = ("r", 1, 1, 10, "1: line 1")
            store.queue.put(line)
            assert await store.write_once() == 1
            store.queue.put(line)  # the same batch again (its commit's answer lost): refused by the key
            assert await store.write_once() == 1
            assert counters["chat_written"] == 1 and counters["chat_conflicts"] == 1
            store.queue.put(("r", 1, 4, 11, "1: line 4"))
            return store, counters

        loop = asyncio.new_event_loop()
        try:
            store, counters = loop.run_until_complete(first())
            crash_postgres(pg, down_for=0.2 * UNIT)

            async def after() -> int:
                failures = 0
                for _ in range(10):
                    try:
                        await store.write_once()
                        return failures
                    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError, OSError):
                        failures += 1
                        await asyncio.sleep(0.1 * UNIT)
                raise AssertionError("the pool never served again")

            failures = loop.run_until_complete(after())
            assert failures <= 2  # at most one per pooled connection (max_size 2)
            assert len(store.queue) == 0 and counters["chat_written"] == 2

            async def rows() -> list[Any]:
                conn = await asyncpg.connect(pg.dsn)
                try:
                    return list(await conn.fetch("SELECT c, seq FROM s07_chat ORDER BY seq"))
                finally:
                    await conn.close()

            assert [(r["c"], r["seq"]) for r in loop.run_until_complete(rows())] == [(1, 1), (1, 4)]
            loop.run_until_complete(store.stop(0))
        finally:
            loop.close()


@pytest.mark.slow
def test_chat_rows_are_neither_lost_nor_duplicated_across_a_postgres_crash(tmp_path):
    require_program("postgres")
    p = {**cluster.CHAT_DB_PARAMS, **cluster.CHAT_DB_QUICK, "connections": 4, "down_s": 1.5 * UNIT, "grace_s": 2 * UNIT}
    out = cluster.run_chat_db(ScenarioContext(spike.option("queue"), p, 0, True, tmp_path))
    (run,) = out.facts["runs"]
    t = run["account"]
    assert t["lost_after_ack"]["count"] == t["lost_without_ack"]["count"] == 0  # the outage never touched a broadcast
    (fault,) = run["faults"]
    assert fault["kind"] == "postgres-crash" and fault["details"]["restarted"]
    srv = run["server"]
    assert srv["chat_errors"] > 0 and srv["chat_outages"] == 1  # the writer saw the outage, then committed again
    m = {x.name: x.samples[0] for x in out.measurements}
    assert m["rows_expected"] > 0
    assert m["rows_lost"] == m["rows_duplicated"] == m["rows_unexpected"] == 0
    assert m["queue_left"] == 0 and m["chat_dropped"] == 0 and m["queue_high_water"] >= 1
    # a batch whose commit's answer the crash cut off is sent again: its rows come back as conflicts, never twice
    assert srv["chat_enqueued"] == m["rows_expected"] == srv["chat_written"] + srv["chat_conflicts"]
    assert m["rows_conflicts"] == srv["chat_conflicts"]
    (table,) = cluster.chat_db_tables(_Run(out), {"queue": "Message queuing"})
    assert {r[0] for r in table.rows} >= {"rows lost", "rows duplicated", "write-behind queue high-water mark, lines"}


class _Run:
    """Enough of a stored RunResult for the table builder."""

    options = ["queue"]

    def __init__(self, out: Any) -> None:
        self.out = out

    def ok(self, scen: str, o: str) -> Any:
        run = self

        class SR:
            params = {"queue_max": 10_000}

            def find(self, name: str) -> list[Any]:
                return [m for m in run.out.measurements if m.name == name]

            def measurement(self, name: str, **tags: str) -> Any:
                for m in run.out.measurements:
                    if m.name == name and all(m.tags.get(k) == v for k, v in tags.items()):
                        return m
                raise KeyError(name)

        return SR() if scen == "chat-db" else None
