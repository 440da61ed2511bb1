"""Spike 10's instrumented tabletop server for real, with each back end: the five signals arrive.

prometheus and otel: ``/metrics`` parsed with prometheus_client's parser shows the same names;
datadog: a :class:`DogStatsdSink` sees the dotted metrics; sentry: a :class:`SentryIngest` sees the
``fail`` errors; none: ``/metrics`` is 404. With Redis: the dependency gauge follows Redis, and a
Redis that dies is counted as errors while the server keeps serving. SIGTERM stops it cleanly.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from harness import poc
from harness.process import ServerProcess
from spikes.s10_monitoring.poc import instruments as ins
from spikes.s10_monitoring.poc import launch
from spikes.s10_monitoring.poc.sinks import DogStatsdSink, SentryIngest
from tests.utils import UNIT, require_program

pytestmark = pytest.mark.slow  # real servers

FIVE = (
    "tabletop_connections",
    "tabletop_connections_opened_total",
    "tabletop_connections_closed_total",
    "tabletop_messages_total",
    "tabletop_message_bytes_total",
    "tabletop_errors_total",
    "tabletop_handle_seconds_bucket",
    "tabletop_handle_seconds_count",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
)


@contextmanager
def tabletop(instrument: str, *extra: str) -> Iterator[ServerProcess]:
    """The server as every scenario starts it: the instrument's declared POC server (``poc/launch.py``)."""
    with tempfile.TemporaryDirectory() as workdir:
        server = launch.server_process(instrument, Path(workdir), extra=extra)
        server.start()
        try:
            yield server
        finally:
            server.stop()


def test_each_option_declares_the_server_with_its_own_instrumentation() -> None:
    from spikes.s10_monitoring.plugin import spike

    for option in spike.options:
        spec = poc.resolve(option)
        assert spec.argv[spec.argv.index("--instrument") + 1] == option.key and spec.ready.startswith("log:")
    assert launch.option_for("none") is launch.BASELINE and launch.option_for("otel").key == "otel"
    assert poc.resolve(launch.BASELINE).argv[-1] == "none"


def _get(server: ServerProcess, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{server.host}:{server.port}{path}", timeout=5 * UNIT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(server: ServerProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, keyed by (name, labels without otel_scope_*)."""
    status, text = _get(server, "/metrics")
    assert status == 200
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = frozenset((k, v) for k, v in s.labels.items() if not k.startswith("otel_scope"))
            out[(s.name, labels)] = s.value
    return out


def value(smp: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return smp.get((name, frozenset(labels.items())))


async def _traffic(port: int, user: int = 3) -> None:
    """Two connections: echo, join, broadcast, two fails, a bad frame, then one normal and one abrupt close."""
    url = f"ws://127.0.0.1:{port}/"
    async with connect(url, open_timeout=5 * UNIT) as ws:
        await ws.send(orjson.dumps({"op": "echo", "seq": 0, "t": 0, "c": user, "d": "xx"}).decode())
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5 * UNIT))["op"] == "echo"
        await ws.send(orjson.dumps({"op": "join", "room": "r1"}).decode())
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5 * UNIT))["op"] == "joined"
        await ws.send(orjson.dumps({"op": "broadcast", "room": "r1", "seq": 1, "t": 0, "c": user, "d": "y"}).decode())
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5 * UNIT))["op"] == "broadcast"
        for kind in ("value", "no-such-kind"):
            await ws.send(orjson.dumps({"op": "fail", "kind": kind}).decode())
            assert orjson.loads(await asyncio.wait_for(ws.recv(), 5 * UNIT)) == {"op": "failed", "kind": kind}
        await ws.send("not json")
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5 * UNIT))["op"] == "error"
    ws2 = await connect(url, open_timeout=5 * UNIT)
    await ws2.send(orjson.dumps({"op": "echo", "seq": 0, "t": 0, "c": user, "d": "z"}).decode())
    await asyncio.wait_for(ws2.recv(), 5 * UNIT)
    ws2.transport.abort()  # no close frame: an abnormal close (1006)


def poll(check: Callable[[], Any], timeout: float = 5 * UNIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        else:
            if result or time.monotonic() > deadline:
                return result
        time.sleep(0.05)


@pytest.mark.parametrize("instrument", ["prometheus", "otel"])
def test_metrics_endpoint_shows_the_five_signals(instrument: str) -> None:
    with tabletop(instrument, "--user-labels") as server:
        assert _get(server, "/health") == (200, "ok\n")
        asyncio.run(_traffic(server.port or 0))

        def settled() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
            smp = samples(server)
            assert value(smp, "tabletop_connections_closed_total", code_class="abnormal") == 1
            return smp

        smp = poll(settled)
        names = {name for name, _ in smp}
        assert set(FIVE) <= names, set(FIVE) - names
        assert value(smp, "tabletop_connections") == 0
        assert value(smp, "tabletop_connections_opened_total") == 2
        assert value(smp, "tabletop_connections_closed_total", code_class="normal") == 1
        assert value(smp, "tabletop_messages_total", op="echo") == 2
        assert value(smp, "tabletop_messages_total", op="join") == 1
        assert value(smp, "tabletop_messages_total", op="broadcast") == 1
        assert value(smp, "tabletop_messages_total", op="fail") == 2
        assert value(smp, "tabletop_messages_total", op="other") == 1  # the bad frame
        assert (value(smp, "tabletop_message_bytes_total") or 0) > 50
        assert value(smp, "tabletop_errors_total", kind="value") == 1
        assert value(smp, "tabletop_errors_total", kind="other") == 1  # an unknown kind is bounded
        assert value(smp, "tabletop_errors_total", kind="decode") == 1
        assert value(smp, "tabletop_handle_seconds_count") == 7
        assert value(smp, "tabletop_handle_seconds_bucket", le="1.0") == 7
        assert (value(smp, "process_resident_memory_bytes") or 0) > 1_000_000
        assert (value(smp, "process_open_fds") or 0) > 0
        assert value(smp, "tabletop_user_messages_total", user="3") == 3
        assert server.stop() == 0
        assert "STOPPED" in server.log_since_start()
        if instrument == "otel":
            assert "spans_exported=6" in server.log_since_start()  # the bad frame has no span


def test_none_and_sentry_have_no_metrics_endpoint() -> None:
    with tabletop("none") as server:
        assert _get(server, "/metrics")[0] == 404
        assert _get(server, "/health") == (200, "ok\n")
        asyncio.run(_traffic(server.port or 0))


def test_datadog_metrics_reach_the_sink() -> None:
    with DogStatsdSink() as sink, tabletop("datadog", "--dogstatsd", sink.address) as server:
        asyncio.run(_traffic(server.port or 0))

        def arrived() -> dict[str, Any]:
            by: dict[str, Any] = sink.counts()["by_name"]
            assert by.get("tabletop.connections.closed", {}).get("count") == 2
            assert "process.resident_memory_bytes" in by  # the one-second tick
            return by

        by = poll(arrived, 8 * UNIT)
        assert by["tabletop.connections.opened"]["count"] == 2
        assert by["tabletop.messages"]["count"] == 7
        assert ["op:fail"] in by["tabletop.messages"]["tagsets"]
        assert by["tabletop.errors"]["count"] == 3
        assert ["kind:value"] in by["tabletop.errors"]["tagsets"]
        assert by["tabletop.handle_seconds"]["count"] == 7
        assert by["tabletop.message_bytes"]["sum"] > 50
        assert "tabletop.connections" in by and "process.open_fds" in by and "process.cpu_seconds" in by
        assert sink.counts()["malformed"] == 0
        assert server.stop() == 0


def test_sentry_sees_the_fail_errors() -> None:
    with SentryIngest() as ingest, tabletop("sentry", "--sentry-dsn", ingest.dsn) as server:
        assert _get(server, "/metrics")[0] == 404
        asyncio.run(_traffic(server.port or 0))
        assert server.stop() == 0  # the stop flushes sentry's queue
        counts = poll(lambda: ingest.counts()["events"] >= 3 and ingest.counts())
        assert counts["events"] == 3  # two fails and the bad frame
        types = sorted(str(s["type"]) for s in counts["event_samples"])
        assert types.count("ValueError") >= 2
        assert {s["tags"].get("kind") for s in counts["event_samples"]} >= {"value", "other"}


@pytest.mark.parametrize("instrument", ["prometheus", "otel"])
def test_redis_dependency_up_then_down(instrument: str) -> None:
    from harness.services import RedisService  # registers the redis-server tool

    require_program("redis-server")

    with RedisService() as redis, tabletop(instrument, "--redis", f"127.0.0.1:{redis.port}") as server:
        poll(lambda: value(samples(server), "tabletop_dependency_up", dep="redis") == 1)
        asyncio.run(_traffic(server.port or 0))
        poll(lambda: redis.command("LLEN", "tabletop:broadcasts") == 1)
        redis.stop()
        poll(lambda: value(samples(server), "tabletop_dependency_up", dep="redis") == 0)
        poll(lambda: (value(samples(server), "tabletop_errors_total", kind="redis") or 0) >= 1)
        assert _get(server, "/health") == (200, "ok\n")
        assert server.alive


def test_bounded_labels() -> None:
    assert ins.bound_op("echo") == "echo" and ins.bound_op("x" * 100) == "other" and ins.bound_op(None) == "other"
    assert ins.bound_kind("redis") == "redis" and ins.bound_kind("nope") == "other"
    assert ins.code_class(1000) == "normal" and ins.code_class(1006) == "abnormal" and ins.code_class(None) == "abnormal"
