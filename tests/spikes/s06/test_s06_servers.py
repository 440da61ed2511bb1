"""Spike 6's POC servers for real: Redis fan-out across two processes, rows in PostgreSQL, nginx in front."""

from __future__ import annotations

import asyncio

import pytest

from harness.load.protocol import broadcast_message, echo_message, join_message
from spikes.s06_scalability.deploy import Deployment
from tests.spikes.s06.conftest import next_op, open_client, require
from tests.utils import UNIT

pytestmark = pytest.mark.slow


async def _until_both_processes_subscribed(dep: Deployment) -> None:
    """Wait until Redis counts a subscriber from each server process (a room's channel, or Socket.IO's one channel)."""
    import redis.asyncio as aioredis

    r = aioredis.from_url(dep.redis.url)
    try:
        deadline = asyncio.get_running_loop().time() + 10 * UNIT
        while True:
            channels = await r.pubsub_channels()
            counts = await r.pubsub_numsub(*channels) if channels else []
            if max((n for _, n in counts), default=0) >= 2:
                return
            assert asyncio.get_running_loop().time() < deadline, f"Redis subscribers: {counts}"
            await asyncio.sleep(0.02)
    finally:
        await r.aclose()


async def _cross_process(dep: Deployment) -> tuple[dict, dict]:
    urls = [f"ws://127.0.0.1:{s.port}/" for s in dep.servers]  # one client on each process, bypassing nginx
    (a, inbox_a), (b, inbox_b) = [await open_client(u, dep.transport) for u in urls]
    for c, inbox in ((a, inbox_a), (b, inbox_b)):
        c.send(join_message("table-7"))
        await next_op(inbox, "joined")
    await _until_both_processes_subscribed(dep)
    a.send(broadcast_message("table-7", 0, 123, 1, "hello from process 0"))
    got_b = await next_op(inbox_b, "broadcast")
    got_a = await next_op(inbox_a, "broadcast")
    for c in (a, b):
        await c.close(2 * UNIT)
        await c.close_shared(c.shared)
    return got_a, got_b


@pytest.mark.parametrize("option", ["native-redis", "socketio-redis"])
def test_a_broadcast_on_one_process_reaches_a_member_on_the_other_and_is_persisted(option, tmp_path):
    require("postgres", "redis-server", "nginx")
    with Deployment(option, tmp_path) as dep:
        assert len(dep.servers) == 2 and dep.nginx is not None and dep.redis is not None
        got_a, got_b = asyncio.run(_cross_process(dep))
        assert got_b["d"] == "hello from process 0" and got_b["c"] == 1  # crossed processes through Redis
        assert got_a["d"] == "hello from process 0"  # the sender is a member too
        published = dep.redis_stats()["publish"]
        dep.stop_servers()
        stats = dep.pg_stats()
        body = dep.pg.psql("SELECT room, sender, body FROM chat_messages;").strip()
    assert published >= 1
    assert stats["rows"] == 1 and body == "table-7|1|hello from process 0"


@pytest.mark.parametrize("option", ["native", "socketio"])
def test_single_process_echo_through_the_deployment_is_persisted(option, tmp_path):
    require("postgres")

    async def talk(url: str, transport: str) -> list[dict]:
        c, inbox = await open_client(url, transport)
        for i in range(5):
            c.send(echo_message(i, i, 9, f"msg {i}"))
        replies = [await next_op(inbox, "echo") for _ in range(5)]
        await c.close(2 * UNIT)
        await c.close_shared(c.shared)
        return replies

    with Deployment(option, tmp_path) as dep:
        assert dep.nginx is None and dep.redis is None and dep.url == f"ws://127.0.0.1:{dep.servers[0].port}/"
        replies = asyncio.run(talk(dep.url, dep.transport))
        notes = dep.stop_servers()
        stats = dep.pg_stats()
    assert [r["seq"] for r in replies] == [0, 1, 2, 3, 4]
    assert stats["rows"] == 5 and stats["table_tup_ins"] == 5
    assert any("persist: 5 rows" in n for n in notes)


def test_nginx_front_serves_both_processes(tmp_path):
    require("postgres", "redis-server", "nginx")

    async def open_four(url: str) -> None:
        clients = [await open_client(url, "ws") for _ in range(4)]
        for i, (c, inbox) in enumerate(clients):
            c.send(echo_message(i, 0, i, "x"))
            assert (await next_op(inbox, "echo"))["seq"] == i
        for c, _ in clients:
            await c.close(2 * UNIT)
            await c.close_shared(c.shared)

    with Deployment("native-redis", tmp_path) as dep:
        asyncio.run(open_four(dep.url))
        dep.stop_servers()
        per_server = dep.pg.psql("SELECT server, count(*) FROM chat_messages GROUP BY server ORDER BY server;").split()
    assert per_server == ["0|2", "1|2"]  # round-robin: two upgrades on each process, each wrote its own rows
