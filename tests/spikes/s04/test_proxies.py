"""Spike 4's proxy matrix cells against a minimal feed server (a fixture, not a POC), through real nginx and squid.

The feed here speaks just enough of the HTTP feed protocol for the cells: ``POST /send``, ``GET /sse`` (joined,
numbered events, ``: ka`` keep-alives), ``GET /poll`` (join without a cursor, held polls with one) and ``/ws``
(join, broadcast); every transport shares one room table. Outcomes are checked, never times: windows are
multiples of the test unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from spikes.s04_transport import proxies
from tests.utils import UNIT, require_program

pytestmark = pytest.mark.slow

#: The fixture feed's keep-alive interval: longer than the short read timeout, as the issue's case (d) needs.
KEEPALIVE_S = 30.0


class _Feed:
    """Rooms with numbered history, shared by SSE, long-poll and WebSocket members."""

    def __init__(self) -> None:
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self.changed: dict[str, asyncio.Event] = {}

    def publish(self, msg: dict[str, Any]) -> int:
        room = msg["room"]
        hist = self.history.setdefault(room, [])
        out = {**msg, "n": len(hist) + 1}
        hist.append(out)
        for q in self.queues.get(room, ()):
            q.put_nowait(out)
        self.changed.setdefault(room, asyncio.Event()).set()
        self.changed[room] = asyncio.Event()
        return int(out["n"])

    def head(self, room: str) -> int:
        return len(self.history.get(room, []))


def _app(feed: _Feed, keepalive_s: float) -> web.Application:
    async def send(request: web.Request) -> web.Response:
        try:
            msg = await request.json()
        except ValueError:
            return web.json_response({"op": "error", "error": "not JSON"}, status=400)
        if not isinstance(msg, dict) or msg.get("op") != "broadcast" or not isinstance(msg.get("room"), str):
            return web.json_response({"op": "error", "error": "not a broadcast"}, status=400)
        n = feed.publish(msg)
        return web.json_response({"op": "ack", "c": msg.get("c"), "seq": msg.get("seq"), "n": n})

    async def sse(request: web.Request) -> web.StreamResponse:
        room = request.query["room"]
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        feed.queues.setdefault(room, set()).add(q)
        try:
            joined = {"op": "joined", "room": room, "n": feed.head(room)}
            await resp.write(f"event: joined\ndata: {json.dumps(joined)}\n\n".encode())
            while True:
                try:
                    msg = await asyncio.wait_for(q.get(), keepalive_s)
                except TimeoutError:
                    await resp.write(b": ka\n\n")
                    continue
                await resp.write(f"id: {msg['n']}\ndata: {json.dumps(msg)}\n\n".encode())
        except ConnectionError:
            pass  # the client (or the proxy) went away: the stream ends
        finally:
            feed.queues[room].discard(q)
        return resp

    async def poll(request: web.Request) -> web.Response:
        room = request.query["room"]
        if "cursor" not in request.query:
            head = feed.head(room)
            return web.json_response({"op": "joined", "room": room, "n": head, "events": [], "cursor": head})
        cursor = int(request.query["cursor"])
        hold = min(float(request.query.get("hold_s", 25)), 60.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hold
        while feed.head(room) <= cursor and loop.time() < deadline:
            event = feed.changed.setdefault(room, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), deadline - loop.time())
            except TimeoutError:
                break
        events = feed.history.get(room, [])[cursor:]
        return web.json_response({"events": events, "cursor": feed.head(room)})

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        rooms: list[str] = []

        async def pump() -> None:
            while True:
                await sock.send_str(json.dumps(await q.get()))

        pumper = asyncio.create_task(pump())
        try:
            async for m in sock:
                if m.type != WSMsgType.TEXT:
                    continue
                msg = json.loads(m.data)
                if msg.get("op") == "join":
                    rooms.append(msg["room"])
                    feed.queues.setdefault(msg["room"], set()).add(q)
                    await sock.send_str(json.dumps({"op": "joined", "room": msg["room"], "n": feed.head(msg["room"])}))
                elif msg.get("op") == "broadcast":
                    feed.publish(msg)
        finally:
            pumper.cancel()
            for room in rooms:
                feed.queues[room].discard(q)
        return sock

    app = web.Application()
    app.router.add_post("/send", send)
    app.router.add_get("/sse", sse)
    app.router.add_get("/poll", poll)
    app.router.add_get("/ws", ws)
    return app


@contextlib.contextmanager
def _serve_feed(keepalive_s: float) -> Iterator[str]:
    """The fixture feed on a free loopback port, its loop in a thread of its own (``asyncio.run``: every handler
    still streaming is cancelled at the end)."""
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
        runner = web.AppRunner(_app(_Feed(), keepalive_s), shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        box["port"] = runner.addresses[0][1]
        started.set()
        await box["stop"].wait()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert started.wait(30 * UNIT)
    try:
        yield f"http://127.0.0.1:{box['port']}"
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30 * UNIT)


@pytest.fixture(scope="module")
def feed_url() -> Iterator[str]:
    """A feed whose keep-alive (30 s) is longer than the short read timeout, as the issue's case (d) needs."""
    with _serve_feed(KEEPALIVE_S) as url:
        yield url


@pytest.fixture(scope="module")
def chatty_feed_url() -> Iterator[str]:
    """A feed that sends ``: ka`` every 0.3 units: more often than the short read timeout."""
    with _serve_feed(0.3 * UNIT) as url:
        yield url


def _cell(transport: str, path: str, feed_url: str, tmp_path: Path, **kw: Any) -> dict[str, Any]:
    kw.setdefault("window_s", 4 * UNIT)
    kw.setdefault("slow_s", 1 * UNIT)
    cell = proxies.run_cell(transport, path, feed_url, tmp_path, events=3, **kw)  # type: ignore[arg-type]
    print(json.dumps(cell, indent=1, default=str))
    return cell


def test_paths_are_described_in_order() -> None:
    assert list(proxies.PATHS) == [
        "nginx-default",
        "nginx-correct",
        "nginx-gzip",
        "nginx-gzip-buffered",
        "nginx-short-read-timeout",
        "nginx-h2-tls",
        "squid-forward",
        "buffering-proxy",
    ]
    assert all(proxies.PATHS.values())


def test_sse_lines_parse_events_and_keepalives() -> None:
    seen = proxies._Seen()
    event: dict[str, list[str]] = {}
    text = 'event: joined\ndata: {"op":"joined","room":"r","n":0}\n\n: ka\n\nid: 1\ndata: {"op":"broadcast","seq":0,"n":1}\n\n'
    for line in text.split("\n"):
        proxies._sse_lines(seen, line, event)
    assert seen.joined_at is not None and list(seen.arrivals) == [0] and seen.keepalives == 1


def test_a_cell_without_a_log_line_is_not_counted() -> None:
    seen = proxies._Seen()
    seen.arrivals = {0: seen.started + 0.01}
    result: dict[str, Any] = {"evidence": {"log": "nginx access.log", "lines": []}}
    proxies._classify(result, seen, {0: seen.started}, 1, {"bytes": 10, "events": 1, "keepalives": 0}, None, 0.5, 1.0)
    assert result["outcome"] == "not counted" and "does not show the request" in result["reason"]
    result["evidence"]["lines"] = ["GET /sse?room=r 200"]
    proxies._classify(result, seen, {0: seen.started}, 1, {"bytes": 10, "events": 1, "keepalives": 0}, None, 0.5, 1.0)
    assert result["outcome"] == "works"
    proxies._classify(result, seen, {0: seen.started}, 1, {"bytes": 10, "events": 1, "keepalives": 0}, None, 0.001, 1.0)
    assert result["outcome"] == "delayed"


def test_squid_config_changes_one_rule(tmp_path: Path) -> None:
    squid = proxies.SquidService(connect_ports=[8123], base_dir=tmp_path)
    text = squid.config(3128, tmp_path)
    assert "acl SSL_ports port 443\n" in text and "acl SSL_ports port 8123\n" in text
    assert "http_access deny CONNECT !SSL_ports" in text
    assert squid.changed_rules() == ["acl SSL_ports port 8123"]


def test_squid_service_logs_and_leaves_nothing(feed_url: str, tmp_path: Path) -> None:
    require_program("squid")
    import urllib.request

    squid = proxies.SquidService(connect_ports=[1], base_dir=tmp_path, keep_logs_in=tmp_path / "kept")
    with squid:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": squid.url}))
        with opener.open(f"{feed_url}/poll?room=direct", timeout=30 * UNIT) as resp:
            assert resp.status == 200
        name, workdir = squid.service_name, squid.dir
        assert squid.server is not None
        for _ in range(int(100 * UNIT)):
            if any("room=direct" in line for line in squid.access_lines()):
                break
            time.sleep(0.05)
        assert any("TCP_MISS/200" in line and "room=direct" in line for line in squid.access_lines())
    assert workdir is not None and not workdir.exists()
    assert not list(Path("/dev/shm").glob(f"{name}-*"))
    assert "room=direct" in (tmp_path / "kept" / "access.log").read_text()


@pytest.mark.parametrize("path", [p for p in proxies.PATHS if p.startswith("nginx-")])
def test_nginx_config_per_variant(path: str, tmp_path: Path) -> None:
    cert = (tmp_path / "c.pem", tmp_path / "k.pem") if path == "nginx-h2-tls" else None
    text = proxies.FeedNginx(5000, path, cert=cert, read_timeout_s=1.5).config(8080, tmp_path)
    assert "proxy_pass http://127.0.0.1:5000;" in text
    assert ("proxy_set_header Upgrade" in text) == (path != "nginx-default")
    assert ("gzip on;" in text) == path.startswith("nginx-gzip")
    assert ("proxy_buffering off;" in text) == (path not in ("nginx-default", "nginx-gzip-buffered"))
    assert ("proxy_read_timeout 1500ms;" in text) == (path == "nginx-short-read-timeout")
    assert ("ssl http2" in text) == (path == "nginx-h2-tls")


def test_nginx_default_fails_websocket_but_serves_sse(feed_url: str, tmp_path: Path) -> None:
    require_program("nginx")
    sse = _cell("sse", "nginx-default", feed_url, tmp_path)
    ws = _cell("ws", "nginx-default", feed_url, tmp_path)
    assert sse["counted"] and sse["outcome"] in ("works", "delayed"), sse["reason"]
    assert ws["counted"] and ws["outcome"] == "fails", ws["reason"]
    assert ws["close"]["how"] == "handshake refused" and ws["status"] >= 400
    assert any(" 101 " not in line and "/ws?cell=" in line for line in ws["evidence"]["lines"])


@pytest.mark.parametrize("transport", proxies.TRANSPORTS)
def test_nginx_correct_works(transport: str, feed_url: str, tmp_path: Path) -> None:
    require_program("nginx")
    cell = _cell(transport, "nginx-correct", feed_url, tmp_path)
    assert cell["counted"], cell["reason"]
    assert cell["outcome"] in ("works", "delayed"), cell["reason"]
    assert cell["received"] == cell["published"]


def test_gzip_streams_sse_when_unbuffered(feed_url: str, tmp_path: Path) -> None:
    require_program("nginx")
    cell = _cell("sse", "nginx-gzip", feed_url, tmp_path)
    assert cell["counted"], cell["reason"]
    assert cell["content_encoding"] == "gzip"  # compressed, and still flushed event by event (proxy_buffering off)
    assert cell["outcome"] in ("works", "delayed"), cell["reason"]


def test_gzip_with_buffering_holds_back_sse(feed_url: str, tmp_path: Path) -> None:
    require_program("nginx")
    cell = _cell("sse", "nginx-gzip-buffered", feed_url, tmp_path, window_s=3 * UNIT)
    assert cell["counted"], cell["reason"]
    assert cell["outcome"] == "fails", cell["reason"]
    assert cell["in_window"]["bytes"] == 0


def test_short_read_timeout_closes_the_stream(feed_url: str, tmp_path: Path) -> None:
    require_program("nginx")
    cell = _cell("sse", "nginx-short-read-timeout", feed_url, tmp_path, read_timeout_s=1.0 * UNIT)
    assert cell["counted"], cell["reason"]
    assert cell["received"] == cell["published"]  # fine while events flow
    assert cell["outcome"] == "fails", cell["reason"]
    assert cell["idle"]["closed_after_idle_s"] is not None
    assert any("timed out" in line for line in cell["evidence"]["error_log"])


def test_keepalive_shorter_than_read_timeout_keeps_sse_open(chatty_feed_url: str, tmp_path: Path) -> None:
    require_program("nginx")
    cell = _cell("sse", "nginx-short-read-timeout", chatty_feed_url, tmp_path, read_timeout_s=1.0 * UNIT, keepalive_s=0.3 * UNIT)
    assert cell["counted"], cell["reason"]
    assert cell["outcome"] in ("works", "delayed"), cell["reason"]
    assert cell["idle"]["keepalives_during_idle"] > 0 and cell["idle"]["event_after_idle_arrived"]


def test_short_read_timeout_long_poll_gets_504(feed_url: str, tmp_path: Path) -> None:
    require_program("nginx")
    cell = _cell("longpoll", "nginx-short-read-timeout", feed_url, tmp_path, read_timeout_s=1.0 * UNIT)
    assert cell["counted"], cell["reason"]
    assert any(e.get("status") == 504 for e in cell["idle"]["errors_during_idle"])


@pytest.mark.parametrize("transport", proxies.TRANSPORTS)
def test_squid_forwards(transport: str, feed_url: str, tmp_path: Path) -> None:
    require_program("squid")
    cell = _cell(transport, "squid-forward", feed_url, tmp_path)
    assert cell["counted"], cell["reason"]
    assert cell["outcome"] in ("works", "delayed"), cell["reason"]
    word = "CONNECT" if transport == "ws" else "GET http://"
    assert any(word in line for line in cell["evidence"]["lines"])
    assert any("acl SSL_ports port" in note for note in cell["notes"])
    if transport == "ws":  # Debian's rule still refuses a tunnel to any other port
        assert cell["debian_connect_rule"]["status"] == 403
        assert any("TCP_DENIED/403" in line for line in cell["debian_connect_rule"]["lines"])


@pytest.mark.parametrize("transport", proxies.TRANSPORTS)
def test_h2_tls(transport: str, feed_url: str, tmp_path: Path) -> None:
    require_program("nginx", "openssl", "curl")
    cell = _cell(transport, "nginx-h2-tls", feed_url, tmp_path)
    assert cell["counted"], cell["reason"]
    assert cell["outcome"] in ("works", "delayed"), cell["reason"]
    proto = "HTTP/1.1" if transport == "ws" else "HTTP/2.0"
    assert any(f"proto={proto}" in line for line in cell["evidence"]["lines"])


@pytest.mark.parametrize("transport", proxies.TRANSPORTS)
def test_buffering_proxy(transport: str, feed_url: str, tmp_path: Path) -> None:
    cell = _cell(transport, "buffering-proxy", feed_url, tmp_path, window_s=2 * UNIT)
    assert cell["counted"], cell["reason"]
    assert cell["evidence"]["faults"][0]["kind"] == "proxy-buffer"
    if transport == "longpoll":  # a connection per poll: each response is forwarded when its connection ends
        assert cell["outcome"] in ("works", "delayed"), cell["reason"]
    else:  # the stream's (or the handshake's) few bytes never fill the buffer
        assert cell["outcome"] == "fails", cell["reason"]
        assert cell["in_window"]["bytes"] == 0
