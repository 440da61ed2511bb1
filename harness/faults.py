"""Fault injection for scenarios: a TCP fault proxy, kernel network faults in a namespace, process faults.

Three kinds of fault, each recorded as a :class:`Fault` with its start and end on ``time.monotonic()`` (the clock
the load engine stamps its samples with, so a latency spike can be lined up with the fault that caused it) and on
the wall clock (for people and logs), collected in a JSON-serialisable :class:`FaultLog`:

* :class:`FaultProxy`: an asyncio TCP proxy on 127.0.0.1 between clients and a server. Modes (one at a time,
  switchable at run time and on a schedule): :class:`Pass`, :class:`Delay` (+ jitter, per direction),
  :class:`Bandwidth` (bytes/s), :class:`Slice` (small chunks), :class:`Reset` (every connection closed with an
  RST), :class:`Blackhole` (nothing forwarded, nothing closed: half-open), :class:`CloseAfter` (close after N
  bytes) and :class:`Buffer` (hold N bytes before forwarding, as some corporate proxies do). Usable from sync
  code (``start()``/``stop()`` or ``with``: its loop runs in a thread) and from async code (``async with``).
  :meth:`FaultProxy.reset_connections` is the one-off cut: every open connection reset at once, new ones served.
* :class:`NetNamespace`: a network namespace with a veth pair (two addresses in 169.254.0.0/16, link-local and
  never routed), a way to run servers inside it, and nftables rules in it to *drop* (blackhole) or *reject with a
  TCP reset* (refused) a port: what the kernel does when a proxy cannot stand in (the client talks to the real
  server's address). Needs root, ``ip`` and ``nft``; :class:`harness.plugin.NotRunnable` says how to install them.
* Process faults on :class:`harness.process.ServerProcess` and :mod:`harness.services` objects:
  :func:`kill_and_restart` (SIGKILL, restart on the same port), :func:`freeze` (SIGSTOP/SIGCONT of the process
  group), :func:`crash_redis`, :func:`pause_redis` (``CLIENT PAUSE``) and :func:`crash_postgres` (SIGQUIT to the
  postmaster: immediate shutdown, crash recovery at restart).

A :class:`FaultLog` can tell someone as each fault begins (``FaultLog(on_fault=...)``: a scenario passes
``lambda f: ctx.fault(f.kind, f.target, **f.details)`` so the run's observers hear every fault the harness injects).
Where a scenario measures on another clock (a browser page's ``performance.now()``, a server's own), a
:class:`ClockSync` estimated from paired readings maps the faults' monotonic times onto it, so a fault and the
measurements it explains are subtracted on one clock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import json
import os
import random
import secrets
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Self, TypeVar

from harness import machine
from harness.plugin import NotRunnable
from harness.process import LOOPBACK, ReadyProbe, ServerError, ServerProcess, TcpReady, free_port, group_members

__all__ = [
    "Fault",
    "FaultLog",
    "ClockSync",
    "Direction",
    "Mode",
    "Pass",
    "Delay",
    "Bandwidth",
    "Slice",
    "Reset",
    "Blackhole",
    "CloseAfter",
    "Buffer",
    "Step",
    "FaultProxy",
    "NetNamespace",
    "NamespacedServer",
    "NET_INSTALL",
    "require_net_tools",
    "kill_and_restart",
    "freeze",
    "frozen",
    "crash_redis",
    "pause_redis",
    "crash_postgres",
    "in_thread",
]

T = TypeVar("T")

# -- the record ------------------------------------------------------------------------------------


@dataclass
class Fault:
    """One fault: what (``kind``), on what (``target``), when (monotonic and wall clock), and how (``details``).

    ``ended_*`` are None while the fault lasts. ``started_mono``/``ended_mono`` are ``time.monotonic()`` values,
    comparable with the load engine's timestamps in the same process (and on the same machine: Linux's monotonic
    clock is system-wide).
    """

    kind: str
    target: str
    started_mono: float
    ended_mono: float | None = None
    started_wall: float = 0.0
    ended_wall: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def begin(cls, kind: str, target: str, **details: Any) -> Fault:
        """A fault starting now."""
        return cls(kind, target, time.monotonic(), None, time.time(), None, dict(details))

    def end(self, **details: Any) -> Fault:
        """Mark the fault over now (once; a second call only adds details)."""
        if self.ended_mono is None:
            self.ended_mono, self.ended_wall = time.monotonic(), time.time()
        self.details.update(details)
        return self

    @property
    def duration(self) -> float | None:
        """Seconds from start to end on the monotonic clock; None while it lasts."""
        return None if self.ended_mono is None else self.ended_mono - self.started_mono

    def to_dict(self, *clocks: ClockSync) -> dict[str, Any]:
        """The fault as JSON-ready data; each of ``clocks`` adds ``started_<name>``/``ended_<name>`` on that clock."""
        d = asdict(self)
        d["duration_s"] = self.duration
        for clock in clocks:
            d[f"started_{clock.name}"] = clock.to_other(self.started_mono)
            d[f"ended_{clock.name}"] = None if self.ended_mono is None else clock.to_other(self.ended_mono)
        return d


@dataclass(frozen=True)
class ClockSync:
    """How another clock (``name``: a browser page's ``performance.now()``, a server's own) reads against ``time.monotonic()``.

    ``other = monotonic * scale + offset``: ``scale`` is the other clock's units per second (1000 for milliseconds).
    Estimated from paired readings (:meth:`from_readings`, :meth:`measure`): the other clock read between two
    monotonic readings ``t0 <= t1``. The pair with the shortest round trip is used, its midpoint taken as the moment
    of the reading, and half its round trip (in the other clock's units) is ``uncertainty``: the true offset is
    within ``offset ± uncertainty``. No drift is estimated: right for another reader of the same clock (Chromium's
    ``performance.now()`` on Linux counts CLOCK_MONOTONIC, as ``time.monotonic()`` does), and for any clock over a
    short run.
    """

    name: str
    offset: float
    scale: float = 1.0
    uncertainty: float = 0.0
    samples: int = 0

    def to_other(self, mono: float) -> float:
        """A ``time.monotonic()`` value on the other clock."""
        return mono * self.scale + self.offset

    def to_mono(self, other: float) -> float:
        """A reading of the other clock as ``time.monotonic()``."""
        return (other - self.offset) / self.scale

    @classmethod
    def from_readings(cls, name: str, readings: Iterable[tuple[float, float, float]], *, scale: float = 1.0) -> ClockSync:
        """From ``(t0, other, t1)`` triples: ``other`` read after monotonic ``t0`` and before monotonic ``t1``."""
        pairs = list(readings)
        if not pairs:
            raise ValueError("a clock sync needs at least one reading")
        if any(t1 < t0 for t0, _, t1 in pairs):
            raise ValueError("each reading needs t0 <= t1 (monotonic before and after the other clock was read)")
        t0, other, t1 = min(pairs, key=lambda r: r[2] - r[0])
        return cls(name, other - (t0 + t1) / 2 * scale, scale, (t1 - t0) / 2 * scale, len(pairs))

    @classmethod
    async def measure(cls, name: str, read: Callable[[], Awaitable[float]], *, scale: float = 1.0, samples: int = 7) -> ClockSync:
        """Read the other clock ``samples`` times through ``read`` (``lambda: page.evaluate("performance.now()")``)."""
        readings = []
        for _ in range(max(1, samples)):
            t0 = time.monotonic()
            other = float(await read())
            readings.append((t0, other, time.monotonic()))
        return cls.from_readings(name, readings, scale=scale)

    def combine(self, other: ClockSync) -> ClockSync:
        """The better-bounded of two estimates of the same clock (no drift: either is right within its uncertainty)."""
        if (other.name, other.scale) != (self.name, self.scale):
            raise ValueError(f"cannot combine clock {self.name!r} (x{self.scale}) with {other.name!r} (x{other.scale})")
        best = self if self.uncertainty <= other.uncertainty else other
        return ClockSync(best.name, best.offset, best.scale, best.uncertainty, self.samples + other.samples)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Told of each fault as it begins (on the thread that began it).
FaultListener = Callable[[Fault], None]


class FaultLog:
    """The faults of a run, in start order; thread-safe, JSON-serialisable (:meth:`to_json`, :meth:`to_list`).

    ``on_fault`` (and any listener added with :meth:`listen`) is called with each fault as it is added, that is as it
    begins, on the thread that began it and outside the log's lock; its ``ended_*`` are not set yet. A listener
    that raises makes the fault's injection raise: report, do not fail (``ScenarioContext.fault`` never raises).
    """

    def __init__(self, on_fault: FaultListener | None = None) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._listeners: list[FaultListener] = [] if on_fault is None else [on_fault]

    def listen(self, listener: FaultListener) -> FaultListener:
        """Call ``listener`` with every fault added from now on; return it."""
        with self._lock:
            self._listeners.append(listener)
        return listener

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(fault)
        return fault

    def begin(self, kind: str, target: str, **details: Any) -> Fault:
        """Start and log a fault; call its :meth:`Fault.end` when it is over."""
        return self.add(Fault.begin(kind, target, **details))

    @contextlib.contextmanager
    def record(self, kind: str, target: str, **details: Any) -> Iterator[Fault]:
        """``with log.record("kill", "redis"):`` the fault lasts as long as the block (ended on errors too)."""
        fault = self.begin(kind, target, **details)
        try:
            yield fault
        finally:
            fault.end()

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def __iter__(self) -> Iterator[Fault]:
        return iter(self.faults)

    def __len__(self) -> int:
        return len(self.faults)

    def of_kind(self, kind: str) -> list[Fault]:
        return [f for f in self.faults if f.kind == kind]

    def open(self) -> list[Fault]:
        """The faults not ended yet."""
        return [f for f in self.faults if f.ended_mono is None]

    def to_list(self, *clocks: ClockSync) -> list[dict[str, Any]]:
        """Every fault as :meth:`Fault.to_dict` (with its times on each of ``clocks`` too)."""
        return [f.to_dict(*clocks) for f in self.faults]

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_list(), **kwargs)


def _log_or_new(log: FaultLog | None) -> FaultLog:
    return log if log is not None else FaultLog()


# -- proxy modes ---------------------------------------------------------------------------------------

#: ``up`` is client to server, ``down`` server to client.
Direction = Literal["both", "up", "down"]


def _applies(direction: Direction, which: str) -> bool:
    return direction == "both" or direction == which


@dataclass(frozen=True)
class Pass:
    """Forward everything as it comes (no fault)."""

    kind = "pass"


@dataclass(frozen=True)
class Delay:
    """Hold every chunk ``seconds`` (± uniform ``jitter``) in each selected direction; order is kept, throughput is not
    limited (chunks are in flight together, as on a long link). One-way: ``both`` adds twice to a round trip."""

    seconds: float
    jitter: float = 0.0
    direction: Direction = "both"
    kind = "delay"


@dataclass(frozen=True)
class Bandwidth:
    """At most ``bytes_per_s`` in each selected direction (no burst allowance)."""

    bytes_per_s: float
    direction: Direction = "both"
    kind = "bandwidth"


@dataclass(frozen=True)
class Slice:
    """Forward in chunks of at most ``size`` bytes, ``interval`` s apart: a frame arrives in pieces."""

    size: int = 1
    interval: float = 0.0
    direction: Direction = "both"
    kind = "slice"


@dataclass(frozen=True)
class Reset:
    """Close every connection, open or new, with an RST (SO_LINGER 0): the client sees ECONNRESET."""

    kind = "reset"


@dataclass(frozen=True)
class Blackhole:
    """Forward nothing and close nothing: connections stay open and silent (half-open). Data held meanwhile is
    delivered when the mode ends, as TCP's retransmissions would after a short outage."""

    direction: Direction = "both"
    kind = "blackhole"


@dataclass(frozen=True)
class CloseAfter:
    """Close each connection once ``nbytes`` have been forwarded (in the selected directions, counted per connection
    from when the mode began); ``reset=True`` closes with an RST instead of a FIN."""

    nbytes: int
    direction: Direction = "both"
    reset: bool = False
    kind = "close-after"


@dataclass(frozen=True)
class Buffer:
    """Hold data until ``nbytes`` have gathered (or the sender closes, or ``flush_after`` s passed), then forward it
    at once: a buffering proxy. Server-to-client by default, where such proxies hurt streaming."""

    nbytes: int
    direction: Direction = "down"
    flush_after: float | None = None
    kind = "buffer"


Mode = Pass | Delay | Bandwidth | Slice | Reset | Blackhole | CloseAfter | Buffer


def _mode_details(mode: Mode) -> dict[str, Any]:
    return {"mode": mode.kind, **asdict(mode)}


@dataclass(frozen=True)
class Step:
    """One step of a schedule: ``mode`` for ``duration`` s (None: stay, ending the schedule)."""

    mode: Mode
    duration: float | None


def _set_linger_zero(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _rst(writer: asyncio.StreamWriter | None) -> None:
    """Close with an RST: SO_LINGER 0, then abort."""
    if writer is None:
        return
    _set_linger_zero(writer.get_extra_info("socket"))
    writer.transport.abort()


class _Conn:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: FaultProxy, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter):
        self.proxy = proxy
        self.creader, self.cwriter = creader, cwriter
        self.ureader: asyncio.StreamReader | None = None
        self.uwriter: asyncio.StreamWriter | None = None
        self.counted = 0  # bytes forwarded under the current CloseAfter mode
        self.closed = False
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        if not self.closed:
            self.closed = True
            _rst(self.cwriter)
            _rst(self.uwriter)
            for t in self.tasks:
                t.cancel()

    def close(self, rst: bool = False) -> None:
        if rst:
            self.reset()
            return
        if not self.closed:
            self.closed = True
            for w in (self.cwriter, self.uwriter):
                if w is not None:
                    w.close()
            for t in self.tasks:
                t.cancel()


_CHUNK = 65536
_QUEUE_CHUNKS = 16


class FaultProxy:
    """A TCP proxy from ``127.0.0.1:port`` (a free port by default) to ``upstream_host:upstream_port``, with faults.

    Sync use::

        with FaultProxy(server.port) as proxy:       # its event loop runs in a thread
            client connects to proxy.port
            proxy.set_mode(Delay(0.2))                # in effect when it returns; logged as a Fault
            proxy.cut(10)                             # blackhole for 10 s, then Pass (returns at once)
            proxy.schedule([Step(Blackhole(), 1), Step(Pass(), 5), Step(Reset(), None)]).result()

    Async use: ``async with FaultProxy(port) as proxy:`` (or ``await proxy.astart()`` / ``await proxy.aclose()``)
    runs it on the caller's loop; ``set_mode`` then acts at once, and ``await proxy.run_schedule(steps)`` plays a
    schedule. Every mode but :class:`Pass` is recorded in ``proxy.log`` from when it is set until the next mode.
    """

    def __init__(
        self,
        upstream_port: int,
        upstream_host: str = LOOPBACK,
        *,
        port: int | None = None,
        host: str = LOOPBACK,
        log: FaultLog | None = None,
        name: str | None = None,
        connect_timeout: float = 5.0,
    ):
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = port or 0
        self.log = _log_or_new(log)
        self.name = name or f"proxy {host}:{{port}} -> {upstream_host}:{upstream_port}"
        self.connect_timeout = connect_timeout
        self._mode: Mode = Pass()
        self._fault: Fault | None = None
        self._changed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._thread: threading.Thread | None = None
        self._mode_lock = threading.Lock()
        self.connections = 0  # accepted so far

    # -- state -----------------------------------------------------------------------------
    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def target(self) -> str:
        return self.name.replace("{port}", str(self.port))

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    # -- lifetime: async ------------------------------------------------------------------------
    async def astart(self) -> Self:
        """Listen on the caller's loop."""
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        """Stop listening, close every connection (RST), end the current fault."""
        if self._server is not None:
            self._server.close()
            for c in list(self._conns):
                c.reset()
            handlers = [t for t in self._handlers if t is not asyncio.current_task()]
            for t in handlers:
                t.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        self._end_fault()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- lifetime: sync (a thread of its own) ------------------------------------------------------
    def start(self) -> Self:
        """Run the proxy's loop in a daemon thread; return once it listens."""
        if self._thread is not None:
            return self
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.astart())
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                ready.set_exception(e)
                loop.close()
                return
            ready.set_result(None)
            loop.run_forever()
            loop.run_until_complete(self.aclose())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"fault-proxy-{self.upstream[1]}", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout=30)
        except BaseException:
            self._thread.join(5)
            self._thread = None
            raise
        return self

    def stop(self) -> None:
        """Stop the thread started by :meth:`start` (closing every connection)."""
        if self._thread is None:
            return
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- modes ---------------------------------------------------------------------------------------
    def _in_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the proxy's loop and return its result (directly when already there)."""
        if self._loop is None or self._in_loop() or self._loop.is_closed():
            return fn()

        async def wrap() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrap(), self._loop).result(timeout=30)

    def set_mode(self, mode: Mode) -> Fault | None:
        """Switch to ``mode`` now; end the previous fault and return the new one (None for :class:`Pass`)."""
        return self._call(lambda: self._apply(mode))

    def restore(self) -> None:
        """Back to :class:`Pass`."""
        self.set_mode(Pass())

    def _end_fault(self) -> None:
        if self._fault is not None:
            self._fault.end()
            self._fault = None

    def _apply(self, mode: Mode) -> Fault | None:
        with self._mode_lock:
            self._end_fault()
            self._mode = mode
            fault = None
            if not isinstance(mode, Pass):
                details = _mode_details(mode)
                if isinstance(mode, Reset):
                    details["connections"] = len(self._conns)  # open now: all of them are reset
                fault = Fault.begin(f"proxy-{mode.kind}", self.target, **details)
            self._fault = fault
        if fault is not None:
            self.log.add(fault)  # outside the lock: the log's listeners may take their time
        for c in self._conns:
            c.counted = 0
        if isinstance(mode, Reset):
            for c in list(self._conns):
                c.reset()
        if self._changed is not None:
            old, self._changed = self._changed, asyncio.Event()
            old.set()
        return fault

    def reset_connections(self) -> Fault:
        """Reset every open connection now (RST to both ends) and carry on in the current mode: a one-off cut.

        What a dropped Wi-Fi, a NAT or load balancer forgetting its flows does: the client's connection dies
        while the server stays up, and a new connection goes through at once (unlike ``cut(s, Reset())``, which
        also refuses new connections for ``s`` seconds). Logged as a ``proxy-reset`` fault that starts just before
        the first RST and ends after the last (``details["connections"]``: how many); a fault mode in force is
        ended and begun again around it. Atomic on the proxy's loop: no connection is accepted in between.
        """

        def once() -> Fault:
            previous = self._mode
            fault = self._apply(Reset())
            assert fault is not None
            self._apply(previous)
            return fault.end()

        return self._call(once)

    def cut(self, seconds: float, mode: Mode | None = None) -> concurrent.futures.Future[None]:
        """``mode`` (default :class:`Blackhole`) for ``seconds``, then :class:`Pass`; returns at once (a future)."""
        return self.schedule([Step(mode or Blackhole(), seconds), Step(Pass(), None)])

    def schedule(self, steps: Sequence[Step]) -> concurrent.futures.Future[None]:
        """Play ``steps`` on the proxy's loop; ``.result(timeout)`` waits (from another thread), ``.cancel()`` stops.

        From async code running the proxy, ``await asyncio.wrap_future(fut)`` or :meth:`run_schedule`."""
        if self._loop is None:
            raise RuntimeError("the proxy is not started")
        return asyncio.run_coroutine_threadsafe(self.run_schedule(steps), self._loop)

    async def run_schedule(self, steps: Sequence[Step]) -> None:
        """Play ``steps`` (on the proxy's loop); a step's duration is measured from its own start."""
        t = time.monotonic()
        for step in steps:
            self._apply(step.mode)
            if step.duration is None:
                return
            t += step.duration
            await asyncio.sleep(max(0.0, t - time.monotonic()))

    # -- forwarding -----------------------------------------------------------------------------------
    async def _changed_wait(self, timeout: float | None = None) -> None:
        assert self._changed is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def _while_blackholed(self, which: str) -> None:
        while isinstance(self._mode, Blackhole) and _applies(self._mode.direction, which):
            await self._changed_wait()

    async def _accept(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.connections += 1
        me = asyncio.current_task()
        if me is not None:
            self._handlers.add(me)
            me.add_done_callback(self._handlers.discard)
        if isinstance(self._mode, Reset):
            _rst(cwriter)
            return
        conn = _Conn(self, creader, cwriter)
        self._conns.add(conn)
        try:
            # A blackholed network lets no SYN through: the upstream connection waits too.
            await self._while_blackholed("up")
            if conn.closed:
                return
            try:
                ureader, uwriter = await asyncio.wait_for(asyncio.open_connection(*self.upstream), self.connect_timeout)
            except (TimeoutError, OSError):
                conn.reset()  # the server refused: the client sees its connection reset
                return
            conn.ureader, conn.uwriter = ureader, uwriter
            if conn.closed:
                _rst(uwriter)
                return
            up = asyncio.create_task(self._pipe(conn, "up", creader, uwriter))
            down = asyncio.create_task(self._pipe(conn, "down", ureader, cwriter))
            conn.tasks = [up, down]
            await asyncio.gather(up, down, return_exceptions=True)
        finally:
            self._conns.discard(conn)
            conn.close()

    async def _pipe(self, conn: _Conn, which: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(_QUEUE_CHUNKS)

        async def read() -> None:
            try:
                while True:
                    await self._while_blackholed(which)
                    data = await reader.read(_CHUNK)
                    await queue.put((time.monotonic(), data) if data else None)
                    if not data:
                        return
            except (OSError, asyncio.IncompleteReadError):
                await queue.put(None)

        reader_task = asyncio.create_task(read())
        try:
            await self._write_loop(conn, which, queue, writer)
        except (OSError, ConnectionError):
            conn.reset()
        finally:
            reader_task.cancel()

    async def _write_loop(
        self, conn: _Conn, which: str, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter
    ) -> None:
        last_due = 0.0
        held = bytearray()
        held_since = 0.0
        while True:
            mode = self._mode
            buffering = isinstance(mode, Buffer) and _applies(mode.direction, which)
            if held and not buffering:
                await self._send(conn, which, writer, bytes(held))
                held.clear()
                continue
            if held and isinstance(mode, Buffer):
                timeout = None if mode.flush_after is None else max(0.0, held_since + mode.flush_after - time.monotonic())
                item = await self._get_or_change(queue, timeout)
                if item is _NOTHING:
                    if mode.flush_after is not None and time.monotonic() >= held_since + mode.flush_after:
                        await self._send(conn, which, writer, bytes(held))
                        held.clear()
                    continue
            else:
                item = await queue.get()
            if item is None or item is _NOTHING:
                if held:
                    await self._send(conn, which, writer, bytes(held))
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write_eof()  # half-close: the other side may still talk
                return
            assert isinstance(item, tuple)
            arrived, data = item
            mode = self._mode
            if isinstance(mode, Delay) and _applies(mode.direction, which):
                due = arrived + max(0.0, mode.seconds + random.uniform(-mode.jitter, mode.jitter))
                due = max(due, last_due)  # TCP never reorders
                last_due = due
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
            await self._while_blackholed(which)
            mode = self._mode
            if isinstance(mode, Buffer) and _applies(mode.direction, which):
                if not held:
                    held_since = time.monotonic()
                held += data
                if len(held) >= mode.nbytes:
                    await self._send(conn, which, writer, bytes(held))
                    held.clear()
                continue
            await self._send(conn, which, writer, data)

    async def _get_or_change(self, queue: asyncio.Queue[tuple[float, bytes] | None], timeout: float | None) -> object:
        """The next item, or ``_NOTHING`` when the mode changed or ``timeout`` passed first."""
        assert self._changed is not None
        get = asyncio.ensure_future(queue.get())
        changed = asyncio.ensure_future(self._changed.wait())
        done, _ = await asyncio.wait({get, changed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        changed.cancel()
        if get in done:
            return get.result()
        get.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await get
        if get.done() and not get.cancelled():
            return get.result()
        return _NOTHING

    async def _send(self, conn: _Conn, which: str, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Write ``data`` under the current mode's shaping (bandwidth, slices, close-after)."""
        view = memoryview(data)
        while view:
            await self._while_blackholed(which)
            mode = self._mode
            if isinstance(mode, CloseAfter) and _applies(mode.direction, which):
                room = mode.nbytes - conn.counted
                if room <= 0:
                    conn.close(rst=mode.reset)
                    return
                piece = view[:room]
                writer.write(piece)
                await writer.drain()
                conn.counted += len(piece)
                view = view[len(piece) :]
                if conn.counted >= mode.nbytes:
                    conn.close(rst=mode.reset)
                    return
            elif isinstance(mode, Bandwidth) and _applies(mode.direction, which):
                size = max(1, min(len(view), int(mode.bytes_per_s / 20)))
                writer.write(view[:size])
                await writer.drain()
                view = view[size:]
                await asyncio.sleep(size / mode.bytes_per_s)
            elif isinstance(mode, Slice) and _applies(mode.direction, which):
                writer.write(view[: mode.size])
                await writer.drain()
                view = view[mode.size :]
                if view:
                    await asyncio.sleep(mode.interval)
            else:
                writer.write(view)
                await writer.drain()
                return


_NOTHING = object()


# -- kernel network faults in a namespace -------------------------------------------------------------

#: What to install for :class:`NetNamespace`.
NET_INSTALL = "apt-get install -y nftables iproute2"
IP = machine.register_tool(
    machine.ExternalTool("ip", ("ip", "/usr/sbin/ip", "/sbin/ip", "/bin/ip"), ("-V",), "apt-get install -y iproute2")
)
NFT = machine.register_tool(
    machine.ExternalTool("nft", ("nft", "/usr/sbin/nft", "/sbin/nft"), ("--version",), "apt-get install -y nftables")
)


def require_net_tools() -> tuple[str, str]:
    """The paths of ``ip`` and ``nft``, or :class:`NotRunnable` naming what is missing and how to install it."""
    ip, nft = machine.find_tool("ip"), machine.find_tool("nft")
    missing = [name for name, path in (("ip", ip), ("nft", nft)) if path is None]
    if missing:
        raise NotRunnable(f"network faults need {' and '.join(missing)}, which is not installed; install with: {NET_INSTALL}")
    if os.geteuid() != 0:
        raise NotRunnable(
            f"network faults need root (CAP_NET_ADMIN) to create a network namespace and nftables rules; run as root, with: {NET_INSTALL}"
        )
    assert ip is not None and nft is not None
    return ip, nft


def _run(argv: Sequence[str], *, check: bool = True, input: str | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        text = (proc.stderr or proc.stdout).strip()
        if "Operation not permitted" in text or "Permission denied" in text:
            raise NotRunnable(
                f"{subprocess.list2cmdline(argv)} is not permitted here ({text}); network faults need root, and: {NET_INSTALL}"
            )
        raise OSError(f"{subprocess.list2cmdline(argv)} failed with exit code {proc.returncode}: {text}")
    return proc


def _used_networks(ip: str) -> list[ipaddress.IPv4Network]:
    out = _run([ip, "-4", "-o", "addr", "show"], check=False).stdout + _run([ip, "-4", "route", "show", "table", "all"], check=False).stdout
    nets = []
    for word in out.split():
        with contextlib.suppress(ValueError):
            if "/" in word or word[:1].isdigit():
                nets.append(ipaddress.IPv4Network(word, strict=False))
    return nets


def _pick_link(ip: str) -> ipaddress.IPv4Network:
    """A /30 in 169.254.0.0/16 (link-local: never routed) that nothing here uses; not 169.254.169.x (cloud metadata)."""
    used = _used_networks(ip)
    for _ in range(200):
        third = random.choice([n for n in range(1, 255) if n != 169])
        net = ipaddress.IPv4Network(f"169.254.{third}.{random.randrange(0, 256, 4)}/30")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise OSError("no free /30 in 169.254.0.0/16 for the namespace's veth pair")


_TCP_READY = TcpReady()


class NamespacedServer(ServerProcess):
    """A :class:`ServerProcess` run under ``ip netns exec NAME``, on the namespace's address (``{host}`` in argv).

    The port is any port (the namespace is new and empty); no port-in-use check is made from the host, whose
    stack cannot bind the namespace's address, and no port race can happen.
    """

    def __init__(self, ns: NetNamespace, name: str, argv: Sequence[str], **kwargs: Any):
        self.ns = ns
        port = kwargs.pop("port", None) or free_port()
        super().__init__(name, ns.exec_argv(argv), port=port, host=str(ns.address), **kwargs)

    def start(self) -> Self:
        if self.alive:
            raise ServerError(f"server {self.name!r} is already running (pid {self.pid})")
        self._spawn()
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self


class NetNamespace:
    """A network namespace for kernel-level faults, with a veth link to the host; removed on exit, errors included.

    ::

        with NetNamespace(log=faults) as ns:
            with ns.server("api", [sys.executable, "server.py", "--host", "{host}", "--port", "{port}"]) as srv:
                client connects to (srv.host, srv.port)    # ns.address: reached over the veth pair
                ns.drop(srv.port)       # SYNs and segments vanish: connects and reads time out
                ns.reject(srv.port)     # every segment answered with a TCP reset: refused / reset
                ns.clear()              # back to normal; each rule was a Fault in the log

    The host end of the pair is ``host_address``, the namespace end ``address`` (a free /30 in 169.254.0.0/16).
    Servers inside must listen on ``address`` (``{host}``) or 0.0.0.0. The rules live in the namespace's own
    nftables table, so the host's firewall is never touched.
    """

    TABLE = "spikefaults"

    def __init__(self, *, log: FaultLog | None = None, prefix: str = "spikef"):
        self.log = _log_or_new(log)
        tag = secrets.token_hex(4)
        self.name = f"{prefix}-{os.getpid()}-{tag}"
        self.host_if, self.ns_if = f"sfh{tag}", f"sfn{tag}"
        self._ip = self._nft = ""
        self.network: ipaddress.IPv4Network | None = None
        self._rules: dict[int, tuple[str, Fault]] = {}
        self._servers: list[ServerProcess] = []
        self._created = False

    @property
    def address(self) -> ipaddress.IPv4Address:
        """The namespace's address, where its servers are reached from the host."""
        assert self.network is not None, "the namespace is not set up"
        return list(self.network.hosts())[1]

    @property
    def host_address(self) -> ipaddress.IPv4Address:
        assert self.network is not None, "the namespace is not set up"
        return list(self.network.hosts())[0]

    def __enter__(self) -> Self:
        self._ip, self._nft = require_net_tools()
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _setup(self) -> None:
        ip = self._ip
        _run([ip, "netns", "add", self.name])
        self._created = True
        _run([ip, "-n", self.name, "link", "set", "lo", "up"])
        self.network = _pick_link(ip)
        _run([ip, "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if, "netns", self.name])
        _run([ip, "addr", "add", f"{self.host_address}/30", "dev", self.host_if])
        _run([ip, "link", "set", self.host_if, "up"])
        _run([ip, "-n", self.name, "addr", "add", f"{self.address}/30", "dev", self.ns_if])
        _run([ip, "-n", self.name, "link", "set", self.ns_if, "up"])
        self._write_rules()

    def close(self) -> None:
        """Stop the servers started here, end open faults, delete the veth pair and the namespace."""
        for srv in self._servers:
            with contextlib.suppress(Exception):
                srv.stop()
        self._servers.clear()
        for _, fault in self._rules.values():
            fault.end()
        self._rules.clear()
        if not self._created:
            return
        ip = self._ip
        # Anything still running in the namespace (a command started with exec_argv) would keep it alive unnamed.
        pids = _run([ip, "netns", "pids", self.name], check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _run([ip, "link", "del", self.host_if], check=False)
        _run([ip, "netns", "del", self.name], check=False)
        self._created = False

    @staticmethod
    def exists(name: str) -> bool:
        """Whether a namespace of that name exists now."""
        return os.path.exists(f"/run/netns/{name}")

    # -- running things inside --------------------------------------------------------------------
    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside the namespace."""
        return [self._ip or "ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], timeout: float = 60.0, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it."""
        return _run(self.exec_argv(argv), check=check, timeout=timeout)

    def server(self, name: str, argv: Sequence[str], *, ready: ReadyProbe | None = _TCP_READY, **kwargs: Any) -> NamespacedServer:
        """A :class:`NamespacedServer` (not started; ``with`` starts it), stopped at the latest when the namespace goes."""
        srv = NamespacedServer(self, name, argv, ready=ready, **kwargs)
        self._servers.append(srv)
        return srv

    # -- nftables rules ---------------------------------------------------------------------------
    def _write_rules(self) -> None:
        lines = []
        for port, (action, _) in sorted(self._rules.items()):
            if action == "drop":
                lines.append(f"    tcp dport {port} drop")
            else:
                lines.append(f"    tcp dport {port} reject with tcp reset")
        out = [f"    tcp sport {port} drop" for port, (action, _) in sorted(self._rules.items()) if action == "drop"]
        # One transaction: create (if needed), flush, refill; the table is the namespace's, never the host's.
        t = f"inet {self.TABLE}"
        script = "\n".join(
            [
                f"table {t} {{}}",
                f"flush table {t}",
                f"table {t} {{",
                "  chain input {",
                "    type filter hook input priority 0; policy accept;",
                *lines,
                "  }",
                "  chain output {",
                "    type filter hook output priority 0; policy accept;",
                *out,
                "  }",
                "}",
                "",
            ]
        )
        _run([self._ip, "netns", "exec", self.name, self._nft, "-f", "-"], input=script)

    def _set_rule(self, port: int, action: str) -> Fault:
        old = self._rules.pop(port, None)
        if old is not None:
            old[1].end()
        fault = Fault.begin(f"netns-{action}", f"{self.name} {self.address}:{port}", port=port, namespace=self.name)
        self._rules[port] = (action, fault)
        try:
            self._write_rules()
        except BaseException:
            del self._rules[port]
            raise
        return self.log.add(fault)

    def drop(self, port: int) -> Fault:
        """Blackhole TCP ``port``: segments to it and from it are dropped; connects and reads time out."""
        return self._set_rule(port, "drop")

    def reject(self, port: int) -> Fault:
        """Answer every segment to TCP ``port`` with a reset: new connects are refused, open connections reset."""
        return self._set_rule(port, "reject")

    def clear(self, port: int | None = None) -> None:
        """Remove the rule for ``port`` (every rule when None), ending its fault."""
        ports = list(self._rules) if port is None else [port]
        ended = [self._rules.pop(p) for p in ports if p in self._rules]
        self._write_rules()
        for _, fault in ended:
            fault.end()

    @contextlib.contextmanager
    def dropped(self, port: int) -> Iterator[Fault]:
        fault = self.drop(port)
        try:
            yield fault
        finally:
            self.clear(port)

    @contextlib.contextmanager
    def rejected(self, port: int) -> Iterator[Fault]:
        fault = self.reject(port)
        try:
            yield fault
        finally:
            self.clear(port)

    def rules(self) -> str:
        """The namespace's ruleset as ``nft list ruleset`` prints it."""
        return self.run([self._nft, "list", "ruleset"], check=True).stdout


# -- process faults ---------------------------------------------------------------------------------------


def _describe(server: ServerProcess) -> str:
    return f"{server.name} {server.host}:{server.port}"


def kill_and_restart(server: ServerProcess, *, down_for: float = 0.0, log: FaultLog | None = None, kind: str = "kill") -> Fault:
    """SIGKILL the server's whole process group, stay down ``down_for`` s, restart it on the same port.

    The fault starts at the kill and ends when the restarted server passes its readiness probe."""
    fault = _log_or_new(log).begin(kind, _describe(server), signal="SIGKILL", old_pid=server.pid, port=server.port, down_for=down_for)
    try:
        code = server.kill()
        fault.details["exit_code"] = code
        fault.details["killed_mono"] = time.monotonic()
        if down_for > 0:
            time.sleep(down_for)
        server.restart()
    finally:
        fault.end(new_pid=server.pid, restarted=server.alive)
    return fault


def _pgid_of(target: ServerProcess | int) -> int:
    pid = target.pid if isinstance(target, ServerProcess) else target
    if pid is None:
        raise ServerError("the server is not running")
    return os.getpgid(pid)


def _wait_stopped(pgid: int, timeout: float = 2.0) -> None:
    """Wait until every process of the group is stopped (signals are delivered asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for pid in group_members(pgid):
            with contextlib.suppress(OSError, IndexError):
                with open(f"/proc/{pid}/stat", "rb") as f:
                    states.append(f.read().rsplit(b")", 1)[1].split()[0])
        if all(st in (b"T", b"t") for st in states):
            return
        time.sleep(0.005)


@contextlib.contextmanager
def frozen(target: ServerProcess | int, *, log: FaultLog | None = None, name: str | None = None) -> Iterator[Fault]:
    """SIGSTOP the process group of ``target`` (a server, or a pid) for the block, SIGCONT after (errors included).

    A frozen server keeps its sockets: connects still complete (the kernel's backlog) but nothing is answered."""
    pgid = _pgid_of(target)
    label = name or (_describe(target) if isinstance(target, ServerProcess) else f"process group {pgid}")
    fault = _log_or_new(log).begin("freeze", label, pgid=pgid, signal="SIGSTOP")
    os.killpg(pgid, signal.SIGSTOP)
    try:
        _wait_stopped(pgid)
        yield fault
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGCONT)
        fault.end()


def freeze(target: ServerProcess | int, seconds: float, *, log: FaultLog | None = None) -> Fault:
    """SIGSTOP the process group for ``seconds``, then SIGCONT; blocks meanwhile."""
    with frozen(target, log=log) as fault:
        time.sleep(seconds)
    return fault


def crash_redis(redis: Any, *, down_for: float = 0.0, log: FaultLog | None = None) -> Fault:
    """``kill -9`` a :class:`harness.services.RedisService` and restart it on the same port (data is lost: the
    harness's redis keeps none). Ends when redis answers PING again."""
    if redis.server is None:
        raise ServerError("redis is not running")
    return kill_and_restart(redis.server, down_for=down_for, log=log, kind="redis-kill")


def pause_redis(redis: Any, seconds: float, *, mode: str = "ALL", wait: bool = True, log: FaultLog | None = None) -> Fault:
    """``CLIENT PAUSE`` (``ALL`` or ``WRITE``) for ``seconds``: redis holds clients' commands, then answers them.

    With ``wait`` the call blocks until the pause is over; otherwise the fault's end is the planned one."""
    ms = max(1, round(seconds * 1000))
    target = f"redis {redis.host}:{redis.port}"
    fault = _log_or_new(log).begin("redis-pause", target, ms=ms, mode=mode)
    redis.command("CLIENT", "PAUSE", ms, mode)
    if wait:
        time.sleep(max(0.0, fault.started_mono + ms / 1000 - time.monotonic()))
        fault.end()
    else:
        fault.ended_mono, fault.ended_wall = fault.started_mono + ms / 1000, fault.started_wall + ms / 1000
    return fault


def crash_postgres(pg: Any, *, down_for: float = 0.0, log: FaultLog | None = None, timeout: float = 30.0) -> Fault:
    """Immediate shutdown of a :class:`harness.services.PostgresService` (SIGQUIT to the postmaster: no checkpoint,
    clients cut), then a restart on the same port with the same data (crash recovery runs). Ends when it is ready."""
    server: ServerProcess | None = pg.server
    if server is None or server.pid is None:
        raise ServerError("postgres is not running")
    fault = _log_or_new(log).begin(
        "postgres-crash", _describe(server), signal="SIGQUIT", old_pid=server.pid, port=server.port, down_for=down_for
    )
    try:
        os.kill(server.pid, signal.SIGQUIT)
        deadline = time.monotonic() + timeout
        while server.alive and time.monotonic() < deadline:
            time.sleep(0.02)
        fault.details["exited_mono"] = time.monotonic()
        fault.details["exit_code"] = server.returncode
        if down_for > 0:
            time.sleep(down_for)
        server.restart()  # stops what is left (SIGKILL after its grace), then starts and waits for readiness
    finally:
        fault.end(new_pid=server.pid, restarted=server.alive)
    return fault


async def in_thread(fn: Callable[[], T]) -> T:
    """Run a blocking fault helper (:func:`kill_and_restart`, :func:`freeze`...) from async code without blocking it."""
    return await asyncio.to_thread(fn)
