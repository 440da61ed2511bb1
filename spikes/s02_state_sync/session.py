"""Clients of the real relay servers: N replicas over WebSocket with injected latency, and the session and offline runs.

Each ``SessionClient`` holds one option's replica and one WebSocket
connection. Latency is injected in the client, both ways: a frame waits
``latency`` before it is sent and again after it arrives, in order, so the
round trip is twice the one-way figure. Reconnecting follows each option's
protocol: OT sends ``hello`` with its revision (the server replays what it
missed) and then its pending operation; CRDT exchanges state vectors; LWW
sends its queued writes, the last per field, and the server sends its map.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from spikes.s02_state_sync.tabletop import Ledger, Workload, make_replica

__all__ = ["SessionClient", "SessionResult", "run_session", "OfflineResult", "run_offline"]


class SessionClient:
    """One tabletop client on a real connection."""

    def __init__(self, option: str, index: int, url: str, latency_s: float, ledger: Ledger, rng: random.Random):
        self.option, self.index, self.url, self.latency = option, index, url, latency_s
        self.replica = make_replica(option, index)
        self.work = Workload(index, ledger, rng)
        self.sent = self.received = 0
        self.online = False
        self._out: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._in: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._busy = 0  # frames taken from a queue and not yet sent / applied
        self._tasks: list[asyncio.Task[None]] = []
        self._ws: ClientConnection | None = None
        self.errors: list[str] = []

    async def connect(self) -> None:
        """Open the connection and run this option's (re)connect handshake."""
        self._ws = await connect(self.url, max_size=None, compression=None, open_timeout=30)
        self.online = True
        self._tasks = [asyncio.create_task(f()) for f in (self._sender, self._reader, self._applier)]
        r = self.replica
        if self.option == "ot":
            self._queue(r.hello())
            self.flush()
        elif self.option == "crdt":
            r.take_outbox()  # what the server lacks travels in the state-vector answer
            self._queue(r.state_vector())
        else:
            for m in r.compact_outbox():
                self._queue(m)

    async def disconnect(self) -> None:
        self.online = False
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._out = asyncio.Queue()
        self._in = asyncio.Queue()
        self._busy = 0
        if self._ws is not None:
            await self._ws.close()

    def edit(self) -> None:
        self.work.edit(self.replica)
        self.flush()

    def flush(self) -> None:
        if self.online:
            for m in self.replica.take_outbox():
                self._queue(m)

    def _queue(self, frame: bytes) -> None:
        self._out.put_nowait((time.monotonic() + self.latency, frame))

    @property
    def idle(self) -> bool:
        """Nothing queued, in flight in this client, or awaiting an acknowledgement."""
        settled = getattr(self.replica, "settled", True)
        return self._out.empty() and self._in.empty() and not self._busy and not self.replica.outbox and settled

    async def _sender(self) -> None:
        while True:
            due, frame = await self._out.get()
            self._busy += 1
            try:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await self._ws.send(frame)  # type: ignore[union-attr]
                self.sent += len(frame)
            finally:
                self._busy -= 1

    async def _reader(self) -> None:
        try:
            async for frame in self._ws:  # type: ignore[union-attr]
                data = frame if isinstance(frame, bytes) else frame.encode()
                self.received += len(data)
                self._in.put_nowait((time.monotonic() + self.latency, data))
        except ConnectionClosed:
            pass

    async def _applier(self) -> None:
        while True:
            due, frame = await self._in.get()
            self._busy += 1
            try:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                try:
                    for reply in self.replica.receive(frame):
                        self._queue(reply)
                except Exception as exc:  # recorded: a protocol error must fail the scenario, not hang it
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                self.flush()
            finally:
                self._busy -= 1


async def _converge(clients: list[SessionClient], timeout: float, poll: float = 0.02) -> float | None:
    """Seconds until every client is idle and all hold the same state; None on timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if all(c.idle for c in clients):
            views = [c.replica.view() for c in clients]
            if all(v == views[0] for v in views[1:]):
                return time.monotonic() - t0
        await asyncio.sleep(poll)
    return None


@dataclass
class SessionResult:
    clients: int
    edits: int
    duration_s: float
    convergence_s: float | None
    bytes_per_client: list[int]
    lost: dict[str, int]
    intents: int
    errors: list[str] = field(default_factory=list)


async def _session(option: str, url: str, n: int, rate: float, duration: float, latency: float, seed: int, timeout: float) -> SessionResult:
    rng = random.Random(seed)
    ledger = Ledger()
    clients = [SessionClient(option, i, url, latency, ledger, random.Random(rng.random())) for i in range(n)]
    for c in clients:
        await c.connect()
    if await _converge(clients, timeout) is None:
        raise RuntimeError(f"{n} {option} clients did not finish connecting within {timeout} s")
    # Open model: every client edits on its own fixed schedule, whatever the replies do.
    period = 1.0 / rate
    start = time.monotonic() + 0.05
    due = sorted((start + rng.random() * period + k * period, i) for i in range(n) for k in range(int(duration * rate)))
    for at, i in due:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        clients[i].edit()
    conv = await _converge(clients, timeout)
    view = clients[0].replica.view()
    errors = [e for c in clients for e in c.errors]
    for c in clients:
        await c.disconnect()
    return SessionResult(n, len(due), duration, conv, [c.sent + c.received for c in clients], ledger.lost(view), ledger.intents, errors)


def run_session(
    option: str, url: str, n: int, rate: float, duration: float, latency: float, seed: int = 1, timeout: float = 60.0
) -> SessionResult:
    """N clients edit the tabletop at ``rate`` edits/s each for ``duration`` s, then wait for convergence."""
    return asyncio.run(_session(option, url, n, rate, duration, latency, seed, timeout))


@dataclass
class OfflineResult:
    offline_edits: int
    online_edits: int
    merge_s: float | None
    merge_bytes: int
    lost: dict[str, int]
    intents: int
    errors: list[str] = field(default_factory=list)


async def _offline(option: str, url: str, offline_s: float, rate: float, latency: float, seed: int, timeout: float) -> OfflineResult:
    rng = random.Random(seed)
    ledger = Ledger()
    online, offline = (SessionClient(option, i, url, latency, ledger, random.Random(rng.random())) for i in range(2))
    for c in (online, offline):
        await c.connect()
    for _ in range(10):  # a shared starting state
        online.edit()
    if await _converge([online, offline], timeout) is None:
        raise RuntimeError("the two clients did not converge before going offline")
    await offline.disconnect()
    period = 1.0 / rate
    n = int(offline_s * rate)
    t0 = time.monotonic()
    for k in range(n):
        await asyncio.sleep(max(0.0, t0 + k * period - time.monotonic()))
        online.edit()
        offline.edit()
    if await _converge([online], timeout) is None:
        raise RuntimeError("the online client did not settle")
    before = offline.sent + offline.received
    await offline.connect()
    merge = await _converge([online, offline], timeout)
    merge_bytes = offline.sent + offline.received - before
    view = online.replica.view()
    errors = online.errors + offline.errors
    for c in (online, offline):
        await c.disconnect()
    return OfflineResult(n, n + 10, merge, merge_bytes, ledger.lost(view), ledger.intents, errors)


def run_offline(
    option: str, url: str, offline_s: float, rate: float, latency: float, seed: int = 1, timeout: float = 60.0
) -> OfflineResult:
    """One client edits while another edits disconnected for ``offline_s``; then it reconnects and both merge."""
    return asyncio.run(_offline(option, url, offline_s, rate, latency, seed, timeout))
