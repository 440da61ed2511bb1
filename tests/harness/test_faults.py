"""Fault injection (harness/faults.py): the TCP fault proxy, kernel faults in a network namespace, process faults.

Every test uses real sockets and real servers; timings are checked only as lower bounds or with tolerances
scaled by ``UNIT``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from harness import faults, machine
from harness.faults import (
    Bandwidth,
    Blackhole,
    Buffer,
    ClockSync,
    CloseAfter,
    Delay,
    Fault,
    FaultLog,
    FaultProxy,
    NetNamespace,
    Pass,
    Reset,
    Slice,
    Step,
)
from harness.plugin import NotRunnable
from harness.process import ServerProcess
from harness.services import PostgresService, RedisService  # registers redis-server and postgres
from tests.utils import UNIT, in_ci, require_program

#: A line-agnostic echo server: whatever arrives goes back, until the client closes.
ECHO = """
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(128)
def serve(c):
    with c:
        while True:
            try:
                data = c.recv(65536)
            except OSError:
                return
            if not data:
                return
            c.sendall(data)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def echo_server(name: str = "echo") -> ServerProcess:
    return ServerProcess(name, [sys.executable, "-c", ECHO, "{host}", "{port}"], ready_timeout=30 * UNIT)


@pytest.fixture(scope="module")
def echo() -> Iterator[ServerProcess]:
    with echo_server() as srv:
        yield srv


@pytest.fixture
def proxy(echo: ServerProcess) -> Iterator[FaultProxy]:
    assert echo.port is not None
    with FaultProxy(echo.port) as p:
        yield p


def connect(proxy: FaultProxy, timeout: float = 5 * UNIT) -> socket.socket:
    return socket.create_connection(proxy.address, timeout=timeout)


def recv_exactly(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def roundtrip(s: socket.socket, data: bytes = b"ping") -> bytes:
    s.sendall(data)
    return recv_exactly(s, len(data))


# -- the record ------------------------------------------------------------------------------------


def test_fault_log_is_json_and_records_both_clocks():
    log = FaultLog()
    with log.record("kill", "redis 127.0.0.1:1", signal="SIGKILL") as f:
        assert f.ended_mono is None and log.open() == [f]
    assert f.ended_mono is not None and f.ended_wall is not None and f.duration is not None and f.duration >= 0
    assert abs(f.started_wall - time.time()) < 60 and f.started_mono <= time.monotonic()
    opened = log.begin("freeze", "x")
    data = json.loads(log.to_json())
    assert [d["kind"] for d in data] == ["kill", "freeze"]
    assert data[0]["details"] == {"signal": "SIGKILL"} and data[0]["duration_s"] == f.duration
    assert data[1]["ended_mono"] is None and log.open() == [opened] and len(log) == 2 and log.of_kind("kill") == [f]
    assert set(data[0]) >= {"kind", "target", "started_mono", "ended_mono", "started_wall", "ended_wall", "details"}
    assert isinstance(Fault.begin("x", "y").end(a=1).details["a"], int)


def test_listeners_hear_each_fault_as_it_begins_outside_the_lock():
    heard: list[tuple[str, float | None, int]] = []
    # A listener may read the log (no deadlock): it runs outside the log's lock, and sees the fault not yet ended.
    log = FaultLog(on_fault=lambda f: heard.append((f.kind, f.ended_mono, len(log))))
    with log.record("kill", "server", signal="SIGKILL"):
        assert heard == [("kill", None, 1)]
    late: list[Fault] = []
    log.listen(late.append)
    f = log.begin("freeze", "x")
    assert [h[0] for h in heard] == ["kill", "freeze"] and late == [f]


def test_a_clock_sync_maps_faults_onto_another_clock():
    # Another clock in ms, 5 s ahead: read between two monotonic readings; the tightest pair wins.
    readings = [(10.0, 15_000.9, 10.002), (20.0, 25_000.2, 20.0004), (30.0, 35_003.0, 30.01)]
    sync = ClockSync.from_readings("page_ms", readings, scale=1000.0)
    assert sync.offset == pytest.approx(5_000.0) and sync.uncertainty == pytest.approx(0.2) and sync.samples == 3
    assert sync.to_other(1.0) == pytest.approx(6_000.0) and sync.to_mono(6_000.0) == pytest.approx(1.0)
    worse = ClockSync("page_ms", 5_001.0, 1000.0, 3.0, 2)
    assert worse.combine(sync).offset == sync.offset and sync.combine(worse).samples == 5
    with pytest.raises(ValueError):
        sync.combine(ClockSync("server_s", 0.0))
    with pytest.raises(ValueError):
        ClockSync.from_readings("x", [])
    fault = Fault("kill", "server", 2.0, 2.5)
    d = fault.to_dict(sync)
    assert d["started_page_ms"] == pytest.approx(7_000.0) and d["ended_page_ms"] == pytest.approx(7_500.0)
    log = FaultLog()
    log.begin("freeze", "x")
    assert log.to_list(sync)[0]["ended_page_ms"] is None
    # Measured against a clock that is monotonic itself, shifted: the offset comes back within the uncertainty.

    async def shifted() -> float:
        await asyncio.sleep(0)
        return (time.monotonic() + 100.0) * 1000

    live = asyncio.run(ClockSync.measure("shifted_ms", shifted, scale=1000.0, samples=5))
    assert live.samples == 5 and abs(live.offset - 100_000.0) <= live.uncertainty + 1e-3


# -- the proxy -------------------------------------------------------------------------------------


def test_pass_echoes_through_the_proxy(proxy: FaultProxy):
    with connect(proxy) as s:
        assert roundtrip(s, b"hello") == b"hello"
        big = os.urandom(300_000)
        s.sendall(big)
        assert recv_exactly(s, len(big)) == big
    assert proxy.connections == 1 and len(proxy.log) == 0


def test_reset_and_blackhole_are_told_apart(proxy: FaultProxy):
    with connect(proxy) as a, connect(proxy) as b:
        assert roundtrip(a) == b"ping" and roundtrip(b) == b"ping"
        # Blackhole: no error, no data, the socket stays open; the held data arrives once it is over.
        proxy.set_mode(Blackhole())
        b.settimeout(0.3 * UNIT)
        b.sendall(b"held")
        with pytest.raises(TimeoutError):
            b.recv(10)
        assert b.fileno() != -1
        proxy.restore()
        b.settimeout(5 * UNIT)
        assert recv_exactly(b, 4) == b"held"
        # Reset: open connections are reset at once, new ones as soon as they are accepted.
        proxy.set_mode(Reset())
        with pytest.raises(ConnectionResetError):
            for _ in range(50):  # the RST may land after a send or two
                a.sendall(b"x")
                if not a.recv(10):
                    pytest.fail("a clean close (FIN), not a reset")
        with pytest.raises(ConnectionResetError), connect(proxy) as c:  # connect() itself may see the RST
            c.sendall(b"x")
            c.recv(10)

    kinds = [f.kind for f in proxy.log]
    assert kinds == ["proxy-blackhole", "proxy-reset"] and proxy.log.faults[0].ended_mono is not None


def test_reset_connections_cuts_what_is_open_and_serves_what_comes_next(proxy: FaultProxy):
    with connect(proxy) as a, connect(proxy) as b:
        assert roundtrip(a) == b"ping" and roundtrip(b) == b"ping"
        proxy.set_mode(Delay(0.01))
        fault = proxy.reset_connections()
        assert fault.kind == "proxy-reset" and fault.details["connections"] == 2 and fault.ended_mono is not None
        for s in (a, b):
            with pytest.raises(ConnectionResetError):
                for _ in range(50):  # the RST may land after a send or two
                    s.sendall(b"x")
                    if not s.recv(10):
                        pytest.fail("a clean close (FIN), not a reset")
        # No refusal window: the next connection goes through at once, under the mode that was in force.
        assert isinstance(proxy.mode, Delay)
        with connect(proxy) as c:
            assert roundtrip(c) == b"ping"
    proxy.restore()
    assert [f.kind for f in proxy.log] == ["proxy-delay", "proxy-reset", "proxy-delay"] and not proxy.log.open()


def test_delay_is_measured(proxy: FaultProxy):
    with connect(proxy) as s:
        roundtrip(s)
        proxy.set_mode(Delay(0.2, direction="up"))
        t0 = time.monotonic()
        assert roundtrip(s) == b"ping"
        one_way = time.monotonic() - t0
        proxy.set_mode(Delay(0.1, jitter=0.02))  # both ways: a round trip takes twice
        t0 = time.monotonic()
        assert roundtrip(s) == b"ping"
        both = time.monotonic() - t0
        proxy.restore()
    assert one_way >= 0.15, one_way
    assert both >= 0.15, both
    assert one_way < 0.2 + 3 * UNIT
    fault = proxy.log.of_kind("proxy-delay")[0]
    assert fault.details == {"mode": "delay", "seconds": 0.2, "jitter": 0.0, "direction": "up"}


def test_close_after_n_bytes(proxy: FaultProxy):
    proxy.set_mode(CloseAfter(10, direction="down"))
    with connect(proxy) as s:
        s.sendall(b"0123456789abcdef")
        got = b""
        while chunk := s.recv(100):
            got += chunk
    assert got == b"0123456789"  # exactly 10 bytes, then a clean close
    proxy.set_mode(CloseAfter(3, reset=True))
    with connect(proxy) as s, pytest.raises(ConnectionResetError):
        s.sendall(b"0123456789")
        for _ in range(10):
            if not s.recv(100):
                break


def test_bandwidth_cap_slows_a_transfer(proxy: FaultProxy):
    data = os.urandom(20_000)
    proxy.set_mode(Bandwidth(40_000))  # 20 kB each way at 40 kB/s: at least 0.5 s
    with connect(proxy) as s:
        t0 = time.monotonic()
        s.sendall(data)
        assert recv_exactly(s, len(data)) == data
        took = time.monotonic() - t0
    assert took >= 0.4, took


def test_slice_and_buffer_change_how_data_arrives(proxy: FaultProxy):
    proxy.set_mode(Slice(size=2, interval=0.01, direction="down"))
    with connect(proxy) as s:
        s.sendall(b"abcdef")
        first = s.recv(100)
        assert len(first) <= 4 and first == b"abcdef"[: len(first)]  # pieces, not the whole at once
        assert first + recv_exactly(s, 6 - len(first)) == b"abcdef"
    proxy.set_mode(Buffer(8, direction="down"))
    with connect(proxy) as s:
        s.settimeout(0.3 * UNIT)
        s.sendall(b"abcd")
        with pytest.raises(TimeoutError):  # 4 bytes held: fewer than 8
            s.recv(100)
        s.settimeout(5 * UNIT)
        s.sendall(b"efgh")
        assert recv_exactly(s, 8) == b"abcdefgh"
        s.sendall(b"ij")
        proxy.restore()  # leaving the mode flushes what is held
        assert recv_exactly(s, 2) == b"ij"
    proxy.set_mode(Buffer(1000, flush_after=0.2))
    with connect(proxy) as s:
        s.sendall(b"xyz")
        assert recv_exactly(s, 3) == b"xyz"  # the flush timer released it


def test_a_schedule_cuts_and_restores(proxy: FaultProxy):
    with connect(proxy) as s:
        assert roundtrip(s) == b"ping"
        done = proxy.schedule([Step(Blackhole(), 0.5 * UNIT), Step(Pass(), None)])
        s.settimeout(0.2 * UNIT)
        s.sendall(b"cut")
        with pytest.raises(TimeoutError):
            s.recv(10)
        done.result(timeout=10 * UNIT)
        s.settimeout(5 * UNIT)
        assert recv_exactly(s, 3) == b"cut"
        assert roundtrip(s) == b"ping"
    [fault] = proxy.log.of_kind("proxy-blackhole")
    assert fault.duration is not None and 0.45 * UNIT <= fault.duration < 0.5 * UNIT + 2 * UNIT
    assert isinstance(proxy.mode, Pass) and not proxy.log.open()
    proxy.cut(0.1 * UNIT, Reset()).result(timeout=10 * UNIT)
    assert [f.kind for f in proxy.log] == ["proxy-blackhole", "proxy-reset"]


def test_the_proxy_runs_on_the_callers_loop(echo: ServerProcess):
    assert echo.port is not None

    async def main() -> tuple[bytes, bytes, int]:
        async with FaultProxy(echo.port) as p:
            r, w = await asyncio.open_connection(*p.address)
            w.write(b"one")
            first = await r.readexactly(3)
            p.set_mode(Delay(0.05))
            await p.run_schedule([Step(Slice(1), 0.05), Step(Pass(), None)])
            w.write(b"two")
            second = await r.readexactly(3)
            w.close()
            return first, second, len(p.log)

    assert asyncio.run(main()) == (b"one", b"two", 2)


def test_a_refused_upstream_resets_the_client():
    from harness.process import free_port

    with FaultProxy(free_port()) as p, pytest.raises((ConnectionResetError, ConnectionAbortedError)):
        with connect(p) as s:  # the RST may come before connect() returns
            s.sendall(b"x")
            if not s.recv(10):
                raise AssertionError("a clean close (FIN), not a reset")


# -- the network namespace --------------------------------------------------------------------------------


def need_netns() -> None:
    """Skip without root or ip/nft (under CI: fail)."""
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("CI runs as root: network namespace tests must run", pytrace=False)
        pytest.skip("network namespaces need root")
    require_program("ip", "nft")


def test_net_tools_missing_is_not_runnable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(machine, "find_tool", lambda name: None)
    with pytest.raises(NotRunnable, match="apt-get install -y nftables iproute2"):
        NetNamespace().__enter__()
    monkeypatch.setattr(machine, "find_tool", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NotRunnable, match="root"):
        faults.require_net_tools()


def test_namespace_drop_and_reject_then_gone():
    need_netns()
    log = FaultLog()
    with NetNamespace(log=log) as ns:
        name = ns.name
        assert NetNamespace.exists(name)
        with ns.server("echo-ns", [sys.executable, "-c", ECHO, "{host}", "{port}"], ready_timeout=30 * UNIT) as srv:
            addr = (str(ns.address), srv.port)
            with socket.create_connection(addr, timeout=5 * UNIT) as s:
                assert roundtrip(s) == b"ping"
                # Drop: the open connection goes silent, a new connect times out.
                with ns.dropped(srv.port):
                    s.settimeout(0.3 * UNIT)
                    s.sendall(b"lost")
                    with pytest.raises(TimeoutError):
                        s.recv(10)
                    with pytest.raises(TimeoutError):
                        socket.create_connection(addr, timeout=0.3 * UNIT)
                # Reject: reset of the open connection, refusal of a new one.
                ns.reject(srv.port)
                assert "reject with tcp reset" in ns.rules()
                with pytest.raises((ConnectionResetError, ConnectionRefusedError)):
                    for _ in range(20):
                        s.sendall(b"x")
                        time.sleep(0.05 * UNIT)
                with pytest.raises(ConnectionRefusedError):
                    socket.create_connection(addr, timeout=2 * UNIT)
                ns.clear()
            with socket.create_connection(addr, timeout=5 * UNIT) as s2:
                assert roundtrip(s2, b"pong") == b"pong"  # cleared: served again
    assert not NetNamespace.exists(name)
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert ns.host_if not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert [f.kind for f in log] == ["netns-drop", "netns-reject"] and not log.open()


def test_namespace_removed_on_error():
    need_netns()
    with pytest.raises(RuntimeError, match="boom"), NetNamespace() as ns:
        name = ns.name
        raise RuntimeError("boom")
    assert not NetNamespace.exists(name)


# -- process faults --------------------------------------------------------------------------------


def test_a_killed_server_restarts_on_the_same_port():
    log = FaultLog()
    with echo_server("echo-kill") as srv:
        port, pid = srv.port, srv.pid
        fault = faults.kill_and_restart(srv, log=log)
        assert srv.alive and srv.port == port and srv.pid != pid
        assert fault.details["old_pid"] == pid and fault.details["new_pid"] == srv.pid and fault.details["exit_code"] == -signal.SIGKILL
        assert fault.duration is not None and fault.duration > 0 and log.faults == [fault]
        assert srv.port is not None
        with socket.create_connection((srv.host, srv.port), timeout=5 * UNIT) as s:
            assert roundtrip(s) == b"ping"


def test_a_frozen_server_answers_after_sigcont():
    with echo_server("echo-freeze") as srv, socket.create_connection((srv.host, srv.port or 0), timeout=5 * UNIT) as s:
        with faults.frozen(srv) as fault:
            assert srv.pid is not None
            with open(f"/proc/{srv.pid}/stat") as f:
                assert f.read().rsplit(")", 1)[1].split()[0] == "T"  # stopped
            s.settimeout(0.3 * UNIT)
            s.sendall(b"wait")
            with pytest.raises(TimeoutError):
                s.recv(10)
        s.settimeout(5 * UNIT)
        assert recv_exactly(s, 4) == b"wait"
        assert fault.kind == "freeze" and fault.duration is not None and fault.duration >= 0.25 * UNIT
        assert faults.freeze(srv, 0.05).details["signal"] == "SIGSTOP"


@pytest.mark.slow
def test_redis_killed_mid_use_is_restarted_and_timed():
    require_program("redis-server")
    log = FaultLog()
    with RedisService() as redis:
        port = redis.port
        assert redis.host is not None and port is not None
        with socket.create_connection((redis.host, port), timeout=5 * UNIT) as client:
            client.sendall(b"PING\r\n")
            assert client.recv(100) == b"+PONG\r\n"
            fault = faults.crash_redis(redis, log=log)
            client.sendall(b"PING\r\n")
            with pytest.raises(OSError):  # the old connection died with the server
                if not client.recv(100):
                    raise ConnectionResetError("closed")
        assert redis.port == port and redis.command("PING") in ("PONG", b"PONG")
        assert fault.kind == "redis-kill" and fault.ended_mono is not None and fault.ended_mono > fault.started_mono
        paused = faults.pause_redis(redis, 0.2, log=log)
        assert paused.duration is not None and paused.duration >= 0.2
        assert [f.kind for f in log] == ["redis-kill", "redis-pause"]
        json.loads(log.to_json())


@pytest.mark.slow
def test_postgres_immediate_shutdown_and_restart():
    require_program("postgres")
    with PostgresService() as pg:
        pid, port = pg.pid, pg.port
        fault = faults.crash_postgres(pg)
        assert pg.alive and pg.port == port and pg.pid != pid
        assert fault.details["exit_code"] is not None and fault.duration is not None
        assert "1" in pg.psql("select 1")
