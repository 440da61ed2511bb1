"""Spike 1: native WebSocket vs Socket.IO vs SvelteKit's approach, with real servers and clients.

The plugin object ``spike`` declares the four options (their POC servers and
browser clients under ``poc/``), the scenarios (``scenarios.py``), and how the
stored measurements become scores, tables, charts and findings. Socket.IO is
measured twice, on the same protocol and the same browser client: python-socketio
and Node's socket.io (its reference server), so the document separates Socket.IO
the protocol from one implementation of it and says what the backend runtime costs.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

from harness import frames
from harness.load.spec import CLIENT_BOUND_CPU
from harness.plugin import Chart, Finding, NotRunnable, Option, ReportContent, Scenario, Spike, Table
from harness.poc import PocServer
from harness.results import RunResult, ScenarioResult
from harness.stats import fmt_num
from spikes.s01_websocket_impl import build
from spikes.s01_websocket_impl import scenarios as _sc
from spikes.s01_websocket_impl.decision import CRITERIA, GATES, MEMORY_MAX_SPREAD, _kib, _ms, memory_counts

__all__ = ["WebSocketImplSpike", "spike"]

FEATURE_TITLES = {
    "rooms": "Rooms / broadcast",
    "acknowledgements": "Acknowledgements",
    "binary": "Binary messages",
    "fallback": "Fallback transport",
    "reconnect": "Automatic reconnect",
    "backpressure": "Backpressure",
}


def _server(key: str):
    """The option's POC server as :mod:`build` works it out (the SvelteKit app is built first; no Node: not runnable)."""

    def declared() -> PocServer:
        try:
            cmd = build.server_command(key)
        except build.ToolMissing as exc:
            raise NotRunnable(str(exc)) from None
        return PocServer(
            tuple(cmd["argv"]),
            url=cmd["url"].replace("127.0.0.1", "{host}"),
            ready="log:" + cmd["ready"],
            env=cmd["env"],
            cwd=cmd["cwd"],
        )

    declared.__qualname__ = f"server_command({key!r})"
    return declared


OPTIONS = (
    Option(
        "native",
        "Native WebSocket (websockets)",
        "a `websockets` server with rooms in a dict of sets; the browser's own WebSocket with a small client adding reconnect (exponential backoff, full jitter)",
        ("poc/native_ws/server.py", "poc/native_ws/client.js"),
        ("websockets",),
        server=_server("native"),
        client="ws",
    ),
    Option(
        "socketio",
        "Socket.IO (python-socketio)",
        "python-socketio on aiohttp, rooms and acknowledgements built in; socket.io-client in the browser",
        ("poc/socketio/server.py", "poc/socketio/client.js", "../../harness/sio_server.py"),
        ("python-socketio", "aiohttp", "socket.io-client"),
        server=_server("socketio"),
        client="socketio",
    ),
    Option(
        "socketio-node",
        "Socket.IO (Node socket.io)",
        "Socket.IO's reference server, Node's socket.io 4.8 on a Node HTTP server, with the same events as the python-socketio server "
        "and socket.io's own parser made to keep integers beyond 2^53 exact (JavaScript numbers are doubles; the load protocol's "
        "nanosecond timestamps have 19 digits); the same socket.io-client in the browser",
        ("poc/socketio_node/server.js", "poc/socketio_node/parser.js", "poc/socketio/client.js"),
        ("socket.io", "socket.io-parser", "socket.io-client"),
        requires=("node",),
        server=_server("socketio-node"),
        client="socketio",
    ),
    Option(
        "sveltekit",
        "SvelteKit (adapter-node + ws)",
        "SvelteKit has no built-in WebSocket support (sveltejs/kit issue 1491), so a custom adapter-node server attaches `ws` to the HTTP "
        "server's upgrade event; the page ships the same native client",
        (
            "poc/sveltekit/server.js",
            "poc/sveltekit/src/routes/+page.svelte",
            "poc/sveltekit/svelte.config.js",
            "poc/sveltekit/vite.config.js",
            "poc/native_ws/client.js",
        ),
        ("@sveltejs/kit", "@sveltejs/adapter-node", "@sveltejs/vite-plugin-svelte", "svelte", "vite", "ws"),
        server=_server("sveltekit"),
        client="ws",
    ),
)

SCENARIOS = (
    Scenario(
        "bundle",
        "Browser bundle size",
        "The browser code each option needs (the native client with reconnect; the Socket.IO client with socket.io-client; the JavaScript the "
        "SvelteKit page loads), bundled and minified by esbuild (npm) and gzipped at level 9 by Node's zlib. The tabletop's front end is "
        "SvelteKit whichever transport wins, so an empty SvelteKit page (adapter-node, no WebSocket code), built by the same install, is "
        "measured the same way as the framework baseline: SvelteKit's marginal bytes are its page minus that baseline, and its marginal npm "
        "dependencies those its package.json adds to an empty SvelteKit app's. The other options' clients are standalone bundles added to "
        "that app as they are.",
        _sc.run_bundle,
        requires=("node", "npm"),
        max_repeats=1,
    ),
    Scenario(
        "features",
        "Features, each probed",
        "Against the running server: two clients join a room and both receive a broadcast; an acknowledgement callback; a binary frame echoed "
        "as binary; a connection over HTTP long polling; the browser client reconnecting after its connection is cut (in Chromium); a client that "
        "never reads while 64 MiB of echo requests are pushed (does the server stop reading, or buffer?). Every cell is a probe's result with its "
        "evidence, except acknowledgements over plain WebSocket, which the protocol does not have (said so in the cell).",
        _sc.run_features,
        max_repeats=1,
    ),
    Scenario(
        "echo",
        "Echo latency and throughput",
        "At each connection count: an open-model run at a fixed total rate (latency from each message's intended send time, HDR histogram, "
        "coordinated omission corrected), then a closed-loop run for the throughput ceiling: each connection keeps "
        f"{_sc.WINDOW} requests outstanding and sends the next as each echo arrives. Server and load generator pinned to different cores.",
        _sc.run_echo,
        _sc.ECHO_PARAMS,
        _sc.ECHO_QUICK,
    ),
    Scenario(
        "broadcast",
        "Broadcast fan-out",
        "Every connection joins one room; a few of them send at a fixed rate; the server delivers each message to every member, the sender "
        "included. Deliveries per second and latency from the intended send time to each delivery.",
        _sc.run_broadcast,
        _sc.BROADCAST_PARAMS,
        _sc.BROADCAST_QUICK,
    ),
    Scenario(
        "memory",
        "Memory per idle connection",
        "Server RSS (whole process tree) once it holds still with no connection, then with N idle connections open, at each N in turn on the "
        "same servers: (RSS with N - RSS with none) / N; each repeat is the median of several fresh servers measured side by side. A Node "
        "server (run with --expose-gc) is sent SIGUSR2 before each reading: it runs a full garbage collection and prints V8's used heap, "
        "kept beside RSS as heap per connection. Where one option's repeats differ by more than "
        f"{MEMORY_MAX_SPREAD:.0%}, the decision ties the options on memory instead of ranking them.",
        _sc.run_memory,
        _sc.MEMORY_PARAMS,
        _sc.MEMORY_QUICK,
    ),
    Scenario(
        "generator",
        "Load generator headroom",
        "The harness's load generator, closed loop, against a reference server that returns each WebSocket frame without parsing it, with the "
        "same connections, window and pinning as the echo runs: the generator's own ceiling and its CPU time per echo, to compare with the "
        "fastest POC server's throughput.",
        _sc.run_generator,
        _sc.GENERATOR_PARAMS,
        _sc.GENERATOR_QUICK,
        options=("native",),
    ),
    Scenario(
        "reconnect",
        "Reconnection in Chromium",
        "Headless Chromium (Playwright) runs the option's browser client, sending an echo every 50 ms; the server is killed (SIGKILL) and "
        "restarted on the same port after a pause, and separately the connection is cut on the network (a proxy resets it) with the server "
        "up. Measured: time from the server being back (or the cut) to the next echo, and messages sent but never echoed.",
        _sc.run_reconnect,
        _sc.RECONNECT_PARAMS,
        _sc.RECONNECT_QUICK,
        requires=("chromium",),
    ),
    frames.robustness_scenario(),
)


def _m(sr: ScenarioResult | None, name: str, **tags: str) -> float | None:
    return None if sr is None else sr.median(name, **tags)


class WebSocketImplSpike(Spike):
    """Native WebSocket vs Socket.IO vs SvelteKit with ws, for the tabletop's real-time layer."""

    number = 1
    slug = "websocket-impl"
    title = "WebSocket vs Socket.IO vs Native"
    priority = "critical"
    planned_hours = 4
    question = (
        "Which WebSocket implementation should the tabletop use: the native WebSocket protocol (a `websockets` server), Socket.IO, or "
        "SvelteKit's own approach, judged by bundle size, complexity, features, reconnection handling and performance?"
    )
    options = OPTIONS
    scenarios = SCENARIOS
    criteria = CRITERIA
    gates = GATES
    #: The seed asks for "SvelteKit's native approach": the app is a SvelteKit app, so the framework ships whichever transport
    #: wins; ``ws`` and the transports' own libraries are counted.
    ships_anyway = ("@sveltejs/kit", "@sveltejs/adapter-node", "@sveltejs/vite-plugin-svelte", "svelte", "vite")
    default_repeat = 3
    quick_repeat = 1
    package_dir = Path(__file__).parent

    # -- measured values a score is built from -------------------------------------
    def _counts(self, run: RunResult) -> list[str]:
        for sr in run.scenarios:
            if sr.scenario == "echo" and sr.status == "ok":
                return [str(n) for n in sr.params["connections"]]
        return []

    def _throughput(self, run: RunResult, o: str, n: str) -> float | None:
        return _m(run.ok("echo", o), "closed_received_rate", connections=n)

    def _p99(self, run: RunResult, o: str, n: str) -> float | None:
        return _m(run.ok("echo", o), "open_latency_p99_ms", connections=n)

    # -- the document's Results ------------------------------------------------------
    def report(self, run: RunResult) -> ReportContent:
        opts = run.options
        titles = {o.key: o.title for o in self.options}
        content = ReportContent()
        head = [titles[o] for o in opts]
        counts = self._counts(run)

        # Performance.
        if counts:
            rows = []
            for n in counts:
                for label, name, fmt in (
                    ("echoes/s, closed loop", "closed_received_rate", lambda v: fmt_num(v)),
                    ("p50 latency, open model", "open_latency_p50_ms", _ms),
                    ("p99 latency, open model", "open_latency_p99_ms", _ms),
                    ("p99.9 latency, open model", "open_latency_p99.9_ms", _ms),
                    ("server CPU, closed loop", "closed_server_cpu", lambda v: f"{v:.2f} cores"),
                ):
                    rows.append(
                        [
                            f"{n}",
                            label,
                            *(fmt(v) if (v := _m(run.ok("echo", o), name, connections=n)) is not None else "not run" for o in opts),
                        ]
                    )
            echo_params = next(sr.params for sr in run.scenarios if sr.scenario == "echo" and sr.status == "ok")
            rate, window = echo_params["total_rate"], echo_params.get("window", 1)
            closed = (
                "each connection sends its next message when the echo arrives"
                if window == 1
                else f"each connection keeps {window} requests outstanding and sends the next as each echo arrives"
            )
            content.tables.append(
                Table(
                    "Echo: throughput and latency by connections",
                    ["Connections", "Metric", *head],
                    rows,
                    f"Open model: {fmt_num(rate)} messages/s in total, spread over the connections; latency from each message's intended "
                    f"send time. Closed loop: {closed}. Medians over repeats.",
                )
            )
            client_bound = self._client_bound(run)
            if client_bound:
                content.caveats.append(
                    f"client-bound echo runs, where the load generator and not the server was the limit ({len(client_bound)})"
                )
                content.notes.append(
                    "**Client-bound runs** (the load generator, not the server, was the limit; those numbers are a floor for the server): "
                    + "; ".join(client_bound)
                    + "."
                )
            content.charts.append(
                Chart(
                    "throughput",
                    "Echo throughput by connections (closed loop)",
                    "bar",
                    "echoes per second",
                    {titles[o]: [self._throughput(run, o, n) for n in counts] for o in opts},
                    counts,
                    xlabel="connections",
                    spread={titles[o]: [run.spread("echo", o, "closed_received_rate", connections=n) for n in counts] for o in opts},
                )
            )
            content.charts.append(
                Chart(
                    "latency",
                    "Echo latency percentiles at the most connections (open model)",
                    "bar",
                    "ms (log scale)",
                    {
                        titles[o]: [
                            _m(run.ok("echo", o), f"open_latency_{p}_ms", connections=counts[-1]) for p in ("p50", "p90", "p99", "p99.9")
                        ]
                        for o in opts
                    },
                    ["p50", "p90", "p99", "p99.9"],
                    log_y=True,
                    caption=f"{counts[-1]} connections; latency from the intended send time.",
                    spread={
                        titles[o]: [
                            run.spread("echo", o, f"open_latency_{p}_ms", connections=counts[-1]) for p in ("p50", "p90", "p99", "p99.9")
                        ]
                        for o in opts
                    },
                )
            )
        # Broadcast, memory.
        rows = []
        for label, name, fmt in (
            ("broadcast deliveries/s", "received_rate", lambda v: fmt_num(v)),
            ("broadcast p99 latency", "latency_p99_ms", _ms),
            ("broadcast messages lost", "lost", lambda v: fmt_num(v)),
        ):
            cells = []
            for o in opts:
                sr = run.ok("broadcast", o)
                v = _m(sr, name, room=str(sr.params["room_size"])) if sr else None
                cells.append(fmt(v) if v is not None else self._why_missing(run, "broadcast", o))
            rows.append([label, *cells])
        mem_counts = self._memory_counts(run)
        rows += self._memory_rows(run, mem_counts)
        params = {sr.scenario: sr.params for sr in run.scenarios}
        caption = []
        if "broadcast" in params:
            b = params["broadcast"]
            caption.append(f"Broadcast: a room of {b['room_size']}, {b['senders']} senders at {b['rate']} msg/s each.")
        if "memory" in params:
            m = params["memory"]
            quiet = (
                f"; each RSS reading once it held within {fmt_num(m['tolerance_bytes'] / 1024, 'KiB')} for {m['quiet_s']:g} s"
                if "quiet_s" in m and "tolerance_bytes" in m
                else ""
            )
            servers = (
                f"; each repeat is the median of {m['servers']} fresh servers run side by side, each with its own connections"
                if m.get("servers", 1) > 1
                else ""
            )
            n_text = " and ".join(fmt_num(float(n)) for n in mem_counts) if mem_counts else str(m["connections"])
            in_turn = ", reached in turn on the same servers" if len(mem_counts) > 1 else ""
            at_largest = m.get("servers_at_largest")
            if len(mem_counts) > 1 and at_largest is not None and at_largest < m.get("servers", 1):
                servers += (
                    f"; {at_largest} of {'them' if servers else 'the servers'} went on to {fmt_num(float(mem_counts[-1]))}, where a "
                    f"server's own start-to-start noise is spread over {float(mem_counts[-1]) / float(mem_counts[0]):g}x the connections"
                )
            heap = (
                "; a Node server ran a full garbage collection (SIGUSR2, --expose-gc) before each reading and reported V8's used heap"
                if any((sr := run.ok("memory", o)) and sr.find("heap_per_connection_bytes") for o in opts)
                else ""
            )
            caption.append(f"Memory: {n_text} idle connections{in_turn}{quiet}{servers}{heap}.")
            unsettled = [
                f"{titles[o]} repeat {i + 1} ({', '.join(f['unsettled'])})"
                for o in opts
                if (sr := run.ok("memory", o))
                for i, f in enumerate(sr.facts)
                if f.get("unsettled")
            ]
            if unsettled:
                content.notes.append(
                    f"**Memory still moving:** RSS did not hold still within {m['max_wait_s']:g} s for {'; '.join(unsettled)}; "
                    "those readings are the median of the last window and may be off."
                )
        content.tables.append(Table("Fan-out and memory", ["Metric", *head], rows, " ".join(caption)))
        spread_note = self._memory_spread_note(run)
        if spread_note:
            content.notes.append(spread_note)
        mem_tags = [{"connections": n} for n in mem_counts] or [{}]
        mem = {titles[o]: [_m(run.ok("memory", o), "memory_per_connection_bytes", **t) for t in mem_tags] for o in opts}
        mem_spread = {titles[o]: [run.spread("memory", o, "memory_per_connection_bytes", **t) for t in mem_tags] for o in opts}
        content.charts.append(
            Chart(
                "memory",
                "Server memory per idle connection",
                "bar",
                "bytes",
                mem,
                [f"{fmt_num(float(n))} connections" for n in mem_counts] or ["per connection"],
                spread=mem_spread,
            )
        )
        runtime = self._runtime_note(run)
        if runtime:
            content.notes.append(runtime)
        # Bundle: raw, the framework baseline, and marginal.
        content.tables.append(self._bundle_table(run))
        deps = self._dependencies_note(run)
        if deps:
            content.notes.append(deps)
        # Features.
        feats = {o: run.ok("features", o) for o in opts}
        rows = []
        for key, title in FEATURE_TITLES.items():
            row = [title]
            for o in opts:
                sr = feats[o]
                f = sr.fact.get("features", {}).get(key) if sr else None
                if f is None:
                    row.append(self._why_missing(run, "features", o))
                else:
                    row.append(("yes" if f["value"] else "unknown" if f["value"] is None else "no") + f": {f['evidence']}")
            rows.append(row)
        content.tables.append(
            Table(
                "Features, probed against the running server",
                ["Feature", *head],
                rows,
                "A probe that crashed shows as unknown and does not count for or against the option.",
            )
        )
        # Reconnection: every message's fate in the words of the harness's account (harness/load/account.py).
        rows = []
        for mode, what in (("restart", "server killed and restarted"), ("drop", "connection cut, server up")):
            for label, show in (
                ("time to the first echo through a new connection, median (min-max)", self._recovery_cell),
                ("runs that recovered", self._recovered_cell),
                ("sent / delivered, all runs", self._account_cell("sent", "delivered")),
                ("lost after acknowledgement, all runs", self._account_cell("lost_after_ack")),
                ("lost without acknowledgement, all runs", self._account_cell("lost_without_ack")),
                ("duplicated / unexpected / reordered, all runs", self._account_cell("duplicated", "unexpected", "reordered")),
            ):
                rows.append(
                    [
                        what,
                        label,
                        *(show(sr, mode) if (sr := run.ok("reconnect", o)) else self._why_missing(run, "reconnect", o) for o in opts),
                    ]
                )
        content.tables.append(
            Table(
                "Reconnection of each option's browser client (Chromium)",
                ["Fault", "Metric", *head],
                rows,
                (
                    f"Server down for {params['reconnect']['down_ms']} ms in the restart case; an echo every "
                    f"{params['reconnect']['interval_ms']} ms. "
                    if "reconnect" in params
                    else ""
                )
                + "Messages counted by the harness's account (`harness/load/account.py`) from the page's records: *sent* is what the "
                "page handed to its client library, *delivered* what came back as its echo. The echo is the browser clients' only "
                "acknowledgement, so every loss here is lost without acknowledgement (lost after acknowledgement is 0 by "
                "construction); the gate reads both.",
            )
        )
        note = self._headroom_note(run)
        if note:
            content.notes.append(note)
        content.notes.append(
            "The load generator is the harness's own (`harness/load`), in a separate process; Socket.IO is driven with its raw-protocol client because "
            "python-socketio's client costs as much CPU as the server. "
            + (
                "Server and generator were pinned to different cores."
                if run.machine.get("cpu_count_logical", 1) >= 2
                else "The machine has one core: no pinning."
            )
        )
        robustness = frames.robustness_table(run, titles)
        if robustness is not None:
            content.tables.append(robustness)
        content.findings = self._findings(run) + frames.robustness_findings(run)
        return content

    def _bundle_table(self, run: RunResult) -> Table:
        """Each option's browser JavaScript: raw, the empty SvelteKit page it includes (SvelteKit only), and the difference."""
        opts = run.options
        titles = {o.key: o.title for o in self.options}
        rows = []
        for label, name in (
            ("raw: all its browser JavaScript, minified", "bundle_min_bytes"),
            ("raw: all its browser JavaScript, gzipped", "bundle_gzip_bytes"),
            ("framework baseline: an empty SvelteKit page, minified", "framework_baseline_min_bytes"),
            ("framework baseline: an empty SvelteKit page, gzipped", "framework_baseline_gzip_bytes"),
            ("marginal: raw - framework baseline, minified", "marginal_min_bytes"),
            ("marginal: raw - framework baseline, gzipped", "marginal_gzip_bytes"),
        ):
            cells = []
            for o in opts:
                sr = run.ok("bundle", o)
                if sr is None:
                    cells.append(self._why_missing(run, "bundle", o))
                elif name.startswith("framework_baseline") and o != "sveltekit":
                    cells.append("none: a standalone client")
                elif (v := sr.median(name)) is None:
                    cells.append("not measured")
                else:
                    cells.append(fmt_num(v, "B"))
            rows.append([label, *cells])
        return Table(
            "Browser JavaScript: raw, framework baseline and marginal",
            ["Metric", *[titles[o] for o in opts]],
            rows,
            "Raw: every byte of JavaScript the option's page loads; for SvelteKit that includes the framework itself. Framework baseline: "
            "an empty SvelteKit page (adapter-node, no WebSocket code) built by the same SvelteKit, vite and svelte from the same lock file, "
            "measured the same way. Marginal: raw minus the baseline, what the option adds to the SvelteKit front end the tabletop ships "
            "anyway; the native and Socket.IO clients are standalone bundles, so theirs is their raw figure. SvelteKit's marginal bytes "
            "include its page's own markup and the Svelte runtime that markup uses, not only the WebSocket client. Gzipped figures are the "
            "sum over the page's files, each compressed on its own.",
        )

    @staticmethod
    def _dependencies_note(run: RunResult) -> str | None:
        """SvelteKit's npm dependencies, raw and beyond an empty SvelteKit app, from the stored bundle step."""
        sr = run.ok("bundle", "sveltekit")
        if sr is None:
            return None
        npm = sr.fact.get("npm")
        found = {n: sr.median(n) for n in ("npm_dependencies", "npm_packages", "marginal_npm_dependencies", "marginal_npm_packages")}
        counts = {n: v for n, v in found.items() if v is not None}
        if npm is None or len(counts) < len(found):
            return "**SvelteKit's npm dependencies** beyond an empty SvelteKit app: not measured in this run."

        def names(xs: list[str]) -> str:
            return ", ".join(f"`{x}`" for x in xs) or "none"

        return (
            f"**SvelteKit's npm dependencies.** Raw: its package.json lists {fmt_num(counts['npm_dependencies'])} "
            f"({names(npm['dependencies'])}), which pull in {fmt_num(counts['npm_packages'])} packages of its lock file (platform-specific "
            f"optional binaries included). An empty SvelteKit app needs {names(npm['baseline_dependencies'])}; beyond those, marginal: "
            f"{fmt_num(counts['marginal_npm_dependencies'])} direct ({names(npm['marginal_dependencies'])}), pulling in "
            f"{fmt_num(counts['marginal_npm_packages'])} package{'s' if counts['marginal_npm_packages'] != 1 else ''} of the lock file "
            f"({names(npm['marginal_packages'])})."
        )

    @staticmethod
    def _memory_counts(run: RunResult) -> list[str]:
        """Every idle connection count a memory step of this run measured, smallest first (none: a run from before the counts)."""
        return sorted({n for o in run.options for n in memory_counts(run, o)}, key=float)

    def _memory_rows(self, run: RunResult, counts: list[str]) -> list[list[str]]:
        """The memory rows of the fan-out and memory table: at each count, RSS per connection, its spreads, V8's heap."""
        opts = run.options
        rows = []
        for n in counts or [None]:
            tags = {"connections": n} if n is not None else {}
            at = f" at {fmt_num(float(n))}" if n is not None else ""

            def cells(name: str, fmt, tags: dict[str, str] = tags) -> list[str]:
                out = []
                for o in opts:
                    sr = run.ok("memory", o)
                    v = _m(sr, name, **tags)
                    out.append(fmt(v) if v is not None else self._why_missing(run, "memory", o) if sr is None else "not measured")
                return out

            rows.append([f"memory per idle connection{at}, median (RSS)", *cells("memory_per_connection_bytes", _kib)])
            rows.append(
                [
                    f"memory per idle connection{at}, range of the repeats",
                    *(self._memory_spread(run, o, "memory_per_connection_bytes", "repeats", **tags) for o in opts),
                ]
            )
            rows.append(
                [
                    f"memory per idle connection{at}, range of single servers",
                    *(self._memory_spread(run, o, "server_memory_per_connection_bytes", "servers", **tags) for o in opts),
                ]
            )
            if n is not None and any((sr := run.ok("memory", o)) and sr.find("heap_per_connection_bytes") for o in opts):
                heap = []
                for o in opts:
                    sr = run.ok("memory", o)
                    v = _m(sr, "heap_per_connection_bytes", **tags)
                    heap.append(
                        _kib(v)
                        if v is not None
                        else self._why_missing(run, "memory", o)
                        if sr is None
                        else "none: not a Node server"
                        if not sr.fact.get("v8_heap")
                        else "not measured"
                    )
                rows.append([f"V8 heap per idle connection{at}, after a forced GC", *heap])
            rows.append([f"idle connections open at the reading{at}, per server", *cells("idle_connected", lambda v: fmt_num(v))])
        return rows

    def _memory_spread_note(self, run: RunResult) -> str | None:
        """Which options' memory repeats disagree by more than the decision's limit, so memory does not rank them."""
        titles = {o.key: o.title for o in self.options}
        spread = []
        for o in run.options:
            sr = run.ok("memory", o)
            if sr is None:
                continue
            counts = memory_counts(run, o)
            try:
                xs = sr.measurement("memory_per_connection_bytes", **({"connections": counts[-1]} if counts else {})).repeat_medians()
            except KeyError:
                continue
            med = statistics.median(xs) if xs else 0
            if len(xs) > 1 and med and (max(xs) - min(xs)) / abs(med) > MEMORY_MAX_SPREAD:
                at = f" at {fmt_num(float(counts[-1]))} connections" if counts else ""
                spread.append(f"{titles[o]}{at}: {_kib(min(xs))}-{_kib(max(xs))}, {(max(xs) - min(xs)) / abs(med):.0%} of its median")
        if not spread:
            return None
        return (
            f"**Memory tied where runs disagree.** Memory per idle connection differed by more than {MEMORY_MAX_SPREAD:.0%} across "
            f"repeats for {'; '.join(spread)}: a measurement that does not repeat ranks nobody, so the decision ties the options on "
            "memory, leaving it out of Scalability for every option (the broadcast part carries that criterion)."
        )

    def _runtime_note(self, run: RunResult) -> str | None:
        """What the backend runtime costs: the same protocol and client on python-socketio and on Node's socket.io, from stored numbers."""
        py, node = "socketio", "socketio-node"
        if py not in run.options or node not in run.options:
            return None
        titles = {o.key: o.title for o in self.options}
        parts = []
        counts = self._counts(run)
        if counts:
            n = counts[-1]
            a, b = self._throughput(run, py, n), self._throughput(run, node, n)
            if a and b:
                parts.append(
                    f"closed-loop echo throughput at {n} connections {fmt_num(b)} echoes/s on Node against {fmt_num(a)} on Python "
                    f"({b / a:.1f}x)"
                )
            a, b = self._p99(run, py, n), self._p99(run, node, n)
            if a is not None and b is not None:
                parts.append(f"open-model p99 at {n} connections {_ms(b)} against {_ms(a)}")
            ca = _m(run.ok("echo", py), "closed_server_cpu", connections=n)
            cb = _m(run.ok("echo", node), "closed_server_cpu", connections=n)
            ra, rb = self._throughput(run, py, n), self._throughput(run, node, n)
            if ca and cb and ra and rb:
                parts.append(
                    f"server CPU per echo {1e6 * cb / rb:.1f} us against {1e6 * ca / ra:.1f} us (closed loop, {cb:.2f} and {ca:.2f} cores)"
                )
        mem_at = {o: memory_counts(run, o) for o in (py, node)}
        ma, mb = (
            _m(run.ok("memory", o), "memory_per_connection_bytes", **({"connections": mem_at[o][-1]} if mem_at[o] else {}))
            for o in (py, node)
        )
        if ma is not None and mb is not None:
            same = mem_at[py] and mem_at[py] == mem_at[node]
            at = f" at {fmt_num(float(mem_at[node][-1]))} idle connections" if same else ""
            parts.append(f"memory per idle connection{at} {_kib(mb)} against {_kib(ma)}")
        ba, bb = _m(run.ok("broadcast", py), "latency_p99_ms"), _m(run.ok("broadcast", node), "latency_p99_ms")
        if ba is not None and bb is not None:
            parts.append(f"broadcast p99 {_ms(bb)} against {_ms(ba)}")
        if not parts:
            return None
        return (
            f"**What the backend runtime costs.** The same Socket.IO protocol, the same socket.io-client and the same load, on "
            f"{titles[node]} and on {titles[py]} (Node first): " + "; ".join(parts) + ". What differs between those two columns is the "
            "server's runtime and library, not the protocol."
        )

    @staticmethod
    def _memory_spread(run: RunResult, option: str, name: str, what: str, **tags: str) -> str:
        """'low-high over n <what> (x% of the median)' of a memory metric: per repeat (their medians) or per server."""
        sr = run.ok("memory", option)
        try:
            m = sr.measurement(name, **tags) if sr else None
        except KeyError:  # a run stored before servers were measured side by side
            return "not measured"
        xs = (m.repeat_medians() if what == "repeats" else m.samples) if m else []
        med = statistics.median(xs) if xs else 0
        return (
            f"{_kib(min(xs))}-{_kib(max(xs))} over {len(xs)} {what} ({(max(xs) - min(xs)) / med:.0%} of the median)"
            if len(xs) > 1 and med
            else f"one {what[:-1]}"
        )

    def _headroom_note(self, run: RunResult) -> str | None:
        """The generator's ceiling against the fastest POC server's throughput, at the same connections and window, from the stored runs."""
        gen = run.ok("generator", "native")
        counts = self._counts(run)
        if not gen or not counts:
            return None
        titles = {o.key: o.title for o in self.options}
        echo_params = next(sr.params for sr in run.scenarios if sr.scenario == "echo" and sr.status == "ok")
        at = str(gen.params["connections"])
        window, echo_window = gen.params.get("window", 1), echo_params.get("window", 1)
        rates = {o: v for o in run.options if (v := self._throughput(run, o, at)) is not None}
        if not rates:
            return None
        fastest_option = max(rates, key=rates.__getitem__)
        fastest = rates[fastest_option]
        ceiling = gen.measurement("generator_received_rate").median
        cpu = gen.measurement("generator_generator_cpu").median
        plural = "s" if window != 1 else ""
        text = (
            f"**Generator headroom.** Closed loop at {at} connections with {window} request{plural} outstanding per connection: "
            f"against a bare echo server the load generator reached {fmt_num(ceiling)} echoes/s using {cpu:.2f} of a core"
        )
        us = _m(gen, "generator_generator_us_per_msg")
        if us:
            text += f" ({us:.2f} us of generator CPU per echo, about {fmt_num(1e6 / us)} echoes per generator core-second)"
        server_cpu = _m(gen, "generator_server_cpu")
        if server_cpu is not None:
            text += f", with the echo server at {server_cpu:.2f} of a core"
        text += f"; the fastest POC server, {titles[fastest_option]}, reached {fmt_num(fastest)} echoes/s"
        fcpu = _m(run.ok("echo", fastest_option), "closed_generator_cpu", connections=at)
        if fcpu is not None:
            text += f" with the generator at {fcpu:.2f} of a core"
        if window != echo_window:
            return text + (
                f". The echo runs used a window of {echo_window}, not {window}: the two are not comparable, so this run does "
                "not show whether the generator had headroom."
            )
        ratio = ceiling / fastest
        text += f". The generator drove {ratio:.1f}x the fastest server's throughput"
        if ratio >= 2:
            return text + ": at least 2x, so the echo results are the servers' limits."
        # Below 2x in this run, but was the generator the limit? Its CPU time per echo says what one core of it sustains.
        per_core = 1e6 / us if us else None
        if per_core and cpu < CLIENT_BOUND_CPU and per_core >= 2 * fastest:
            return text + (
                f", while using only {cpu:.2f} of a core: the bare echo server, not the generator, limited this run. At its "
                f"measured cost one generator core sustains {per_core / fastest:.1f}x the fastest server's throughput, so the echo "
                "results are the servers' limits."
            )
        return text + "; below 2x, so the highest echo results may be partly the generator's limit."

    @staticmethod
    def _bound(run: RunResult, option: str, n: str, kind: str) -> bool:
        """Whether the load generator was the limit in an echo run (``kind``: open or closed) at ``n`` connections."""
        sr = run.ok("echo", option)
        return bool(sr) and any(
            f.get(f"{kind}_client_bound") and str(f.get(f"{kind}_load_spec", {}).get("connections")) == n for f in sr.facts
        )

    def _client_bound(self, run: RunResult) -> list[str]:
        out = []
        titles = {o.key: o.title for o in self.options}
        for o in run.options:
            sr = run.ok("echo", o)
            if not sr:
                continue
            for n in self._counts(run):
                for kind in ("open", "closed"):
                    if self._bound(run, o, n, kind):
                        out.append(f"{titles[o]}, {n} connections, {'open model' if kind == 'open' else 'closed loop'}")
        return out

    @staticmethod
    def _recovery_cell(sr: ScenarioResult, mode: str) -> str:
        try:
            xs = sr.measurement("recovery_ms", mode=mode).samples
        except KeyError:
            return "never recovered"
        return f"{_ms(statistics.median(xs))} ({_ms(min(xs))}-{_ms(max(xs))})" if len(xs) > 1 else _ms(xs[0])

    @staticmethod
    def _account_cell(*names: str) -> Callable[[ScenarioResult, str], str]:
        """A cell of the account's counts over all runs (``a / b / c``), one name with its worst run; a run from before the
        account stored only ``lost`` and ``sent``, and says so."""

        def cell(sr: ScenarioResult, mode: str) -> str:
            try:
                runs = [sr.measurement(n, mode=mode).samples for n in names]
            except KeyError:
                return "not stored (a run from before the account)"
            if len(names) > 1:
                return " / ".join(fmt_num(sum(xs)) for xs in runs)
            [xs] = runs
            return f"{fmt_num(sum(xs))} (worst run: {fmt_num(max(xs))})" if len(xs) > 1 else fmt_num(sum(xs))

        return cell

    @staticmethod
    def _recovered_cell(sr: ScenarioResult, mode: str) -> str:
        ok = sr.measurement("recovered", mode=mode).samples
        return f"{fmt_num(sum(ok))} of {len(ok)}"

    @staticmethod
    def _why_missing(run: RunResult, scen: str, option: str) -> str:
        sr = run.result(scen, option)
        if sr is None:
            return "not in this run"
        return sr.status.replace("_", " ")

    def _findings(self, run: RunResult) -> list[Finding]:
        """Good/Bad points per option, each citing the measured value behind a score."""
        out = []
        for o in run.options:
            sr = run.ok("features", o)
            if sr:
                missing = [FEATURE_TITLES[k].lower() for k, f in sr.fact.get("features", {}).items() if f["value"] is False]
                if missing:
                    out.append(Finding(o, False, f"the probes found no {', no '.join(missing)}."))
        out += self._runtime_findings(run)
        return out

    def _runtime_findings(self, run: RunResult) -> list[Finding]:
        """The backend runtime's cost as Good/Bad points: the same Socket.IO protocol and client on Node and on Python."""
        py, node = "socketio", "socketio-node"
        counts = self._counts(run)
        if not counts or py not in run.options or node not in run.options:
            return []
        n = counts[-1]
        rate_py, rate_node = self._throughput(run, py, n), self._throughput(run, node, n)
        if not rate_py or not rate_node:
            return []
        rates = {py: rate_py, node: rate_node}
        titles = {o.key: o.title for o in self.options}
        fast, slow = (node, py) if rate_node >= rate_py else (py, node)
        ratio = rates[fast] / rates[slow]
        runtime = {py: "Python", node: "Node"}
        return [
            Finding(
                fast,
                True,
                f"on {runtime[fast]} the same Socket.IO protocol and client relayed {fmt_num(rates[fast])} echoes/s at {n} connections, "
                f"{ratio:.1f}x {titles[slow]}'s {fmt_num(rates[slow])}.",
            ),
            Finding(
                slow,
                False,
                f"its runtime, not the protocol, costs throughput: {fmt_num(rates[slow])} echoes/s at {n} connections against "
                f"{fmt_num(rates[fast])} for {titles[fast]}, the same protocol and client on {runtime[fast]}.",
            ),
        ]


spike = WebSocketImplSpike()
