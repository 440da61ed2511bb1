"""The generator process: one share of a run's connections, on one event loop, measured.

``run_load`` (``harness.load.engine``) spawns one of these per
``LoadSpec.processes``; :func:`generator_main` is the process's entry point.
It connects its share of the connections at their arrival times, sends on
schedule and measures, then answers with a ``GeneratorReport``
(``harness.load.report``, which also lists the whole conversation).

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

Counting and reconnecting (``LoadSpec.counting``, ``LoadSpec.reconnect``)
cost per-message bookkeeping, so none of it is on the default path: a
counting run uses no pipeline, records sends through its connections'
``_SentLog`` and receptions through a wrapping message handler, and ships a
``ConnLog`` per connection for the parent's ``Account``. A dropped
connection of a reconnecting run stays in the schedule (its sends are
skipped, counted as unsent, while it is away) and comes back after a full-
jitter backoff; its resume adapter (``harness.load.clients.resume``) says
which URL and which join bring back what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import multiprocessing.connection as mpc
import os
import random
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from harness.load import protocol
from harness.load.account import NO_SENDER, ConnLog
from harness.load.clients import Client, CloseHandler, MessageHandler, describe_error, get_client_class, register
from harness.load.clients.resume import Resume, get_resume_class, register_resume
from harness.load.clients.ws_raw import EchoPipeline, PipelineTally, RawWebSocketClient
from harness.load.histogram import LatencyRecorder
from harness.load.report import Failed, GeneratorReport, Go, Joined, Ready, Share, Start
from harness.load.schedules import OpenLoopSchedule, closed_loop_next, interval_ns
from harness.load.spec import LoadSpec
from harness.load.system import raise_nofile_limit
from harness.load.timer import PreciseTimer
from harness.process import pin_current

__all__ = ["generator_main", "reporting_to", "STARTUP_TIMEOUT_S", "CLOSE_TIMEOUT_S"]

#: How long a generator process may take to start (import, set up) before the run goes on without it.
STARTUP_TIMEOUT_S = 60.0
#: How long closing one connection may take before it is aborted.
CLOSE_TIMEOUT_S = 2.0
#: Sends made in one go before the scheduler lets receptions in, so a backlog does not delay timestamps.
_BATCH = 256
#: Pipelined closed loop: the longest pause between event-loop passes, so replies pile up and are read and answered in batches.
PIPELINE_NAP_MAX_S = 0.001
#: ... and the pause is at most this share of the time the server needs to answer every outstanding request.
PIPELINE_NAP_SHARE = 1 / 8

_M = TypeVar("_M", Start, Go)


class _SentLog(dict[int, int]):
    """A connection's ``outstanding`` (seq -> actual send ns) that also logs every ``seq`` sent, for the account.

    Only a counting run's connections get one: a plain dict costs the default path nothing more.
    """

    __slots__ = ("seqs",)

    def __init__(self) -> None:
        super().__init__()
        self.seqs: list[int] = []

    def __setitem__(self, seq: int, sent_ns: int) -> None:
        self.seqs.append(seq)
        super().__setitem__(seq, sent_ns)


class _Ledger:
    """What a counting run keeps per connection besides the sends: acknowledgements, arrivals, reconnections."""

    __slots__ = ("acked", "arrivals", "member", "reconnects", "resume", "retired")

    def __init__(self, resume: Resume) -> None:
        self.acked: set[int] = set()
        self.arrivals: list[tuple[int, int, int]] = []  # (sender, seq, arrival ns)
        self.member = False
        self.reconnects = 0
        self.resume = resume
        self.retired: list[Client] = []  # clients of earlier connections (their bytes still count)


class _Conn:
    """One connection's state inside a generator."""

    __slots__ = ("id", "pos", "client", "outstanding", "alive", "sender", "planned", "sent", "joined", "waiters", "pipe", "ledger")

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
        self.ledger: _Ledger | None = None  # a counting run's bookkeeping (then outstanding is a _SentLog)

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
        self.counting = spec.counting
        self.resume_cls = get_resume_class(spec.resume)
        self.reconnected = 0
        #: Drops not brought back because the sending window had ended (a drop in the grace period, a backoff past the end).
        self.window_over = 0
        self._reconnect_tasks: set[asyncio.Task[None]] = set()
        self.rng = random.Random(spec.seed * 1_000_003 + share.index + 2)  # the backoff's jitter

    # -- talking to the parent -----------------------------------------------------------
    async def _recv(self, expect: type[_M], timeout: float) -> _M:
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self.channel.poll, timeout):
            raise TimeoutError(f"no word from the parent process in {timeout:g} s")
        msg = self.channel.recv()
        if not isinstance(msg, expect):
            raise TypeError(f"the parent sent {msg!r}, expected {expect.__name__}")
        return msg

    # -- the run ----------------------------------------------------------------------------
    async def run(self) -> GeneratorReport:
        self.timer = PreciseTimer()
        try:
            return await self._run()
        finally:
            self.timer.close()

    async def _sleep_until(self, t_ns: int) -> None:
        assert self.timer is not None
        await self.timer.sleep_until(t_ns)

    async def _run(self) -> GeneratorReport:
        spec = self.spec
        self.channel.send(Ready())
        start_ns = (await self._recv(Start, STARTUP_TIMEOUT_S * 2)).start_ns
        proc = _cpu_clock()
        arrive = [asyncio.create_task(self._arrive(i, start_ns)) for i in range(len(self.share.conn_ids))]
        if self.broadcast:
            await asyncio.gather(*arrive)
            self.channel.send(Joined(sum(1 for c in self.conns.values() if c.alive)))
            go_ns = (await self._recv(Go, spec.arrival_s + spec.connect_timeout_s * 2 + STARTUP_TIMEOUT_S)).go_ns
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
        for task in [*self._closed_loop_tasks, *self._reconnect_tasks]:
            task.cancel()
        await asyncio.gather(*self._closed_loop_tasks, *self._reconnect_tasks, return_exceptions=True)
        bytes_in, bytes_out = await self._close_all()
        cpu_s = cpu1 - cpu0
        wall_s = max(wall1 - wall0, 1e-9)
        return GeneratorReport(
            index=self.share.index,
            pid=os.getpid(),
            latency=self.latency.encode(),
            service=self.service.encode(),
            lag=self.lag.encode(),
            clamped=self.latency.clamped + self.service.clamped,
            sent=self.sent + self.tally.sent,
            received=self.received + self.tally.received,
            unexpected=self.unexpected,
            outstanding=sum(c.in_flight for c in self.conns.values()),
            unsent=sum(self._unsent(c) for c in self.conns.values()),
            connected=len(self.connect_ms),
            members=sum(1 for c in self.conns.values() if c.joined is not None and c.joined.done() and not c.joined.cancelled()),
            connect_ms=tuple(self.connect_ms),
            failed_connects=dict(self.failed),
            dropped=self.dropped,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            cpu_s=cpu_s,
            wall_s=wall_s,
            cpu=cpu_s / wall_s,
            window_s=(window_end - window_start) / 1e9,
            errors=dict(self.errors),
            reconnected=self.reconnected,
            window_over=self.window_over,
            logs=tuple(self._logs()) if self.counting else (),
        )

    def _unsent(self, conn: _Conn) -> int:
        return max(0, conn.planned - conn.sent) if not self.spec.closed_loop else 0

    def _logs(self) -> Iterator[ConnLog]:
        """Every connection's record for the account, the ones that never connected included (they sent nothing)."""
        for conn_id in self.share.conn_ids:
            conn = self.conns.get(conn_id)
            if conn is None or conn.ledger is None:
                yield ConnLog(conn_id)
                continue
            led = conn.ledger
            sent = conn.outstanding.seqs if isinstance(conn.outstanding, _SentLog) else []
            yield ConnLog(
                conn=conn_id,
                sent=tuple(sent),
                acked=tuple(sorted(led.acked)),
                arrivals=tuple(led.arrivals),
                member=led.member,
                unsent=self._unsent(conn),
                reconnects=led.reconnects,
            )

    async def _arrive(self, pos: int, start_ns: int) -> None:
        """Connect one connection at its arrival time; join its room; start its sends (echo mode)."""
        spec = self.spec
        conn_id = self.share.conn_ids[pos]
        sender = spec.rate > 0 and (spec.senders is None or conn_id < spec.senders)
        conn = _Conn(conn_id, pos, sender)
        if self.counting:
            conn.ledger = _Ledger(self.resume_cls())
            conn.outstanding = _SentLog()
        arrival_ns = start_ns + int(self.share.arrivals_s[pos] * 1e9)
        await self._sleep_until(arrival_ns)
        client = self.cls(spec.url, self._on_message(conn), self._on_close(conn), compression=spec.compression, shared=self.shared)
        conn.client = client
        self.conns[conn_id] = conn
        if conn.ledger is not None:
            conn.ledger.resume.before_connect(client)
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
        if conn.ledger is not None:
            conn.ledger.resume.after_connect(client)
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
            if conn.ledger is not None:
                conn.ledger.member = True
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
        piped = (
            client
            if not self.broadcast and not self.counting and isinstance(client, RawWebSocketClient) and client.supports_echo_pipeline()
            else None
        )
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
                if conn.ledger is not None:  # counting: the resume adapter keeps what it may have to send again
                    conn.ledger.resume.sent(msg)
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
        plain = self._on_message_plain(conn)
        return plain if conn.ledger is None else self._counted(conn, conn.ledger, plain)

    def _counted(self, conn: _Conn, ledger: _Ledger, plain: MessageHandler) -> MessageHandler:
        """The message handler of a counting run: log the arrival (or acknowledgement), tell the resume adapter, then ``plain``."""
        reply_op = self.reply_op
        own = conn.id
        arrivals = ledger.arrivals
        acked = ledger.acked
        seen = ledger.resume.seen

        def on_message(msg: dict[str, Any]) -> None:
            seen(msg)
            op = msg.get("op")
            if op == reply_op or op == protocol.OP_ACK:
                c, seq = msg.get("c"), msg.get("seq")
                if isinstance(c, int) and isinstance(seq, int):
                    if c == own:
                        acked.add(seq)  # the server has it: its acknowledgement, or our own copy back
                    if op == reply_op:
                        arrivals.append((c, seq, time.time_ns()))
                else:
                    arrivals.append((NO_SENDER, -1, time.time_ns()))  # names no message: unexpected
                if op == protocol.OP_ACK:
                    return
            elif op != protocol.OP_JOINED:
                arrivals.append((NO_SENDER, -1, time.time_ns()))
            plain(msg)

        return on_message

    def _on_message_plain(self, conn: _Conn) -> MessageHandler:
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
            elif op != protocol.OP_ACK:  # the protocol lets any server acknowledge; only a counting run uses acks
                self.unexpected += 1

        return on_message

    def _on_close(self, conn: _Conn) -> CloseHandler:
        reconnect = self.spec.reconnect is not None

        def on_close(reason: str) -> None:
            if not conn.alive:
                return
            conn.alive = False
            self.dropped += 1
            self.errors[f"dropped: {reason}" if reconnect else reason] += 1  # with reconnect, a drop is a fault under test
            if self.schedule is not None and not reconnect:  # a reconnecting connection keeps its schedule; sends skip it while away
                self.schedule.remove(conn.id)
            for waiter in conn.waiters.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError(reason))
            conn.waiters.clear()
            if reconnect and time.time_ns() < self.window[1]:
                task = asyncio.get_running_loop().create_task(self._reconnect(conn))
                self._reconnect_tasks.add(task)
                task.add_done_callback(self._reconnect_tasks.discard)
            elif reconnect:
                self.window_over += 1

        return on_close

    async def _reconnect(self, conn: _Conn) -> None:
        """Bring a dropped connection back: full-jitter backoff, a new client, the resume adapter's URL and join.

        Gives up after the policy's ``max_attempts`` failures in a row, or when the sending window ends.
        """
        spec = self.spec
        policy = spec.reconnect
        ledger = conn.ledger
        assert policy is not None and ledger is not None  # reconnect implies counting
        resume = ledger.resume
        end = self.window[1]
        attempt = 0
        while True:
            await asyncio.sleep(policy.delay_s(attempt, self.rng))
            if time.time_ns() >= end:
                self.window_over += 1
                return
            ledger.retired.append(conn.client)
            client = self.cls(
                resume.url(spec.url), self._on_message(conn), self._on_close(conn), compression=spec.compression, shared=self.shared
            )
            conn.client = client
            resume.before_connect(client)
            try:
                await client.connect(spec.connect_timeout_s)
                resume.after_connect(client)
                if self.broadcast:
                    # Not alive until joined: no sends yet, and a drop during the join shows as the join's timeout.
                    conn.joined = asyncio.get_running_loop().create_future()
                    client.send(resume.join(spec.room))
                    try:
                        async with asyncio.timeout(spec.connect_timeout_s):
                            await conn.joined
                    except TimeoutError:
                        raise ConnectionError(f"join: no 'joined' reply in {spec.connect_timeout_s:g} s") from None
            except asyncio.CancelledError:
                await client.close(0)
                raise
            except Exception as exc:
                self.errors[f"reconnect: {describe_error(exc, spec.connect_timeout_s)}"] += 1
                await client.close(0)
                if policy.gives_up_after(attempt):
                    self.errors[f"reconnect: gave up after {attempt + 1} attempt(s) in a row"] += 1
                    return
                attempt += 1
                continue
            conn.alive = True
            ledger.reconnects += 1
            self.reconnected += 1
            return

    async def _grace(self, deadline_ns: int) -> None:
        """Wait for replies still in flight: until none is outstanding (echo), or the deadline."""
        while (now := time.time_ns()) < deadline_ns:
            if not self.broadcast and not any(c.in_flight for c in self.conns.values() if c.alive):
                return
            await asyncio.sleep(min(0.01, (deadline_ns - now) / 1e9))

    async def _close_all(self) -> tuple[int, int]:
        """Close every connection (bounded), then count their bytes."""
        clients = [c.client for c in self.conns.values() if c.client is not None]
        retired = [cl for c in self.conns.values() if c.ledger is not None for cl in c.ledger.retired]
        for c in self.conns.values():
            c.alive = False  # from here on a close is ours, not the server's
        await asyncio.gather(*(cl.close(CLOSE_TIMEOUT_S) for cl in clients), return_exceptions=True)
        try:
            await self.cls.close_shared(self.shared)
        except Exception as exc:  # cleanup problems must not lose the measurements
            self.errors[f"cleanup: {describe_error(exc)}"] += 1
        counted = clients + retired  # a reconnected connection's earlier clients carried traffic too
        return sum(cl.bytes_in for cl in counted), sum(cl.bytes_out for cl in counted)


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


def _error_tuple(text: str) -> tuple[str, str]:
    return ("error", text)


@contextlib.contextmanager
def reporting_to(channel: mpc.Connection, failed: Callable[[str], Any] = _error_tuple) -> Iterator[None]:
    """In a spawned process: send any failure's traceback to the parent as ``failed(text)``; close the channel.

    ``failed`` makes the message: ``("error", text)`` by default (the idle holder's
    conversation), :class:`harness.load.report.Failed` for a generator.
    """
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            channel.send(failed(traceback.format_exc()))
    finally:
        channel.close()


def generator_main(spec_data: dict[str, Any], share: Share, channel: mpc.Connection, adapter: str, resume: str = "") -> None:
    """Entry point of a generator process: run one share, send the ``GeneratorReport`` (or ``Failed``) back.

    ``adapter`` and ``resume`` are the ``"module:Class"`` paths of the client and resume adapters.
    """
    # Ctrl-C reaches the whole process group; the parent decides when generators stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with reporting_to(channel, Failed):
        import uvloop

        # The parent may have registered adapters this fresh interpreter has not heard of.
        register(spec_data["transport"], adapter)
        if resume:
            register_resume(spec_data.get("resume", "none"), resume)
        spec = LoadSpec.from_dict(spec_data)
        raise_nofile_limit()
        pin_current(spec.cpu_affinity)  # every thread: affinity is per thread on Linux
        report = uvloop.run(_Generator(spec, share, channel).run())
        channel.send(report)
