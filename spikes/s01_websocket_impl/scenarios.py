"""Spike 1's scenarios: each starts the option's real POC server and measures it from outside.

Every scenario runs the server in its own process (``harness.process``), on a
free loopback port, pinned to its own core when the machine has two or more,
with the load generator on the others. Socket.IO is loaded with the engine's
``socketio-raw`` client (the Socket.IO protocol on the lean WebSocket client):
python-socketio's own client costs as much CPU as the server and would make
the generator the bottleneck.

Throughput is measured closed loop with a window: each connection keeps
``window`` echo requests outstanding and sends the next as each echo
arrives (pipelining), for every option and for the generator's own
ceiling alike. One request at a time makes the generator pay a system call
each way per echo, just like the server, so no client could be shown to
outrun a fast server that way; with a window it answers a whole batch of
replies with one write, while a server still handles each message.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import signal
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

from harness import poc as harness_poc
from harness.load import LoadSpec, hold_idle, run_load
from harness.load.account import OUTCOMES
from harness.plugin import NotRunnable, ScenarioContext, ScenarioOutput
from harness.probes import ProcessSampler, SteadyRss, memory_per_connection, steady_rss
from harness.process import ServerProcess, free_port, pin_plan
from spikes.s01_websocket_impl import build

__all__ = [
    "LOAD_TRANSPORT",
    "WINDOW",
    "poc_server",
    "v8_heap_after_gc",
    "run_bundle",
    "run_features",
    "run_echo",
    "run_broadcast",
    "run_memory",
    "run_reconnect",
    "run_generator",
    "GENERATOR_PARAMS",
    "GENERATOR_QUICK",
    "ECHO_PARAMS",
    "ECHO_QUICK",
    "BROADCAST_PARAMS",
    "BROADCAST_QUICK",
    "MEMORY_PARAMS",
    "MEMORY_QUICK",
    "RECONNECT_PARAMS",
    "RECONNECT_QUICK",
]

#: The load engine's client per option: the protocol the server speaks, on a fast client.
LOAD_TRANSPORT = {"native": "ws", "socketio": "socketio-raw", "socketio-node": "socketio-raw", "sveltekit": "ws"}
#: The options whose server is Node.js: their memory readings start with a forced full GC and include V8's heap.
NODE_OPTIONS = frozenset({"socketio-node", "sveltekit"})

#: Requests outstanding per connection in the closed-loop (throughput) runs: the same for every option and the generator's ceiling.
WINDOW = 16
ECHO_PARAMS = {"connections": [1, 50, 500], "duration_s": 5.0, "total_rate": 2000, "payload_bytes": 64, "window": WINDOW}
ECHO_QUICK = {"connections": [1, 50], "duration_s": 1.0, "total_rate": 500}
BROADCAST_PARAMS = {"room_size": 50, "senders": 5, "rate": 20, "duration_s": 5.0, "payload_bytes": 64}
BROADCAST_QUICK = {"room_size": 10, "senders": 2, "duration_s": 1.0}
# Each reading waits for RSS to hold still (within tolerance) for quiet_s: longer than the 8 s after which V8's
# memory reducer first hands pages back, so a Node.js server is never read half-way through shrinking. A repeat
# measures `servers` fresh server processes side by side and keeps their median: one Node.js process's figure
# varies by 1-2 MB from start to start (its allocator, not the connections), 10-30% of the cost of 1,000
# connections; the median of several holds within a few percent. The counts are reached in turn on the same servers
# (1,000 idle connections, then 4,000 more). At 5,000 those 1-2 MB are 1-2% of the reading, so only
# `servers_at_largest` of the servers go on to it: side-by-side servers there would cost minutes of handshakes
# (python-socketio accepts a few hundred a second on its core) to average away noise the count already dilutes.
MEMORY_PARAMS = {
    "connections": [1000, 5000],
    "servers": 3,
    "servers_at_largest": 1,
    "quiet_s": 10.0,
    "max_wait_s": 45.0,
    "tolerance_bytes": 256 * 1024,
}
MEMORY_QUICK = {"connections": [100, 500], "servers": 2, "quiet_s": 1.0, "max_wait_s": 5.0}
#: How long a Node server has to print its heap after SIGUSR2 (a full GC of a few MB takes milliseconds).
HEAP_TIMEOUT_S = 10.0
GENERATOR_PARAMS = {"connections": 50, "duration_s": 5.0, "window": WINDOW}
GENERATOR_QUICK = {"duration_s": 3.0}
RECONNECT_PARAMS = {"down_ms": 1000, "interval_ms": 50, "warmup_s": 1.0}
RECONNECT_QUICK = {"down_ms": 300, "warmup_s": 0.5}


@contextlib.contextmanager
def poc_server(ctx: ScenarioContext, *, pinned: bool = True, instance: int | None = None) -> Iterator[tuple[ServerProcess, str]]:
    """Start the option's declared POC server (``harness.poc``) for one repeat; yield it and the URL its clients use.

    ``instance`` numbers one of several servers running side by side (its own name and log file). An option
    whose server cannot be built here (no Node) raises :class:`NotRunnable` from its declaration.
    """
    plan = pin_plan() if pinned else None
    with harness_poc.poc_server(
        ctx.option,
        ctx.workdir,
        name=f"{ctx.option.title} POC server" + (f" #{instance + 1}" if instance is not None else ""),
        log_name="server.log" if instance is None else f"server-{instance + 1}.log",
        cpus=plan.server if plan else None,
    ) as (server, url):
        ctx.log(f"{ctx.option.key}: {' '.join(server.command())} (cpus {sorted(plan.server) if plan else 'any'})")
        yield server, url


_HEAP_LINE = re.compile(build.HEAP_PATTERN)


def v8_heap_after_gc(server: ServerProcess, timeout_s: float = HEAP_TIMEOUT_S) -> int:
    """V8's used heap, in bytes, right after a full garbage collection, from a Node POC server run with ``--expose-gc``.

    Sends SIGUSR2 and waits for the ``HEAP used=...`` line it prints (:data:`build.HEAP_PATTERN`); raises
    ``RuntimeError`` when none comes, or when the server says it could not collect (no ``--expose-gc``).
    """
    seen = len(_HEAP_LINE.findall(server.log_since_start()))
    assert server.pid is not None
    os.kill(server.pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = server.log_since_start()
        lines = [line for line in text.splitlines() if _HEAP_LINE.search(line)]
        if len(lines) > seen:
            line = lines[seen]
            if "gc=false" in line:
                raise RuntimeError(f"{server.name} has no global.gc (run node with --expose-gc): {line}")
            m = _HEAP_LINE.search(line)
            assert m is not None
            return int(m.group(1))
        _check_alive(server)
        time.sleep(0.02)
    raise RuntimeError(f"{server.name} printed no heap line within {timeout_s:g} s of SIGUSR2")


def _load_cpus() -> tuple[int, ...] | None:
    plan = pin_plan()
    return tuple(sorted(plan.load)) if plan else None


def _check_alive(server: ServerProcess) -> None:
    if not server.alive:
        raise RuntimeError(
            f"{server.name} exited during the scenario (code {server.returncode}); last log lines: {' | '.join(server.last_log_lines(5))}"
        )


def run_bundle(ctx: ScenarioContext) -> ScenarioOutput:
    """Minified and gzipped bytes of the browser code the option needs, and what it adds to the SvelteKit app the tabletop ships anyway.

    ``bundle_*_bytes`` are the raw figures: for SvelteKit, everything its page
    loads, the framework included. For SvelteKit, ``framework_baseline_*_bytes``
    is an empty SvelteKit page built the same way, and ``marginal_*_bytes`` the
    page minus that baseline; the npm dependencies it adds beyond an empty
    SvelteKit app are counted from its ``package.json`` and lock file. The
    other options' clients are standalone bundles added to that app as they
    are: their marginal bytes are their bundle.
    """
    key = ctx.option.key
    try:
        all_sizes = build.bundle_sizes(sveltekit=key == "sveltekit")
    except build.ToolMissing as exc:
        raise NotRunnable(str(exc)) from None
    sizes = all_sizes[build.BROWSER_CLIENT[key]]  # both Socket.IO servers are reached with the same socket.io-client bundle
    base: dict[str, Any] = all_sizes["sveltekit_baseline"] if key == "sveltekit" else {"min_bytes": 0, "gzip_bytes": 0, "files": []}
    out = ScenarioOutput()
    out.add("bundle_min_bytes", "bytes", [sizes["min_bytes"]])
    out.add("bundle_gzip_bytes", "bytes", [sizes["gzip_bytes"]])
    out.add("marginal_min_bytes", "bytes", [sizes["min_bytes"] - base["min_bytes"]])
    out.add("marginal_gzip_bytes", "bytes", [sizes["gzip_bytes"] - base["gzip_bytes"]])
    out.facts["files"] = sizes.get("files")
    if key == "sveltekit":
        out.add("framework_baseline_min_bytes", "bytes", [base["min_bytes"]], None)
        out.add("framework_baseline_gzip_bytes", "bytes", [base["gzip_bytes"]], None)
        deps = build.npm_dependencies()
        out.add("npm_dependencies", "dependencies", [len(deps["dependencies"])])
        out.add("marginal_npm_dependencies", "dependencies", [len(deps["marginal_dependencies"])])
        out.add("npm_packages", "packages", [len(deps["packages"])])
        out.add("marginal_npm_packages", "packages", [len(deps["marginal_packages"])])
        out.facts["baseline_files"] = base["files"]
        out.facts["npm"] = deps
    return out


def run_features(ctx: ScenarioContext) -> ScenarioOutput:
    """Each feature probed against the running server; reconnection in Chromium when it is installed.

    The reconnection probe's connection cut is reported to the run's observers as it begins (``ctx.fault``), as the
    reconnect scenario's faults are, and stored with its times in ``facts["faults"]``.
    """
    from harness.faults import FaultLog
    from spikes.s01_websocket_impl import features

    try:
        build.find_chromium()
        with_browser = True
    except build.ToolMissing as exc:
        with_browser = False
        missing = str(exc)
    log = FaultLog(on_fault=lambda f: ctx.fault(f.kind, f.target, **f.details))
    with poc_server(ctx, pinned=False) as (_, url):
        found = asyncio.run(features.probe_all(ctx.option.key, url, reconnect=with_browser, faults=log))
    if not with_browser:
        found["reconnect"] = {"value": None, "evidence": f"not run: {missing}"}
    out = ScenarioOutput(facts={"features": found, "faults": log.to_list()})
    measured = [f for f in found.values() if f["value"] is not None]
    out.add("features_present", "features", [sum(1 for f in measured if f["value"])], "higher")
    out.add("features_probed", "features", [len(measured)], None)
    return out


def run_echo(ctx: ScenarioContext) -> ScenarioOutput:
    """Echo at each connection count: latency at a fixed open-model rate, then closed-loop throughput."""
    p = ctx.params
    out = ScenarioOutput()
    steps = len(p["connections"])
    with poc_server(ctx) as (server, url):
        for i, n in enumerate(p["connections"]):
            common = dict(
                url=url,
                transport=LOAD_TRANSPORT[ctx.option.key],
                connections=n,
                duration_s=p["duration_s"],
                payload_bytes=p.get("payload_bytes", 64),
                processes=1,
                cpu_affinity=_load_cpus(),
                arrival="ramp" if n > 50 else "instant",
                arrival_s=min(2.0, n / 250),
                connect_timeout_s=20.0,
            )
            # A window leaves connections x window requests in flight at the end: time for a slow server to answer them.
            closed = LoadSpec(rate=math.inf, closed_loop=True, window=p.get("window", 1), grace_s=10.0, **common)
            for j, (prefix, spec) in enumerate((("open_", LoadSpec(rate=p["total_rate"] / n, **common)), ("closed_", closed))):
                with ProcessSampler(server.pid, hz=10) as sampler:
                    result = run_load(spec)
                _check_alive(server)
                result.add_to(out, prefix, connections=str(n))
                # Mean over the whole load run, connection setup included, so a saturated server reads a little under one core.
                out.add(f"{prefix}server_cpu", "cores", [sampler.mean_cpu() / 100], None, connections=str(n))
                ctx.advance((i + (j + 1) / 2) / steps)
    return out


def run_broadcast(ctx: ScenarioContext) -> ScenarioOutput:
    """A room of N members; a few of them send, the server fans each message out to all."""
    p = ctx.params
    out = ScenarioOutput()
    with poc_server(ctx) as (server, url):
        result = run_load(
            LoadSpec(
                url=url,
                transport=LOAD_TRANSPORT[ctx.option.key],
                connections=p["room_size"],
                senders=p["senders"],
                rate=p["rate"],
                duration_s=p["duration_s"],
                mode="broadcast",
                payload_bytes=p.get("payload_bytes", 64),
                cpu_affinity=_load_cpus(),
            )
        )
        _check_alive(server)
    result.add_to(out, "", room=str(p["room_size"]))
    return out


def _memory_counts(params: dict[str, Any]) -> list[int]:
    """The idle connection counts of a memory step, smallest first (a single count is a list of one)."""
    counts = params["connections"]
    return sorted(int(n) for n in (counts if isinstance(counts, (list, tuple)) else [counts]))


def run_memory(ctx: ScenarioContext) -> ScenarioOutput:
    """(RSS with N idle connections - RSS with none) / N at each N, for each of several fresh servers, each read once RSS holds still.

    The servers run side by side, each with its own connections, and each is measured by its own
    process tree; the repeat's figure at each N is their median (the document shows how far single
    servers strayed). The counts are reached in turn on the same servers, the connections of the
    smaller count kept open. A Node server (:data:`NODE_OPTIONS`) is sent SIGUSR2 before each
    reading: it runs a full garbage collection and prints V8's used heap, stored beside RSS
    (``heap_per_connection_bytes``), so V8's own timing of handing memory back does not decide
    the reading.
    """
    p = ctx.params
    out = ScenarioOutput()
    k = p["servers"]
    counts = _memory_counts(p)
    node = ctx.option.key in NODE_OPTIONS

    def steady(pid: int) -> SteadyRss:
        try:
            return steady_rss(pid, p["quiet_s"], p["max_wait_s"], p["tolerance_bytes"])
        except psutil.NoSuchProcess:
            for s, _ in servers:  # a server that exited: say which, with its last log lines
                _check_alive(s)
            raise

    def read(server: ServerProcess) -> tuple[SteadyRss, int | None]:
        """One reading: (for Node) a forced full GC and V8's heap after it, then RSS once it holds still."""
        heap = v8_heap_after_gc(server) if node else None
        assert server.pid is not None
        return steady(server.pid), heap

    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(poc_server(ctx, instance=i)) for i in range(k)]
        with ThreadPoolExecutor(k) as pool:
            before = list(pool.map(read, (s for s, _ in servers)))
        ctx.advance(0.2)

        async def hold() -> list[tuple[list[int], list[int], list[tuple[SteadyRss, int | None]]]]:
            steps = []
            async with contextlib.AsyncExitStack() as held:
                idle: list[list[Any]] = [[] for _ in servers]
                opened = 0
                for i, n in enumerate(counts):
                    last = i == len(counts) - 1 and len(counts) > 1
                    which = list(range(min(k, p.get("servers_at_largest", k)) if last else k))
                    for j in which:
                        idle[j].append(
                            await held.enter_async_context(
                                await hold_idle(servers[j][1], LOAD_TRANSPORT[ctx.option.key], n - opened, connect_timeout_s=20.0)
                            )
                        )
                    opened = n
                    readings = await asyncio.gather(*(asyncio.to_thread(read, servers[j][0]) for j in which))
                    # Connections the server closed while RSS settled no longer cost it anything: divide by those still open.
                    steps.append((which, [sum(c.alive for c in idle[j]) for j in which], list(readings)))
                    ctx.advance(0.2 + 0.8 * (i + 1) / len(counts))
            return steps

        steps = asyncio.run(hold())
        for s, _ in servers:
            _check_alive(s)
    out.add("rss_idle_bytes", "bytes", [b.rss_bytes for b, _ in before], None)
    out.add("rss_wait_s", "s", [b.waited_s for b, _ in before], None, state="idle")
    if node:
        out.add("heap_idle_bytes", "bytes", [h for _, h in before if h is not None], None)
    unsettled = [f"server {i + 1} idle" for i, (b, _) in enumerate(before) if not b.settled]
    for n, (which, connected, after) in zip(counts, steps):
        tag = str(n)
        if not any(connected):
            raise RuntimeError(f"none of {n} idle connections per server was open when RSS was read")
        base = [before[j] for j in which]
        per = [memory_per_connection(a.rss_bytes, b.rss_bytes, c) for (a, _), (b, _), c in zip(after, base, connected) if c]
        out.add("memory_per_connection_bytes", "bytes", [statistics.median(per)], connections=tag)
        out.add("server_memory_per_connection_bytes", "bytes", per, None, connections=tag)
        out.add("rss_connected_bytes", "bytes", [a.rss_bytes for a, _ in after], None, connections=tag)
        out.add("idle_connected", "connections", [min(connected)], "higher", connections=tag)
        out.add("rss_wait_s", "s", [a.waited_s for a, _ in after], None, state=f"{tag} connected")
        if node:
            heaps = [
                memory_per_connection(ha, hb, c)
                for (_, ha), (_, hb), c in zip(after, base, connected)
                if c and ha is not None and hb is not None
            ]
            out.add("heap_per_connection_bytes", "bytes", [statistics.median(heaps)], connections=tag)
            out.add("server_heap_per_connection_bytes", "bytes", heaps, None, connections=tag)
            out.add("heap_connected_bytes", "bytes", [h for _, h in after if h is not None], None, connections=tag)
        unsettled += [f"server {j + 1} with {tag}" for j, (a, _) in zip(which, after) if not a.settled]
    # A reading taken while RSS was still moving is kept but named in the document.
    out.facts["unsettled"] = unsettled
    out.facts["v8_heap"] = node
    return out


def run_reconnect(ctx: ScenarioContext) -> ScenarioOutput:
    """The option's browser client in Chromium through a server crash and restart, and a dropped connection.

    The faults are the harness's (:mod:`harness.faults`): ``kill_and_restart`` and a ``FaultProxy`` reset; each is
    reported to the run's observers as it begins (``ctx.fault``) and stored with its times in ``facts["faults"]``.
    Every message's fate is counted by the harness's account (:mod:`harness.load.account`) and stored under its words.
    """
    from harness.faults import FaultLog
    from spikes.s01_websocket_impl import reconnect

    p = ctx.params
    out = ScenarioOutput()
    try:
        build.find_chromium()
    except build.ToolMissing as exc:
        raise NotRunnable(str(exc)) from None
    log = FaultLog(on_fault=lambda f: ctx.fault(f.kind, f.target, **f.details))
    for i, mode in enumerate(reconnect.MODES):
        with poc_server(ctx, pinned=False) as (server, url):
            try:
                r = asyncio.run(
                    reconnect.measure_reconnect(
                        ctx.option.key,
                        url,
                        mode=mode,
                        server=server,
                        down_ms=p["down_ms"],
                        interval_ms=p["interval_ms"],
                        warmup_s=p["warmup_s"],
                        faults=log,
                    )
                )
            except build.ToolMissing as exc:
                raise NotRunnable(str(exc)) from None
        out.facts[mode] = r
        if r["recovered"] and r["recovery_ms"] is not None:
            out.add("recovery_ms", "ms", [r["recovery_ms"]], mode=mode)
        out.add("recovered", "runs", [1 if r["recovered"] else 0], "higher", mode=mode)
        # The account's words (harness/load/account.py, from the page's records), and `lost` (after acknowledgement or
        # without: the gate's figure, under the name it had before the account, so stored runs still compare).
        for name in OUTCOMES:
            out.add(name, "messages", [r[name]], None if name in ("sent", "delivered") else "lower", mode=mode)
        out.add("lost", "messages", [r["lost"]], mode=mode)
        ctx.advance((i + 1) / 2)
    out.facts["faults"] = log.to_list()
    return out


def run_generator(ctx: ScenarioContext) -> ScenarioOutput:
    """The load generator's own ceiling: closed-loop echo against a server that does nothing but return frames.

    Same connections and window as the echo runs. If this is well above every
    POC server's throughput, the echo results are the servers' limits, not the
    generator's; the generator's CPU time per echo is stored with it.
    """
    import sys

    p = ctx.params
    plan = pin_plan()
    port = free_port()
    server = ServerProcess(
        "raw echo reference server",
        [sys.executable, "-m", "harness.load.reference_server", "--transport", "raw-echo", "--port", "{port}"],
        port=port,
        log_path=ctx.workdir / "server.log",
        cpus=plan.server if plan else None,
    )
    with server:
        before = _cpu_seconds(server.pid)
        result = run_load(
            LoadSpec(
                url=f"ws://127.0.0.1:{port}/",
                connections=p["connections"],
                rate=math.inf,
                closed_loop=True,
                window=p.get("window", 1),
                duration_s=p["duration_s"],
                cpu_affinity=_load_cpus(),
            )
        )
        server_s = _cpu_seconds(server.pid) - before
        _check_alive(server)
    out = ScenarioOutput()
    result.add_to(out, "generator_")
    # The reference server only works while messages flow, so its CPU time over the send window is its busy share.
    out.add("generator_server_cpu", "cores", [server_s / max(result.duration_s, 1e-9)], None)
    return out


def _cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system
