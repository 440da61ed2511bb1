"""Real connections at scale: 10,000 and 100,000 held open against an option's servers, measured, not projected.

One process may open at most 20,000 files here (a hard limit, even for root), and one source address reaches
one server port through at most 28,232 ephemeral ports (32768-60999). So 100,000 connections need several
generator processes and several server processes. Each generator spreads its connections round robin over
the server processes' own ports (every (address, port) pair has its own ephemeral range), as an L4 balancer in
front of the processes would. nginx is left out of this scenario: it needs two descriptors per proxied
connection, so 100,000 would take eleven workers at this machine's limit, and nginx is not what is measured.

An option keeps its shape: a one-process option is one process whatever the target, so at 100,000 it stops
where its process does (the descriptor limit, or what fails first); a multi-process option (Redis between the
processes) gets as many processes as the target needs at ``per_process`` connections each. Each generator opens
its connections ``concurrency`` handshakes at a time; a failed attempt is tried again, and the generator stops
trying after ``max_failures`` attempts in a row failed (a full server: seconds, not one connect timeout per
missing connection) or when ``open_for_s`` has passed (a shape that opens connections too slowly to reach the
target within the spike's budget: python-socketio took 286 s for 100,000 here); the failures' reasons and the
servers' descriptor counts say what stopped it.

The connections are idle: they answer the servers' pings and send nothing. What chat traffic costs per
connection comes from the many-idle scenario at 1,000 connections; the projection adds the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing as mp
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psutil

from harness.load.clients import describe_error, get_client_class
from harness.load.system import raise_nofile_limit

__all__ = ["ScaleHold", "hold_at_scale", "generators_for", "processes_for"]


def processes_for(target: int, per_process: int, multi_process: bool, minimum: int) -> int:
    """Server processes a deployment gets for ``target`` connections: its own count for a one-process option."""
    if not multi_process:
        return 1
    return max(minimum, math.ceil(target / per_process))


def generators_for(target: int, per_generator: int) -> int:
    """Generator processes for ``target`` connections, each holding at most ``per_generator``."""
    return max(1, math.ceil(target / per_generator))


@dataclass
class ScaleHold:
    """What the generators held: counts, failures by reason, connect times (a sample), their own memory."""

    target: int
    connected: int = 0
    alive: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    stopped_early: int = 0  # generators that stopped trying after max_failures failures in a row
    timed_out: int = 0  # generators whose time to open ran out before all their connections were open
    connect_ms: list[float] = field(default_factory=list)
    open_s: float = 0.0  # from the first generator's start to the last one holding its connections
    generator_rss: int = 0
    generators: int = 0
    nofile: list[int] = field(default_factory=list)

    @property
    def connect_failed(self) -> int:
        return sum(self.failed.values())


def _next(channel: Any, timeout_s: float) -> Any:
    """The parent's next word, or None after ``timeout_s``."""
    return channel.recv() if channel.poll(timeout_s) else None


def _generator_main(
    urls: list[str],
    first: int,
    transport: str,
    n: int,
    concurrency: int,
    timeout_s: float,
    max_failures: int,
    open_for_s: float,
    channel: Any,
) -> None:
    """A spawned generator: open up to ``n`` idle connections within ``open_for_s``, report, hold them until told, close."""
    import signal

    from harness.load.engine import reporting_to

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this process stops
    with reporting_to(channel):
        soft, hard = raise_nofile_limit()
        cls = get_client_class(transport)
        me = psutil.Process()

        async def main() -> None:
            shared: dict[str, Any] = {}
            clients: list[Any] = []
            failed: Counter[str] = Counter()
            connect_ms: list[float] = []
            gate = asyncio.Semaphore(max(1, concurrency))
            state = {"dropped": 0, "in_a_row": 0, "timed_out": False}
            deadline = time.monotonic() + open_for_s

            def stop() -> bool:
                if time.monotonic() >= deadline:
                    state["timed_out"] = True
                return state["in_a_row"] >= max_failures or bool(state["timed_out"])

            def on_close(reason: str) -> None:
                state["dropped"] += 1

            async def open_one(i: int) -> None:
                async with gate:
                    # A failed attempt is tried again (a handshake that timed out while the machine was busy opening
                    # thousands is not the server's limit) until max_failures attempts in a row failed (a full server:
                    # nothing succeeds any more) or the time to open ran out.
                    while not stop():
                        client = cls(urls[(first + i) % len(urls)], lambda msg: None, on_close, shared=shared)
                        t0 = time.perf_counter()
                        try:
                            await client.connect(timeout_s)
                        except Exception as exc:
                            failed[describe_error(exc, timeout_s)] += 1
                            state["in_a_row"] += 1
                            # Closing what a failed handshake left can itself fail (python-socketio raised "unable to
                            # perform operation on TCPTransport closed" here at 100k): that must not end the generator.
                            with contextlib.suppress(Exception):
                                await client.close(0)
                            continue
                        state["in_a_row"] = 0
                        connect_ms.append((time.perf_counter() - t0) * 1000)
                        clients.append(client)
                        return

            try:
                await asyncio.gather(*(open_one(i) for i in range(n)))
                step = max(1, len(connect_ms) // 300)  # a sample keeps the stored run small at 100k
                channel.send(
                    (
                        "held",
                        {
                            "connected": len(clients),
                            "failed": dict(failed),
                            "stopped_early": state["in_a_row"] >= max_failures,
                            "timed_out": bool(state["timed_out"]) and len(clients) < n,
                            "connect_ms": [round(x, 3) for x in connect_ms[::step]],
                            "rss": me.memory_info().rss,
                            "nofile": [soft, hard],
                        },
                    )
                )
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, _next, channel, 600.0)  # held, answering pings, until asked to count
                channel.send(("alive", sum(1 for c in clients if not c.closed)))
                await loop.run_in_executor(None, _next, channel, 60.0)  # then until told to close
            finally:
                # Aborted, not closed politely: how 100,000 connections end is not measured, and a polite close of each
                # (a close frame, then its answer) kept a busy machine at it for minutes.
                await asyncio.gather(*(c.close(0) for c in clients), return_exceptions=True)
                await cls.close_shared(shared)

        import uvloop

        uvloop.run(main())
        channel.send(("done", None))


def hold_at_scale(
    urls: list[str],
    transport: str,
    target: int,
    *,
    per_generator: int,
    concurrency: int = 256,
    connect_timeout_s: float = 5.0,
    max_failures: int = 200,
    open_for_s: float = 300.0,
    during_hold: Any = None,
    before_release: Any = None,
    open_limit_s: float = 600.0,
) -> tuple[ScaleHold, Any]:
    """Hold ``target`` connections spread evenly over ``urls`` (round robin in each generator) from fresh processes.

    Returns what was held and ``during_hold()``'s value, called in this process once every generator holds its
    connections (to read the servers' memory and CPU); ``before_release()``, once they are counted and before the
    generators let them go (to stop the servers first: a server then has no disconnects to process). Raises ``RuntimeError`` when a generator fails or does not
    report within ``open_limit_s``.
    """
    k = generators_for(target, per_generator)
    shares = [target // k + (1 if g < target % k else 0) for g in range(k)]
    ctx = mp.get_context("spawn")
    procs, pipes = [], []
    hold = ScaleHold(target=target, generators=k)
    observed: Any = None
    t0 = time.monotonic()
    try:
        for g, n in enumerate(shares):
            parent, child = ctx.Pipe()
            p = ctx.Process(
                target=_generator_main,
                args=(urls, g, transport, n, concurrency, connect_timeout_s, max_failures, open_for_s, child),
                name=f"scale-generator-{g}",
                daemon=True,
            )
            p.start()
            child.close()
            procs.append(p)
            pipes.append(parent)
        failed: Counter[str] = Counter()
        for g, pipe in enumerate(pipes):
            left = max(open_limit_s, open_for_s + 2 * connect_timeout_s + 60) - (time.monotonic() - t0)
            if not pipe.poll(max(1.0, left)):
                raise RuntimeError(f"scale generator {g} did not hold its connections within {open_limit_s:.0f} s")
            kind, report = pipe.recv()
            if kind == "error":
                raise RuntimeError(f"scale generator {g} failed: {' | '.join(report.strip().splitlines()[-6:])}")
            hold.connected += report["connected"]
            failed.update(report["failed"])
            hold.stopped_early += int(report["stopped_early"])
            hold.timed_out += int(report["timed_out"])
            hold.connect_ms += report["connect_ms"]
            hold.generator_rss += report["rss"]
            hold.nofile = report["nofile"]
        hold.open_s = time.monotonic() - t0
        hold.failed = dict(failed)
        observed = during_hold() if during_hold is not None else None
        for pipe in pipes:
            pipe.send(("count",))
        for g, pipe in enumerate(pipes):
            if not pipe.poll(60.0):
                raise RuntimeError(f"scale generator {g} did not count its open connections")
            kind, alive = pipe.recv()
            if kind == "error":
                raise RuntimeError(f"scale generator {g} failed while holding: {alive.strip().splitlines()[-1]}")
            hold.alive += alive
        if before_release is not None:
            before_release()
        for pipe in pipes:
            pipe.send(("close",))
        for pipe in pipes:
            if pipe.poll(60.0):
                pipe.recv()
        return hold, observed
    finally:
        for p in procs:
            p.join(15)
            if p.is_alive():
                p.terminate()
                p.join(5)
        for pipe in pipes:
            pipe.close()


#: The targets, the shape's sizes and the generators' manners. ``per_process`` and ``per_generator`` stay under the
#: 20,000-descriptor limit with room for a process's own files; ``hold_s`` is how long the servers' memory and CPU are
#: read while every connection is held.
SCALE = {
    "targets": [10_000, 100_000],
    "per_process": 18_000,
    "per_generator": 18_000,
    "concurrency": 128,
    "connect_timeout_s": 10.0,
    "max_failures": 200,
    "open_for_s": 150.0,
    "hold_s": 3.0,
}
SCALE_QUICK = {"targets": [300, 1_000], "per_process": 600, "per_generator": 600, "hold_s": 0.5}


def _cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def _stop_fast(dep: Any, exited: list[str]) -> None:
    """Note the server processes that died while held, then stop the rest at once, together (they hold idle
    connections and no buffered rows: a graceful close of 15,000 connections each is not what is measured)."""
    exited += [f"{s.name} (code {s.returncode}): {' | '.join(s.last_log_lines(3))}" for s in dep.servers if not s.alive]
    threads = [threading.Thread(target=s.stop, kwargs={"grace": 1.0}) for s in dep.servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run_scale(ctx: Any) -> Any:
    """Each target in turn, on a fresh deployment of the option's shape: hold the connections, read the servers."""
    from harness.plugin import ScenarioOutput
    from harness.probes import rss_bytes
    from spikes.s06_scalability.deploy import SETUPS, Deployment

    p = ctx.params
    setup = SETUPS[ctx.option.key]
    out = ScenarioOutput()
    points: list[dict[str, Any]] = []
    for rank, target in zip(("low", "high"), p["targets"], strict=True):
        n_proc = processes_for(target, p["per_process"], setup.redis, setup.processes)
        workdir = ctx.workdir / f"scale-{target}"
        workdir.mkdir(parents=True, exist_ok=True)
        t_start = time.monotonic()
        with Deployment(ctx.option, workdir, processes=n_proc, front=False, log=ctx.log) as dep:
            t_up = time.monotonic()
            pids = dep.pids()["server"]
            procs = [psutil.Process(pid) for pid in pids]
            base = sum(rss_bytes(pid) for pid in pids)
            server_nofile = [list(proc.rlimit(psutil.RLIMIT_NOFILE)) for proc in procs]

            def during(procs: list[psutil.Process] = procs, pids: list[int] = pids) -> dict[str, Any]:
                c0, t0 = _cpu_s(procs), time.monotonic()
                time.sleep(p["hold_s"])
                cores = (_cpu_s(procs) - c0) / (time.monotonic() - t0)
                alive = [proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE for proc in procs]
                fds = []
                for proc in procs:
                    try:
                        fds.append(proc.num_fds())
                    except psutil.Error:
                        fds.append(None)
                rss = sum(rss_bytes(pid) for pid, ok in zip(pids, alive, strict=True) if ok)
                return {"rss": rss, "cores": cores, "alive": alive, "fds": fds}

            exited: list[str] = []
            ctx.log(f"scale {target}: {n_proc} server process(es), {generators_for(target, p['per_generator'])} generator process(es)")
            hold, seen = hold_at_scale(
                dep.server_urls(),
                dep.transport,
                target,
                per_generator=p["per_generator"],
                concurrency=p["concurrency"],
                connect_timeout_s=p["connect_timeout_s"],
                max_failures=p["max_failures"],
                open_for_s=p["open_for_s"],
                during_hold=during,
                before_release=lambda dep=dep, exited=exited: _stop_fast(dep, exited),
            )
            redis = dep.redis_stats()
            t_done = time.monotonic()
        ctx.log(
            f"scale {target}: stack up in {t_up - t_start:.1f} s, held and released in {t_done - t_up:.1f} s, "
            f"stopped in {time.monotonic() - t_done:.1f} s"
        )
        held = hold.alive
        point = {
            "rank": rank,
            "target": target,
            "processes": n_proc,
            "generators": hold.generators,
            "connected": hold.connected,
            "held": held,
            "failed": hold.failed,
            "stopped_early": hold.stopped_early,
            "timed_out": hold.timed_out,
            "open_for_s": p["open_for_s"],
            "open_s": round(hold.open_s, 3),
            "server_rss_base": base,
            "server_rss_held": seen["rss"],
            "server_cores_held": round(seen["cores"], 4),
            "server_nofile": server_nofile,
            "generator_nofile": hold.nofile,
            "generator_rss": hold.generator_rss,
            "exited": exited,
            "server_fds_held": seen["fds"],
            "redis_used_memory": redis.get("used_memory"),
        }
        points.append(point)
        out.add(f"scale_{rank}_held", "connections", [held], "higher")
        out.add(f"scale_{rank}_connect_failed", "connections", [hold.connect_failed])
        if held:
            out.add(f"scale_{rank}_memory_per_connection_bytes", "bytes", [(seen["rss"] - base) / held])
            out.add(f"scale_{rank}_server_cores_per_10k", "cores", [seen["cores"] / held * 10_000])
            out.add(f"scale_{rank}_connections_per_s", "connections/s", [hold.connected / hold.open_s] if hold.open_s else [], "higher")
        out.add(f"scale_{rank}_connect_ms", "ms", hold.connect_ms)
    out.facts["points"] = points
    return out
