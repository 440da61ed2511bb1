"""Spike 6's Node server for real: the load protocol, chat rows in PostgreSQL, Redis fan-out across two processes.

The server is started through its options' declaration (``node_options.NODE_OPTIONS``, with the values the
deployment gives it), on PostgreSQL and Redis started by the harness, each on a free loopback port.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import frames, machine
from harness.load import LoadSpec, run_load
from harness.load.protocol import broadcast_message, echo_message, join_message
from harness.plugin import NotRunnable
from harness.poc import PocServer, server_process, url_of
from harness.process import ServerProcess
from harness.services import PostgresService, RedisService
from spikes.s06_scalability import node_options
from spikes.s06_scalability.node_options import NODE_DIR, NODE_OPTIONS, node_server
from spikes.s06_scalability.poc.persist import SCHEMA
from tests.spikes.s06.conftest import next_op, open_client
from tests.utils import UNIT, require_program

ONE, TWO = NODE_OPTIONS


# -- the declaration, without running anything ---------------------------------------------------------------


def test_the_options_declare_the_node_server_and_its_ws_client():
    assert (ONE.key, TWO.key) == ("node", "node-redis")
    assert ONE.title == "Node ws (SvelteKit adapter-node), 1 process"
    assert TWO.title == "Node ws, 2 processes + Redis"
    assert ONE.client == TWO.client == "ws"  # the protocol of poc/native_server.py, through the same load-engine client
    assert ONE.server is node_server and TWO.server is node_server
    assert {"node", "npm"} <= set(ONE.requires) and {"node", "npm", "redis-server", "nginx"} <= set(TWO.requires)
    package = Path(node_options.__file__).parent
    for rel in ONE.code_paths:
        assert (package / rel).is_file(), rel


def test_the_lock_pins_every_package_the_server_names():
    pkg = json.loads((NODE_DIR / "package.json").read_text())
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())["packages"]
    for name, wanted in {**pkg["dependencies"], **pkg["devDependencies"]}.items():
        assert lock[f"node_modules/{name}"]["version"] == wanted, name  # pinned: the exact version, locked
    assert lock["node_modules/@sveltejs/kit"]["version"].startswith("2.")
    assert set(node_options.versions()) == set(node_options.PACKAGES)


def test_without_node_the_options_are_not_runnable_and_say_how_to_install(monkeypatch):
    monkeypatch.setattr(machine, "find_tool", lambda name: None)
    with pytest.raises(NotRunnable, match="node is not installed.*install"):
        node_server()


# -- the server, for real --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built() -> PocServer:
    """The server's declaration: the SvelteKit app built once (npm ci and vite build, cached across runs)."""
    require_program("node", "npm")
    return node_server()


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[PostgresService]:
    require_program("postgres")
    with PostgresService(log_path=tmp_path / "postgres.log") as service:
        service.psql(SCHEMA)
        yield service


def _server(spec: PocServer, workdir: Path, pg: PostgresService, *, redis: str = "", server_id: int = 0) -> tuple[ServerProcess, str]:
    option = TWO if redis else ONE
    server, url = server_process(
        option,
        workdir,
        spec=spec,
        name=f"{option.key} server {server_id}",
        values={"pg": pg.dsn, "redis": redis, "server_id": server_id},
        log_name=f"server-{server_id}.log",
        grace=20 * UNIT,
    )
    return server, url


async def _close(*clients: Any) -> None:
    for c in clients:
        await c.close(2 * UNIT)
        await c.close_shared(c.shared)


def _rows(pg: PostgresService) -> list[str]:
    return pg.psql("SELECT room, sender, seq, body, server FROM chat_messages ORDER BY id;").strip().splitlines()


@pytest.mark.slow
def test_one_process_answers_the_protocol_and_persists_every_chat_message(built, pg, tmp_path):
    async def talk(url: str) -> dict[str, Any]:
        (a, inbox_a), (b, inbox_b) = await open_client(url), await open_client(url)
        a.send(join_message("table-1"))
        b.send(join_message("table-1"))
        joined = [await next_op(inbox_a, "joined"), await next_op(inbox_b, "joined")]
        a.send(broadcast_message("table-1", 0, 111, 1, "roll: d20 = 17"))
        got = [await next_op(inbox_a, "broadcast"), await next_op(inbox_b, "broadcast")]
        for i in range(3):
            b.send(echo_message(i, 222 + i, 2, f"echo {i}"))
        echoes = [await next_op(inbox_b, "echo") for _ in range(3)]
        a.send({"op": "join", "room": 7})
        a.send({"op": "no-such-op"})
        errors = [await next_op(inbox_a, "error"), await next_op(inbox_a, "error")]
        await _close(a, b)
        return {"joined": joined, "got": got, "echoes": echoes, "errors": errors}

    server, url = _server(built, tmp_path, pg, server_id=3)
    with server:
        url = url_of(server, url)
        assert url.endswith("/ws")
        seen = asyncio.run(talk(url))
        with urllib.request.urlopen(f"http://{server.host}:{server.port}/health", timeout=5 * UNIT) as r:
            health = r.read().decode()
    log = server.log_since_start()
    assert seen["joined"] == [{"op": "joined", "room": "table-1"}] * 2
    assert [m["d"] for m in seen["got"]] == ["roll: d20 = 17"] * 2  # to every member, the sender included
    assert seen["got"][1] == broadcast_message("table-1", 0, 111, 1, "roll: d20 = 17")  # unchanged
    assert seen["echoes"] == [echo_message(i, 222 + i, 2, f"echo {i}") for i in range(3)]
    assert [e["reason"] for e in seen["errors"]] == ["room must be a string", "unknown op"]
    assert health == "ok\n"  # SvelteKit's route, on the same HTTP server
    assert "persist: 4 rows in" in log and "0 lost" in log  # written at SIGTERM, as the Python servers do
    assert _rows(pg) == ["table-1|1|0|roll: d20 = 17|3", "echo|2|0|echo 0|3", "echo|2|1|echo 1|3", "echo|2|2|echo 2|3"]


@pytest.mark.slow
def test_the_load_engine_loses_nothing_in_echo_and_broadcast_and_every_message_is_a_row(built, pg, tmp_path):
    server, url = _server(built, tmp_path, pg)
    with server:
        url = url_of(server, url)
        echo = run_load(LoadSpec(url=url, transport="ws", connections=4, rate=20.0, duration_s=1.0, mode="echo", grace_s=2 * UNIT))
        fan = run_load(
            LoadSpec(url=url, transport="ws", connections=4, rate=10.0, duration_s=1.0, mode="broadcast", room="r", grace_s=2 * UNIT)
        )
    for result in (echo, fan):
        assert result.connected == 4 and result.sent > 0 and result.lost == 0 and not result.errors, result
    assert echo.received == echo.sent  # replies byte for byte as the engine's raw echo pipeline expects them
    assert fan.received == fan.expected == fan.sent * 4  # each broadcast to the room's four members
    assert int(pg.psql("SELECT count(*) FROM chat_messages;")) == echo.sent + fan.sent


@pytest.mark.slow
def test_a_join_then_a_broadcast_sent_at_once_are_handled_in_order(built, pg, tmp_path):
    """The join's Redis subscription is awaited before the connection's next frame: the sender gets its own broadcast."""
    require_program("redis-server")

    async def talk(url: str) -> list[str]:
        c, inbox = await open_client(url)
        c.send(join_message("fresh-room"))
        c.send(broadcast_message("fresh-room", 0, 1, 5, "right after the join"))
        c.send(echo_message(1, 2, 5, "after the broadcast"))
        ops = [(await asyncio.wait_for(inbox.get(), 10 * UNIT))["op"] for _ in range(3)]
        await _close(c)
        return ops

    with RedisService(base_dir=tmp_path, log_path=tmp_path / "redis.log") as redis:
        server, url = _server(built, tmp_path, pg, redis=redis.url)
        with server:
            ops = asyncio.run(talk(url_of(server, url)))
    # The joined reply first; the broadcast reached its sender (published only once the room's channel was subscribed);
    # the echo, answered directly, may overtake the broadcast's trip through Redis.
    assert ops[0] == "joined" and sorted(ops[1:]) == ["broadcast", "echo"]


def _wait_subscribers(redis: RedisService, channel: str, n: int) -> None:
    deadline = time.monotonic() + 10 * UNIT
    while True:
        reply = redis.command("PUBSUB", "NUMSUB", channel)
        if int(reply[1]) >= n:
            return
        assert time.monotonic() < deadline, f"Redis subscribers of {channel}: {reply}"
        time.sleep(0.02)


@pytest.mark.slow
def test_two_processes_relay_broadcasts_through_redis_and_each_writes_its_own_rows(built, pg, tmp_path):
    require_program("redis-server")

    async def talk(urls: list[str], redis: RedisService) -> tuple[list[dict], list[dict]]:
        (a, inbox_a), (b, inbox_b) = await open_client(urls[0]), await open_client(urls[1])
        for c, inbox in ((a, inbox_a), (b, inbox_b)):
            c.send(join_message("table-7"))
            await next_op(inbox, "joined")
        await asyncio.to_thread(_wait_subscribers, redis, "room:table-7", 2)  # one subscriber per process
        a.send(broadcast_message("table-7", 0, 10, 1, "from process 0"))
        b.send(broadcast_message("table-7", 0, 20, 2, "from process 1"))
        at_a = [await next_op(inbox_a, "broadcast") for _ in range(2)]
        at_b = [await next_op(inbox_b, "broadcast") for _ in range(2)]
        await _close(a, b)
        return at_a, at_b

    with RedisService(base_dir=tmp_path, log_path=tmp_path / "redis.log") as redis:
        servers = [_server(built, tmp_path, pg, redis=redis.url, server_id=i) for i in range(2)]
        with servers[0][0], servers[1][0]:
            urls = [url_of(s, u) for s, u in servers]
            at_a, at_b = asyncio.run(talk(urls, redis))
            published = int(redis.info("commandstats").get("cmdstat_publish", {}).get("calls", 0))
        logs = [s.log_since_start() for s, _ in servers]
    assert sorted(m["d"] for m in at_a) == sorted(m["d"] for m in at_b) == ["from process 0", "from process 1"]
    assert published == 2  # one PUBLISH per broadcast, whatever the number of processes with members
    assert sorted(_rows(pg)) == ["table-7|1|0|from process 0|0", "table-7|2|0|from process 1|1"]
    assert all("persist: 1 rows in 1 batches, 0 lost" in log for log in logs)


@pytest.mark.slow
def test_hostile_frames_get_a_clear_answer_and_the_server_keeps_serving(built, pg, tmp_path):
    server, url = _server(built, tmp_path, pg)
    plan = frames.protocol_plan(ONE.client)
    with server:
        report = frames.run_battery_sync(
            url_of(server, url),
            plan.probe,
            base_message=plan.base_message,
            cases=plan.cases,
            server_log=server.log_since_start,
            timeout=2 * UNIT,
        )
    assert report.passed, [(r.case, r.failures()) for r in report.failed()]
    codes = {r.case: r.close_code for r in report.results}
    assert codes["not-json"] == codes["json-array"] == codes["bad-utf8"] == 1007 and codes["big-text"] == 1009
