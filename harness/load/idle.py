"""Idle connections held open on demand, for memory-per-connection and capacity measurements."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from harness.load.clients import Client, describe_error, get_client_class
from harness.load.engine import CLOSE_TIMEOUT_S, reporting_to
from harness.load.system import check_loopback_url, raise_nofile_limit

__all__ = ["ConnectStats", "IdleConnections", "hold_idle", "run_idle_generator"]


@dataclass
class ConnectStats:
    """How opening the connections went: successes, connect times (ms), failure reasons with counts."""

    requested: int
    connected: int = 0
    connect_ms: list[float] = field(default_factory=list)
    failed: dict[str, int] = field(default_factory=dict)

    @property
    def connect_failed(self) -> int:
        return sum(self.failed.values())


class IdleConnections:
    """Connections kept open until ``close()``; an async context manager that closes on exit."""

    def __init__(self, cls: type[Client], clients: list[Client], stats: ConnectStats, shared: dict[str, Any]) -> None:
        self._cls = cls
        self.clients = clients
        self.stats = stats
        self._shared = shared
        self.dropped = 0
        self.messages = 0
        self.drop_reasons: Counter[str] = Counter()

    @property
    def alive(self) -> int:
        """Connections still open (the server may have closed some)."""
        return sum(1 for c in self.clients if not c.closed)

    async def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Close every connection (each bounded by ``timeout``) and release shared resources."""
        clients, self.clients = self.clients, []
        await asyncio.gather(*(c.close(timeout) for c in clients), return_exceptions=True)
        await self._cls.close_shared(self._shared)

    async def __aenter__(self) -> IdleConnections:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def hold_idle(
    url: str,
    transport: str = "ws",
    n: int = 1000,
    *,
    connect_timeout_s: float = 10.0,
    concurrency: int = 256,
    allow_remote: bool = False,
) -> IdleConnections:
    """Open ``n`` idle connections (at most ``concurrency`` handshakes at a time) and return them, open.

    The connections stay open, answering the server's pings, until the
    returned object is closed. Connect times run from the start of each
    attempt. The concurrency cap keeps thousands of simultaneous SYNs from
    overflowing the server's listen backlog, which would measure the backlog
    (1 s SYN retransmits) instead of the memory this helper is for.
    """
    check_loopback_url(url, allow_remote)
    raise_nofile_limit()
    cls = get_client_class(transport)
    shared: dict[str, Any] = {}
    stats = ConnectStats(requested=n)
    gate = asyncio.Semaphore(max(1, concurrency))
    held = IdleConnections(cls, [], stats, shared)
    failed: Counter[str] = Counter()

    def on_message(msg: dict[str, Any]) -> None:
        held.messages += 1

    def on_close(reason: str) -> None:
        held.dropped += 1
        held.drop_reasons[reason] += 1

    async def open_one() -> None:
        async with gate:
            client = cls(url, on_message, on_close, shared=shared)
            t0 = time.perf_counter()
            try:
                await client.connect(connect_timeout_s)
            except Exception as exc:
                failed[describe_error(exc, connect_timeout_s)] += 1
                await client.close(0)
                return
            stats.connect_ms.append((time.perf_counter() - t0) * 1000)
            held.clients.append(client)

    try:
        await asyncio.gather(*(open_one() for _ in range(n)))
    except BaseException:
        await held.close(0)
        raise
    stats.connected = len(held.clients)
    stats.failed = dict(failed)
    return held


def _idle_generator_main(
    url: str, transport: str, n: int, hold_s: float, concurrency: int, connect_timeout_s: float, allow_remote: bool, channel: Any
) -> None:
    """A spawned generator process: open ``n`` idle connections, report its own memory, close when told."""
    import signal

    import psutil

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this process stops
    with reporting_to(channel):
        soft, hard = raise_nofile_limit()
        get_client_class(transport)  # imported before the baseline: the baseline is the process, not the connections
        me = psutil.Process()

        async def main() -> dict[str, Any]:
            rss_before = me.memory_info().rss
            held = await hold_idle(
                url, transport, n, connect_timeout_s=connect_timeout_s, concurrency=concurrency, allow_remote=allow_remote
            )
            try:
                await asyncio.sleep(hold_s)  # held open, answering the server's pings
                stats = {
                    "requested": n,
                    "connected": held.stats.connected,
                    "connect_failed": held.stats.connect_failed,
                    "failed": dict(held.stats.failed),
                    "connect_ms": [round(x, 3) for x in held.stats.connect_ms],
                    "rss_before": rss_before,
                    "rss_connected": me.memory_info().rss,
                    "alive": held.alive,
                    "dropped": held.dropped,
                    "nofile_soft": soft,
                    "nofile_hard": hard,
                }
                channel.send(("held", stats))
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, channel.poll, 120.0)
                return stats
            finally:
                await held.close()

        import uvloop

        uvloop.run(main())
        channel.send(("done", None))


def run_idle_generator(
    url: str,
    transport: str = "ws",
    n: int = 10_000,
    *,
    hold_s: float = 5.0,
    concurrency: int = 256,
    connect_timeout_s: float = 10.0,
    allow_remote: bool = False,
    during_hold: Any = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Hold ``n`` idle connections from one fresh generator process and report that process's own memory.

    The process (spawned: a clean interpreter, so the harness's own imports do
    not count) raises its descriptor limit, takes its RSS, opens the
    connections through :func:`hold_idle`, holds them ``hold_s`` seconds and
    takes its RSS again. ``during_hold()``, if given, is called in this
    process while the connections are open (to read the server's memory);
    its return value comes back as ``"during_hold"``. Returns counts, connect
    times, ``rss_before``/``rss_connected`` (bytes) and the descriptor limits.
    """
    import multiprocessing as mp

    check_loopback_url(url, allow_remote)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=_idle_generator_main,
        args=(url, transport, n, hold_s, concurrency, connect_timeout_s, allow_remote, child),
        name="idle-generator",
        daemon=True,
    )
    proc.start()
    child.close()
    limit = timeout_s if timeout_s is not None else 60.0 + hold_s + n * connect_timeout_s / max(1, concurrency)
    try:
        if not parent.poll(limit):
            raise TimeoutError(f"the idle generator did not report within {limit:.0f} s")
        kind, stats = parent.recv()
        if kind == "error":
            raise RuntimeError(f"the idle generator failed: {stats.strip().splitlines()[-1]}")
        stats = dict(stats)
        stats["during_hold"] = during_hold() if during_hold is not None else None
        parent.send(("close",))
        if parent.poll(30.0):
            kind, detail = parent.recv()
            if kind == "error":
                raise RuntimeError(f"the idle generator failed while closing: {detail.strip().splitlines()[-1]}")
        return stats
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        parent.close()
