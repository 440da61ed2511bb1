"""POC server processes: readiness, clean stops, process groups, crashes, Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from harness import process
from harness.process import (
    HttpReady,
    LogReady,
    PortInUse,
    ServerCrashed,
    ServerNotReady,
    ServerProcess,
    TcpReady,
    free_port,
    pin_current,
    pin_plan,
    port_in_use,
)
from tests.utils import UNIT, as_from_a_terminal

SERVERS = Path(__file__).resolve().parent / "servers"
ROOT = Path(__file__).resolve().parents[2]


def gone(pid: int) -> bool:
    """No such process, or only its zombie (PID 1 in containers may never reap orphans)."""
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return True


def my_live_children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if not gone(p.pid)}


def http_server(tmp_path: Path, **kw) -> ServerProcess:
    return ServerProcess(
        "http-test",
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "{port}"],
        cwd=tmp_path,
        ready=HttpReady("/"),
        ready_timeout=10 * UNIT,
        log_path=tmp_path / "http.log",
        grace=2 * UNIT,
        **kw,
    )


def forking_server(tmp_path: Path, *flags: str, grace: float = 2 * UNIT) -> ServerProcess:
    return ServerProcess(
        "forking",
        [sys.executable, str(SERVERS / "forking.py"), "--port", "{port}", *flags],
        ready=LogReady(r"listening on \d+"),
        ready_timeout=10 * UNIT,
        log_path=tmp_path / "forking.log",
        grace=grace,
    )


def grandchild_pid(srv: ServerProcess) -> int:
    return int(re.search(r"grandchild (\d+)", srv.log_since_start()).group(1))


def test_free_port_and_port_in_use():
    port = free_port()
    assert not port_in_use(port)
    with socket.create_server(("127.0.0.1", port)):
        assert port_in_use(port)
    assert free_port() != free_port()  # handed-out ports are not offered twice in a row


def test_http_server_starts_ready_and_stops_without_leftovers(tmp_path):
    (tmp_path / "hello.txt").write_text("hi")
    before = my_live_children()
    srv = http_server(tmp_path)
    with srv:
        assert srv.alive and srv.port and srv.returncode is None
        assert srv.command()[-1] == str(srv.port)  # {port} was substituted
        assert srv in process.live_servers()
        with urllib.request.urlopen(f"{srv.url}/hello.txt", timeout=5 * UNIT) as resp:
            assert resp.read() == b"hi"
        pid = srv.pid
        assert pid in my_live_children()
    assert not srv.alive and srv.returncode == -signal.SIGTERM
    assert gone(pid) and not psutil.pid_exists(pid)  # reaped, not a zombie
    assert my_live_children() == before
    assert srv not in process.live_servers()
    log = (tmp_path / "http.log").read_text()
    assert "[harness] start http-test" in log and "GET /hello.txt" in log


def test_stop_kills_the_whole_process_group(tmp_path):
    before = my_live_children()
    srv = forking_server(tmp_path).start()
    gc = grandchild_pid(srv)
    assert not gone(gc) and TcpReady()(srv)
    srv.stop()
    assert gone(srv.pid) and gone(gc)
    assert my_live_children() == before


def test_stubborn_processes_get_sigkill_after_the_grace_period(tmp_path):
    srv = forking_server(tmp_path, "--stubborn", grace=0.5 * UNIT).start()
    gc = grandchild_pid(srv)
    t0 = time.monotonic()
    assert srv.stop() == -signal.SIGKILL
    assert time.monotonic() - t0 >= 0.5 * UNIT
    assert gone(srv.pid) and gone(gc)


def test_a_child_that_left_the_group_is_killed_too(tmp_path):
    srv = forking_server(tmp_path, "--escape").start()
    gc = grandchild_pid(srv)
    assert os.getpgid(gc) != srv.pid
    srv.stop()
    assert gone(gc)


def test_a_server_that_crashed_later_is_cleaned_up_with_its_exit_code(tmp_path):
    srv = forking_server(tmp_path, "--crash-after", str(0.2 * UNIT)).start()
    gc = grandchild_pid(srv)
    deadline = time.monotonic() + 10 * UNIT
    while srv.alive and time.monotonic() < deadline:
        time.sleep(0.02 * UNIT)
    assert srv.returncode == 7 and not gone(gc)  # the leader died; its child lives on in the group
    assert srv in process.live_servers()
    assert srv.stop() == 7 and gone(gc)
    assert srv not in process.live_servers() and srv.stop() == 7  # stopping twice is harmless
    assert "stopped, exit code 7" in (tmp_path / "forking.log").read_text()


def test_a_server_that_never_gets_ready_raises_server_not_ready_with_its_log(tmp_path):
    before = my_live_children()
    srv = ServerProcess(
        "sleepy",
        [sys.executable, "-c", "print('booting slowly'); import time; time.sleep(60)"],
        ready_timeout=0.5 * UNIT,
        log_path=tmp_path / "sleepy.log",
    )
    with pytest.raises(ServerNotReady) as exc:
        srv.start()
    msg = str(exc.value)
    assert "'sleepy'" in msg and "booting slowly" in msg and "TCP connect" in msg
    assert "booting slowly" in exc.value.log_lines
    assert not srv.alive and gone(srv.pid)
    assert my_live_children() == before


def test_a_server_that_exits_at_once_raises_server_crashed_with_its_exit_code(tmp_path):
    srv = ServerProcess(
        "broken",
        [sys.executable, "-c", "import sys; print('bad config: no such file'); sys.exit(3)"],
        ready_timeout=10 * UNIT,
        log_path=tmp_path / "broken.log",
    )
    with pytest.raises(ServerCrashed) as exc:
        srv.start()
    assert exc.value.returncode == 3
    msg = str(exc.value)
    assert "'broken'" in msg and "exit code 3" in msg and "bad config: no such file" in msg
    assert srv.returncode == 3


def test_a_taken_port_raises_port_in_use_before_starting(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        srv = http_server(tmp_path, port=port)
        with pytest.raises(PortInUse, match=rf"port {port}\b"):
            srv.start()
        assert srv.pid is None  # nothing was spawned


def test_a_port_taken_between_choosing_and_binding_is_retried_with_another(tmp_path, monkeypatch):
    # The race seen in CI: the kernel called a port free, another process took it
    # before redis-server bound it, and the server exited "Address already in use".
    with socket.create_server(("127.0.0.1", 0)) as taken:
        stolen = taken.getsockname()[1]
        offers = iter([stolen])
        real = process.free_port
        monkeypatch.setattr(process, "free_port", lambda host="127.0.0.1": next(offers, None) or real(host))
        with http_server(tmp_path) as srv:
            assert srv.port != stolen and srv.starts == 1
            with urllib.request.urlopen(srv.url + "/", timeout=5 * UNIT) as resp:
                assert resp.status == 200
        assert "Address already in use" in (tmp_path / "http.log").read_text()


def test_a_server_that_keeps_losing_its_port_gives_up_with_the_crash(tmp_path, monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        stolen = taken.getsockname()[1]
        monkeypatch.setattr(process, "free_port", lambda host="127.0.0.1": stolen)
        srv = http_server(tmp_path)
        with pytest.raises(ServerCrashed, match="Address already in use"):
            srv.start()
        assert not srv.alive
        assert (tmp_path / "http.log").read_text().count("[harness] start") == process.PORT_RACE_ATTEMPTS


def test_kill_then_restart_serves_again_on_the_same_port(tmp_path):
    with http_server(tmp_path) as srv:
        port, pid = srv.port, srv.pid
        assert srv.kill() == -signal.SIGKILL
        assert not srv.alive and srv.returncode == -signal.SIGKILL and gone(pid)
        srv.restart()
        assert srv.alive and srv.port == port and srv.pid != pid
        with urllib.request.urlopen(srv.url + "/", timeout=5 * UNIT) as resp:
            assert resp.status == 200
        assert srv.starts == 2
    assert gone(srv.pid)


def test_an_exception_in_the_with_block_still_stops_the_server(tmp_path):
    with pytest.raises(RuntimeError), forking_server(tmp_path) as srv:
        gc = grandchild_pid(srv)
        raise RuntimeError("scenario failed")
    assert gone(srv.pid) and gone(gc)


def test_env_and_cwd_reach_the_server_and_log_probe_sees_only_this_start(tmp_path):
    code = "import os; print('port', os.environ['MY_PORT'], 'in', os.getcwd()); import time; time.sleep(60)"
    srv = ServerProcess(
        "env",
        [sys.executable, "-c", code],
        env={"MY_PORT": "{port}"},
        cwd=tmp_path,
        ready=LogReady(r"^port \d+ in "),
        ready_timeout=10 * UNIT,
        log_path=tmp_path / "env.log",
        grace=UNIT,
    )
    with srv:
        assert f"port {srv.port} in {tmp_path}" in srv.log_since_start()
        assert srv.last_log_lines(1)[0].startswith("[harness]")  # the "ready" note
    # A stale "ready" line from the first run must not satisfy the second start.
    srv.argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    srv.ready_timeout = 0.3 * UNIT
    with pytest.raises(ServerNotReady):
        srv.start()


@pytest.mark.skipif(pin_plan() is None, reason="needs at least 2 CPUs")
def test_cpu_pinning(tmp_path):
    plan = pin_plan()
    assert plan.server and plan.load and not (plan.server & plan.load)
    assert plan.server | plan.load == frozenset(os.sched_getaffinity(0))
    with forking_server(tmp_path) as srv:  # not pinned: inherits the harness's set
        assert os.sched_getaffinity(srv.pid) == os.sched_getaffinity(0)
    pinned = ServerProcess(
        "pinned",
        [sys.executable, str(SERVERS / "forking.py"), "--port", "{port}"],
        ready=LogReady("listening"),
        ready_timeout=10 * UNIT,
        log_path=tmp_path / "pinned.log",
        cpus=plan.server,
        grace=UNIT,
    )
    with pinned:
        assert os.sched_getaffinity(pinned.pid) == set(plan.server)
        assert os.sched_getaffinity(grandchild_pid(pinned)) == set(plan.server)
    # Affinity is per thread on Linux: a thread started before pinning must be pinned too.
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, daemon=True)
    worker.start()
    before = pin_current(plan.load)
    try:
        assert os.sched_getaffinity(0) == set(plan.load)
        assert os.sched_getaffinity(worker.native_id) == set(plan.load)
    finally:
        pin_current(before)
        stop.set()
    assert os.sched_getaffinity(0) == before


def test_pin_plan_splits_cores():
    assert pin_plan(available={0}) is None
    assert pin_plan(available={0, 1, 2, 3}) == process.PinPlan(frozenset({0}), frozenset({1, 2, 3}))
    assert pin_plan(2, available={4, 5, 6}) == process.PinPlan(frozenset({4, 5}), frozenset({6}))
    assert pin_plan(9, available={0, 1}) == process.PinPlan(frozenset({0}), frozenset({1}))


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGHUP", "exception", "SIGTERM-thread"])
def test_a_signalled_or_crashing_harness_leaves_no_server_behind(tmp_path, how):
    # The driver runs in its own group, as a harness would under a terminal: Ctrl-C
    # reaches the group of the harness, never the servers' own groups.
    driver = subprocess.Popen(
        [
            sys.executable,
            str(SERVERS / "driver.py"),
            str(tmp_path / "driven.log"),
            {"exception": "raise", "SIGTERM-thread": "thread"}.get(how, "wait"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
    )
    watchdog = threading.Timer(30 * UNIT, driver.kill)  # a hung driver must fail the test, not hang it
    watchdog.start()
    try:
        line = driver.stdout.readline()
        m = re.match(r"server (\d+) grandchild (\d+)", line)
        assert m, f"driver said {line!r}; stderr: {driver.stderr.read() if driver.poll() is not None else ''}"
        server, gc = int(m.group(1)), int(m.group(2))
        assert not gone(server) and not gone(gc)
        sig = how.split("-")[0]
        if how != "exception":
            os.killpg(driver.pid, getattr(signal, sig))
        driver.wait(timeout=10 * UNIT)
        deadline = time.monotonic() + 5 * UNIT
        while not (gone(server) and gone(gc)) and time.monotonic() < deadline:
            time.sleep(0.05 * UNIT)
        assert gone(server) and gone(gc)
        if sig in ("SIGTERM", "SIGHUP"):
            assert driver.returncode == 128 + getattr(signal, sig)  # our handler's SystemExit
        elif how == "exception":
            assert driver.returncode == 1 and "the harness crashed" in driver.stderr.read()
        assert "driven stopped" in (tmp_path / "driven.log").read_text()
    finally:
        watchdog.cancel()
        if driver.poll() is None:
            driver.kill()
            driver.wait()
