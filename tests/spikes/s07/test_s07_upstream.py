"""Known upstream failure modes behind Spike 7's strategies, each shown against a real server.

- redis-py's asyncio pub/sub does not notice a Redis that stopped answering (redis/redis-py#2417): a subscriber
  polling ``get_message`` sees only silence, never an error; an application heartbeat with a deadline does notice.
- asyncpg pools after a PostgreSQL restart (MagicStack/asyncpg#447, #385): connections the pool held are dead;
  a query on one fails once with a connection error, and the pool must be retried (or its connections replaced).
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from harness.faults import crash_postgres, frozen
from harness.services import PostgresService, RedisService
from tests.utils import UNIT, require_program

pytestmark = pytest.mark.slow


def test_redis_async_pubsub_sees_only_silence_from_a_frozen_redis_while_a_heartbeat_with_a_deadline_notices(tmp_path):
    require_program("redis-server")
    import redis.asyncio as aioredis

    async def go(url: str, redis: RedisService) -> tuple[int, int, bool]:
        sub_client = aioredis.from_url(url, health_check_interval=1)
        pubsub = sub_client.pubsub()
        await pubsub.subscribe("room")
        assert (await pubsub.get_message(timeout=2 * UNIT))["type"] == "subscribe"
        beat = aioredis.from_url(url)
        await beat.ping()
        errors = silent = 0
        detected = False
        stop = threading.Event()
        holder = threading.Thread(target=lambda: _freeze_until(redis, stop))
        holder.start()
        try:
            await asyncio.sleep(0.2)
            t_end = time.monotonic() + 2.5 * UNIT
            while time.monotonic() < t_end:
                try:
                    msg = await pubsub.get_message(timeout=0.2)
                    silent += msg is None
                except Exception:
                    errors += 1
                    break
            try:
                await asyncio.wait_for(beat.ping(), 0.5 * UNIT)
            except TimeoutError:
                detected = True
        finally:
            stop.set()
            holder.join()
        for c in (beat, sub_client):
            await c.aclose()
        return errors, silent, detected

    with RedisService(base_dir=tmp_path) as redis:
        errors, silent, detected = asyncio.run(go(redis.url, redis))
    assert errors == 0 and silent > 3  # the failure mode: seconds of a dead Redis, and the subscriber has no idea
    assert detected  # the workaround: a ping that must come back within a deadline


def _freeze_until(redis: RedisService, stop: threading.Event) -> None:
    assert redis.server is not None
    with frozen(redis.server):
        stop.wait(30)


def test_an_asyncpg_pool_fails_once_per_dead_connection_after_a_postgres_restart_then_serves(tmp_path):
    require_program("postgres")
    import asyncpg

    async def before(dsn: str) -> asyncpg.Pool:
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2)
        assert await pool.fetchval("select 1") == 1
        return pool

    async def after(pool: asyncpg.Pool) -> tuple[list[str], int]:
        failures = []
        for _ in range(4):
            try:
                return failures, await pool.fetchval("select 2")
            except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError, OSError) as exc:
                failures.append(type(exc).__name__)
        return failures, 0

    with PostgresService(base_dir=tmp_path) as pg:
        loop = asyncio.new_event_loop()
        try:
            pool = loop.run_until_complete(before(pg.dsn))
            crash_postgres(pg)
            failures, value = loop.run_until_complete(after(pool))
            loop.run_until_complete(pool.close())
        finally:
            loop.close()
    # The failure mode: the first query after the restart hits a connection the server closed.
    assert failures, "the pool served at once: asyncpg replaced its dead connections itself"
    assert value == 2  # ... and a retry on the same pool gets a fresh connection
