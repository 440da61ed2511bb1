"""The engine against real servers, each in its own process on a free loopback port."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time

import psutil
import pytest
import uvloop
from typer.testing import CliRunner

from harness import cli
from harness.load import LoadSpec, hold_idle, register, run_load
from harness.load.clients.ws_raw import EchoTemplate, RawWebSocketClient
from harness.load.protocol import echo_message, encode_ws, make_payload
from tests.harness.load.servers import reference_server
from tests.utils import UNIT

pytestmark = pytest.mark.slow


def _spec(port: int, **kw) -> LoadSpec:
    base = dict(url=f"ws://127.0.0.1:{port}/", connect_timeout_s=5 * UNIT, grace_s=2 * UNIT)
    base.update(kw)
    return LoadSpec(**base)


def test_echo_from_two_generator_processes_adds_up():
    with reference_server("ws") as (port, _):
        r = run_load(_spec(port, connections=6, rate=40, duration_s=1.0, processes=2, payload_bytes=100))
    assert r.connected == 6 and r.connect_failed == 0 and len(r.connect_ms) == 6
    assert len(r.generator_cpu) == 2
    assert r.sent > 0 and r.sent == r.received == r.expected
    assert r.lost == 0 and r.unexpected == 0 and r.error_count == 0
    # Every message carries 100 payload bytes plus JSON and framing, both ways.
    assert r.bytes_out > 100 * r.sent and r.bytes_in > 100 * r.received
    assert r.latency_ms["p50"] is not None and r.latency_ms["max"] >= r.latency_ms["p99"] >= r.latency_ms["p50"] > 0
    # Measured from the intended send, latency includes the generator's lateness: never below service time.
    assert r.latency_ms["max"] >= r.service_ms["max"] * 0.999


def test_the_websockets_library_client_counts_the_same_way():
    with reference_server("ws") as (port, _):
        raw = run_load(_spec(port, connections=2, rate=20, duration_s=0.5))
        lib = run_load(_spec(port, transport="ws-websockets", connections=2, rate=20, duration_s=0.5))
    for r in (raw, lib):
        assert r.sent > 0 and r.sent == r.received and r.lost == 0 and r.error_count == 0
    # The raw client sends fixed-width frames (seq padded to 10 digits, the frame to a multiple of 4 bytes), each counted with its
    # framing, plus one 8-byte close frame per connection; the library client the compact JSON with its framing.
    tpl = EchoTemplate(0, make_payload(64))
    assert raw.bytes_out == raw.sent * tpl.frame_len + 8 * raw.connected
    assert 0 <= raw.bytes_in - raw.received * tpl.reply_len <= 4 * raw.connected  # and the server's close frames, if they came in time
    compact = len(encode_ws(echo_message(0, time.time_ns(), 0, make_payload(64)))) + 6
    assert abs(lib.bytes_out / lib.sent - compact) < 4


def test_a_broadcast_room_of_five_receives_every_message_five_times():
    with reference_server("ws") as (port, _):
        r = run_load(_spec(port, mode="broadcast", room="r1", connections=5, rate=10, duration_s=1.0, processes=2, grace_s=1 * UNIT))
    assert r.members == 5 and r.connected == 5
    assert r.sent > 0 and r.received == 5 * r.sent == r.expected and r.lost == 0


def test_fan_out_with_one_sender():
    with reference_server("ws") as (port, _):
        r = run_load(_spec(port, mode="broadcast", connections=4, senders=1, rate=20, duration_s=0.5, grace_s=1 * UNIT))
    assert r.sent > 0 and r.received == 4 * r.sent and r.lost == 0


@pytest.mark.parametrize("transport", ["socketio", "socketio-raw"])
def test_socketio_adapters_echo_and_broadcast(transport):
    with reference_server("socketio") as (port, _):
        url = f"http://127.0.0.1:{port}"
        echo = run_load(_spec(port, url=url, transport=transport, connections=3, rate=20, duration_s=1.0, processes=2))
        room = run_load(
            _spec(port, url=url, transport=transport, mode="broadcast", connections=3, rate=5, duration_s=0.5, grace_s=1 * UNIT)
        )
    assert echo.connected == 3 and echo.sent > 0 and echo.sent == echo.received and echo.lost == 0 and echo.error_count == 0
    assert echo.bytes_out > echo.sent * 64 and echo.bytes_in > echo.received * 64
    # An event is '42["echo",{...}]' in one frame: the payload plus about 60 bytes of JSON, packet type and framing.
    assert echo.bytes_out / echo.sent < 64 + 100
    assert room.sent > 0 and room.received == 3 * room.sent


def test_latency_from_the_intended_send_time_shows_a_stall_a_naive_measure_hides():
    # The server blocks its event loop for 300 ms once, at its 40th message.
    with reference_server("ws", "--stall-after", "40", "--stall-ms", "300") as (port, _):
        closed = run_load(_spec(port, connections=1, rate=50, duration_s=3.0, closed_loop=True))
    # Counts, not speed: a loaded machine may send fewer than the 150 scheduled, but the stall (at the 40th) must be passed.
    assert closed.received == closed.sent and closed.sent > 45
    # The naive measure (from the actual send) sees one slow reply: the stalled one.
    assert closed.service_ms["max"] >= 250
    # From the intended time, the messages that should have gone out during the stall waited too. Load can only add
    # to latency, so these floors hold on a busy machine; the comparison is relative, not a ceiling.
    assert closed.latency_ms["p99"] >= 200
    assert closed.latency_ms["p99"] > closed.service_ms["p99"]


def test_an_open_model_keeps_sending_through_a_stall():
    with reference_server("ws", "--stall-after", "20", "--stall-ms", "300") as (port, _):
        r = run_load(_spec(port, connections=1, rate=50, duration_s=2.0))
    assert r.received == r.sent and r.lost == 0
    # About 15 of ~100 messages were due during the stall; their latency shows it.
    assert r.latency_ms["p90"] >= 50 and r.latency_ms["max"] >= 250


def _kill_once_sending(proc: subprocess.Popen[str], port: int, connections: int, timeout: float) -> None:
    """Kill the server once every connection is up and it has read some messages: mid-run by what happened, not by a clock."""
    server = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout

    def established() -> int:
        return sum(1 for c in server.net_connections(kind="tcp") if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)

    while established() < connections and time.monotonic() < deadline:
        time.sleep(0.01)
    read_at_connect = server.io_counters().read_chars  # includes socket reads: the handshakes so far
    while server.io_counters().read_chars < read_at_connect + 200 and time.monotonic() < deadline:  # a few echo frames
        time.sleep(0.01)
    proc.kill()


def test_a_server_killed_mid_run_costs_errors_not_a_hang():
    with reference_server("ws") as (port, proc):
        killer = threading.Thread(target=_kill_once_sending, args=(proc, port, 4, 20 * UNIT), daemon=True)
        killer.start()
        t0 = time.monotonic()
        r = run_load(_spec(port, connections=4, rate=20, duration_s=3.0 * UNIT, processes=2, grace_s=1 * UNIT))
        elapsed = time.monotonic() - t0
        killer.join(timeout=20 * UNIT)
    assert elapsed < 20 * UNIT
    assert r.connected == 4 and r.dropped == 4
    assert r.error_count >= 4 and any("connection lost" in e or "closed" in e for e in r.errors)
    assert r.sent > 0 and r.unsent > 0  # the rest of the schedule could not be sent
    assert r.received <= r.sent


def test_connecting_to_nothing_reports_failed_connects():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    r = run_load(_spec(port, connections=3, rate=10, duration_s=0.2))
    assert time.monotonic() - t0 < 20 * UNIT
    assert r.connected == 0 and r.failed_connects == {"connection refused": 3} and r.sent == 0


def test_idle_connections_are_held_until_closed():
    async def hold(port, transport, n, url):
        held = await hold_idle(url, transport, n, connect_timeout_s=10 * UNIT)
        async with held:
            assert held.stats.connected == n and held.stats.connect_failed == 0
            assert len(held.stats.connect_ms) == n
            await asyncio.sleep(0.2 * UNIT)
            assert held.alive == n
        assert held.alive == 0

    with reference_server("ws") as (port, _):
        uvloop.run(hold(port, "ws", 300, f"ws://127.0.0.1:{port}/"))
    with reference_server("socketio") as (port, _):
        uvloop.run(hold(port, "socketio", 20, f"http://127.0.0.1:{port}"))
        uvloop.run(hold(port, "socketio-raw", 100, f"http://127.0.0.1:{port}"))


def test_hold_idle_refuses_other_machines():
    with pytest.raises(ValueError, match="this machine"):
        uvloop.run(hold_idle("ws://192.0.2.1:80/", "ws", 1))


def test_command_line_prints_a_summary_or_json(capfd):
    runner = CliRunner()
    with reference_server("ws") as (port, _):
        url = f"ws://127.0.0.1:{port}/"
        res = runner.invoke(cli.app, ["load", url, "--connections", "2", "--rate", "10", "--duration", "0.3", "--json"])
        assert res.exit_code == 0, res.output
        data = json.loads(capfd.readouterr().out or res.output)
        assert data["sent"] == data["received"] > 0
        res = runner.invoke(cli.app, ["load", url, "-c", "1", "-r", "5", "-d", "0.2"])
        assert res.exit_code == 0, res.output
        assert "latency ms" in capfd.readouterr().out + res.output
    assert runner.invoke(cli.app, ["load", "ws://192.0.2.1:80/"]).exit_code == 2


class TaggingClient(RawWebSocketClient):
    """A third-party adapter: the raw client under another name, registered at run time."""

    transport = "ws-tagged"


def test_an_adapter_registered_at_run_time_reaches_the_generator_processes():
    register("ws-tagged", TaggingClient)
    with reference_server("ws") as (port, _):
        r = run_load(_spec(port, transport="ws-tagged", connections=2, rate=10, duration_s=0.3, processes=2))
    assert r.error_count == 0 and r.sent == r.received > 0
