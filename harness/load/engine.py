"""The load engine: generator processes that connect, send on schedule and measure; the parent merges.

``run_load(spec)`` starts ``spec.processes`` generator processes (the
``spawn`` context: a clean interpreter, no inherited event loop or sockets),
deals the connections to them round-robin, and tells them one common start
time on the ``time.time_ns()`` clock, so arrivals and send schedules line up
across processes. Each process runs its connections on one uvloop event
loop and sends back counts, encoded HDR histograms and its own CPU use;
the parent merges them into one ``LoadResult``. Every wait is bounded: a
server that dies or stalls costs errors and lost messages, never a hang.

How a process sends (the open model): one scheduler per process keeps every
connection's intended send times in a heap and stamps each message with its
intended time, however late it actually goes out. Latency is measured from
that time (coordinated omission corrected); the time from the actual send
is kept too, as the "service time" a naive generator would report.

Echo on the raw ``ws`` client goes through an ``EchoPipeline`` per
connection: requests are built and masked a batch at a time, the replies
of one received chunk are checked with one comparison and recorded per
batch. In the open model the scheduler hands each connection every request
due in one write. Closed loop, back to back, with a window of W
(``LoadSpec.window``), the pipeline is driven from the client's data
callback (no task, no future per message) and answers a chunk's replies
with one write; other adapters run W send-and-wait loops per connection.
While windowed pipelines run, the event loop naps briefly between passes so
replies are read in batches (``_tick``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from harness.load import protocol
from harness.load.clients import Client, CloseHandler, MessageHandler, adapter_path, describe_error, get_client_class, register
from harness.load.clients.ws_raw import EchoPipeline, PipelineTally, RawWebSocketClient
from harness.load.histogram import LatencyRecorder, merge_encoded, percentiles_ms
from harness.load.schedules import (
    OpenLoopSchedule,
    arrival_offsets,
    closed_loop_next,
    interval_ns,
    random_phases,
    split_round_robin,
)
from harness.load.spec import CLIENT_BOUND_CPU, CLIENT_BOUND_LAG_MS, GeneratorResult, LoadResult, LoadSpec
from harness.load.system import raise_nofile_limit
from harness.load.timer import PreciseTimer
from harness.process import pin_current

__all__ = ["run_load", "Share", "STARTUP_TIMEOUT_S", "CLOSE_TIMEOUT_S", "MAX_ERRORS"]

#: How long a generator process may take to start (import, set up) before the run goes on without it.
STARTUP_TIMEOUT_S = 60.0
#: How long closing one connection may take before it is aborted.
CLOSE_TIMEOUT_S = 2.0
#: Distinct error messages kept in a result (all are counted).
MAX_ERRORS = 50
#: Sends made in one go before the scheduler lets receptions in, so a backlog does not delay timestamps.
_BATCH = 256
#: Lead time between telling processes the start time and the start itself.
_START_LEAD_NS = 100_000_000
#: Pipelined closed loop: the longest pause between event-loop passes, so replies pile up and are read and answered in batches.
PIPELINE_NAP_MAX_S = 0.001
#: ... and the pause is at most this share of the time the server needs to answer every outstanding request.
PIPELINE_NAP_SHARE = 1 / 8


@dataclass(frozen=True)
class Share:
    """The connections one generator process runs: global ids, arrival offsets (s), send phases (ns)."""

    index: int
    conn_ids: tuple[int, ...]
    arrivals_s: tuple[float, ...]
    phases_ns: tuple[int, ...]


def make_shares(spec: LoadSpec) -> list[Share]:
    """Deal the connections of ``spec`` to its generator processes."""
    n = spec.connections
    arrivals = arrival_offsets(n, spec.arrival, spec.arrival_s, spec.seed)
    phases = random_phases(n, interval_ns(spec.rate), spec.seed + 1)
    parts = split_round_robin(list(zip(range(n), arrivals, phases)), spec.effective_processes)
    return [Share(i, tuple(c for c, _, _ in p), tuple(a for _, a, _ in p), tuple(ph for _, _, ph in p)) for i, p in enumerate(parts)]


class _Conn:
    """One connection's state inside a generator."""

    __slots__ = ("id", "pos", "client", "outstanding", "alive", "sender", "planned", "sent", "joined", "waiters", "pipe")

    def __init__(self, conn_id: int, pos: int, sender: bool) -> None:
        self.id = conn_id
        self.pos = pos  # index in this process's share
        self.client: Client  # set in _arrive right after this, before the connection is registered in conns
        self.outstanding: dict[int, int] = {}  # seq -> actual send time (ns)
        self.alive = False
        self.sender = sender
        self.planned = 0
        self.sent = 0
        self.joined: asyncio.Future[None] | None = None
        self.waiters: dict[int, asyncio.Future[int]] = {}  # closed loop: seq -> its reply's arrival (ns)
        self.pipe: EchoPipeline | None = None  # a client-driven echo pipeline (closed loop, back to back), if the adapter has one

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet answered."""
        return len(self.outstanding) + (self.pipe.outstanding if self.pipe is not None else 0)


class _Generator:
    """One generator process's share of a run, on one event loop."""

    def __init__(self, spec: LoadSpec, share: Share, channel: mpc.Connection) -> None:
        self.spec = spec
        self.share = share
        self.channel = channel
        self.cls = get_client_class(spec.transport)
        self.shared: dict[str, Any] = {}
        self.interval = interval_ns(spec.rate)
        self.payload = protocol.make_payload(spec.payload_bytes)
        self.broadcast = spec.mode == "broadcast"
        self.reply_op = protocol.OP_BROADCAST if self.broadcast else protocol.OP_ECHO
        self.latency = LatencyRecorder()
        self.service = LatencyRecorder()
        self.lag = LatencyRecorder()
        self.conns: dict[int, _Conn] = {}
        self.sent = 0
        self.received = 0
        self.unexpected = 0
        self.dropped = 0
        self.connect_ms: list[float] = []
        self.failed: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.schedule: OpenLoopSchedule | None = None
        self.window = (0, 0)
        self._wake: asyncio.Future[None] | None = None
        self._closed_loop_tasks: list[asyncio.Task[None]] = []
        self._ticking = False
        self.tally = PipelineTally()
        self.timer: PreciseTimer | None = None

    # -- talking to the parent -----------------------------------------------------------
    async def _recv(self, timeout: float) -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self.channel.poll, timeout):
            raise TimeoutError(f"no word from the parent process in {timeout:g} s")
        msg: tuple[Any, ...] = self.channel.recv()
        return msg

    # -- the run ----------------------------------------------------------------------------
    async def run(self) -> GeneratorResult:
        self.timer = PreciseTimer()
        try:
            return await self._run()
        finally:
            self.timer.close()

    async def _sleep_until(self, t_ns: int) -> None:
        assert self.timer is not None
        await self.timer.sleep_until(t_ns)

    async def _run(self) -> GeneratorResult:
        spec = self.spec
        self.channel.send(("ready",))
        _, start_ns = await self._recv(STARTUP_TIMEOUT_S * 2)
        proc = _cpu_clock()
        arrive = [asyncio.create_task(self._arrive(i, start_ns)) for i in range(len(self.share.conn_ids))]
        if self.broadcast:
            await asyncio.gather(*arrive)
            self.channel.send(("joined", sum(1 for c in self.conns.values() if c.alive)))
            _, go_ns = await self._recv(spec.arrival_s + spec.connect_timeout_s * 2 + STARTUP_TIMEOUT_S)
            window_start, window_end = go_ns, go_ns + int(spec.duration_s * 1e9)
        else:
            span = spec.arrival_s if spec.arrival != "instant" else 0.0
            window_start, window_end = start_ns, start_ns + int((span + spec.duration_s) * 1e9)
        self.window = (window_start, window_end)
        self.schedule = OpenLoopSchedule(window_end)
        if self.broadcast:
            await self._sleep_until(window_start)
            cpu0, wall0 = proc(), time.perf_counter()
            for c in self.conns.values():
                if c.alive:
                    self._start_sending(c, window_start + self.share.phases_ns[c.pos])
        else:
            cpu0, wall0 = proc(), time.perf_counter()
        if self.interval is not None and not spec.closed_loop:
            await self._scheduler()
        await self._sleep_until(window_end)
        cpu1, wall1 = proc(), time.perf_counter()
        if not self.broadcast:
            for task in arrive:  # a connect still pending now has nothing left to send
                task.cancel()
            await asyncio.gather(*arrive, return_exceptions=True)
        await self._grace(window_end + int(spec.grace_s * 1e9))
        for task in self._closed_loop_tasks:
            task.cancel()
        await asyncio.gather(*self._closed_loop_tasks, return_exceptions=True)
        bytes_in, bytes_out = await self._close_all()
        cpu_s = cpu1 - cpu0
        wall_s = max(wall1 - wall0, 1e-9)
        return {
            "index": self.share.index,
            "pid": os.getpid(),
            "latency": self.latency.encode(),
            "service": self.service.encode(),
            "lag": self.lag.encode(),
            "clamped": self.latency.clamped + self.service.clamped,
            "sent": self.sent + self.tally.sent,
            "received": self.received + self.tally.received,
            "unexpected": self.unexpected,
            "outstanding": sum(c.in_flight for c in self.conns.values()),
            "unsent": sum(max(0, c.planned - c.sent) for c in self.conns.values()) if not spec.closed_loop else 0,
            "connected": len(self.connect_ms),
            "members": sum(1 for c in self.conns.values() if c.joined is not None and c.joined.done() and not c.joined.cancelled()),
            "connect_ms": self.connect_ms,
            "failed_connects": dict(self.failed),
            "dropped": self.dropped,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "cpu_s": cpu_s,
            "wall_s": wall_s,
            "cpu": cpu_s / wall_s,
            "window_s": (window_end - window_start) / 1e9,
            "errors": dict(self.errors),
        }

    async def _arrive(self, pos: int, start_ns: int) -> None:
        """Connect one connection at its arrival time; join its room; start its sends (echo mode)."""
        spec = self.spec
        conn_id = self.share.conn_ids[pos]
        sender = spec.rate > 0 and (spec.senders is None or conn_id < spec.senders)
        conn = _Conn(conn_id, pos, sender)
        arrival_ns = start_ns + int(self.share.arrivals_s[pos] * 1e9)
        await self._sleep_until(arrival_ns)
        client = self.cls(spec.url, self._on_message(conn), self._on_close(conn), compression=spec.compression, shared=self.shared)
        conn.client = client
        self.conns[conn_id] = conn
        try:
            await client.connect(spec.connect_timeout_s)
        except asyncio.CancelledError:
            await client.close(0)
            raise
        except Exception as exc:
            self.failed[describe_error(exc, spec.connect_timeout_s)] += 1
            await client.close(0)
            return
        # Connect time runs from the intended arrival, so a generator late to start a connect cannot hide a slow accept.
        ready_ns = time.time_ns()
        self.connect_ms.append((ready_ns - arrival_ns) / 1e6)
        conn.alive = True
        if self.broadcast:
            conn.joined = asyncio.get_running_loop().create_future()
            client.send(protocol.join_message(spec.room))
            try:
                async with asyncio.timeout(spec.connect_timeout_s):
                    await conn.joined
            except TimeoutError:
                conn.alive = False
                self.errors[f"join: no 'joined' reply in {spec.connect_timeout_s:g} s"] += 1
                conn.joined.cancel()
                await client.close(CLOSE_TIMEOUT_S)
            return
        if conn.alive:
            self._start_sending(conn, ready_ns + self.share.phases_ns[pos])

    def _start_sending(self, conn: _Conn, first_ns: int) -> None:
        if not conn.sender or self.interval is None and not self.spec.closed_loop:
            return
        end = self.window[1]
        spec = self.spec
        client = conn.client
        # Echo on the raw client: frames built and replies checked in bulk by an EchoPipeline.
        piped = client if not self.broadcast and isinstance(client, RawWebSocketClient) and client.supports_echo_pipeline() else None
        if spec.closed_loop:
            if self.interval is None and piped is not None:
                # Back to back: driven from the client's data callback, no task or future per message.
                conn.pipe = piped.start_echo_pipeline(
                    conn.id, self.payload, spec.window, end, self.latency, self.service, self.lag, self.tally
                )
                if not self._ticking and spec.window > 1:
                    self._ticking = True
                    self._tick(asyncio.get_running_loop(), end, time.time_ns(), 0)
                return
            first = first_ns if self.interval else time.time_ns()
            for slot in range(spec.window):
                self._closed_loop_tasks.append(asyncio.create_task(self._closed_loop(conn, first, slot)))
            return
        assert self.schedule is not None and self.interval is not None
        if piped is not None:
            # Open model: the scheduler hands the pipeline every request due on this connection in one go, one write.
            conn.pipe = piped.start_echo_pipeline(conn.id, self.payload, 0, end, self.latency, self.service, self.lag, self.tally)
        conn.planned = max(0, math.ceil((end - first_ns) / self.interval))
        self.schedule.add(conn.id, first_ns, self.interval)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _tick(self, loop: asyncio.AbstractEventLoop, end_ns: int, last_ns: int, last_received: int) -> None:
        """Pace the event loop while pipelines run: nap, then let one pass read every connection.

        Without it a generator faster than the server reads each reply as it
        trickles in (a server writes one frame per system call), paying a
        read, a callback and a write per message; after a short nap every
        connection has several replies waiting, read and answered in one go.
        The nap is an eighth of the time the server needs, at the rate just
        seen, to answer every request outstanding (and at most 1 ms), so the
        server always has requests queued and never waits for the generator.
        """
        now = time.time_ns()
        if now >= end_ns:
            self._ticking = False
            return
        tally = self.tally
        received = tally.received
        nap = 0.0
        if received > last_received and now > last_ns:
            rate = (received - last_received) / (now - last_ns)  # per ns
            nap = min(PIPELINE_NAP_MAX_S, (tally.sent - received) / rate * PIPELINE_NAP_SHARE / 1e9)
        if nap > 0:
            time.sleep(nap)
        loop.call_soon(self._tick, loop, end_ns, now, received)

    def _message(self, conn: _Conn, seq: int, t_ns: int) -> dict[str, Any]:
        if self.broadcast:
            return protocol.broadcast_message(self.spec.room, seq, t_ns, conn.id, self.payload)
        return protocol.echo_message(seq, t_ns, conn.id, self.payload)

    async def _scheduler(self) -> None:
        """Send every message at its intended time, for every connection of this process."""
        schedule = self.schedule
        assert schedule is not None
        conns = self.conns
        lag = self.lag.record
        make = self._message
        timer = self.timer
        assert timer is not None
        loop = asyncio.get_running_loop()
        while True:
            now = time.time_ns()
            if now >= schedule.end_ns:
                return
            due = schedule.next_due()
            if due is None or due > now:
                # Sleep until the next send, or until a new connection is scheduled.
                wake = self._wake = loop.create_future()
                entry = timer.call_at(schedule.end_ns if due is None else due, functools.partial(_resolve, wake))
                try:
                    await wake
                finally:
                    entry.cancel()
                    self._wake = None
                continue
            batch = schedule.pop_due(now, _BATCH)
            sent = 0
            grouped: dict[int, list[tuple[int, int]]] = {}
            for conn_id, seq, intended in batch:
                conn = conns[conn_id]
                if not conn.alive:
                    continue
                if conn.pipe is not None:
                    group = grouped.get(conn_id)
                    if group is None:
                        grouped[conn_id] = [(seq, intended)]
                    else:
                        group.append((seq, intended))
                    continue
                msg = make(conn, seq, intended)
                sent_ns = time.time_ns()
                conn.outstanding[seq] = sent_ns
                conn.client.send(msg)
                conn.sent += 1
                sent += 1
                lag((sent_ns - intended) // 1000)
            self.sent += sent  # pipelined sends count in self.tally
            for conn_id, requests in grouped.items():
                conn = conns[conn_id]
                assert conn.pipe is not None  # grouped holds pipelined connections only
                conn.sent += conn.pipe.send_scheduled(requests)
            if len(batch) == _BATCH:
                await asyncio.sleep(0)  # let replies in: their timestamps must not wait for our sends

    async def _closed_loop(self, conn: _Conn, intended: int, slot: int = 0) -> None:
        """Send, wait for the reply, send the next: the model that hides a stall unless corrected.

        With a window of W, W of these loops share the connection: slot ``i``
        sends the sequence numbers ``i, i+W, i+2W, ...``.
        """
        end = self.window[1]
        loop = asyncio.get_running_loop()
        step = self.spec.window
        seq = slot
        while intended < end and conn.alive:
            await self._sleep_until(intended)
            waiter = conn.waiters[seq] = loop.create_future()
            sent_ns = time.time_ns()
            conn.outstanding[seq] = sent_ns
            conn.client.send(self._message(conn, seq, intended))
            conn.sent += 1
            self.sent += 1
            self.lag.record((sent_ns - intended) // 1000)
            try:
                reply_ns = await waiter
            except asyncio.CancelledError:
                raise
            except Exception:  # the connection went away
                return
            seq += step
            intended = closed_loop_next(intended, self.interval, reply_ns)

    def _on_message(self, conn: _Conn) -> MessageHandler:
        latency = self.latency.record
        service = self.service.record
        reply_op = self.reply_op
        broadcast = self.broadcast
        outstanding = conn.outstanding

        def on_message(msg: dict[str, Any]) -> None:
            op = msg.get("op")
            if op == reply_op:
                now = time.time_ns()
                try:
                    t = msg["t"]
                    if msg["c"] == conn.id:
                        seq = msg["seq"]
                        sent_ns = outstanding.pop(seq)
                        service((now - sent_ns) // 1000)
                        waiter = conn.waiters.pop(seq, None)
                        if waiter is not None and not waiter.done():
                            waiter.set_result(now)
                    elif not broadcast:
                        raise KeyError("c")
                    latency((now - t) // 1000)
                except (KeyError, TypeError):  # a reply to nobody, or twice: the server misbehaved
                    self.unexpected += 1
                    return
                self.received += 1
            elif op == protocol.OP_JOINED and conn.joined is not None:
                if not conn.joined.done():
                    conn.joined.set_result(None)
            else:
                self.unexpected += 1

        return on_message

    def _on_close(self, conn: _Conn) -> CloseHandler:
        def on_close(reason: str) -> None:
            if not conn.alive:
                return
            conn.alive = False
            self.dropped += 1
            self.errors[reason] += 1
            if self.schedule is not None:
                self.schedule.remove(conn.id)
            for waiter in conn.waiters.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError(reason))
            conn.waiters.clear()

        return on_close

    async def _grace(self, deadline_ns: int) -> None:
        """Wait for replies still in flight: until none is outstanding (echo), or the deadline."""
        while (now := time.time_ns()) < deadline_ns:
            if not self.broadcast and not any(c.in_flight for c in self.conns.values() if c.alive):
                return
            await asyncio.sleep(min(0.01, (deadline_ns - now) / 1e9))

    async def _close_all(self) -> tuple[int, int]:
        """Close every connection (bounded), then count their bytes."""
        clients = [c.client for c in self.conns.values() if c.client is not None]
        for c in self.conns.values():
            c.alive = False  # from here on a close is ours, not the server's
        await asyncio.gather(*(cl.close(CLOSE_TIMEOUT_S) for cl in clients), return_exceptions=True)
        try:
            await self.cls.close_shared(self.shared)
        except Exception as exc:  # cleanup problems must not lose the measurements
            self.errors[f"cleanup: {describe_error(exc)}"] += 1
        return sum(cl.bytes_in for cl in clients), sum(cl.bytes_out for cl in clients)


def _cpu_clock() -> Callable[[], float]:
    """A function returning this process's CPU seconds (user + system), threads included."""
    import psutil

    proc = psutil.Process()

    def cpu() -> float:
        t = proc.cpu_times()
        return t.user + t.system

    return cpu


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


@contextlib.contextmanager
def reporting_to(channel: mpc.Connection) -> Iterator[None]:
    """In a spawned generator process: send any failure's traceback to the parent as ``("error", text)``; close the channel."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            channel.send(("error", traceback.format_exc()))
    finally:
        channel.close()


def _generator_main(spec_data: dict[str, Any], share: Share, channel: mpc.Connection, adapter: str) -> None:
    """Entry point of a generator process: run one share, send the result (or the traceback) back."""
    # Ctrl-C reaches the whole process group; the parent decides when generators stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with reporting_to(channel):
        import uvloop

        # The parent may have registered an adapter this fresh interpreter has not heard of.
        register(spec_data["transport"], adapter)
        spec = LoadSpec.from_dict(spec_data)
        raise_nofile_limit()
        pin_current(spec.cpu_affinity)  # every thread: affinity is per thread on Linux
        result = uvloop.run(_Generator(spec, share, channel).run())
        channel.send(("result", result))


class _Process:
    """The parent's handle on one generator process."""

    def __init__(self, ctx: Any, spec: LoadSpec, share: Share) -> None:
        self.share = share
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_generator_main,
            args=(spec.to_dict(), share, child, adapter_path(spec.transport)),
            name=f"load-generator-{share.index}",
            daemon=True,
        )
        self.proc.start()
        child.close()  # so the parent sees EOF when the child dies
        self.alive = True
        self.error: str | None = None
        self.error_detail = ""

    def fail(self, reason: str) -> None:
        if self.alive:
            self.alive = False
            self.error = reason


def _collect(procs: list[_Process], expect: str, timeout: float) -> dict[int, tuple[Any, ...]]:
    """Wait for message ``expect`` from every live process; mark the silent, dead or failing ones."""
    got: dict[int, tuple[Any, ...]] = {}
    deadline = time.monotonic() + timeout
    pending = {p.pipe: p for p in procs if p.alive}
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for pipe in mpc.wait(list(pending), remaining):
            p = pending.pop(pipe)
            try:
                msg = p.pipe.recv()
            except (EOFError, OSError):
                p.proc.join(1)
                p.fail(f"generator process {p.share.index} exited (code {p.proc.exitcode}) before sending {expect!r}")
                continue
            if msg[0] == expect:
                got[p.share.index] = msg
            elif msg[0] == "error":
                p.fail(f"generator process {p.share.index} failed: {msg[1].strip().splitlines()[-1]}")
                p.error_detail = msg[1]
            else:
                p.fail(f"generator process {p.share.index} sent {msg[0]!r} instead of {expect!r}")
    for p in pending.values():
        p.fail(f"generator process {p.share.index} sent no {expect!r} within {timeout:g} s")
    return got


def run_load(spec: LoadSpec) -> LoadResult:
    """Run ``spec`` from separate generator processes and return the merged measurements.

    Blocking: from async code call it through ``asyncio.to_thread``. The
    generator processes are spawned, which re-imports the caller's main
    module: a script calling this needs the ``if __name__ == "__main__":``
    guard, as with any ``multiprocessing`` spawn.
    """
    raise_nofile_limit()
    ctx = mp.get_context("spawn")
    wall0 = time.perf_counter()
    procs = [_Process(ctx, spec, share) for share in make_shares(spec)]
    try:
        _collect(procs, "ready", STARTUP_TIMEOUT_S)
        start_ns = time.time_ns() + _START_LEAD_NS
        _broadcast_to(procs, ("start", start_ns))
        span = spec.arrival_s if spec.arrival != "instant" else 0.0
        if spec.mode == "broadcast":
            joined = _collect(procs, "joined", span + 2 * spec.connect_timeout_s + 30)
            members = sum(m[1] for m in joined.values())
            go_ns = time.time_ns() + _START_LEAD_NS
            _broadcast_to(procs, ("go", go_ns))
            end_ns = go_ns + int(spec.duration_s * 1e9)
        else:
            members = 0
            end_ns = start_ns + int((span + spec.duration_s) * 1e9)
        # Results are due after the window, the grace, the close, and a margin for slow machines.
        due_s = (end_ns - time.time_ns()) / 1e9 + spec.grace_s + 2 * CLOSE_TIMEOUT_S + spec.connect_timeout_s + 30
        results = _collect(procs, "result", max(due_s, 1.0))
    except BaseException:
        _stop(procs, grace_s=0)  # Ctrl-C or a bug: no waiting for generators
        raise
    _stop(procs, grace_s=5)
    return merge_results(spec, [r[1] for r in results.values()], [p.error for p in procs if p.error], members, time.perf_counter() - wall0)


def _stop(procs: list[_Process], grace_s: float) -> None:
    """Let each generator process exit; terminate, then kill, the ones that do not."""
    for p in procs:
        p.proc.join(grace_s)
        if p.proc.is_alive():
            p.proc.terminate()
            p.proc.join(5)
        if p.proc.is_alive():
            p.proc.kill()
            p.proc.join()
        p.pipe.close()


def _broadcast_to(procs: list[_Process], msg: tuple[Any, ...]) -> None:
    for p in procs:
        if p.alive:
            try:
                p.pipe.send(msg)
            except (BrokenPipeError, OSError):
                p.fail(f"generator process {p.share.index} is gone")


def merge_results(spec: LoadSpec, parts: list[GeneratorResult], process_errors: list[str], members: int, wall_s: float) -> LoadResult:
    """One ``LoadResult`` from the per-process results (pure: no processes, no sockets)."""
    parts = sorted(parts, key=lambda r: r["index"])
    latency = merge_encoded(r["latency"] for r in parts)
    service = merge_encoded(r["service"] for r in parts)
    lag = merge_encoded(r["lag"] for r in parts)
    sent = sum(r["sent"] for r in parts)
    received = sum(r["received"] for r in parts)
    if spec.mode == "broadcast":
        members = members or sum(r["members"] for r in parts)
        expected = sent * members
        lost = max(0, expected - received)
    else:
        expected = sent
        lost = sum(r["outstanding"] for r in parts)
    errors: Counter[str] = Counter()
    for r in parts:
        errors.update(r["errors"])
    for e in process_errors:
        errors[e] += 1
    failed: Counter[str] = Counter()
    for r in parts:
        failed.update(r["failed_connects"])
    connected = sum(r["connected"] for r in parts)
    # Connections of a generator process that never reported are failed connects too.
    missing = spec.connections - connected - sum(failed.values())
    if missing > 0 and process_errors:
        failed["generator process failed"] += missing
    window_s = max((r["window_s"] for r in parts), default=0.0)
    cpu = [round(r["cpu"], 4) for r in parts]
    lag_ms = percentiles_ms(lag)
    reasons = [f"generator process {r['index']} used {r['cpu']:.0%} of a core" for r in parts if r["cpu"] >= CLIENT_BOUND_CPU]
    if not spec.closed_loop and lag_ms["p99"] is not None and lag_ms["p99"] > CLIENT_BOUND_LAG_MS:
        reasons.append(f"the generator fell behind its schedule: p99 send lag {lag_ms['p99']:.1f} ms")
    return LoadResult(
        spec=spec.to_dict(),
        histogram=_encode(latency),
        service_histogram=_encode(service),
        latency_ms=percentiles_ms(latency),
        service_ms=percentiles_ms(service),
        send_lag_ms=lag_ms,
        sent=sent,
        received=received,
        expected=expected,
        lost=lost,
        unsent=sum(r["unsent"] for r in parts),
        unexpected=sum(r["unexpected"] for r in parts),
        clamped=sum(r["clamped"] for r in parts),
        connections=spec.connections,
        connected=connected,
        connect_failed=sum(failed.values()),
        dropped=sum(r["dropped"] for r in parts),
        members=members if spec.mode == "broadcast" else 0,
        connect_ms=[round(x, 3) for r in parts for x in r["connect_ms"]],
        failed_connects=dict(failed),
        bytes_out=sum(r["bytes_out"] for r in parts),
        bytes_in=sum(r["bytes_in"] for r in parts),
        duration_s=window_s,
        wall_s=wall_s,
        achieved_rate=sent / window_s if window_s else 0.0,
        received_rate=received / window_s if window_s else 0.0,
        generator_cpu=cpu,
        generator_cpu_s=[round(r.get("cpu_s", 0.0), 6) for r in parts],
        client_bound=bool(reasons),
        client_bound_reasons=reasons,
        error_count=sum(errors.values()),
        errors=[f"{msg} (x{n})" for msg, n in errors.most_common(MAX_ERRORS)],
    )


def _encode(h: Any) -> str:
    raw = h.encode()
    return raw.decode() if isinstance(raw, bytes) else raw
