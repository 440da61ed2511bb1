"""The Node side: official clients talk to every server, the SvelteKit build serves page and socket, bundle sizes add up."""

from __future__ import annotations

import asyncio
import http.client
import json
import re

import pytest
from websockets.asyncio.client import connect

from spikes.s01_websocket_impl import build
from tests.utils import UNIT

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("option", "transport", "package"),
    [
        ("native", "ws", "ws"),
        ("socketio", "socketio", "socket.io-client"),
        ("socketio", "socketio-polling", "socket.io-client"),
        ("socketio-node", "socketio", "socket.io-client"),
        ("socketio-node", "socketio-polling", "socket.io-client"),
        ("sveltekit", "ws", "ws"),
    ],
)
def test_official_node_clients_echo_join_and_broadcast(start_server, node_tools, option, transport, package):
    server = start_server(option)
    result = build.client_check(server.url, transport, timeout=10 * UNIT)
    assert result["ok"], result
    assert result["client"].startswith(f"{package}@")
    assert result["echo_ms"] > 0 and result["broadcast_ms"] > 0


def test_client_check_reports_a_failure_as_a_result(node_tools):
    # Port 1 is never a POC server: the check must say so, not hang or crash.
    result = build.client_check("ws://127.0.0.1:1/", "ws", timeout=5 * UNIT)
    assert result["ok"] is False and result["errors"]


def _get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5 * UNIT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_sveltekit_build_serves_the_page_its_scripts_and_the_websocket(start_server):
    server = start_server("sveltekit")
    status, headers, body = _get(server.process.port, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    html = body.decode()
    assert "<h1>Tabletop</h1>" in html  # rendered on the server
    scripts = re.findall(r'import\("\./(_app/immutable/entry/[^"]+\.js)"\)', html)
    assert len(scripts) == 2, html  # SvelteKit's start and app entries
    for script in scripts:
        status, headers, _ = _get(server.process.port, "/" + script)
        assert status == 200 and "javascript" in headers["content-type"]

    async def echo() -> dict:
        async with connect(server.url, proxy=None) as ws:
            await ws.send(json.dumps({"op": "echo", "seq": 1, "t": 0, "c": 0, "d": "on the same port"}))
            return json.loads(await asyncio.wait_for(ws.recv(), 5 * UNIT))

    assert asyncio.run(echo())["d"] == "on the same port"
    # Any other upgrade path is refused: /ws is the only socket.
    with pytest.raises(Exception):  # noqa: B017 - refused as an HTTP error or a closed socket, whichever comes first
        asyncio.run(asyncio.wait_for(connect(server.url.replace("/ws", "/other"), proxy=None), 5 * UNIT))


def test_sveltekit_build_is_cached_by_source_hash(sveltekit_dir):
    assert (sveltekit_dir / "build" / "handler.js").is_file()
    assert build.ensure_sveltekit_build() == sveltekit_dir  # unchanged sources: the same build, no rebuild
    # The build happens in the cache, so the spike package (and its source hash) stays free of generated files.
    assert sveltekit_dir.is_relative_to(build.default_cache_dir())


def test_bundle_sizes_measure_each_browser_client(sveltekit_dir, node_tools, tmp_path):
    sizes = build.bundle_sizes(write_dir=tmp_path)
    # One bundle per browser client: both Socket.IO servers get the same socket.io-client bundle.
    assert set(sizes) == {*build.BROWSER_CLIENT.values(), "sveltekit_baseline"}
    for option, size in sizes.items():
        assert 0 < size["gzip_bytes"] < size["min_bytes"], (option, size)
        assert size["files"]
    # The native client has no dependency; the Socket.IO bundle carries socket.io-client.
    assert sizes["native"]["min_bytes"] < sizes["socketio"]["min_bytes"]
    assert (tmp_path / "native.js").stat().st_size == sizes["native"]["min_bytes"]
    assert "export" in (tmp_path / "socketio.js").read_text()
    # The SvelteKit page's files are the ones vite emitted, all present in the build.
    for name in sizes["sveltekit"]["files"]:
        assert (sveltekit_dir / "build" / "client" / name).is_file()
    # The empty page is built next to it on the same install, and is smaller: the framework alone.
    baseline = build.ensure_sveltekit_baseline()
    assert baseline.parent == sveltekit_dir.parent and (baseline / "node_modules").resolve() == (sveltekit_dir / "node_modules").resolve()
    for name in sizes["sveltekit_baseline"]["files"]:
        assert (baseline / "build" / "client" / name).is_file()
    assert 0 < sizes["sveltekit_baseline"]["gzip_bytes"] < sizes["sveltekit"]["gzip_bytes"]


def test_server_commands_have_a_port_placeholder_and_a_url(sveltekit_dir):
    commands = build.server_commands()
    assert list(commands) == list(build.OPTIONS)
    for option, cmd in commands.items():
        assert "{port}" in cmd["argv"] and "{port}" in cmd["url"], option
        assert cmd["transport"] == build.TRANSPORTS[option]
