"""Spike 10's custom dashboard: snapshots from /metrics text, the SSE server on a real /metrics, a Chromium screenshot."""

from __future__ import annotations

import asyncio
import json
import math
import sys

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from spikes.s10_monitoring.poc import dashboard
from tests.utils import UNIT, require_program

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """The server's metric names in a registry of their own (prometheus_client's own exposition)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("tabletop_connections", "open", registry=r)
        self.opened = Counter("tabletop_connections_opened", "opened", registry=r)
        self.closed = Counter("tabletop_connections_closed", "closed", ["code_class"], registry=r)
        self.messages = Counter("tabletop_messages", "messages", ["op"], registry=r)
        self.bytes = Counter("tabletop_message_bytes", "bytes", registry=r)
        self.errors = Counter("tabletop_errors", "errors", ["kind"], registry=r)
        self.handle = Histogram("tabletop_handle_seconds", "handling", buckets=BUCKETS, registry=r)
        self.rss = Gauge("process_resident_memory_bytes", "rss", registry=r)
        self.cpu = Counter("process_cpu_seconds", "cpu", registry=r)
        self.fds = Gauge("process_open_fds", "fds", registry=r)

    def text(self) -> str:
        return generate_latest(self.registry).decode()


def test_snapshot_has_the_five_signals_as_rates_and_quantiles():
    m = Metrics()
    m.rss.set(50 * 2**20)
    m.fds.set(12)
    first = dashboard.parse_metrics(m.text(), t_s=100.0)
    m.connections.set(3)
    m.opened.inc(3)
    m.closed.labels("normal").inc(1)
    m.messages.labels("echo").inc(20)
    m.messages.labels("fail").inc(2)
    m.bytes.inc(2000)
    m.errors.labels("value").inc(2)
    m.cpu.inc(0.5)
    for _ in range(98):
        m.handle.observe(0.0003)  # in (0.00025, 0.0005]
    m.handle.observe(0.02)
    m.handle.observe(0.02)
    second = dashboard.parse_metrics(m.text(), t_s=102.0)
    snap = dashboard.snapshot_of(second, first, first)
    assert snap["up"] is True and snap["error"] is None
    assert snap["connections"] == 3
    assert snap["opened_per_s"] == 1.5
    assert snap["closed_per_s"] == {"normal": 0.5}
    assert snap["messages_per_s"] == {"echo": 10.0, "fail": 1.0}
    assert snap["messages_per_s_total"] == 11.0
    assert snap["bytes_per_s"] == 1000.0
    assert snap["errors_per_s"] == {"value": 1.0} and snap["errors_per_s_total"] == 1.0
    assert 0.25 < snap["p50_ms"] <= 0.5
    assert 10 < snap["p99_ms"] <= 25
    assert snap["latency_count"] == 100
    assert snap["rss_bytes"] == 50 * 2**20 and snap["open_fds"] == 12
    assert snap["cpu_cores"] == 0.25
    json.dumps(snap)


def test_quantiles_cover_only_the_window_and_a_reset_counts_from_zero():
    m = Metrics()
    for _ in range(1000):
        m.handle.observe(0.5)  # old, slow observations before the window
    base = dashboard.parse_metrics(m.text(), t_s=10.0)
    for _ in range(10):
        m.handle.observe(0.0002)
    cur = dashboard.parse_metrics(m.text(), t_s=15.0)
    snap = dashboard.snapshot_of(cur, base, base)
    assert snap["latency_count"] == 10 and snap["p99_ms"] <= 0.25
    later = dashboard.parse_metrics(m.text(), t_s=16.0)
    idle = dashboard.snapshot_of(later, cur, cur)
    assert idle["p50_ms"] is None and idle["p99_ms"] is None and idle["messages_per_s_total"] == 0.0
    restarted = Metrics()
    restarted.messages.labels("echo").inc(4)
    after = dashboard.parse_metrics(restarted.text(), t_s=17.0)
    m.messages.labels("echo").inc(100)
    before = dashboard.parse_metrics(m.text(), t_s=16.0)
    assert dashboard.snapshot_of(after, before, None)["messages_per_s"] == {"echo": 4.0}


def test_histogram_quantile_matches_prometheus_rules():
    buckets = {0.1: 0.0, 0.2: 50.0, 0.4: 100.0, math.inf: 100.0}
    assert dashboard.histogram_quantile(0.5, buckets) == pytest.approx(0.2)
    assert dashboard.histogram_quantile(0.25, buckets) == pytest.approx(0.15)
    assert dashboard.histogram_quantile(0.99, {0.1: 1.0, math.inf: 100.0}) == 0.1  # in +Inf: the highest finite bound
    assert dashboard.histogram_quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None
    assert dashboard.histogram_quantile(0.5, {}) is None


def test_a_failed_scrape_is_a_snapshot_saying_so():
    snap = dashboard.snapshot_of(dashboard.Scrape(1.0, error="ClientConnectorError: refused"), None, None)
    assert snap == {"t_s": 1.0, "up": False, "error": "ClientConnectorError: refused", "scrape_ms": 0.0}


# -- the real thing ------------------------------------------------------------------------------------------------


def _server(tmp_path, instrument: str = "prometheus"):
    from harness.poc import REPO_ROOT
    from harness.process import LogReady, ServerProcess

    return ServerProcess(
        "s10-server",
        [sys.executable, "-m", "spikes.s10_monitoring.poc.server", "--host", "{host}", "--port", "{port}", "--instrument", instrument],
        cwd=REPO_ROOT,
        ready=LogReady("READY port="),
        log_path=tmp_path / "server.log",
    )


async def _read_sse(url: str, count: int, timeout: float) -> list[dict]:
    import aiohttp

    got: list[dict] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s, s.get(url) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        event = "message"
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "message":
                got.append(json.loads(line[5:]))
                if len(got) >= count:
                    return got
            elif line == "":
                event = "message"
    return got


@pytest.mark.slow
def test_the_dashboard_pushes_snapshots_of_a_real_servers_metrics(tmp_path):
    import urllib.request

    from websockets.sync.client import connect

    with _server(tmp_path) as server, dashboard._dashboard_process(f"http://127.0.0.1:{server.port}/metrics", tmp_path, 0.25) as dash:
        base = f"http://127.0.0.1:{dash.port}"
        with urllib.request.urlopen(base + "/", timeout=5 * UNIT) as resp:
            html = resp.read().decode()
        assert "custom dashboard: live from /metrics" in html and "/dashboard.js" in html
        with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            for seq in range(20):
                ws.send(json.dumps({"op": "echo", "seq": seq, "t": 0, "c": 1, "d": "x"}))
                ws.recv(timeout=5 * UNIT)
            ws.send(json.dumps({"op": "fail", "kind": "value"}))
            ws.recv(timeout=5 * UNIT)
            snaps = asyncio.run(_read_sse(base + "/events", 3, 20 * UNIT))
    assert len(snaps) == 3 and all(s["up"] for s in snaps)
    assert [s["seq"] for s in snaps] == sorted(s["seq"] for s in snaps)
    last = snaps[-1]
    assert last["connections"] == 1
    assert last["rss_bytes"] > 0 and last["open_fds"] > 0
    assert last["latency_count"] >= 21 and last["p99_ms"] is not None  # the 5 s window still holds the burst
    for key in ("messages_per_s", "errors_per_s", "p50_ms", "cpu_cores", "opened_per_s"):
        assert key in last


@pytest.mark.slow
def test_a_server_that_is_gone_shows_as_down(tmp_path):
    from harness.process import free_port

    gone = f"http://127.0.0.1:{free_port()}/metrics"
    with dashboard._dashboard_process(gone, tmp_path, 0.25) as dash:
        snaps = asyncio.run(_read_sse(f"http://127.0.0.1:{dash.port}/events", 1, 10 * UNIT))
    assert snaps[0]["up"] is False and snaps[0]["error"]


@pytest.mark.slow
def test_capture_makes_a_png_of_live_charts(tmp_path):
    require_program("chromium", "playwright")
    with _server(tmp_path) as server:
        out = dashboard.capture_dashboard(
            f"http://127.0.0.1:{server.port}/metrics",
            tmp_path / "dash.png",
            2.0 * UNIT,
            interval_s=0.5,
            traffic={"ws_url": f"ws://127.0.0.1:{server.port}/", "rate_per_s": 40, "connections": 2, "fail_every": 10},
            workdir=tmp_path,
        )
    png = (tmp_path / "dash.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and out["png_bytes"] == len(png) > 10_000
    assert out["png_width"] >= 1000 and out["png_height"] >= 600
    assert out["snapshots_received"] >= 3 and out["data_span_s"] >= 2.0 * UNIT
    assert out["frames_drawn"] >= 1 and out["page_errors"] == []
    assert out["chromium_version"] and isinstance(out["software_rendering"], bool) and out["rendering"]
    assert out["last_snapshot"]["up"] is True
    assert out["traffic"]["sent"] > 0 and out["traffic"]["errors"] == 0
