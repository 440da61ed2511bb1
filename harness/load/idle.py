"""Idle connections held open on demand, for memory-per-connection and capacity measurements."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from harness.load.clients import Client, describe_error, get_client_class
from harness.load.engine import CLOSE_TIMEOUT_S
from harness.load.system import check_loopback_url, raise_nofile_limit

__all__ = ["ConnectStats", "IdleConnections", "hold_idle"]


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
