"""Spike 7's scenarios: real faults under the load engine's reconnecting, counting clients.

Each run: the option's POC server (and a throwaway redis-server for the options that keep their log in Redis),
a :class:`harness.faults.FaultProxy` in front of it, the load engine (``run_load``, broadcast mode, every
connection a sender and a member, reconnecting with the option's resume adapter, the account on), and a
*watcher*: one more member, in this process, that applies every broadcast it receives to its own
``core.Room`` through the same proxy, reconnecting and resuming as the option's clients do. After the run the
watcher's state hash is compared with the server's (``{"op": "state"}``, asked directly): the replicas are
equal or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from harness.faults import Blackhole, FaultLog, FaultProxy, Reset, crash_postgres, crash_redis, kill_and_restart
from harness.load import LoadSpec, run_load
from harness.load.account import FaultWindow
from harness.load.spec import ReconnectPolicy
from harness.plugin import ScenarioContext, ScenarioOutput
from harness.poc import poc_server
from harness.probes import ProcessSampler, summarize
from harness.process import ServerProcess
from harness.services import PostgresService, RedisService
from spikes.s07_error_recovery import anchor, core

__all__ = [
    "CUT_PARAMS",
    "CUT_QUICK",
    "RESTART_PARAMS",
    "RESTART_QUICK",
    "run_cut",
    "run_restart",
    "run_redis_failure",
    "REDIS_PARAMS",
    "REDIS_QUICK",
    "Watcher",
    "RESUME",
    "USES_REDIS",
]

#: The load engine's resume adapter for each option (``harness.load.clients.resume``).
RESUME = {
    "reconnect": "none",
    "queue": "outbox",
    "reconstruct": "last-seq",
    "queue-reconstruct": "outbox-last-seq",
    "checkpoint": "outbox-last-seq",
    "fallback": "outbox-last-seq",
    anchor.KEY: anchor.RESUME,
}
#: Options whose network and server behaviour is that of queuing plus reconstruction while the stores are up: fallback
#: differs only while Redis is down, so it is declared for the Redis failure (and the hostile frames) only.
STORE_ONLY = ("fallback",)
#: Options that keep their log in Redis, and those that write checkpoints to PostgreSQL.
USES_REDIS = ("reconstruct", "queue-reconstruct", "checkpoint", "fallback", anchor.KEY)
USES_PG = ("checkpoint",)
#: Seconds between two checkpoints of a room.
CHECKPOINT_EVERY_S = 1.0
#: The clients' reconnect policy: exponential backoff with full jitter.
POLICY = {"base_s": 0.1, "cap_s": 1.0}
#: The servers' heartbeat (websockets' ping): a peer silent this long after a ping is closed.
PING_INTERVAL_S = 2.0
#: Not 2 s, nor 5: a member resuming after a minute's cut has thousands of entries replayed to it (with the resends of
#: every outbox broadcast too), and a ping queued behind them waited longer than that for its pong, so the server closed
#: members in the middle of their replay (1011); a drop after the senders stop is not brought back, so they lost the rest.
PING_TIMEOUT_S = 10.0
ROOM = "table-1"

#: ``runs``: independent runs of each fault, side by side (``side_by_side``); the scenarios run once (``max_repeats=1``),
#: so the spread comes from these runs. Load per run: ``connections`` senders at ``rate`` a second each, every one a member.
CUT_PARAMS: dict[str, Any] = {
    "cuts_s": [1, 10],
    "runs": 2,
    "connections": 12,
    "rate": 5,
    "before_s": 1.5,
    "after_s": 3.0,
    "grace_s": 1.5,
    "grace_per_fault_s": 0.2,
    "log_len": 10_000,
}
CUT_QUICK: dict[str, Any] = {"cuts_s": [1], "runs": 1, "connections": 6, "before_s": 0.3, "after_s": 1.0, "grace_s": 0.5}
BLACKHOLE_PARAMS: dict[str, Any] = {**CUT_PARAMS, "cuts_s": [1, 10, 60], "after_s": 4.0}
#: Quick: one 1 s cut (shorter than the heartbeat's interval plus timeout: it smoke-tests the path, nothing to notice).
BLACKHOLE_QUICK: dict[str, Any] = {**CUT_QUICK, "cuts_s": [1]}
RESTART_PARAMS: dict[str, Any] = {
    "signals": ["SIGKILL", "SIGTERM"],
    "runs": 2,
    "connections": 12,
    "rate": 5,
    "before_s": 1.5,
    "after_s": 3.0,
    "grace_s": 1.5,
    "log_len": 10_000,
}
REDIS_PARAMS: dict[str, Any] = {**CUT_PARAMS, "down_s": 10.0}
REDIS_QUICK: dict[str, Any] = {**CUT_QUICK, "down_s": 1.0}
RESTART_QUICK: dict[str, Any] = {"signals": ["SIGKILL"], "runs": 1, "connections": 6, "before_s": 0.3, "after_s": 1.0, "grace_s": 0.5}


class Watcher:
    """One more member of the room, through the proxy: applies what it receives; reconnects and resumes like the option's clients."""

    def __init__(self, url: str, numbered: bool) -> None:
        self.url = url
        self.numbered = numbered
        self.room = core.Room(ROOM)
        self.last_n: int | None = None
        self.closes: list[float] = []  # time.time() of each drop it noticed
        self.joins: list[float] = []  # time.time() of each join answered
        self.snapshots = 0
        self.deliveries: list[float] = []  # time.time() of each broadcast received (the timeline chart)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.joined = threading.Event()

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    async def _run(self) -> None:
        from websockets.asyncio.client import connect

        attempt = 0
        while not self._stop.is_set():
            try:
                async with connect(
                    self.url, ping_interval=PING_INTERVAL_S, ping_timeout=PING_TIMEOUT_S, open_timeout=5, close_timeout=1
                ) as ws:
                    join: dict[str, Any] = {"op": "join", "room": ROOM}
                    if self.numbered and self.last_n is not None:
                        join["after"] = self.last_n
                    await ws.send(json.dumps(join))
                    while not self._stop.is_set():
                        try:
                            data = await asyncio.wait_for(ws.recv(), 0.2)
                        except TimeoutError:
                            continue
                        msg = json.loads(data)
                        op = msg.get("op")
                        if op == "joined":
                            if isinstance(msg.get("n"), int):
                                self.last_n = msg["n"]
                            self.joins.append(time.time())
                            self.joined.set()
                            attempt = 0
                        elif op == "broadcast":
                            self.deliveries.append(time.time())
                            self.room.apply(msg["c"], msg["seq"], msg["t"])
                            if isinstance(msg.get("n"), int):
                                self.last_n = msg["n"]
                        elif op == "snapshot":
                            self.snapshots += 1
                            self.last_n = msg["n"]
                        elif op == "error":
                            self.errors.append(str(msg.get("reason")))
                    return
            except Exception as exc:  # a drop: note when, back off, come back
                self.closes.append(time.time())
                self.errors.append(type(exc).__name__)
                attempt += 1
                await asyncio.sleep(min(POLICY["cap_s"], POLICY["base_s"] * 2**attempt))


async def _ask_state(url: str) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    async with connect(url, open_timeout=10) as ws:
        await ws.send(json.dumps({"op": "state", "room": ROOM}))
        return json.loads(await asyncio.wait_for(ws.recv(), 10))


def ask_state(url: str) -> dict[str, Any]:
    """The server's state of the room (hash and counters), asked directly, not through the proxy."""
    return asyncio.run(_ask_state(url))


@contextlib.contextmanager
def deployment(ctx: ScenarioContext, log_len: int) -> Iterator[tuple[ServerProcess, str, dict[str, Any]]]:
    """The option's server (with its Redis and PostgreSQL when it uses them): the server, its direct URL, the services by name."""
    key = ctx.option.key
    with contextlib.ExitStack() as stack:
        redis: RedisService | None = None
        if key in USES_REDIS:
            redis = stack.enter_context(RedisService(base_dir=ctx.workdir))
        pg = stack.enter_context(PostgresService(base_dir=ctx.workdir)) if key in USES_PG else None
        values = {
            "redis": redis.url if redis else "",
            "pg": pg.dsn if pg else "",
            "log_len": log_len,
            "ping": PING_INTERVAL_S,
            "ping_timeout": PING_TIMEOUT_S,
            "every": CHECKPOINT_EVERY_S,
        }
        server, url = stack.enter_context(poc_server(ctx.option, ctx.workdir, values=values))
        yield server, url, {"redis": redis, "pg": pg}


def _wait_members(proxy: FaultProxy, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while proxy.open_connections < n and time.monotonic() < deadline:
        time.sleep(0.05)


def _load(url: str, key: str, p: dict[str, Any], duration: float, hold_s: float = 0.0) -> LoadSpec:
    """The load of one faulted run; its grace (time for the last deliveries after the senders stop) grows with the fault,
    `grace_per_fault_s` seconds per second of fault: a minute's backlog replayed takes longer than a second's."""
    return LoadSpec(
        url,
        mode="broadcast",
        transport=anchor.CLIENT if key == anchor.KEY else "ws",
        room=ROOM,
        connections=p["connections"],
        rate=p["rate"],
        duration_s=duration,
        reconnect=ReconnectPolicy(**POLICY),
        resume=RESUME[key],
        connect_timeout_s=10.0,
        grace_s=p.get("grace_s", 3.0) + p.get("grace_per_fault_s", 0.0) * hold_s,
    )


def _record(
    out: ScenarioOutput, result: Any, watcher: Watcher, server_state: dict[str, Any], log: FaultLog, tag: dict[str, str]
) -> dict[str, Any]:
    """Store the account, detection and recovery times and the replica comparison of one faulted run."""
    acc = result.account or {}
    total = acc.get("total", {})
    for name in ("sent", "delivered", "lost_after_ack", "lost_without_ack", "duplicated", "unexpected", "reordered"):
        out.add(name, "messages", [total.get(name, {}).get("count", 0)], "higher" if name in ("sent", "delivered") else "lower", **tag)
    out.add(
        "lost", "messages", [total.get("lost_after_ack", {}).get("count", 0) + total.get("lost_without_ack", {}).get("count", 0)], **tag
    )
    out.add("expected", "messages", [total.get("expected", 0)], None, **tag)
    faults = log.faults
    detect = []
    if faults:
        start = faults[0].started_wall
        detect = [(t - start) * 1000 for t in watcher.closes if t >= start][:1]
    out.add("detected", "runs", [1.0 if detect else 0.0], None, **tag)  # the watcher noticed the fault (a drop) at all
    if detect:
        out.add("detect_ms", "ms", detect, **tag)
    rec = acc.get("recovery") or []
    recover = [r["slowest_connection_ms"] for r in rec if r.get("slowest_connection_ms") is not None]
    if recover:
        out.add("recover_ms", "ms", recover, **tag)
    first = [r["first_delivery_ms"] for r in rec if r.get("first_delivery_ms") is not None]
    if first:
        out.add("first_delivery_ms", "ms", first, **tag)
    if watcher.room is not None:  # the anchor keeps no room state: nothing to compare
        equal = watcher.room.state_hash() == server_state.get("hash")
        out.add("replicas_differ", "replicas", [0.0 if equal else 1.0], **tag)
    if "recovered" in server_state:
        out.add("sessions_recovered", "sessions", [server_state["recovered"]], None, **tag)
    out.add("snapshots", "snapshots", [server_state.get("snapshots", 0) + 0.0], **tag)
    if server_state.get("rebuilt_entries"):  # a restarted server rebuilt the room from its Redis stream
        out.add("rebuild_ms", "ms", [server_state["rebuild_ms"]], **tag)
        out.add("rebuilt_entries", "entries", [server_state["rebuilt_entries"]], None, **tag)
    fact = {
        **tag,
        "account": total,
        "recovery": rec,
        "faults": log.to_list(),
        "watcher_hash": None if watcher.room is None else watcher.room.state_hash(),
        "server_hash": server_state.get("hash"),
        "server": {k: v for k, v in server_state.items() if k not in ("op", "room")},
        "reconnected": result.reconnected,
        "dropped": result.dropped,
        "errors": list(result.errors)[:10],
        "watcher_errors": watcher.errors[:10],
    }
    return fact


def _faulted_run(
    ctx: ScenarioContext, p: dict[str, Any], inject: Any, hold_s: float, tag: dict[str, str]
) -> tuple[ScenarioOutput, dict[str, Any]]:
    """One run with one fault: server, proxy, watcher, load; ``inject(proxy, server, services, log)`` runs in a thread after ``before_s``."""
    key = ctx.option.key
    out = ScenarioOutput()
    log = FaultLog(on_fault=lambda f: ctx.fault(f.kind, f.target, **f.details))
    with deployment(ctx, p["log_len"]) as (server, direct, services), FaultProxy(server.port, log=log) as proxy:  # type: ignore[arg-type]
        url = f"ws://127.0.0.1:{proxy.port}/"
        watcher = (anchor.SioWatcher if key == anchor.KEY else Watcher)(url, key in USES_REDIS).start()
        if not watcher.joined.wait(10):
            raise RuntimeError(f"the watcher could not join: {watcher.errors}")
        errors: list[BaseException] = []

        def fault() -> None:
            try:
                _wait_members(proxy, p["connections"] + 1, 20)
                time.sleep(p["before_s"])
                inject(proxy, server, services, log)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=fault)
        assert server.pid is not None
        sampler = ProcessSampler(server.pid, hz=5).start()  # until the fault ends it (a kill) or the run does
        # The stores too (redis-server; the postmaster and its backends), until a kill of theirs ends the sampling.
        service_samplers = {
            name: ProcessSampler(svc.pid, hz=5).start() for name, svc in services.items() if svc is not None and svc.pid is not None
        }
        thread.start()
        try:
            result = run_load(_load(url, key, p, p["before_s"] + hold_s + p["after_s"], hold_s), faults=log)
        finally:
            thread.join()
            time.sleep(0.5)
            watcher.stop()
            samples = sampler.stop()
            service_samples = {name: smp.stop() for name, smp in service_samplers.items()}
        if errors:
            raise errors[0]
        state = anchor.ask_stats(direct) if key == anchor.KEY else ask_state(direct)
    usage = summarize(samples)
    out.add("server_cpu_peak", "% of a core", [usage["max_cpu_percent"]], None, **tag)
    out.add("server_rss_peak", "bytes", [usage["peak_rss_bytes"] or 0], None, **tag)
    for name, smp in service_samples.items():
        u = summarize(smp)
        out.add(f"{name}_cpu_peak", "% of a core", [u["max_cpu_percent"]], None, **tag)
        out.add(f"{name}_rss_peak", "bytes", [u["peak_rss_bytes"] or 0], None, **tag)
    fact = _record(out, result, watcher, state, log, tag)
    fact["timeline"] = timeline(watcher.deliveries, log.faults[0].started_wall if log.faults else None, p, hold_s)
    return out, fact


#: Width of a bin of the deliveries timeline, seconds.
TIMELINE_BIN_S = 0.5


def timeline(deliveries: list[float], fault_start: float | None, p: dict[str, Any], hold_s: float) -> dict[str, Any] | None:
    """The watcher's deliveries per second in bins of ``TIMELINE_BIN_S``, on seconds since the fault started."""
    if fault_start is None:
        return None
    lo = -float(p["before_s"])
    hi = float(hold_s) + float(p["after_s"]) + float(p.get("grace_s", 0.0)) + float(p.get("grace_per_fault_s", 0.0)) * hold_s
    n = max(1, int(round((hi - lo) / TIMELINE_BIN_S)))
    counts = [0] * n
    for t in deliveries:
        i = int((t - fault_start - lo) // TIMELINE_BIN_S)
        if 0 <= i < n:
            counts[i] += 1
    return {"bin_s": TIMELINE_BIN_S, "start_s": lo, "per_s": [c / TIMELINE_BIN_S for c in counts]}


def merge_outputs(outputs: list[ScenarioOutput]) -> ScenarioOutput:
    """Runs made side by side as one output: a metric's samples are its value in each run, in the runs' order."""
    merged = ScenarioOutput()
    by_key: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
    for o in outputs:
        for m in o.measurements:
            k = (m.name, tuple(sorted(m.tags.items())))
            if k in by_key:
                by_key[k].samples.extend(m.samples)
            else:
                by_key[k] = dataclasses.replace(m, samples=list(m.samples), tags=dict(m.tags))
                merged.measurements.append(by_key[k])
    return merged


def side_by_side(
    ctx: ScenarioContext, p: dict[str, Any], variants: list[tuple[Any, float, dict[str, str]]]
) -> tuple[ScenarioOutput, list[dict[str, Any]]]:
    """Every variant (``inject``, ``hold_s``, ``tag``) ``p["runs"]`` times, all at once, each with its own deployment and proxy.

    Independent runs side by side keep the spike within its budget (a 60 s blackhole run after run would take most of it);
    the price is a shared machine during the fault, which the document states. Every run is kept; the first error is raised
    after all have ended, so no server outlives the step.
    """
    jobs = [(v, r) for v in variants for r in range(int(p.get("runs", 1)))]
    results: list[tuple[ScenarioOutput, dict[str, Any]] | None] = [None] * len(jobs)
    errors: list[BaseException] = []
    done = [0]
    lock = threading.Lock()

    def work(i: int) -> None:
        (inject, hold_s, tag), r = jobs[i]
        try:
            out, fact = _faulted_run(ctx, p, inject, hold_s, tag)
            fact["run"] = r + 1
            results[i] = (out, fact)
        except BaseException as exc:
            errors.append(exc)
        finally:
            with lock:
                done[0] += 1
                ctx.advance(done[0] / len(jobs))

    threads = [threading.Thread(target=work, args=(i,), name=f"s07-run-{i}") for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    kept = [x for x in results if x is not None]
    return merge_outputs([o for o, _ in kept]), [f for _, f in kept]


def run_cut(ctx: ScenarioContext) -> ScenarioOutput:
    """Network interruptions through the proxy (``mode``: reset or blackhole): every cut length ``runs`` times, side by side."""
    p = ctx.params
    variants = []
    for cut in p["cuts_s"]:
        mode = Reset() if p["mode"] == "reset" else Blackhole()

        def inject(
            proxy: FaultProxy, server: ServerProcess, services: dict[str, Any], log: FaultLog, cut: float = cut, mode: Any = mode
        ) -> None:
            proxy.cut(cut, mode).result(cut + 30)

        variants.append((inject, float(cut), {"cut_s": str(cut)}))
    out, runs = side_by_side(ctx, p, variants)
    out.facts = {"mode": p["mode"], "runs": runs, "heartbeat": {"ping_interval_s": PING_INTERVAL_S, "ping_timeout_s": PING_TIMEOUT_S}}
    return out


def run_restart(ctx: ScenarioContext) -> ScenarioOutput:
    """The server killed (SIGKILL) or stopped (SIGTERM) under load and started again on the same port: each ``runs`` times, side by side."""
    p = ctx.params
    variants = []
    for sig in p["signals"]:

        def inject(proxy: FaultProxy, server: ServerProcess, services: dict[str, Any], log: FaultLog, sig: str = sig) -> None:
            if sig == "SIGKILL":
                kill_and_restart(server, down_for=0.2, log=log)
            else:
                fault = log.begin("terminate", server.name, signal="SIGTERM", port=server.port)
                try:
                    server.stop()
                    server.restart()
                finally:
                    fault.end(restarted=server.alive)

        variants.append((inject, 1.0, {"signal": sig}))
    out, runs = side_by_side(ctx, p, variants)
    out.facts = {"runs": runs}
    return out


def _store_metrics(out: ScenarioOutput, runs: list[dict[str, Any]], tag: dict[str, str], names: tuple[str, ...]) -> None:
    """Counters the server reported at the end of each run (``fact["server"]``), one sample per run."""
    for name in names:
        if name != "stream_missing" and not any(name in r["server"] for r in runs):
            continue  # a server that does not count it (the anchor): no false zero
        values = [r["server"].get(name, 0) for r in runs]
        if name == "drain_ms":
            values = [v for v in values if v]
            if values:
                out.add(name, "ms", values, **tag)
        elif name == "stream_missing":
            # The stream holds the newest entries; the older ones it lacks are lost for a rebuild unless a checkpoint covers them.
            values = [
                max(0, r["server"]["head"] - r["server"]["stream_len"] - r["server"].get("checkpoint_n", 0))
                for r in runs
                if r["server"].get("stream_len") is not None and "head" in r["server"]
            ]
            if values:
                out.add(name, "entries", values, **tag)
        elif name == "queue_high_water":
            out.add(name, "entries", values, None, **tag)
        elif name == "checkpoints":
            out.add(name, "writes", values, None, **tag)
        else:
            out.add(name, "writes", values, **tag)


def run_redis_failure(ctx: ScenarioContext) -> ScenarioOutput:
    """Redis killed (SIGKILL) under load, restarted empty on the same port after ``down_s`` (the harness's Redis keeps no data)."""
    p = ctx.params

    def inject(proxy: FaultProxy, server: ServerProcess, services: dict[str, Any], log: FaultLog) -> None:
        crash_redis(services["redis"], down_for=p["down_s"], log=log)

    tag = {"down_s": str(p["down_s"])}
    out, runs = side_by_side(ctx, p, [(inject, float(p["down_s"]), tag)])
    _store_metrics(out, runs, tag, ("store_errors", "stream_missing", "queue_high_water", "drain_ms"))
    out.facts = {"runs": runs}
    return out


def run_db_failure(ctx: ScenarioContext) -> ScenarioOutput:
    """PostgreSQL shut down immediately (SIGQUIT) under load, started again `down_s` later on the same data."""
    p = ctx.params
    tag = {"down_s": str(p["down_s"])}

    def inject(proxy: FaultProxy, server: ServerProcess, services: dict[str, Any], log: FaultLog) -> None:
        crash_postgres(services["pg"], down_for=p["down_s"], log=log)

    out, runs = side_by_side(ctx, p, [(inject, float(p["down_s"]), tag)])
    _store_metrics(out, runs, tag, ("checkpoint_errors", "checkpoints"))
    out.facts = {"runs": runs}
    return out


DB_PARAMS: dict[str, Any] = {**CUT_PARAMS, "down_s": 10.0}
DB_QUICK: dict[str, Any] = {**CUT_QUICK, "down_s": 1.0}
REBUILD_PARAMS: dict[str, Any] = {"edits": [1_000, 10_000], "tokens": 100}
REBUILD_QUICK: dict[str, Any] = {"edits": [1_000]}


def run_rebuild(ctx: ScenarioContext) -> ScenarioOutput:
    """Rebuild time against room size, in process: a room of ``tokens`` tokens and a note of N edits (plus as many moves and chat
    lines), rebuilt as a restarted server does: by replaying its log (reconstruct) or from its checkpoint (checkpoint)."""
    p = ctx.params
    out = ScenarioOutput()
    for n in p["edits"]:
        ops = [(c, seq, 1_000_000 + seq * 8 + c) for seq in range(n * 3) for c in (0,)]
        room = core.Room(ROOM)
        for op in ops:
            room.apply(*op)
        assert len(room.tokens) <= p["tokens"] or p["tokens"] >= core.TOKENS
        data = json.dumps(room.checkpoint())
        t0 = time.perf_counter()
        if ctx.option.key == "checkpoint":
            rebuilt = core.Room.restore(ROOM, json.loads(data))
        else:
            rebuilt = core.Room(ROOM)
            for op in ops:
                rebuilt.apply(*op)
        ms = (time.perf_counter() - t0) * 1000
        assert rebuilt.state_hash() == room.state_hash()
        out.add("rebuild_ms", "ms", [ms], edits=str(n))
        out.add("checkpoint_bytes", "bytes", [len(data)], None, edits=str(n))
    out.facts = {"tokens": len(room.tokens), "operations_per_edit": 3}
    return out


STORM_PARAMS: dict[str, Any] = {
    "connections": 500,
    "senders": 5,
    "rate": 2,
    "before_s": 2.0,
    "after_s": 6.0,
    "cap_s": 2.0,
    "log_len": 10_000,
}
STORM_QUICK: dict[str, Any] = {"connections": 50, "before_s": 0.5, "after_s": 1.5, "cap_s": 1.0}


def run_storm(ctx: ScenarioContext) -> ScenarioOutput:
    """Every connection reset at once by the proxy (new ones let through at once), with and without jitter in the backoff."""
    p = ctx.params
    out = ScenarioOutput()
    runs = []
    for i, jitter in enumerate((True, False)):
        tag = {"jitter": "with" if jitter else "without"}
        log = FaultLog(on_fault=lambda f: ctx.fault(f.kind, f.target, **f.details))
        with deployment(ctx, p["log_len"]) as (server, direct, _), FaultProxy(server.port, log=log) as proxy:  # type: ignore[arg-type]
            url = f"ws://127.0.0.1:{proxy.port}/"
            spec = LoadSpec(
                url,
                mode="broadcast",
                room=ROOM,
                connections=p["connections"],
                senders=p["senders"],
                rate=p["rate"],
                duration_s=p["before_s"] + p["after_s"],
                reconnect=ReconnectPolicy(base_s=POLICY["base_s"], cap_s=p["cap_s"], jitter=jitter),
                resume=RESUME[ctx.option.key],
                connect_timeout_s=20.0,
                grace_s=p.get("grace_s", 1.0),
            )
            errors: list[BaseException] = []

            def cut(proxy: FaultProxy = proxy, errors: list[BaseException] = errors) -> None:
                try:
                    _wait_members(proxy, p["connections"], 60)
                    time.sleep(p["before_s"])
                    proxy.reset_connections()
                except BaseException as exc:
                    errors.append(exc)

            assert server.pid is not None
            sampler = ProcessSampler(server.pid, hz=10).start()
            thread = threading.Thread(target=cut)
            thread.start()
            try:
                result = run_load(spec, faults=log)
            finally:
                thread.join()
                samples = sampler.stop()
            if errors:
                raise errors[0]
        fault = log.faults[0]
        rec = (result.account or {}).get("recovery") or [{}]
        back_ms = rec[0].get("slowest_connection_ms")
        recovered = rec[0].get("connections_recovered", 0)
        during = [s["cpu_percent"] for s in samples if s.get("cpu_percent") is not None and s["time"] >= fault.started_wall]
        out.add("all_back_ms", "ms", [back_ms] if back_ms is not None and recovered == p["connections"] else [], **tag)
        out.add("connections_back", "connections", [recovered], "higher", **tag)
        out.add("reconnects_per_s", "connects/s", [recovered / (back_ms / 1000)] if back_ms else [], "higher", **tag)
        out.add("server_cpu_peak", "% of a core", [max(during, default=0.0)], None, **tag)
        total = (result.account or {}).get("total", {})
        out.add(
            "lost", "messages", [total.get("lost_after_ack", {}).get("count", 0) + total.get("lost_without_ack", {}).get("count", 0)], **tag
        )
        per = (result.account or {}).get("connections", {})
        lost_at = {c: t["lost_after_ack"]["count"] + t["lost_without_ack"]["count"] for c, t in per.items()}
        runs.append(
            {
                **tag,
                "recovery": rec,
                "account": total,
                "lost_per_connection": {c: n for c, n in lost_at.items() if n},
                "reconnected": result.reconnected,
                "errors": list(result.errors)[:10],
            }
        )
        ctx.advance((i + 1) / 2)
    out.measurements = [m for m in out.measurements if m.samples]
    out.facts = {"runs": runs}
    return out


def window_of(fault: dict[str, Any]) -> FaultWindow:
    """A stored fault's window on the ``time.time_ns()`` clock."""
    end = fault.get("ended_wall")
    return FaultWindow(
        round(fault["started_wall"] * 1e9), None if end is None else round(end * 1e9), fault.get("kind", ""), fault.get("target", "")
    )
