"""Spike 6's scenarios: the option's whole stack started, loaded by the harness's engine, measured from outside.

Every repeat starts a fresh deployment (``deploy.py``), takes a baseline,
then runs the load while samplers record each component (server processes,
nginx, Redis, PostgreSQL) and a canary connection sends one timed echo every
``canary_ms`` for latency over time. After the load the servers are stopped
(they write their buffered rows) and the Redis and PostgreSQL counters are
read. Nothing is pinned: on a 2-core machine the servers, the load
generator, nginx, Redis and PostgreSQL all share the two cores, and each
one's CPU is measured so the document can say which of them saturated.

Loss is the harness's account (``harness.load.account``: every load runs with
``LoadSpec(account=True)``), stored with its words: delivered, lost after and
without acknowledgement, duplicated, unexpected, reordered.

The capacity scenario is a search, not a long run: :func:`search_capacity` (pure,
over a probe callback) bisects the per-connection rate of a broadcast room over
short load steps against one deployment, and :func:`run_capacity` is its probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import statistics
import threading
import time
from typing import Any

import psutil

from harness.capacity import CapacityResult, CapacityStep, search_capacity
from harness.load import LoadResult, LoadSpec, run_load
from harness.load.clients import get_client_class
from harness.load.idle import run_idle_generator
from harness.load.protocol import OP_BROADCAST, OP_JOINED, echo_message, join_message
from harness.plugin import NotRunnable, ScenarioContext, ScenarioOutput
from harness.probes import ProcessSampler, rss_bytes
from spikes.s06_scalability.deploy import Deployment

__all__ = [
    "MANY_IDLE",
    "MANY_IDLE_QUICK",
    "FEW_BUSY",
    "FEW_BUSY_QUICK",
    "BURST",
    "BURST_QUICK",
    "GENERATOR",
    "GENERATOR_QUICK",
    "CAPACITY",
    "CAPACITY_QUICK",
    "CapacityStep",
    "CapacityResult",
    "search_capacity",
    "capacity_step",
    "run_capacity",
    "add_account",
    "cumulative_cpu_s",
    "ACCOUNT_OUTCOMES",
    "run_many_idle",
    "run_few_busy",
    "run_burst",
    "run_generator_idle",
    "Canary",
    "RoomObserver",
    "PG_CPU_RESOLUTION_S",
    "timeline",
    "cpu_seconds",
    "loaded_window",
]

#: The seed's scenarios at full scale; quick profiles scale them down (the document says so).
#: many-idle's hold was 180 s with one repeat, then 40 s with two; six options (the Node ones added) and the scale
#: scenario leave room for two repeats of a 10 s hold in the spike's budget: memory per idle connection has settled
#: once the ramp ends at this size, and the hold still carries about 170 chat messages.
MANY_IDLE = {
    "connections": 1000,
    "rate_per_min": 1.0,
    "ramp_s": 5.0,
    "hold_s": 10.0,
    "payload_bytes": 64,
    "canary_ms": 500,
    "hz": 2.0,
    "baseline_s": 2.0,
    "drain_s": 10.0,
}
MANY_IDLE_QUICK = {"connections": 100, "rate_per_min": 60.0, "ramp_s": 0.5, "hold_s": 1.0, "hz": 5.0, "baseline_s": 0.2, "drain_s": 1.0}
#: few-busy saturates every option here (the capacity search says how far each can go), so 7 s show the shortfall.
FEW_BUSY = {
    "connections": 50,
    "rate": 100.0,
    "duration_s": 7.0,
    "payload_bytes": 64,
    "canary_ms": 200,
    "hz": 5.0,
    "baseline_s": 2.0,
    "drain_s": 5.0,
}
FEW_BUSY_QUICK = {"connections": 20, "rate": 20.0, "duration_s": 1.0, "baseline_s": 0.2, "drain_s": 1.0}
BURST = {
    "connections": 500,
    "burst_s": 10.0,
    "hold_s": 3.0,
    "rate": 1.0,
    "payload_bytes": 64,
    "canary_ms": 200,
    "hz": 5.0,
    "baseline_s": 2.0,
    "drain_s": 5.0,
}
BURST_QUICK = {"connections": 50, "burst_s": 0.5, "hold_s": 0.5, "baseline_s": 0.2, "drain_s": 1.0}
GENERATOR = {"connections": 10000, "hold_s": 5.0, "concurrency": 256}
GENERATOR_QUICK = {"connections": 1000, "hold_s": 1.0}
#: The capacity search: one broadcast room of ``connections`` members, each sending ``rate`` msg/s, the rate bisected
#: (geometrically) between ``lo_rate`` and ``hi_rate`` over steps of ``step_s`` seconds until the highest passing rate
#: and the lowest failing one are within ``ratio`` of each other, or ``max_steps`` steps ran. A step passes when every
#: connection stayed, at least ``min_delivered`` of the expected deliveries arrived within the step (its send schedule
#: and ``grace_s``; counted by the harness's account unless ``account`` is off, then by the engine's counts) and the p99
#: latency is at most ``p99_ms``.
CAPACITY = {
    "connections": 50,
    "lo_rate": 2.0,
    "hi_rate": 200.0,
    "ratio": 1.2,
    "max_steps": 6,
    "step_s": 2.5,
    "grace_s": 0.5,
    "p99_ms": 100.0,
    "min_delivered": 0.999,
    "payload_bytes": 64,
    "settle_s": 3.0,
    "account": True,
}
CAPACITY_QUICK = {"connections": 10, "lo_rate": 5.0, "hi_rate": 100.0, "ratio": 1.5, "max_steps": 2, "step_s": 0.6, "settle_s": 0.3}

#: The account's counts stored per load step (``harness.load.account``'s words), and ``expected``, their denominator.
ACCOUNT_OUTCOMES = ("delivered", "lost_after_ack", "lost_without_ack", "duplicated", "unexpected", "reordered")

#: The canary's connection id: far from the generator's 0..N-1.
CANARY_ID = 10_000_000


class Canary:
    """One extra connection sending an echo every ``period_s`` on a fixed schedule, in its own thread.

    Latency runs from each message's intended send time, so a stalled server
    shows as a rising line, not as a gap. Gives latency over time, which the
    engine's merged histogram cannot.

    When stopped it sends no more and drains: it waits up to ``drain_s`` for
    the probes still unanswered (``unanswered_at_stop``), so a probe queued
    behind a server's backlog (answered in the drain, ``answered_in_drain``)
    is told apart from one never answered (``lost``, after the drain).
    """

    def __init__(self, url: str, transport: str, period_s: float, payload_bytes: int = 64) -> None:
        self.url, self.transport, self.period_s = url, transport, period_s
        self.payload = "x" * payload_bytes
        self.points: list[tuple[float, float]] = []  # (seconds since start, latency ms)
        self.sent = 0
        self.error = ""
        self.unanswered_at_stop = 0
        self.answered_in_drain = 0
        self.drain_s = 0.0
        self._pending: dict[int, int] = {}
        self._stop = threading.Event()
        self._draining = False
        self._thread = threading.Thread(target=self._main, name="s06-canary", daemon=True)
        self._t0 = 0

    def start(self, t0_ns: int) -> Canary:
        self._t0 = t0_ns
        self._thread.start()
        return self

    def request_stop(self, drain_s: float = 0.3) -> None:
        """Send no more probes; wait up to ``drain_s`` for the unanswered ones (in the canary's thread)."""
        self.drain_s = drain_s
        self._stop.set()

    def join(self) -> None:
        self._thread.join(self.drain_s + 15)

    def stop(self, drain_s: float = 0.3) -> None:
        self.request_stop(drain_s)
        self.join()

    @property
    def lost(self) -> int:
        """Probes never answered, after the drain."""
        return len(self._pending)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as exc:  # the canary is a probe: its failure is recorded, the run goes on
            self.error = f"{type(exc).__name__}: {exc}"

    async def _run(self) -> None:
        def on_message(msg: dict[str, Any]) -> None:
            if msg.get("op") == "echo" and msg.get("c") == CANARY_ID:
                now = time.time_ns()
                seq = msg.get("seq")
                intended = self._pending.pop(seq, None) if isinstance(seq, int) else None
                if intended is not None:
                    self.points.append(((intended - self._t0) / 1e9, (now - intended) / 1e6))
                    if self._draining:
                        self.answered_in_drain += 1

        client = get_client_class(self.transport)(self.url, on_message, lambda reason: None, shared={})
        await client.connect(20.0)
        period = int(self.period_s * 1e9)
        seq = 0
        nxt = time.time_ns()
        try:
            while not self._stop.is_set():
                now = time.time_ns()
                if now < nxt:
                    await asyncio.sleep(min((nxt - now) / 1e9, 0.05))
                    continue
                self._pending[seq] = nxt
                client.send(echo_message(seq, nxt, CANARY_ID, self.payload))
                self.sent += 1
                seq += 1
                nxt += period
            # The drain: replies still in flight, or queued behind a backlog.
            self.unanswered_at_stop = len(self._pending)
            self._draining = True
            deadline = time.monotonic() + self.drain_s
            while self._pending and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            await client.close(2.0)
            await client.close_shared(client.shared)


class RoomObserver:
    """One listening member of a broadcast room, in its own thread: how many broadcasts reached it, and when.

    It joins the room before the load starts and sends nothing. The engine
    counts what its own connections received when it stopped; the observer
    keeps listening after that for up to ``drain_s`` (see :meth:`drain`), so
    a broadcast still queued at the stop (it arrives in the drain) is told
    apart from one never delivered.
    """

    def __init__(self, url: str, transport: str, room: str) -> None:
        self.url, self.transport, self.room = url, transport, room
        self.received = 0
        self.error = ""
        self.last_ns = 0
        self._joined = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="s06-observer", daemon=True)

    def start(self, timeout_s: float = 20.0) -> RoomObserver:
        """Connect and join; returns once joined (or on failure, recorded in ``error``)."""
        self._thread.start()
        if not self._joined.wait(timeout_s) and not self.error:
            self.error = f"no 'joined' reply in {timeout_s:g} s"
        return self

    def drain(self, expected: int, drain_s: float, quiet_s: float = 2.0) -> float:
        """Wait until ``expected`` broadcasts arrived, none arrived for ``quiet_s``, or ``drain_s`` passed; the seconds waited."""
        t0 = time.monotonic()
        deadline = t0 + drain_s
        while time.monotonic() < deadline and not self.error:
            if self.received >= expected:
                break
            last = self.last_ns or time.time_ns()
            if (time.time_ns() - last) / 1e9 >= quiet_s and time.monotonic() - t0 >= quiet_s:
                break
            time.sleep(0.02)
        return time.monotonic() - t0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as exc:  # a probe: its failure is recorded, the run goes on
            self.error = self.error or f"{type(exc).__name__}: {exc}"
            self._joined.set()

    async def _run(self) -> None:
        def on_message(msg: dict[str, Any]) -> None:
            op = msg.get("op")
            if op == OP_BROADCAST:
                self.received += 1
                self.last_ns = time.time_ns()
            elif op == OP_JOINED:
                self._joined.set()

        client = get_client_class(self.transport)(self.url, on_message, lambda reason: None, shared={})
        await client.connect(20.0)
        try:
            client.send(join_message(self.room))
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
        finally:
            await client.close(2.0)
            await client.close_shared(client.shared)


#: CPU times come from /proc in clock ticks of 10 ms (USER_HZ), per process; a sampled tree's total is off by up to a
#: tick per busy process at each end. Under 10 ticks in all, a figure derived from it (CPU per row, per command) is noise.
PG_CPU_RESOLUTION_S = 0.1


def cpu_seconds(samples: list[dict[str, Any]]) -> float:
    """CPU seconds a sampled process tree used: each sample's percent times its interval."""
    total, prev = 0.0, 0.0
    for s in samples:
        total += (s.get("cpu_percent") or 0.0) / 100 * (s["t"] - prev)
        prev = s["t"]
    return total


def timeline(samplers: list[ProcessSampler], hz: float, key: str) -> dict[int, float]:
    """A metric summed over several samplers, binned by sample time (bin = round(t * hz))."""
    out: dict[int, float] = {}
    for sampler in samplers:
        own: dict[int, float] = {}
        for s in sampler.samples:
            value = s.get(key)
            if value is not None:
                own[round(s["t"] * hz)] = float(value)  # a late sample landing in a taken bin replaces it, never adds to it
        for b, v in own.items():
            out[b] = out.get(b, 0.0) + v
    return out


def loaded_window(conns: dict[int, float], fraction: float = 0.95) -> list[int]:
    """The bins where the server held at least ``fraction`` of its peak connection count."""
    if not conns:
        return []
    peak = max(conns.values())
    return sorted(b for b, c in conns.items() if peak > 0 and c >= fraction * peak)


def cumulative_cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system) a process tree has used since it started, exited children included; None if unreadable.

    The root's own times, plus its ``children_user``/``children_system`` (the CPU of every child it has reaped: for
    the postmaster, every backend that has come and gone, however short-lived), plus each live descendant's times
    and its own reaped children. Read at two moments, the difference is everything the tree did between them: a
    sampler would lose a backend that started and exited between two samples. Clock ticks of 10 ms per process.
    """
    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        t = root.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        kids = root.children(recursive=True)
    except psutil.Error:
        return None
    for kid in kids:
        with contextlib.suppress(psutil.Error):  # exited meanwhile: now in the root's reaped children (or lost between reads)
            c = kid.cpu_times()
            total += c.user + c.system + c.children_user + c.children_system
    return total


def _tree_cpu(pids: list[int]) -> float:
    return sum(v for p in pids if (v := cumulative_cpu_s(p)) is not None)


def _account_total(result: LoadResult) -> dict[str, Any] | None:
    return (result.account or {}).get("total") if result.account else None


def add_account(out: ScenarioOutput, result: LoadResult) -> dict[str, Any] | None:
    """Store the account's totals of a counting run (its words, ``harness.load.account``); its total, or None."""
    total = _account_total(result)
    if total is None:
        return None
    for name in ACCOUNT_OUTCOMES:
        out.add(name, "messages", [total[name]["count"]], "higher" if name == "delivered" else "lower")
    out.add("expected", "messages", [total["expected"]], None)
    out.add("arrivals", "messages", [total["arrivals"]], None)
    if "account" in out.facts:  # the total is kept; a tally per connection (a thousand of them in many-idle) is not
        out.facts["account"] = {"mode": result.account["mode"], "total": total} if result.account else None
    return total


def measure(
    ctx: ScenarioContext, spec: dict[str, Any], *, canary_ms: float, hz: float, baseline_s: float = 1.0, drain_s: float = 2.0
) -> ScenarioOutput:
    """Deploy the option, run one load against it, and measure every component; the common body of the scenarios.

    Before the load, the server processes' CPU is sampled for ``baseline_s`` with no client connected (the
    baseline). After it, the canary (and in broadcast mode a listening room member, the observer) wait up to
    ``drain_s`` for what was still in flight when the engine stopped; the samplers stop before the drain, so
    CPU figures cover the load only. The load counts every message into the harness's account.

    PostgreSQL's CPU is also read as the postmaster's cumulative times, its reaped backends included
    (:func:`cumulative_cpu_s`), from the start of the load to just after the servers stopped: the rows a
    server still buffered are written at its stop, after the samplers, and a backend that came and went
    between two samples is not lost. That figure, over the rows in the table, is the cost per row.
    """
    out = ScenarioOutput()
    t_setup = time.perf_counter()
    with Deployment(ctx.option.key, ctx.workdir, log=ctx.log) as dep:
        ctx.log(f"{ctx.option.key}: stack up in {time.perf_counter() - t_setup:.2f} s")
        time.sleep(0.1 if ctx.quick else 0.3)  # settle: imports done, pools open
        pids = dep.pids()
        base_rss = [rss_bytes(p) for p in pids["server"]]
        # Baseline: the server processes' CPU with the stack up and no client connected, before any load.
        idle = [ProcessSampler(srv.pid, hz=hz).start() for srv in dep.servers if srv.pid]
        time.sleep(baseline_s)
        for s in idle:
            s.stop()
        idle_s = max((s.samples[-1]["t"] for s in idle if s.samples), default=0.0)
        idle_cpu = sum(cpu_seconds(s.samples) for s in idle)
        observer = RoomObserver(dep.url, dep.transport, spec["room"]).start() if spec.get("mode") == "broadcast" else None
        redis0 = dep.redis_stats()
        samplers = {name: [ProcessSampler(p, hz=hz) for p in ps] for name, ps in pids.items() if name != "server"}
        # Clients are counted by their socket's local port: file descriptors would also count the sockets a
        # server opens itself (its Redis and PostgreSQL pools grow under load).
        samplers["server"] = [ProcessSampler(srv.pid, hz=hz, listen_port=srv.port) for srv in dep.servers if srv.pid]
        # This process's whole tree: the harness, the generators and every component above.
        samplers["spike"] = [ProcessSampler(os.getpid(), hz=hz)]
        pg_pid = (pids.get("postgres") or [None])[0]
        pg_cpu0 = cumulative_cpu_s(pg_pid)
        t_pg0 = time.monotonic()
        machine0 = psutil.cpu_times()
        for group in samplers.values():
            for s in group:
                s.start()
        t0_ns = time.time_ns()
        canary = Canary(dep.url, dep.transport, canary_ms / 1000, spec.get("payload_bytes", 64)).start(t0_ns)
        grace_s = 0.5 if ctx.quick else 1.0
        result: LoadResult | None = None
        try:
            result = run_load(LoadSpec(url=dep.url, transport=dep.transport, connect_timeout_s=30.0, grace_s=grace_s, account=True, **spec))
        finally:
            canary.request_stop(drain_s)  # it drains in its own thread, after the measurement window
            observed_at_stop = observer.received if observer is not None else 0
            for group in samplers.values():
                for s in group:
                    s.stop()
            machine1 = psutil.cpu_times()
            wall = (time.time_ns() - t0_ns) / 1e9
            redis1 = dep.redis_stats()  # before the drain: Redis's counters cover the load window only
            drained_s = 0.0
            try:
                if observer is not None:
                    drained_s = observer.drain(result.sent if result is not None else 0, drain_s)
            finally:
                if observer is not None:
                    observer.stop()
                canary.join()
        assert result is not None  # run_load returned (an exception would have left the block)
        ctx.log(f"{ctx.option.key}: load done in {wall:.2f} s (engine wall {result.wall_s:.2f} s)")
        dep.check_alive()
        server_notes = dep.stop_servers()
        time.sleep(0.3)  # the servers' backends exit as their pools close; the postmaster reaps them (their CPU then counts)
        pg_cpu1 = cumulative_cpu_s(pg_pid)
        t_pg1 = time.monotonic()
        pg = dep.pg_stats()
        components = dep.components
        t_down = time.perf_counter()
    ctx.log(f"{ctx.option.key}: stack down in {time.perf_counter() - t_down:.2f} s")
    if result.connected == 0:
        raise RuntimeError(
            f"no connection of {result.connections} could be opened: {'; '.join(result.errors[:3]) or result.failed_connects}"
        )
    # -- what the engine measured (latency, connects, bytes, loss) ------------------------------
    result.add_to(out)
    add_account(out, result)
    ctx.advance(0.9)
    # -- memory per connection, from the loaded window --------------------------------------------
    server = samplers["server"]
    rss_t = timeline(server, hz, "rss_bytes")
    base_total_rss = sum(base_rss)
    conns_t = timeline(server, hz, "client_connections")
    window = loaded_window(conns_t)
    if window:
        conns = statistics.median(conns_t[b] for b in window)
        rss = statistics.median(rss_t[b] for b in window if b in rss_t) if any(b in rss_t for b in window) else None
        if conns > 0 and rss is not None:
            out.add("memory_per_connection_bytes", "bytes", [(rss - base_total_rss) / conns])
            out.add("server_rss_loaded_bytes", "bytes", [rss], None)
        out.add("server_connections", "connections", [conns], None)
        for i, s in enumerate(server):
            p_rss = {round(x["t"] * hz): x["rss_bytes"] for x in s.samples}
            p_conns_t = timeline([server[i]], hz, "client_connections")
            p_conns = statistics.median(p_conns_t[b] for b in window if b in p_conns_t) if any(b in p_conns_t for b in window) else 0
            p_mem = statistics.median(p_rss[b] for b in window if b in p_rss) if any(b in p_rss for b in window) else None
            if p_conns > 0 and p_mem is not None:
                out.add("process_memory_per_connection_bytes", "bytes", [(p_mem - base_rss[i]) / p_conns], process=str(i))
                out.add("process_connections", "connections", [p_conns], None, process=str(i))
    out.add("server_rss_base_bytes", "bytes", [base_total_rss], None)
    # -- CPU of every component -----------------------------------------------------------------------
    for name, group in samplers.items():
        if name == "spike":
            continue
        secs = sum(cpu_seconds(s.samples) for s in group)
        out.add(f"{name}_cpu_seconds", "cpu-s", [secs], None)
        out.add(f"{name}_cpu_cores", "cores", [secs / wall if wall else 0.0], None)
    out.add("server_idle_cpu_seconds", "cpu-s", [idle_cpu], None)
    out.add("server_idle_window_s", "s", [idle_s], None)
    out.add("server_idle_cpu_cores", "cores", [idle_cpu / idle_s if idle_s else 0.0], None)
    busiest = max((cpu_seconds(s.samples) for s in server), default=0.0)
    out.add("busiest_server_process_cores", "cores", [busiest / wall if wall else 0.0], None)
    busy = (sum(machine1) - machine1.idle - getattr(machine1, "iowait", 0)) - (
        sum(machine0) - machine0.idle - getattr(machine0, "iowait", 0)
    )
    out.add("machine_cpu_cores", "cores", [busy / wall if wall else 0.0], None)
    mine = sum(cpu_seconds(s.samples) for s in samplers["spike"])
    out.add("other_processes_cpu_cores", "cores", [max(0.0, busy - mine) / wall if wall else 0.0], None)
    out.add("load_wall_s", "s", [wall], None)
    # -- Redis and PostgreSQL -------------------------------------------------------------------------
    if redis1:
        commands = redis1["commands"] - redis0["commands"] - 2  # the two INFO calls of this measurement
        out.add("redis_commands", "commands", [max(0, commands)], None)
        out.add("redis_ops_per_s", "ops/s", [max(0, commands) / wall], None)
        out.add("redis_publish", "commands", [redis1["publish"] - redis0["publish"]], None)
        out.add("redis_used_memory_bytes", "bytes", [redis1["used_memory"]], None)
        out.add("redis_peak_memory_bytes", "bytes", [redis1["used_memory_peak"]], None)
        out.add("redis_net_bytes", "bytes", [(redis1["net_in"] - redis0["net_in"]) + (redis1["net_out"] - redis0["net_out"])], None)
    out.add("pg_rows", "rows", [pg["rows"]], None)
    out.add("pg_tup_inserted", "rows", [pg["table_tup_ins"]], None)
    out.add("pg_xact_commit", "transactions", [pg["xact_commit"]], None)
    out.add("pg_xact_per_s", "transactions/s", [pg["xact_commit"] / wall], None)
    out.add("pg_rows_per_s", "rows/s", [pg["rows"] / wall], None)
    messages_in = result.sent + canary.sent
    out.add("messages_in", "messages", [messages_in], None)
    out.add("pg_rows_missing", "rows", [max(0, messages_in - pg["rows"])])
    if pg_cpu0 is not None and pg_cpu1 is not None:
        # Everything PostgreSQL did from the load's start to the servers' stop (their last batches included).
        out.add("postgres_cpu_total_seconds", "cpu-s", [max(0.0, pg_cpu1 - pg_cpu0)], None)
        out.add("postgres_cpu_total_window_s", "s", [t_pg1 - t_pg0], None)
    # -- the canary: latency over time -----------------------------------------------------------------
    out.add("canary_sent", "messages", [canary.sent], None)
    out.add("canary_unanswered_at_stop", "messages", [canary.unanswered_at_stop], None)
    out.add("canary_answered_in_drain", "messages", [canary.answered_in_drain], None)
    out.add("canary_lost", "messages", [canary.lost])
    out.add("drain_s", "s", [drain_s], None)
    out.add("grace_s", "s", [grace_s], None)
    if observer is not None and not observer.error:
        # One listening member of the room: the broadcasts it was due (every message the generator sent), what it had
        # when the engine stopped, and after the drain.
        out.add("observer_expected", "messages", [result.sent], None)
        out.add("observer_received_at_stop", "messages", [observed_at_stop], None)
        out.add("observer_received_after_drain", "messages", [observer.received], None)
        out.add("observer_undelivered_after_drain", "messages", [max(0, result.sent - observer.received)])
        out.add("observer_drain_used_s", "s", [drained_s], None)
    if canary.points:
        out.add("timeline_canary_t_s", "s", [round(t, 3) for t, _ in canary.points], None)
        out.add("timeline_canary_latency_ms", "ms", [round(v, 3) for _, v in canary.points], None)
    bins = sorted(set(rss_t) | set(conns_t))
    cpu_t = timeline(server, hz, "cpu_percent")
    out.add("timeline_t_s", "s", [b / hz for b in bins], None)
    out.add("timeline_server_rss_bytes", "bytes", [rss_t.get(b, 0.0) for b in bins], None)
    out.add("timeline_server_connections", "connections", [conns_t.get(b, 0.0) for b in bins], None)
    out.add("timeline_server_cpu_cores", "cores", [cpu_t.get(b, 0.0) / 100 for b in bins], None)
    for name in ("redis", "postgres", "nginx"):
        if name in samplers:
            t = timeline(samplers[name], hz, "cpu_percent")
            out.add(f"timeline_{name}_cpu_cores", "cores", [t.get(b, 0.0) / 100 for b in bins], None)
    out.facts.update(
        {
            "components": components,
            "processes": len(pids["server"]),
            "url_kind": "nginx" if "nginx" in pids else "direct",
            "canary_error": canary.error,
            "observer_error": observer.error if observer is not None else "",
            "server_notes": server_notes,
            "generator_processes": spec.get("processes", 1),
        }
    )
    return out


def run_many_idle(ctx: ScenarioContext) -> ScenarioOutput:
    """Many connections, each sending a chat message now and then, held long enough for a steady state."""
    p = ctx.params
    spec = dict(
        connections=p["connections"],
        rate=p["rate_per_min"] / 60,
        arrival="ramp",
        arrival_s=p["ramp_s"],
        duration_s=p["hold_s"],
        payload_bytes=p["payload_bytes"],
        mode="echo",
        processes=1,
    )
    return measure(ctx, spec, canary_ms=p["canary_ms"], hz=p["hz"], baseline_s=p.get("baseline_s", 1.0), drain_s=p.get("drain_s", 2.0))


def run_few_busy(ctx: ScenarioContext) -> ScenarioOutput:
    """A few busy connections in one room: every message is persisted and broadcast to all of them."""
    p = ctx.params
    spec = dict(
        connections=p["connections"],
        rate=p["rate"],
        duration_s=p["duration_s"],
        payload_bytes=p["payload_bytes"],
        mode="broadcast",
        room="table-1",
        processes=1,
    )
    return measure(ctx, spec, canary_ms=p["canary_ms"], hz=p["hz"], baseline_s=p.get("baseline_s", 1.0), drain_s=p.get("drain_s", 2.0))


def run_burst(ctx: ScenarioContext) -> ScenarioOutput:
    """0 to N connections arriving at random within a window, then held, each sending chat messages."""
    p = ctx.params
    spec = dict(
        connections=p["connections"],
        rate=p["rate"],
        arrival="burst",
        arrival_s=p["burst_s"],
        duration_s=p["hold_s"],
        payload_bytes=p["payload_bytes"],
        mode="echo",
        processes=1,
    )
    return measure(
        ctx, spec, canary_ms=p["canary_ms"], hz=p.get("hz", 5.0), baseline_s=p.get("baseline_s", 1.0), drain_s=p.get("drain_s", 2.0)
    )


def _settle(pids: list[int], max_s: float, quiet_cores: float = 0.1, period_s: float = 0.2) -> float:
    """Wait until the processes use at most ``quiet_cores`` (what a step left queued is done), or ``max_s``; seconds waited."""
    t0 = time.monotonic()
    prev = _tree_cpu(pids)
    while time.monotonic() - t0 < max_s:
        time.sleep(period_s)
        now = _tree_cpu(pids)
        if (now - prev) / period_s <= quiet_cores:
            break
        prev = now
    return time.monotonic() - t0


def capacity_step(ctx: ScenarioContext, dep: Deployment, rate: float, index: int) -> CapacityStep:
    """One step of the capacity search against a running deployment: a short broadcast load at ``rate``, judged."""
    p = ctx.params
    n = p["connections"]
    pids = dep.pids()
    app = pids["server"] + pids.get("nginx", [])
    settled = _settle(pids["server"], p["settle_s"])
    groups = {"app": app, "redis": pids.get("redis", []), "postgres": pids.get("postgres", [])}
    cpu0 = {k: _tree_cpu(v) for k, v in groups.items()}
    result = run_load(
        LoadSpec(
            url=dep.url,
            transport=dep.transport,
            connections=n,
            rate=rate,
            duration_s=p["step_s"],
            mode="broadcast",
            room=f"capacity-{index}",  # a fresh room per step: nothing of an earlier step's backlog reaches this one
            payload_bytes=p["payload_bytes"],
            processes=1,
            grace_s=p["grace_s"],
            connect_timeout_s=10.0,
            account=p["account"],
        )
    )
    cpu = {k: _tree_cpu(v) - cpu0[k] for k, v in groups.items()}
    dep.check_alive()
    total = _account_total(result)
    if total is not None:  # the harness's account: each member's first copy of each message sent
        expected, delivered = int(total["expected"]), int(total["delivered"]["count"])
    else:  # the engine's counts (account off: no per-message bookkeeping in the generator)
        expected, delivered = result.expected, min(result.received, result.expected)
    p99 = result.latency_ms.get("p99")
    window = result.duration_s or p["step_s"]
    fraction = delivered / expected if expected else 0.0
    passed = bool(
        result.connected == n
        and result.dropped == 0
        and expected > 0
        and fraction >= p["min_delivered"]
        and p99 is not None
        and p99 <= p["p99_ms"]
    )
    detail = {
        "rate": round(rate, 4),
        "passed": passed,
        "client_bound": result.client_bound,
        "client_bound_reasons": list(result.client_bound_reasons),
        "connected": result.connected,
        "dropped": result.dropped,
        "sent": result.sent,
        "unsent": result.unsent,
        "expected": expected,
        "delivered": delivered,
        "delivered_fraction": round(fraction, 6),
        "lost_after_ack": None if total is None else int(total["lost_after_ack"]["count"]),
        "lost_without_ack": None if total is None else int(total["lost_without_ack"]["count"]),
        "p50_ms": result.latency_ms.get("p50"),
        "p99_ms": p99,
        "window_s": round(window, 4),
        "deliveries_per_s": delivered / window if window else 0.0,
        "server_cpu_s": round(cpu["app"], 4),
        "server_cores": cpu["app"] / window if window else 0.0,
        # Deliveries per server CPU-second (= deliveries/s per busy core): the server processes' and nginx's CPU over
        # the whole step (connects, the sends, the grace) against every delivery of the step.
        "deliveries_per_core": delivered / cpu["app"] if cpu["app"] > 0 else None,
        "redis_cores": cpu["redis"] / window if window and groups["redis"] else None,
        "postgres_cores": cpu["postgres"] / window if window else None,
        "generator_cpu": max(result.generator_cpu, default=0.0),
        "generator_us_per_delivery": result.generator_us_per_msg,
        "settled_s": round(settled, 3),
        "load_wall_s": round(result.wall_s, 3),  # the whole step: generator start, connects, sends, grace, close
        "errors": list(result.errors)[:3],
    }
    ctx.log(
        f"{ctx.option.key}: capacity step {index} at {rate:.2f} msg/s: {'pass' if passed else 'fail'}, p99 {p99} ms, "
        f"{fraction:.4%} delivered, server {detail['server_cores']:.2f} cores{', client-bound' if result.client_bound else ''}; "
        f"step {result.wall_s:.2f} s after {settled:.2f} s settling"
    )
    return CapacityStep(rate, passed, result.client_bound, detail)


def run_capacity(ctx: ScenarioContext) -> ScenarioOutput:
    """The highest per-connection rate a broadcast room holds within its bounds, found by bisection over short steps."""
    p = ctx.params
    out = ScenarioOutput()
    with Deployment(ctx.option.key, ctx.workdir, log=ctx.log) as dep:
        time.sleep(0.1 if ctx.quick else 0.3)  # settle: imports done, pools open
        count = 0

        def probe(rate: float) -> CapacityStep:
            nonlocal count
            count += 1
            step = capacity_step(ctx, dep, rate, count)
            ctx.advance(min(0.95, count / (p["max_steps"] + 1)))
            return step

        found = search_capacity(probe, p["lo_rate"], p["hi_rate"], ratio=p["ratio"], max_steps=p["max_steps"])
        components = dep.components
    n = p["connections"]
    best = found.passing_step
    d = best.detail if best is not None else {}
    out.add("capacity_rate", "msg/s", [found.rate or 0.0], "higher")
    if found.fail_rate is not None:
        out.add("capacity_fail_rate", "msg/s", [found.fail_rate], None)
    out.add("capacity_at_least", "flag", [1.0 if found.at_least else 0.0], None)
    # None passed: no rate of the range was held, so nothing is delivered within the bounds.
    out.add("capacity_deliveries_per_s", "deliveries/s", [d.get("deliveries_per_s", 0.0)], "higher")
    per_core = d.get("deliveries_per_core")
    out.add("capacity_deliveries_per_core", "deliveries/s/core", [0.0 if best is None else per_core or 0.0], "higher")
    if best is not None:
        out.add("capacity_room_deliveries_per_s", "deliveries/s", [n * n * found.rate], None)  # what the schedule asked
        out.add("capacity_server_cores", "cores", [d["server_cores"]], None)
        out.add("capacity_p99_ms", "ms", [d["p99_ms"]], None)
        out.add("capacity_generator_cpu", "cores", [d["generator_cpu"]], None)
        for k in ("redis_cores", "postgres_cores"):
            if d.get(k) is not None:
                out.add(f"capacity_{k}", "cores", [d[k]], None)
    measured = [s.detail for s in found.steps if s.detail.get("generator_us_per_delivery")]
    if measured:
        # What one generator core can receive at this room size: its CPU per delivery (send share included) in the
        # busiest step, where its fixed costs per send (timers, wake-ups) weigh least.
        busiest = max(measured, key=lambda d: d["deliveries_per_s"])
        out.add("generator_us_per_delivery", "us", [busiest["generator_us_per_delivery"]], None)
        out.add("generator_busiest_deliveries_per_s", "deliveries/s", [busiest["deliveries_per_s"]], None)
    out.add("capacity_steps", "steps", [len(found.steps)], None)
    out.facts.update(
        {
            "capacity_why": found.why,
            "capacity_at_least": found.at_least,
            "steps": [s.detail for s in found.steps],
            "components": components,
            "processes": len(dep.servers),
        }
    )
    return out


def run_generator_idle(ctx: ScenarioContext) -> ScenarioOutput:
    """The load generator alone in one process holding N idle connections: its own memory per connection."""
    p = ctx.params
    out = ScenarioOutput()
    need = p["connections"] + 100
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < need:
        raise NotRunnable(
            f"the descriptor hard limit is {hard}; {p['connections']} connections need about {need} in the generator and in the server: "
            "raise it (ulimit -Hn as root, or LimitNOFILE for a service)"
        )
    with Deployment(ctx.option.key, ctx.workdir, log=ctx.log) as dep:
        server_pid = dep.pids()["server"][0]
        server_limit = psutil.Process(server_pid).rlimit(psutil.RLIMIT_NOFILE)
        if server_limit[0] < need:
            raise NotRunnable(
                f"the POC server may open {server_limit[0]} descriptors (hard limit {server_limit[1]}); {p['connections']} connections need "
                f"about {need}: raise the hard limit (ulimit -Hn, or LimitNOFILE for a service)"
            )
        base = rss_bytes(server_pid)
        r = run_idle_generator(
            dep.url,
            dep.transport,
            p["connections"],
            hold_s=p["hold_s"],
            concurrency=p["concurrency"],
            connect_timeout_s=30.0,
            during_hold=lambda: rss_bytes(server_pid),
        )
        dep.check_alive()
    if r["nofile_soft"] < need:
        raise NotRunnable(
            f"the generator process may open only {r['nofile_soft']} descriptors (hard limit {r['nofile_hard']}); {p['connections']} "
            f"connections need about {need}: raise the hard limit"
        )
    connected = r["connected"]
    out.add("generator_connected", "connections", [connected], "higher")
    out.add("generator_connect_failed", "connections", [r["connect_failed"]])
    out.add("generator_rss_bytes", "bytes", [r["rss_connected"]], None)
    out.add("generator_rss_base_bytes", "bytes", [r["rss_before"]], None)
    if connected:
        out.add("generator_memory_per_connection_bytes", "bytes", [(r["rss_connected"] - r["rss_before"]) / connected])
        out.add("server_memory_per_connection_bytes", "bytes", [(r["during_hold"] - base) / connected])
    out.add("connect_ms", "ms", r["connect_ms"])
    out.facts.update({"failed_connects": r["failed"], "nofile": [r["nofile_soft"], r["nofile_hard"]], "server_nofile": list(server_limit)})
    return out
