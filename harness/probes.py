"""Process probes: CPU, memory, file descriptors and threads of a server, sampled over time.

:class:`ProcessSampler` samples a process tree from a background thread with
psutil. CPU is computed from the tree's summed CPU times between two samples,
so it is in percent of one core (200 = two cores busy) and includes children:
a pre-forking server's workers count. A child that exits between two samples
loses its last partial interval; at 10 Hz that is at most 100 ms of its time.

Memory is RSS summed over the tree. Pages shared between processes (a forked
worker's copy-on-write memory, PostgreSQL's shared buffers) are counted once
per process, so the sum overstates a multi-process server; ``rss_bytes(...,
pss=True)`` gives the proportional share instead, at a higher cost to read.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

__all__ = [
    "ProcessSampler",
    "SteadyRss",
    "rss_bytes",
    "steady_rss",
    "memory_per_connection",
    "peak_rss",
    "mean_cpu",
    "summarize",
]


def _tree(root: psutil.Process, include_children: bool) -> list[psutil.Process]:
    if not include_children:
        return [root]
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return [root]


def rss_bytes(pid: int, include_children: bool = True, pss: bool = False) -> int:
    """Resident memory of a process (and its descendants), in bytes; PSS on request (Linux)."""
    total = 0
    for p in _tree(psutil.Process(pid), include_children):
        with contextlib.suppress(psutil.Error):
            total += p.memory_full_info().pss if pss else p.memory_info().rss
    return total


@dataclass(frozen=True)
class SteadyRss:
    """What :func:`steady_rss` read: the RSS, how long it waited, and whether RSS did hold still."""

    rss_bytes: int
    waited_s: float
    settled: bool


def steady_rss(
    pid: int,
    quiet_s: float,
    max_s: float,
    tolerance_bytes: int = 256 * 1024,
    hz: float = 5.0,
    *,
    read: Callable[[int], int] = rss_bytes,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SteadyRss:
    """The RSS of a process tree once it has held still for ``quiet_s`` seconds, sampled at ``hz``.

    Still means every sample of the last ``quiet_s`` seconds lies within
    ``tolerance_bytes`` of each other, so a step (a garbage collector handing
    pages back, a lazy allocation) keeps the wait going until it is
    ``quiet_s`` old. The reading is the median of that window. A runtime may
    give memory back on a timer: V8's memory reducer first acts 8 s after
    start (``MemoryReducer::kLongDelayMs``), so a window shorter than that can
    read a Node.js server before it has shrunk. After ``max_s`` the median of
    the same window is returned with ``settled=False``, for the caller to
    report. A drift slower than ``tolerance_bytes`` per ``quiet_s`` passes as
    still.
    """
    if quiet_s <= 0 or max_s < quiet_s or hz <= 0 or tolerance_bytes < 0:
        raise ValueError(
            f"need 0 < quiet_s <= max_s, hz > 0 and tolerance_bytes >= 0, got quiet_s={quiet_s}, max_s={max_s}, hz={hz}, tolerance_bytes={tolerance_bytes}"
        )
    t0 = clock()
    window: list[tuple[float, int]] = []  # the samples of the last quiet_s seconds
    while True:
        now = clock()
        window = [*(x for x in window if now - x[0] <= quiet_s), (now, read(pid))]
        values = [v for _, v in window]
        settled = now - t0 >= quiet_s and max(values) - min(values) <= tolerance_bytes
        if settled or now - t0 >= max_s:
            return SteadyRss(int(statistics.median(values)), now - t0, settled)
        sleep(1.0 / hz)


def memory_per_connection(rss_with_n: float, rss_with_0: float, n: int) -> float:
    """Bytes each connection costs: the growth from 0 to ``n`` open connections, divided by ``n``."""
    if n <= 0:
        raise ValueError(f"need at least one connection, got n={n}")
    return (rss_with_n - rss_with_0) / n


def peak_rss(samples: Sequence[dict[str, Any]]) -> int:
    """The highest ``rss_bytes`` among the samples (0 without samples)."""
    return max((s["rss_bytes"] for s in samples), default=0)


def mean_cpu(samples: Sequence[dict[str, Any]]) -> float:
    """The mean ``cpu_percent`` over the samples, in percent of one core (0 without samples)."""
    values = [s["cpu_percent"] for s in samples if s.get("cpu_percent") is not None]
    return statistics.fmean(values) if values else 0.0


def summarize(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Peak and mean figures of a sampling run, for facts and tables (the samples stay the data)."""

    def peak(key: str) -> int | None:
        values = [s[key] for s in samples if s.get(key) is not None]
        return max(values) if values else None

    cpu = [s["cpu_percent"] for s in samples if s.get("cpu_percent") is not None]
    return {
        "samples": len(samples),
        "duration_s": samples[-1]["t"] if samples else 0.0,
        "peak_rss_bytes": peak_rss(samples),
        "mean_rss_bytes": statistics.fmean(s["rss_bytes"] for s in samples) if samples else 0.0,
        "mean_cpu_percent": mean_cpu(samples),
        "max_cpu_percent": max(cpu, default=0.0),
        "peak_fds": peak("num_fds"),
        "peak_threads": peak("num_threads"),
        "peak_processes": peak("num_processes"),
        "peak_connections": peak("connections"),
    }


class ProcessSampler:
    """Samples a process tree at ``hz`` from a background thread until stopped.

    Each sample is a dict: ``t`` (seconds since start), ``time`` (epoch),
    ``cpu_percent`` (of one core, since the previous sample), ``rss_bytes``,
    ``num_fds``, ``num_threads``, ``num_processes`` and, with
    ``connections=True``, ``connections`` (inet sockets; costly on busy
    servers, so off by default). With ``listen_port``, ``client_connections``:
    the established TCP connections on that local port, i.e. the server's
    clients, not the sockets it opens itself (database and Redis pools). A
    field psutil may not read (another user's process) is None. Sampling ends
    by itself when the process exits.
    """

    def __init__(
        self, pid: int, hz: float = 10.0, include_children: bool = True, connections: bool = False, listen_port: int | None = None
    ):
        if hz <= 0:
            raise ValueError("hz must be positive")
        self.pid = pid
        self.hz = hz
        self.include_children = include_children
        self.connections = connections
        self.listen_port = listen_port
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._root = psutil.Process(pid)
        # (pid, create_time) -> last CPU seconds: a reused pid is a new process.
        self._cpu: dict[tuple[int, float], float] = {}
        self._procs: dict[tuple[int, float], psutil.Process] = {}
        self._t0 = 0.0
        self._last = 0.0

    # -- one sample ---------------------------------------------------------------
    def _members(self) -> list[tuple[tuple[int, float], psutil.Process]]:
        out = []
        for p in _tree(self._root, self.include_children):
            try:
                key = (p.pid, p.create_time())
            except psutil.Error:
                continue
            out.append((key, self._procs.setdefault(key, p)))  # keep psutil's per-process caches
        return out

    def _cpu_delta(self, key: tuple[int, float], p: psutil.Process, since: float) -> float:
        t = p.cpu_times()
        now = t.user + t.system
        prev = self._cpu.get(key)
        self._cpu[key] = now
        if prev is not None:
            return max(0.0, now - prev)
        # First sight: all of its CPU time is new if it started after the last sample.
        return now if key[1] >= since else 0.0

    def sample(self) -> dict[str, Any] | None:
        """Take one sample now and append it; None when the process is gone."""
        try:
            if not self._root.is_running() or self._root.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.NoSuchProcess:
            return None
        mono, wall = time.monotonic(), time.time()
        since = wall - (mono - self._last)  # the previous sample, on the epoch clock of create_time
        cpu = rss = 0.0
        fds: int | None = 0
        threads = 0
        conns: int | None = 0 if self.connections else None
        clients: int | None = 0 if self.listen_port is not None else None
        members = self._members()
        seen = set()
        for key, p in members:
            try:
                with p.oneshot():
                    cpu += self._cpu_delta(key, p, since)
                    rss += p.memory_info().rss
                    threads += p.num_threads()
                    if fds is not None:
                        try:
                            fds += p.num_fds()
                        except psutil.AccessDenied:
                            fds = None
                    if conns is not None:
                        try:
                            conns += len(p.net_connections(kind="inet"))
                        except psutil.AccessDenied:
                            conns = None
                    if clients is not None:
                        try:
                            clients += sum(
                                1
                                for c in p.net_connections(kind="tcp")
                                if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == self.listen_port
                            )
                        except psutil.AccessDenied:
                            clients = None
                seen.add(key)
            except psutil.NoSuchProcess:
                continue
        for key in set(self._cpu) - seen:  # forget exited processes
            self._cpu.pop(key, None)
            self._procs.pop(key, None)
        interval = mono - self._last
        self._last = mono
        out = {
            "t": round(mono - self._t0, 6),
            "time": wall,
            "cpu_percent": 100.0 * cpu / interval if interval > 0 else 0.0,
            "rss_bytes": int(rss),
            "num_fds": fds,
            "num_threads": threads,
            "num_processes": len(seen),
        }
        if self.connections:
            out["connections"] = conns
        if self.listen_port is not None:
            out["client_connections"] = clients
        self.samples.append(out)
        return out

    # -- the thread ---------------------------------------------------------------
    def start(self) -> ProcessSampler:
        """Take a baseline now and start sampling every ``1/hz`` seconds."""
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self._t0 = self._last = time.monotonic()
        for key, p in self._members():  # baseline CPU times: the first sample's delta starts here
            with contextlib.suppress(psutil.Error):
                self._cpu[key] = sum(p.cpu_times()[:2])
        self._thread = threading.Thread(target=self._run, name=f"sampler-{self.pid}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        period = 1.0 / self.hz
        next_at = self._t0 + period
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            try:
                if self.sample() is None:
                    return
            except psutil.NoSuchProcess:
                return
            # A fixed schedule, not "sleep period": sampling cost does not stretch the rate.
            next_at += period
            if next_at < time.monotonic():
                next_at = time.monotonic() + period

    def stop(self) -> list[dict[str, Any]]:
        """Stop sampling and return the samples."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.samples

    def peak_rss(self) -> int:
        return peak_rss(self.samples)

    def mean_cpu(self) -> float:
        return mean_cpu(self.samples)

    def summary(self) -> dict[str, Any]:
        return summarize(self.samples)

    def __enter__(self) -> ProcessSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
