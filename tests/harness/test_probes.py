"""Process probes: sampling a busy process tree, and the summaries built on it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import psutil
import pytest

from harness.probes import ProcessSampler, mean_cpu, memory_per_connection, peak_rss, rss_bytes, steady_rss, summarize
from tests.utils import UNIT

MB = 1024 * 1024

#: Touch 40 MB (so it is resident, not just reserved), say so, then spin.
BUSY = "import sys\nblob = b'x' * (40 * 1024 * 1024)\nprint('ready', flush=True)\nwhile True: pass\n"
#: A parent that idles while its child is busy: only the tree shows the work.
PARENT = (
    f"import subprocess, sys, time\nc = subprocess.Popen([sys.executable, '-c', {BUSY!r}], stdout=sys.stdout)\nwhile True: time.sleep(1)\n"
)


@pytest.fixture
def spawn():
    procs: list[subprocess.Popen[str]] = []

    def start(code: str) -> subprocess.Popen[str]:
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "ready"
        return p

    yield start
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def _until(condition: Callable[[], bool], timeout: float) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds (a multiple of UNIT)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:.1f} s"
        time.sleep(0.02)


def _cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def test_sampling_a_busy_process_sees_cpu_and_memory_and_never_outpaces_its_rate(spawn):
    # Behaviour, not speed: a loaded machine may delay the sampling thread, so wait for a number of samples
    # rather than for a time, and check only what load cannot break (never faster than asked; CPU adds up).
    busy = spawn(BUSY)
    cpu_before = _cpu_seconds(busy.pid)
    with ProcessSampler(busy.pid, hz=10) as sampler:
        _until(lambda: len(sampler.samples) >= 6, 30 * UNIT)
    cpu_after = _cpu_seconds(busy.pid)
    samples = sampler.samples
    ts = [s["t"] for s in samples]
    assert ts == sorted(ts) and len(set(ts)) == len(ts) and ts[0] > 0
    assert len(samples) <= 10 * ts[-1] + 1, f"{len(samples)} samples in {ts[-1]:.2f} s at 10 Hz"
    assert all(s["rss_bytes"] > 40 * MB for s in samples)
    # cpu_percent is of one core over each interval: summed back to seconds, it is the CPU the process used
    # while sampled, which psutil's own counters bound from outside. It spins, so that is more than nothing.
    used = sum(s["cpu_percent"] / 100 * (t - t_prev) for s, t, t_prev in zip(samples, ts, [0.0, *ts[:-1]]))
    assert 0 < used <= cpu_after - cpu_before + 0.02
    assert used <= ts[-1] + 0.02  # one thread: at most one core
    assert mean_cpu(samples) > 0 and sampler.mean_cpu() == mean_cpu(samples)
    assert sampler.peak_rss() == peak_rss(samples) > 40 * MB
    first = samples[0]
    assert first["num_threads"] >= 1 and first["num_fds"] >= 3 and first["num_processes"] == 1


def test_the_tree_counts_children_and_the_root_alone_does_not(spawn):
    parent = spawn(PARENT)
    with ProcessSampler(parent.pid, hz=20) as tree, ProcessSampler(parent.pid, hz=20, include_children=False) as root:
        _until(lambda: len(tree.samples) >= 4 and len(root.samples) >= 4, 30 * UNIT)
    assert tree.summary()["peak_processes"] == 2 and root.summary()["peak_processes"] == 1
    assert tree.mean_cpu() > root.mean_cpu()  # the parent sleeps; its child spins
    assert tree.peak_rss() > root.peak_rss() + 30 * MB
    assert rss_bytes(parent.pid) > rss_bytes(parent.pid, include_children=False) + 30 * MB
    assert 0 < rss_bytes(parent.pid, pss=True) <= rss_bytes(parent.pid) * 1.01


def test_sampling_ends_by_itself_when_the_process_exits():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    sampler = ProcessSampler(p.pid, hz=20, connections=True).start()
    p.wait(timeout=10 * UNIT)
    sampler._thread.join(timeout=5 * UNIT)
    assert not sampler._thread.is_alive()
    samples = sampler.stop()
    assert samples and all("connections" in s for s in samples)


def test_memory_per_connection_and_summaries():
    assert memory_per_connection(rss_with_n=1_100_000, rss_with_0=100_000, n=100) == 10_000
    with pytest.raises(ValueError):
        memory_per_connection(1, 0, 0)
    samples = [
        {"t": 0.1, "cpu_percent": 50.0, "rss_bytes": 10, "num_fds": 5, "num_threads": 2, "num_processes": 1},
        {"t": 0.2, "cpu_percent": 150.0, "rss_bytes": 30, "num_fds": None, "num_threads": 3, "num_processes": 2},
    ]
    s = summarize(samples)
    assert s["samples"] == 2 and s["duration_s"] == 0.2 and s["peak_rss_bytes"] == 30 and s["mean_rss_bytes"] == 20
    assert s["mean_cpu_percent"] == 100.0 and s["max_cpu_percent"] == 150.0
    assert s["peak_fds"] == 5 and s["peak_threads"] == 3 and s["peak_processes"] == 2 and s["peak_connections"] is None
    assert summarize([])["samples"] == 0 and mean_cpu([]) == 0.0 and peak_rss([]) == 0


#: Listens on a port, accepts whoever comes, and opens one socket of its own to another listener (a pool's connection).
SERVER = (
    "import socket, sys, time\n"
    "ls = socket.socket(); ls.bind(('127.0.0.1', 0)); ls.listen()\n"
    "own = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
    "print(ls.getsockname()[1], flush=True)\n"
    "held = []\n"
    "while True: held.append(ls.accept()[0])\n"
)


def test_client_connections_count_only_the_listening_port():
    import socket

    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen()
    p = subprocess.Popen([sys.executable, "-c", SERVER, str(other.getsockname()[1])], stdout=subprocess.PIPE, text=True)
    clients: list[socket.socket] = []
    try:
        port = int(p.stdout.readline())
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        deadline = time.monotonic() + 10 * UNIT
        sampler = ProcessSampler(p.pid, hz=20, connections=True, listen_port=port)
        # Two /proc reads per sample, and accept() runs in the server's own time: wait until one sample has it all.
        while (
            (s := sampler.sample()) is not None and (s["client_connections"] != 3 or s["connections"] < 5) and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert s is not None and s["client_connections"] == 3  # the clients, not the server's own socket
        assert s["connections"] >= 5  # listening socket + its own + 3 clients
    finally:
        for c in clients:
            c.close()
        p.kill()
        p.wait()
        other.close()


class FakeRss:
    """An RSS trace on a fake clock: ``trace`` maps a start time to the RSS from then on; sleeping advances the clock."""

    def __init__(self, trace: dict[float, int]):
        self.trace = sorted(trace.items())
        self.now = 0.0
        self.reads = 0

    def read(self, pid: int) -> int:
        self.reads += 1
        return [v for t, v in self.trace if t <= self.now + 1e-9][-1]

    def sleep(self, s: float) -> None:
        self.now += s


def _steady(trace: dict[float, int], **kw):
    f = FakeRss(trace)
    args = dict(quiet_s=10.0, max_s=45.0, tolerance_bytes=100, hz=5.0) | kw
    return steady_rss(0, read=f.read, clock=lambda: f.now, sleep=f.sleep, **args), f


def test_steady_rss_waits_out_a_late_drop():
    # A Node.js-like trace: flat, then the memory reducer hands 3.5 MB back at 8.6 s; a 2 s sleep would read 60 MB.
    r, _ = _steady({0.0: 60 * MB, 8.6: 56 * MB})
    assert r.settled and r.rss_bytes == 56 * MB
    assert 18.0 <= r.waited_s <= 19.0  # the 10 s quiet window restarted at the step


def test_steady_rss_flat_trace_takes_one_window_and_ignores_jitter_within_tolerance():
    r, f = _steady({0.0: 1000, 3.0: 1050, 6.0: 980})
    assert r.settled and 10.0 <= r.waited_s < 10.3 and 980 <= r.rss_bytes <= 1050
    assert 51 <= f.reads <= 52  # 5 Hz over 10 s, both ends (one more if the float clock lands just short)


def test_steady_rss_gives_up_after_max_and_says_so():
    # Climbing 1 KiB a second never holds within 100 bytes: the reading is taken at max_s and marked unsettled.
    f = FakeRss({})
    r = steady_rss(0, 10.0, 30.0, tolerance_bytes=100, read=lambda pid: int(f.now * 1024), clock=lambda: f.now, sleep=f.sleep)
    assert not r.settled and 30.0 <= r.waited_s < 30.3
    assert 24 * 1024 <= r.rss_bytes <= 26 * 1024  # the median of the last 10 s (20-30 s), not the start of the trace


def test_steady_rss_that_never_settles_reads_the_median_of_the_whole_last_window():
    # A garbage-collector sawtooth: 0..3.6 MB above 60 MB, repeating every 2 s, never still. The reading must not
    # depend on where in the tooth the wait gave up.
    f = FakeRss({})
    tooth = lambda pid: 60 * MB + int((f.now % 2.0) / 2.0 * 3.6 * MB)  # noqa: E731
    readings = [steady_rss(0, 10.0, m, tolerance_bytes=100, read=tooth, clock=lambda: f.now, sleep=f.sleep) for m in (44.4, 45.0, 45.8)]
    assert not any(r.settled for r in readings)
    assert all(abs(r.rss_bytes - 61.8 * MB) < 0.2 * MB for r in readings), [r.rss_bytes / MB for r in readings]


@pytest.mark.parametrize("kw", [dict(quiet_s=0.0), dict(quiet_s=10.0, max_s=5.0), dict(hz=0.0), dict(tolerance_bytes=-1)])
def test_steady_rss_rejects_impossible_windows(kw):
    with pytest.raises(ValueError):
        _steady({0.0: 1}, **kw)


def test_steady_rss_reads_a_real_process(spawn):
    proc = spawn(BUSY)
    r = steady_rss(proc.pid, quiet_s=0.5 * UNIT, max_s=30 * UNIT, tolerance_bytes=4 * MB)
    assert r.rss_bytes > 40 * MB
