"""Spike 6: scalability, from one process to several behind Redis and nginx, with the chat persisted to PostgreSQL.

The plugin object ``spike`` declares four options (native WebSocket and
Socket.IO, each as one process and as two processes behind nginx with Redis
fan-out), the seed's three scenarios, a capacity search (the highest rate a
busy room holds within its latency and delivery bounds), the generator's own
capacity (``scenarios.py``), and how the stored measurements become tables,
charts, a projection to 10k-1M connections (``extrapolate.py``), scores and
findings.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from pathlib import Path

from harness import frames
from harness.load.locust import LocustPlan
from harness.plugin import Chart, Finding, Option, ReportContent, Scenario, Spike, Table
from harness.poc import PocServer
from harness.results import RunResult, ScenarioResult
from harness.stats import fmt_num
from spikes.s06_scalability import extrapolate as _x
from spikes.s06_scalability import locust_users as _lu
from spikes.s06_scalability import robustness as _rb
from spikes.s06_scalability import scale as _scale
from spikes.s06_scalability import scenarios as _sc
from spikes.s06_scalability.decision import BUSY_ROOM_MIN, CRITERIA, GATES
from spikes.s06_scalability.node_options import NODE_OPTIONS

__all__ = [
    "ScalabilitySpike",
    "spike",
    "LOAD_SCENARIOS",
    "targets",
    "saturation",
    "pg_per_row",
    "capacity_text",
    "capacity_repeats",
    "deliveries",
    "account_lost",
    "scale_points",
    "scale_limit",
    "marginal_cpu_per_message",
    "timeline_spread",
]

_SERVER_NATIVE = ("poc/native_server.py", "poc/persist.py")


def _server(script: str) -> PocServer:
    """One server process of the option: its chat rows go to ``{pg}``, its broadcasts through ``{redis}`` (empty: none)."""
    return PocServer(
        ("{python}", script, "--port", "{port}", "--pg", "{pg}", "--redis", "{redis}", "--server-id", "{server_id}"),
        url="ws://{host}:{port}/",
        ready=r"log:READY port=\d+",
        cwd="{repo}/spikes/s06_scalability/poc",  # the scripts import persist.py next to them
    )


_SERVER_SIO = ("poc/socketio_server.py", "poc/persist.py", "../../harness/sio_server.py")

_PYTHON_OPTIONS = (
    Option(
        "native",
        "Native WebSocket, 1 process",
        "Spike 1's `websockets` server (rooms in a dict of sets), one process, clients connect directly; "
        "every chat message persisted to PostgreSQL in batches",
        _SERVER_NATIVE,
        ("websockets", "asyncpg"),
        server=_server("native_server.py"),
        client="ws",
    ),
    Option(
        "native-redis",
        "Native WebSocket, 2 processes + Redis",
        "the same server as two processes behind nginx (round-robin over WebSocket "
        "upgrades); a Redis channel per room carries each broadcast to the processes with members in it",
        _SERVER_NATIVE,
        ("websockets", "asyncpg", "redis", "redis-server", "nginx"),
        requires=("redis-server", "nginx"),
        server=_server("native_server.py"),
        client="ws",
    ),
    Option(
        "socketio",
        "Socket.IO, 1 process",
        "Spike 1's python-socketio server on aiohttp (websocket transport), one process, clients connect "
        "directly; every chat message persisted",
        _SERVER_SIO,
        ("python-socketio", "aiohttp", "asyncpg"),
        server=_server("socketio_server.py"),
        client="socketio-raw",
    ),
    Option(
        "socketio-redis",
        "Socket.IO, 2 processes + Redis",
        "the same server as two processes behind nginx with python-socketio's "
        "AsyncRedisManager (every emit published on one Redis channel); websocket transport only, so no sticky sessions",
        _SERVER_SIO,
        ("python-socketio", "aiohttp", "asyncpg", "redis", "redis-server", "nginx"),
        requires=("redis-server", "nginx"),
        server=_server("socketio_server.py"),
        client="socketio-raw",
    ),
)
OPTIONS = _PYTHON_OPTIONS + NODE_OPTIONS

_COMMON = (
    "Each repeat starts the option's whole stack fresh: PostgreSQL (the harness's, default settings, fsync on) with a chat table, for the "
    "two-process options Redis and nginx in front of the two server processes. The load is the harness's open-model engine (one generator "
    "process; latency from each message's intended send time, HDR histogram). A canary connection sends one extra timed echo on a fixed "
    "schedule for latency over time; when the load ends it sends no more and waits up to `drain_s` for its unanswered probes. Every server "
    "process, nginx, Redis and PostgreSQL are sampled for CPU and RSS; nothing is pinned, so on this machine all of them share its cores. "
    "Before the load the server processes are sampled for `baseline_s` with the stack up and no client connected: the CPU baseline. "
    "Every message of the load is counted in the harness's account (`harness/load/account.py`: delivered, lost after or without "
    "acknowledgement, duplicated, unexpected, reordered). PostgreSQL's CPU is also read from the postmaster's cumulative CPU times, "
    "the backends it has reaped included, from the start of the load to just after the servers stopped (their last buffered rows "
    "included): the figure the cost per row, and so the projection, uses."
)

SCENARIOS = (
    Scenario(
        "many-idle",
        "Many idle connections",
        "The seed's first case: many connections each sending one chat message a minute (an echo: persisted, answered to the sender only; "
        "the native servers answer directly, python-socketio's Redis manager also publishes every emit, even one to a single client), "
        "arriving over a ramp and held for `hold_s` for a steady state. " + _COMMON,
        _sc.run_many_idle,
        _sc.MANY_IDLE,
        _sc.MANY_IDLE_QUICK,
        requires=("postgres",),
    ),
    Scenario(
        "few-busy",
        "Few busy connections, fan-out",
        "The seed's second case: 50 connections in one room, each sending 100 chat messages a second; every message is persisted and "
        "broadcast to the whole room (the sender included), so deliveries are 50x the messages in. One more connection, the room observer, "
        "joins before the load and only listens: after the engine stops it keeps listening for up to `drain_s`, so of the deliveries the "
        "account counts as lost by the stop, those still queued are told apart from those dropped (it adds one member to the server's "
        "fan-out, not to the expected deliveries). " + _COMMON,
        _sc.run_few_busy,
        _sc.FEW_BUSY,
        _sc.FEW_BUSY_QUICK,
        requires=("postgres",),
    ),
    Scenario(
        "burst",
        "Connection burst",
        "The seed's third case: 0 to 500 connections arriving at random within 10 seconds (the engine's burst schedule, a Poisson process), "
        "then held, each sending a chat message a second (an echo, as in many-idle). Connect time runs from each connection's intended arrival. "
        + _COMMON,
        _sc.run_burst,
        _sc.BURST,
        _sc.BURST_QUICK,
        requires=("postgres",),
    ),
    Scenario(
        "capacity",
        "Capacity of a busy room",
        "Not a long run but a search over short steps: one deployment per repeat (as above, fresh), then a broadcast room of "
        "`connections` members, each sending `rate` chat messages a second for `step_s` seconds, every message persisted and "
        "broadcast to the whole room. A step passes when every connection stayed, at least `min_delivered` of the expected "
        "deliveries arrived within the step (its send schedule plus `grace_s`; the harness's account) and the p99 latency from "
        "intended send time is at most `p99_ms`. The rate is bisected geometrically between `lo_rate` and `hi_rate` (a pass raises "
        "the floor, a failure lowers the ceiling) until they are within `ratio` of each other or `max_steps` steps ran; each step "
        "uses a fresh room and starts once the servers are idle again (at most `settle_s`). The capacity is the highest rate "
        "passed: as the room size x rate it holds, as deliveries/s, and as deliveries/s per server core (deliveries over the CPU "
        "seconds the server processes and nginx used in that step). One generator process receives every delivery: a step where "
        "the load engine flags it client-bound says nothing certain of the server above that rate, so a capacity found there, "
        "or never failed up to `hi_rate`, is reported as *at least*.",
        _sc.run_capacity,
        _sc.CAPACITY,
        _sc.CAPACITY_QUICK,
        requires=("postgres",),
    ),
    Scenario(
        "scale",
        "Real connections at 10,000 and 100,000",
        "Each target on a fresh deployment: PostgreSQL, Redis for the multi-process options, and the option's server processes: one for a "
        "one-process option whatever the target, ceil(target / `per_process`) (at least 2) for a multi-process one. ceil(target / "
        "`per_generator`) fresh generator processes open idle connections (`concurrency` handshakes at a time each, `connect_timeout_s` "
        "each, a failed attempt tried again until `max_failures` attempts in a row failed or `open_for_s` has passed: a shape that "
        "opens connections too slowly to reach the target within the spike's budget fails the target, saying so), spread round robin over the server processes' "
        "own ports: one process may open at most 20,000 files here and one source address reaches one port through at most 28,232 "
        "ephemeral ports, so 100,000 connections need several of each. nginx is not in front here (it needs two descriptors per proxied "
        "connection: eleven workers at this limit). Once every generator holds its connections, the servers' CPU and RSS are read over "
        "`hold_s`; then each generator counts its connections still open (held), and the servers are stopped before the connections are let go (how 100,000 connections end is not measured). The connections send nothing: the many-idle scenario "
        "measures what chat costs per connection. Runs once per option (a target is one attempt; its failures are reported).",
        _scale.run_scale,
        _scale.SCALE,
        _scale.SCALE_QUICK,
        requires=("postgres",),
        max_repeats=1,
    ),
    Scenario(
        "generator-idle",
        "Load generator: idle connections in one process",
        "The harness's generator alone, in one fresh process, opens N idle WebSocket connections to the native server (256 handshakes at a "
        "time), holds them, and reports its own RSS growth per connection; the server's RSS growth is read at the same moment.",
        _sc.run_generator_idle,
        _sc.GENERATOR,
        _sc.GENERATOR_QUICK,
        options=("native",),
        max_repeats=1,
    ),
    frames.robustness_scenario(start=_rb.start, requires=("postgres",)),
)

#: The scenarios that load the POC servers (the generator scenario measures the generator).
LOAD_SCENARIOS = ("many-idle", "few-busy", "burst")
_TITLES = {s.key: s.title for s in SCENARIOS}


def scale_points(run: RunResult, option: str) -> list[dict]:
    """The scale scenario's measured points for ``option`` (target, held, processes, memory...), or none."""
    sr = run.ok("scale", option)
    return list(sr.fact.get("points") or []) if sr is not None else []


def scale_limit(point: dict) -> str:
    """What stopped a scale point short of its target, from its failures and the servers' logs; empty when it held."""
    if point["held"] >= point["target"]:
        return ""
    parts = []
    full = [
        (fds, limit[0])
        for fds, limit in zip(point.get("server_fds_held") or [], point.get("server_nofile") or [], strict=False)
        if fds is not None and fds >= 0.98 * limit[0]
    ]
    if full:
        parts.append(
            "the server process's descriptor limit: "
            + ", ".join(f"{fds:,} of {limit:,} descriptors open" for fds, limit in full)
            + " while held"
        )
    if point.get("timed_out"):
        rate = point["connected"] / point["open_s"] if point.get("open_s") else 0.0
        parts.append(
            f"the time to open ran out ({fmt_num(point.get('open_for_s') or 0)} s; {fmt_num(rate)} connections/s were opening): "
            "the shape was still accepting, too slowly to reach the target within the spike's budget"
        )
    if point.get("exited"):
        parts.append("a server process exited: " + "; ".join(point["exited"])[:200])
    if point.get("failed"):
        parts.append("failed attempts: " + ", ".join(f"{v:,} x {k}" for k, v in sorted(point["failed"].items(), key=lambda kv: -kv[1])))
    if point["connected"] > point["held"]:
        parts.append(f"{point['connected'] - point['held']:,} connections dropped while held")
    return "; ".join(parts) or "unknown"


def targets(sr: ScenarioResult) -> dict[str, float]:
    """What a load scenario asked for: messages in per second and deliveries per second."""
    p = sr.params
    n = p["connections"]
    if sr.scenario == "many-idle":
        rate_in = n * p["rate_per_min"] / 60
    else:
        rate_in = n * p["rate"]
    deliveries = rate_in * n if sr.scenario == "few-busy" else rate_in
    return {"in": rate_in, "deliveries": deliveries, "connections": n}


def _med(sr: ScenarioResult | None, name: str, **tags: str) -> float | None:
    return None if sr is None else sr.median(name, **tags)


def deliveries(sr: ScenarioResult) -> tuple[float, float, bool]:
    """(delivered, expected, counted by the account?): the harness's account when the run counted, else the engine's counts.

    A run before the account stored only the engine's ``received`` and ``lost`` (expected - received at its stop).
    """
    d, e = _med(sr, "delivered"), _med(sr, "expected")
    if d is not None and e is not None:
        return d, e, True
    received = _med(sr, "received") or 0.0
    return received, received + (_med(sr, "lost") or 0.0), False


def account_lost(sr: ScenarioResult) -> tuple[float, float] | None:
    """(lost after acknowledgement, lost without), the account's medians over repeats; None for a run before the account."""
    after, without = _med(sr, "lost_after_ack"), _med(sr, "lost_without_ack")
    return None if after is None or without is None else (after, without)


def _lost_text(sr: ScenarioResult) -> str:
    """The account's split of what was lost by the stop, or why it is not split."""
    split = account_lost(sr)
    if split is None:
        return "not split by acknowledgement: this run predates the account"
    return f"{fmt_num(split[0])} after acknowledgement, {fmt_num(split[1])} without"


def _drops(sr: ScenarioResult) -> str:
    """What the room observer's drain says of what was lost by the stop (true drops vs backlog), or that they were not separated."""
    due, after = _med(sr, "observer_expected"), _med(sr, "observer_received_after_drain")
    if not due or after is None:
        return "; drops not separated"
    never = max(0.0, due - after)
    drain = _med(sr, "drain_s") or 0.0
    return (
        f"; a listening room member still lacked {never / due:.1%} of the broadcasts after a {drain:g} s drain"
        if never
        else f"; a listening room member had every broadcast within a {drain:g} s drain: backlog, no drop"
    )


def pg_cpu(sr: ScenarioResult) -> tuple[float | None, bool]:
    """(PostgreSQL CPU seconds behind the rows written, whether cumulative), from the stored run.

    Cumulative: the postmaster's CPU times with its reaped backends, from the load's start to the servers' stop (their
    last batches included). A run before that reading has only the sampled figure, over the load alone.
    """
    total = _med(sr, "postgres_cpu_total_seconds")
    if total is not None:
        return total, True
    return _med(sr, "postgres_cpu_seconds"), False


def pg_per_row(sr: ScenarioResult) -> tuple[float | None, bool]:
    """(PostgreSQL CPU seconds per row written, whether it is above the measurement's resolution), from the stored run.

    The figure the projection uses: cumulative CPU (:func:`pg_cpu`) over the rows in the table.
    """
    secs, rows = pg_cpu(sr)[0], _med(sr, "pg_rows")
    if secs is None or not rows:
        return None, False
    return secs / rows, secs >= _sc.PG_CPU_RESOLUTION_S


def _client_bound(sr: ScenarioResult) -> list[str]:
    return [r for f in sr.facts if f.get("client_bound") for r in f.get("client_bound_reasons", [])]


def saturation(sr: ScenarioResult, cores: int) -> tuple[bool, str]:
    """(target reached?, what was reached and which measured component was at its limit), from the stored run."""
    sent = _med(sr, "sent") or 0.0
    planned = sent + (_med(sr, "unsent") or 0.0)
    delivered, expected, _ = deliveries(sr)
    lost = max(0.0, expected - delivered)  # the account's lost (after and without acknowledgement) when the engine stopped
    failed = _med(sr, "connect_failed") or 0.0
    short = []
    if planned and sent < 0.99 * planned:
        short.append(f"{fmt_num(sent)} of {fmt_num(planned)} planned messages sent")
    if expected and lost > 0.001 * expected:
        short.append(
            f"{fmt_num(delivered)} of {fmt_num(expected)} deliveries by the stop ({lost / expected:.1%} lost by the stop: "
            f"{_lost_text(sr)}{_drops(sr)})"
        )
    if failed:
        short.append(f"{fmt_num(failed)} connects failed")
    bound = _client_bound(sr)
    if not short:
        text = f"target reached: {fmt_num(sent)} messages sent as planned, {fmt_num(delivered)} deliveries, none lost"
        return True, text + (f" (the generator was flagged client-bound: {bound[0]}; latency includes its delay)" if bound else "")
    causes = []
    if bound:
        causes.append(f"the load generator (client-bound: {bound[0]})")
    busiest = _med(sr, "busiest_server_process_cores") or 0.0
    if busiest >= 0.85:
        causes.append(f"server CPU (busiest server process at {busiest:.2f} of its one core)")
    redis = _med(sr, "redis_cpu_cores") or 0.0
    if redis >= 0.85:
        causes.append(f"Redis ({redis:.2f} of its one command thread)")
    pg = _med(sr, "postgres_cpu_cores") or 0.0
    missing = _med(sr, "pg_rows_missing") or 0
    if pg >= 0.85 * cores:
        causes.append(f"the database ({pg:.2f} cores)")
    elif missing > 0:
        causes.append(
            f"persistence in the server ({fmt_num(missing)} chat messages not written when the server stopped, with PostgreSQL "
            f"at {pg:.2f} cores: the batch writer shares the server's saturated event loop)"
        )
    machine = _med(sr, "machine_cpu_cores") or 0.0
    others = _med(sr, "other_processes_cpu_cores") or 0.0
    if machine >= 0.9 * cores:
        causes.append(
            f"the machine's {cores} cores ({machine:.2f} busy over the run, {others:.2f} of them by processes outside this spike)"
        )
    why = (
        "; ".join(causes)
        if causes
        else f"no measured component at its CPU limit (busiest server process {busiest:.2f} cores, machine {machine:.2f} of {cores})"
    )
    return False, f"reached {'; '.join(short)}; saturated: {why}"


def capacity_repeats(sr: ScenarioResult) -> list[dict]:
    """Per repeat of the capacity scenario: the rate held, the lowest rate that failed, whether it is a lower bound and why."""

    def per_repeat(name: str) -> list[float | None]:
        try:
            return [r[0] if r else None for r in sr.measurement(name).repeats]
        except KeyError:
            return []

    rates, fails, least = per_repeat("capacity_rate"), per_repeat("capacity_fail_rate"), per_repeat("capacity_at_least")
    out = []
    for i, rate in enumerate(rates):
        fact = sr.facts[i] if i < len(sr.facts) else {}
        out.append(
            {
                "rate": rate or None,
                "fail": fails[i] if i < len(fails) else None,
                "at_least": bool(least[i]) if i < len(least) and least[i] is not None else False,
                "why": fact.get("capacity_why", ""),
                "steps": fact.get("steps", []),
            }
        )
    return out


def capacity_text(sr: ScenarioResult) -> str:
    """The room size x rate each repeat held, with the lowest rate that failed or why it is a lower bound."""
    n = sr.params["connections"]
    parts = []
    for r in capacity_repeats(sr):
        if r["rate"] is None:
            lowest = min((st["rate"] for st in r["steps"]), default=sr.params.get("lo_rate"))
            parts.append(f"none: {n} x {fmt_num(lowest)} msg/s already failed")
            continue
        text = f"{n} x {fmt_num(r['rate'])} msg/s"
        if r["at_least"]:
            text = "at least " + text + (" (the generator's limit" if r["why"] == "generator" else " (no step failed")
            text += f"; failed at {fmt_num(r['fail'])} msg/s)" if r["fail"] else ")"
        elif r["fail"]:
            text += f" (failed at {fmt_num(r['fail'])} msg/s)"
        parts.append(text)
    return "; ".join(parts) or "n/a"


def marginal_cpu_per_message(sr: ScenarioResult) -> float | None:
    """Server CPU seconds per message in above the measured no-connection baseline; None when no baseline was measured."""
    busy, idle = _med(sr, "server_cpu_seconds"), _med(sr, "server_idle_cpu_cores")
    wall, msgs = _med(sr, "load_wall_s"), _med(sr, "messages_in")
    if busy is None or idle is None or not wall or not msgs:
        return None
    return (busy - idle * wall) / msgs


#: Whiskers on a time-series chart: at most this many per series, evenly spaced (more would hide the lines).
_SPREAD_POINTS = 20


def timeline_spread(sr: ScenarioResult, xname: str, yname: str, scale: float = 1.0) -> list[tuple[float, float] | None]:
    """Per point of the first repeat's series: (min, max) of the value every repeat had at the same sample time.

    Sample times are bins of the sampling rate since the load started, so repeats share them. None where fewer
    than two repeats have that time, with a single repeat, and between the (at most ``_SPREAD_POINTS``) whiskered points.
    """
    try:
        xr, yr = sr.measurement(xname).repeats, sr.measurement(yname).repeats
    except KeyError:
        return []
    if not xr or not yr:
        return []
    first = list(xr[0])
    if len(xr) < 2:
        return [None] * len(first)
    by_t = [dict(zip(xs, ys)) for xs, ys in zip(xr, yr)]
    step = max(1, math.ceil(len(first) / _SPREAD_POINTS))
    out: list[tuple[float, float] | None] = []
    for i, x in enumerate(first):
        values = [r[x] * scale for r in by_t if x in r]
        out.append((min(values), max(values)) if i % step == 0 and len(values) >= 2 else None)
    return out


def _ms(x: float | None) -> str:
    return "n/a" if x is None else fmt_num(x, "ms")


def _kib(x: float | None) -> str:
    return "n/a" if x is None else f"{x / 1024:.1f} KiB"


class ScalabilitySpike(Spike):
    """One process vs several behind Redis, native WebSocket vs Socket.IO, under the seed's three load shapes."""

    number = 6
    slug = "scalability"
    title = "Scalability Testing"
    priority = "important"
    planned_hours = 8
    question = (
        "How does the real-time layer scale: what do many idle connections, a few busy ones in a room, and a burst of arrivals cost in memory, CPU, "
        "Redis and PostgreSQL load, for the native WebSocket and Socket.IO servers in one process and scaled out behind Redis pub/sub; and how "
        "many machines would 10k, 100k and 1M connections need?"
    )
    options = OPTIONS
    scenarios = SCENARIOS
    criteria = CRITERIA
    gates = GATES
    default_repeat = 2
    quick_repeat = 1
    package_dir = Path(__file__).parent

    # -- Locust ---------------------------------------------------------------------------------
    def locust_plan(self, scenario: str, quick: bool = False, transport: str = "ws") -> LocustPlan:
        """A load scenario as Locust users (``spike locust 6 --scenario KEY``); Spike 6's own parameters are in ``locust_users``."""
        return _lu.locust_plan(scenario, lambda key: self.scenario(key).resolved_params(quick), transport)

    # -- measured inputs ------------------------------------------------------------------------
    @staticmethod
    def machine(run: RunResult) -> _x.Machine:
        return _x.Machine(int(run.machine.get("cpu_count_logical") or 1), int(run.machine.get("memory_total_bytes") or 1))

    @staticmethod
    def costs(run: RunResult, scenario: str, option: str) -> _x.Costs | None:
        """The per-connection cost inputs one stored scenario measured, or None if it did not run."""
        sr = run.ok(scenario, option)
        if sr is None:
            return None
        conns = _med(sr, "server_connections")
        mem = _med(sr, "memory_per_connection_bytes")
        if not conns or mem is None:
            return None
        redis_cmds = _med(sr, "redis_commands") or 0.0
        costs = _x.Costs(
            connections=conns,
            memory_per_connection=mem,
            server_cores=(_med(sr, "server_cpu_cores") or 0.0) + (_med(sr, "nginx_cpu_cores") or 0.0),
            redis_ops_per_s=_med(sr, "redis_ops_per_s") or 0.0,
            redis_cpu_per_op=(_med(sr, "redis_cpu_seconds") or 0.0) / redis_cmds if redis_cmds else 0.0,
            pg_rows_per_s=_med(sr, "pg_rows_per_s") or 0.0,
            pg_xact_per_s=_med(sr, "pg_xact_per_s") or 0.0,
            pg_cpu_per_row=pg_per_row(sr)[0] or 0.0,
            multi_process=(sr.fact.get("processes", 1) > 1),
        )
        points = scale_points(run, option)
        if points:
            most = max(points, key=lambda pt: pt["held"])
            if most["held"] > conns:
                costs = replace(costs, memory_per_connection=(most["server_rss_held"] - most["server_rss_base"]) / most["held"])
            short = [pt for pt in points if pt["held"] < pt["target"]]
            if short:
                costs = replace(costs, held_limit=float(max(pt["held"] for pt in points)))
        delivered, expected, _ = deliveries(sr)
        if delivered and expected > delivered:
            costs = _x.at_target(costs, delivered, expected, _med(sr, "messages_in") or 0.0, _med(sr, "load_wall_s") or 0.0)
        return costs

    @staticmethod
    def _connect_p99(sr: ScenarioResult | None) -> float | None:
        if sr is None:
            return None
        try:
            xs = sorted(sr.measurement("connect_ms").samples)
        except KeyError:
            return None
        return xs[min(len(xs) - 1, math.ceil(0.99 * len(xs)) - 1)] if xs else None

    # -- the document ------------------------------------------------------------------------
    def report(self, run: RunResult) -> ReportContent:
        opts = run.options
        titles = {o.key: o.title for o in self.options}
        head = [titles[o] for o in opts]
        content = ReportContent()
        cores = int(run.machine.get("cpu_count_logical") or 1)
        ran = [s for s in LOAD_SCENARIOS if any(run.ok(s, o) for o in opts)]
        bound = sorted({f"{_TITLES[s].lower()} ({titles[o]})" for s in ran for o in opts if (sr := run.ok(s, o)) and _client_bound(sr)})
        if bound:
            content.caveats.append("the load generator was client-bound in " + ", ".join(bound) + ": latency there includes its own delay")

        def cell(s: str, o: str, fn) -> str:
            sr = run.ok(s, o)
            if sr is None:
                r = run.result(s, o)
                return "not in this run" if r is None else f"{r.status.replace('_', ' ')}: {r.reason}" if r.reason else r.status
            v = fn(sr)
            return "n/a" if v is None else v

        def num(name: str, f=lambda v: fmt_num(v), **tags: str):
            return lambda sr: None if (v := sr.median(name, **tags)) is None else f(v)

        def observed(s: str) -> bool:  # a listening room member measured the drain (runs before it did not)
            return any((sr := run.ok(s, o)) is not None and sr.median("observer_expected") is not None for o in opts)

        # Targets, latency, undelivered messages, saturation.
        rows = []
        graces = sorted({g for s in ran for o in opts if (g := _med(run.ok(s, o), "grace_s")) is not None})
        drains = sorted({d for s in ran for o in opts if (d := _med(run.ok(s, o), "drain_s")) is not None})
        for s in ran:
            for label, fn in (
                ("messages in/s at full load: target", lambda sr: fmt_num(targets(sr)["in"])),
                (
                    "messages sent / planned",
                    lambda sr: f"{fmt_num(sr.median('sent'))} / {fmt_num(sr.median('sent') + sr.median('unsent'))}",
                ),
                ("messages in/s, mean over the run", num("achieved_rate")),
                (
                    "deliveries / expected (the account)",
                    lambda sr: "{} / {}".format(*map(fmt_num, deliveries(sr)[:2])),
                ),
                ("deliveries/s at full load: target", lambda sr: fmt_num(targets(sr)["deliveries"])),
                ("deliveries/s, mean over the run", num("received_rate")),
                ("latency p50 / p99 / p99.9", lambda sr: " / ".join(_ms(sr.median(f"latency_{p}_ms")) for p in ("p50", "p99", "p99.9"))),
                (
                    "lost by the stop: after / without acknowledgement" + ("" if observed(s) else " (drops not separated)"),
                    lambda sr: self._lost_cell(sr),
                ),
                ("duplicated / unexpected / reordered", self._anomaly_cell),
                *(
                    (
                        (
                            "room observer: broadcasts by the stop / after the drain / due",
                            lambda sr: self._observer_cell(sr),
                        ),
                        (
                            "room observer: still lost after the drain",
                            lambda sr: self._never_cell(sr),
                        ),
                    )
                    if observed(s)
                    else ()
                ),
                ("connects failed", num("connect_failed")),
                ("verdict", lambda sr: saturation(sr, cores)[1]),
            ):
                rows.append([_TITLES[s], label, *(cell(s, o, fn) for o in opts)])
        content.tables.append(
            Table(
                "Targets, what was reached, and where it saturated",
                ["Scenario", "Metric", *head],
                rows,
                "Planned messages: what the open-model schedule called for (a connection sends from its arrival to the end; ramp and "
                "burst arrivals make the mean rate over the run lower than the full-load target). Deliveries, expected and lost are the "
                "harness's account (`harness/load/account.py`), counted per message: expected is each message sent, times the room's "
                "members in few-busy. Latency from each message's intended send time to its delivery (coordinated omission corrected), all deliveries of the "
                "run in one HDR histogram; medians over repeats. Lost by the stop: expected deliveries that had not arrived when the "
                f"engine stopped, {'/'.join(f'{g:g}' for g in graces) or ('0.5' if run.profile == 'quick' else '1')} s after its send "
                "schedule ended (in echo mode as soon as no reply was outstanding); after acknowledgement when the sender had its own "
                "copy back (the server had accepted and sent it), without when not. At the stop that is messages still queued (in the "
                "server, its socket buffers or the generator's) and true drops together. "
                + (
                    "The room observer (few-busy: one more connection in the room, listening only, joined before the load) tells them "
                    f"apart: it keeps listening after the stop, for up to {'/'.join(f'{d:g}' for d in drains)} s (until it has every "
                    "broadcast due, or none arrives for 2 s); what it still lacked after the drain was dropped or still queued, including "
                    "messages the generator had written but the server had not read when the generator closed its connections. "
                    if any(observed(s) for s in ran)
                    else "This run has no drain measurement, so drops are not separated from backlog. "
                )
                + "A verdict names every measured component at its limit: a server process "
                "at >= 0.85 of its core, Redis at >= 0.85 of its thread, the generator flagged client-bound by the engine, or the whole "
                "machine at >= 90 % of its cores.",
            )
        )
        # Capacity.
        capacity = self._capacity_table(run, opts, titles)
        if capacity is not None:
            content.tables.append(capacity)
            limited = [titles[o] for o in opts if (sr := run.ok("capacity", o)) and any(r["at_least"] for r in capacity_repeats(sr))]
            if limited:
                content.caveats.append(
                    "the capacity of " + ", ".join(limited) + " is a lower bound (at least): its search ended at the load "
                    "generator's limit, or no step it tried failed; not at a failure of the server"
                )
        # Memory.
        rows = []
        for s in ran:
            rows.append([_TITLES[s], "connections held (server side)", *(cell(s, o, num("server_connections")) for o in opts)])
            rows.append(
                [
                    _TITLES[s],
                    "memory per connection, all server processes",
                    *(cell(s, o, num("memory_per_connection_bytes", _kib)) for o in opts),
                ]
            )
            rows.append([_TITLES[s], "memory per connection, per process", *(cell(s, o, self._per_process) for o in opts)])
            rows.append(
                [
                    _TITLES[s],
                    "server RSS before the load",
                    *(cell(s, o, num("server_rss_base_bytes", lambda v: fmt_num(v / 2**20, "MiB"))) for o in opts),
                ]
            )
        content.tables.append(
            Table(
                "Memory per connection",
                ["Scenario", "Metric", *head],
                rows,
                "(median RSS of the server processes while they held >= 95 % of their peak connections - RSS before the load) / connections "
                "held, connections counted as established TCP connections on each server's listening port (sampled with the RSS). In the busy scenarios the delta includes message "
                "buffers, not only connection state.",
            )
        )
        # CPU and services.
        rows = []
        for s in ran:
            for label, fn in (
                ("server processes, cores (mean)", num("server_cpu_cores", lambda v: f"{v:.2f}")),
                ("busiest server process, cores", num("busiest_server_process_cores", lambda v: f"{v:.2f}")),
                ("nginx, cores", num("nginx_cpu_cores", lambda v: f"{v:.2f}")),
                ("Redis, cores", num("redis_cpu_cores", lambda v: f"{v:.2f}")),
                ("PostgreSQL, cores", num("postgres_cpu_cores", lambda v: f"{v:.2f}")),
                ("load generator, cores", num("generator_cpu", lambda v: f"{v:.2f}")),
                ("whole machine, cores busy", num("machine_cpu_cores", lambda v: f"{v:.2f} of {cores}")),
                ("of which processes outside this spike", num("other_processes_cpu_cores", lambda v: f"{v:.2f}")),
                (
                    "server processes with no client connected (baseline), cores",
                    lambda sr: (
                        "not measured in this run"
                        if (v := sr.median("server_idle_cpu_cores")) is None
                        else f"{v:.3f} (over {fmt_num(sr.median('server_idle_window_s'), 's')})"
                    ),
                ),
                ("server CPU per message in, above the baseline", self._marginal_cell),
                (
                    "Redis commands/s (per message in)",
                    lambda sr: (
                        None
                        if sr.median("redis_ops_per_s") is None
                        else f"{fmt_num(sr.median('redis_ops_per_s'))} ({self._ratio(sr, 'redis_commands')})"
                    ),
                ),
                (
                    "Redis memory used / peak",
                    lambda sr: (
                        None
                        if sr.median("redis_used_memory_bytes") is None
                        else f"{fmt_num(sr.median('redis_used_memory_bytes') / 2**20, 'MiB')} / {fmt_num(sr.median('redis_peak_memory_bytes') / 2**20, 'MiB')}"
                    ),
                ),
                ("PostgreSQL rows written (per message in)", lambda sr: f"{fmt_num(sr.median('pg_rows'))} ({self._ratio(sr, 'pg_rows')})"),
                (
                    "PostgreSQL rows/s, transactions/s",
                    lambda sr: f"{fmt_num(sr.median('pg_rows_per_s'))}, {fmt_num(sr.median('pg_xact_per_s'))}",
                ),
                ("PostgreSQL CPU-s: sampled over the load / all backends to the servers' stop", self._pg_cpu_cell),
                ("PostgreSQL CPU per row written (what the projection uses)", self._pg_row_cell),
                ("messages not in the database", num("pg_rows_missing")),
                (
                    "bytes on the wire out / in per second (clients)",
                    lambda sr: (
                        f"{fmt_num(sr.median('bytes_out') / sr.median('load_wall_s') / 1024, 'KiB')} / "
                        f"{fmt_num(sr.median('bytes_in') / sr.median('load_wall_s') / 1024, 'KiB')}"
                    ),
                ),
            ):
                rows.append([_TITLES[s], label, *(cell(s, o, fn) for o in opts)])
        content.tables.append(
            Table(
                "CPU, Redis, PostgreSQL and bandwidth",
                ["Scenario", "Metric", *head],
                rows,
                "CPU in cores (1.00 = one core busy) averaged over the load, children included. Baseline: the server processes sampled "
                "for `baseline_s` with the stack up and no client connected, before the load (resolution: one 10 ms tick per process "
                "over that window). CPU per message in above it: (server CPU "
                "seconds over the load - baseline cores x the load's duration) / messages in; it includes holding the connections (the "
                "baseline has none), which dominates when messages are few. PostgreSQL's CPU two ways: sampled with the other "
                "components over the load (a backend that starts and exits between two samples, and the last batches a server "
                "writes when it stops, are missed), and from the postmaster's cumulative CPU times with every backend it reaped, "
                "from the load's start to just after the servers stopped: its cost per row is that figure over the rows in the "
                "table, and it is what the projection uses. CPU times are read from /proc in 10 ms clock ticks per "
                f"process: under {_sc.PG_CPU_RESOLUTION_S:g} CPU-s of PostgreSQL CPU, its cost per row is below measurement "
                "resolution and is not given. Redis: INFO total_commands_processed; "
                "PostgreSQL: exact rows in the chat table after the servers wrote their buffers, pg_stat_database xact_commit. Messages "
                "in include the canary's. Bytes are the generator's, after the handshake, framing included.",
            )
        )
        # Burst connects.
        if any(run.ok("burst", o) for o in opts):
            rows = []
            for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)):
                rows.append(
                    [f"connect time {label}", *(cell("burst", o, lambda sr, q=q: _ms(self._quantile(sr, "connect_ms", q))) for o in opts)]
                )
            rows.append(["failed connects (all repeats)", *(cell("burst", o, self._failed_cell) for o in opts)])
            b = next(run.ok("burst", o) for o in opts if run.ok("burst", o)).params
            content.tables.append(
                Table(
                    "Burst: connect time distribution",
                    ["Metric", *head],
                    rows,
                    f"{b['connections']} connections arriving at random within {b['burst_s']:g} s; every connect of every repeat.",
                )
            )
        # Generator.
        gen = run.ok("generator-idle", "native")
        if gen:
            n = gen.params["connections"]
            rows = [
                ["connections requested / opened", f"{n:,} / {fmt_num(gen.median('generator_connected'))}"],
                ["generator process RSS with them open", fmt_num(gen.median("generator_rss_bytes") / 2**20, "MiB")],
                ["generator memory per connection", _kib(gen.median("generator_memory_per_connection_bytes"))],
                ["native server memory per connection", _kib(gen.median("server_memory_per_connection_bytes"))],
                [
                    "connect time p50 / p99",
                    f"{_ms(self._quantile(gen, 'connect_ms', 0.5))} / {_ms(self._quantile(gen, 'connect_ms', 0.99))}",
                ],
                [
                    "descriptor limit (generator / server)",
                    f"{gen.fact.get('nofile', ['?'])[0]} / {gen.fact.get('server_nofile', ['?'])[0]}",
                ],
            ]
            under = gen.median("generator_rss_bytes") < 2**30
            content.tables.append(
                Table(
                    "The load generator holding idle connections in one process",
                    ["Metric", "Value"],
                    rows,
                    f"One spawned generator process; its RSS is {'under' if under else 'over'} 1 GiB with {fmt_num(gen.median('generator_connected'))} connections open.",
                )
            )
        else:
            r = run.result("generator-idle", "native")
            if r is not None:
                content.notes.append(f"**Generator capacity** not measured: {r.status.replace('_', ' ')}: {r.reason}")
        # Real connections at scale.
        scale_rows = []
        for o in opts:
            for pt in sorted(scale_points(run, o), key=lambda pt: pt["target"]):
                held = pt["held"]
                mem = (pt["server_rss_held"] - pt["server_rss_base"]) / held if held else None
                scale_rows.append(
                    [
                        titles[o],
                        f"{pt['target']:,}",
                        f"{held:,}" + ("" if held >= pt["target"] else " (**short**)"),
                        str(pt["processes"]),
                        str(pt["generators"]),
                        "n/a" if mem is None else fmt_num(mem / 1024, "KiB"),
                        "n/a" if not held else f"{pt['server_cores_held'] / held * 10_000:.3f}",
                        f"{pt['open_s']:.1f} s",
                        scale_limit(pt) or "held every connection",
                    ]
                )
        if scale_rows:
            content.tables.append(
                Table(
                    "Real connections at scale (measured, idle)",
                    [
                        "Option",
                        "Target",
                        "Held",
                        "Server processes",
                        "Generator processes",
                        "Server memory per connection",
                        "Server cores per 10k held",
                        "Time to open",
                        "What stopped it",
                    ],
                    scale_rows,
                    "Each target on a fresh deployment; the connections are held idle (pings only) while the servers are read. "
                    "The many-idle rows above are the 1,000-connection point with chat traffic. Ran once per option.",
                )
            )
        # Extrapolation.
        machine = self.machine(run)
        rows = []
        for s in ran:
            for n in _x.TARGETS:
                cells = []
                for o in opts:
                    c = self.costs(run, s, o)
                    if c is None:
                        cells.append("not measured")
                        continue
                    p = _x.project(c, n, machine)
                    pg_ok = self._pg_ok(run, s, o)
                    pg = f"{p.pg_cores:.2f} cores" if pg_ok else "cores unknown (per-row cost below measurement resolution)"
                    text = (
                        f"{p.machines} machines ({p.server_cores:.1f} cores, {fmt_num(p.server_memory_bytes / 2**30, 'GiB')}); "
                        f"PG {fmt_num(p.pg_rows_per_s)} rows/s, {pg}"
                    )
                    if c.multi_process:
                        text += f"; Redis {fmt_num(p.redis_ops_per_s)} ops/s, {p.redis_cores:.2f} cores"
                    limit = "; ".join(
                        part
                        + (
                            " (unreliable: per-row cost below measurement resolution)"
                            if not pg_ok and part.startswith("PostgreSQL")
                            else ""
                        )
                        for part in p.limit.split("; ")
                    )
                    text += "" if p.feasible else f"; **over a limit**: {limit}"
                    if c.shortfall > 1:
                        text += f"; server cores scaled x{c.shortfall:.2f} to the target (the run delivered {1 / c.shortfall:.0%} of it)"
                    cells.append(text)
                rows.append([_TITLES[s], f"{n:,}", *cells])
            caps = []
            for o in opts:
                c = self.costs(run, s, o)
                if c is None:
                    caps.append("not measured")
                    continue
                m = _x.max_connections(c, machine)
                if math.isinf(m):
                    caps.append("no limit measured")
                    continue
                pg_cap = _x.max_connections(replace(c, server_cores=0.0, memory_per_connection=0.0, redis_ops_per_s=0.0), machine)
                set_by_pg = not self._pg_ok(run, s, o) and pg_cap <= m
                caps.append(
                    f"~{fmt_num(m)}"
                    + (" (set by PostgreSQL's per-row cost, below measurement resolution: unreliable)" if set_by_pg else "")
                )
            rows.append([_TITLES[s], "first hard limit", *caps])
        content.tables.append(
            Table(
                "Projection to 10k, 100k and 1M connections",
                ["Scenario", "Connections", *head],
                rows,
                f"Formula: {_x.FORMULA}. Reference machine: the one measured ({machine.cores} cores, "
                f"{fmt_num(machine.memory_bytes / 2**30, 'GiB')}), used to {machine.headroom:.0%}. Assumptions: each scenario's traffic "
                "per connection and room size stay as measured; costs stay linear (contention beyond the measured load is not modelled); "
                "a single-process option cannot use more than one core; one Redis serves at most one core's worth of commands; the "
                "database is one machine like this one; PostgreSQL's cost per row is the one in the CPU table (its CPU from the load's start to "
                "the servers' stop, every backend included, over the rows written). Quick-profile costs include more fixed overhead per "
                "connection than full-scale ones.",
            )
        )
        # Charts: connections, memory, CPU and latency over time per scenario.
        for s in ran:
            for slug, title, ylabel, xname, yname, scale in (
                ("connections", "open connections", "connections (server side)", "timeline_t_s", "timeline_server_connections", 1.0),
                ("memory", "server RSS", "MiB (all server processes)", "timeline_t_s", "timeline_server_rss_bytes", 1 / 2**20),
                ("cpu", "server CPU", "cores (all server processes)", "timeline_t_s", "timeline_server_cpu_cores", 1.0),
                ("latency", "canary latency", "ms from intended send", "timeline_canary_t_s", "timeline_canary_latency_ms", 1.0),
            ):
                series = {}
                spread: dict[str, list[tuple[float, float] | None]] = {}
                for o in opts:
                    sr = run.ok(s, o)
                    if sr is None:
                        continue
                    try:
                        xs, ys = sr.measurement(xname).repeats[0], sr.measurement(yname).repeats[0]
                    except (KeyError, IndexError):
                        continue
                    series[titles[o]] = [(x, y * scale) for x, y in zip(xs, ys)]
                    # Canary probes are timed per repeat, not on shared sample times: no spread to show for them.
                    spread[titles[o]] = [None] * len(series[titles[o]]) if slug == "latency" else timeline_spread(sr, xname, yname, scale)
                several = any(r is not None for ranges in spread.values() for r in ranges)
                caption = (
                    "First repeat of each option"
                    + (
                        f"; whiskers at up to {_SPREAD_POINTS} evenly spaced sample times, over the values the repeats had at that time "
                        "since their load started."
                        if several
                        else "."
                    )
                    if slug != "latency"
                    else "A canary connection's echo, on a fixed schedule, measured from its intended send time; first repeat. "
                    + self._canary_caption(run, s, titles)
                )
                content.charts.append(
                    Chart(
                        f"{s}-{slug}",
                        f"{_TITLES[s]}: {title} over time",
                        "line",
                        ylabel,
                        series,
                        xlabel="seconds since the load started",
                        log_y=slug == "latency",
                        caption=caption.strip(),
                        spread=spread,
                    )
                )
        if run.profile == "quick":
            content.notes.append(
                "**Quick profile**: every scenario is scaled down (fewer connections, shorter holds, and in many-idle one message a "
                "second instead of a minute so that messages flow in a short run); the projection then carries more fixed overhead per "
                "connection. Run the full profile for the seed's numbers."
            )
        others = [(v, s, o) for s in LOAD_SCENARIOS for o in opts if (v := _med(run.ok(s, o), "other_processes_cpu_cores")) is not None]
        if others:
            worst = max(others)
            content.notes.append(
                f"**Shared machine.** Processes outside this spike used up to {worst[0]:.2f} of the {cores} cores during a measurement "
                f"({_TITLES[worst[1]].lower()}, {titles[worst[2]]}); the median over all steps was "
                f"{statistics.median(v for v, _, _ in others):.2f}. Numbers taken while others ran are pessimistic."
            )
        content.notes.append(
            f"The two-process options run two server processes because this machine has {cores} cores (one process per core); nginx "
            "proxies WebSocket upgrades round-robin, and the Socket.IO clients use the websocket transport only, so no sticky sessions "
            "are needed. Persistence is batched: each server buffers chat messages and writes them with COPY every 50 ms or 1,000 rows "
            "(one transaction per batch)."
        )
        robustness = frames.robustness_table(run, titles)
        if robustness is not None:
            content.tables.append(robustness)
        content.findings = self._findings(run) + frames.robustness_findings(run)
        return content

    # -- capacity --------------------------------------------------------------------------------
    @staticmethod
    def _capacity_table(run: RunResult, opts: list[str], titles: dict[str, str]) -> Table | None:
        """The capacity search's result per option, from the stored run; None when the scenario is not in it."""
        if not any(run.result("capacity", o) for o in opts):
            return None
        srs = {o: run.ok("capacity", o) for o in opts}

        def cell(o: str, fn) -> str:
            sr = srs[o]
            if sr is None:
                r = run.result("capacity", o)
                return "not in this run" if r is None else f"{r.status.replace('_', ' ')}: {r.reason}" if r.reason else r.status
            v = fn(sr)
            return "n/a" if v is None else v

        def least(sr: ScenarioResult) -> str:
            return "at least " if any(r["at_least"] for r in capacity_repeats(sr)) else ""

        def med(name: str, f) -> object:
            return lambda sr: None if (v := sr.median(name)) is None else f(v)

        def generator(sr: ScenarioResult) -> str | None:
            us, cpu = sr.median("generator_us_per_delivery"), sr.median("capacity_generator_cpu")
            if us is None:
                return None
            at = sr.median("generator_busiest_deliveries_per_s")
            text = (
                f"{us:.1f} µs of generator CPU per delivery in the busiest step"
                + ("" if at is None else f" ({fmt_num(at)} deliveries/s)")
                + f": at that cost one generator core receives ~{fmt_num(1e6 / us)} deliveries/s"
            )
            return text + ("" if cpu is None else f"; {cpu:.2f} of its core at the capacity")

        def steps(sr: ScenarioResult) -> str:
            reps = capacity_repeats(sr)
            if not reps or not reps[0]["steps"]:
                return "n/a"
            out = []
            for st in reps[0]["steps"]:
                verdict = "pass" if st["passed"] else "fail"
                p99 = "n/a" if st.get("p99_ms") is None else fmt_num(st["p99_ms"], "ms")
                text = f"{fmt_num(st['rate'])}: {verdict} (p99 {p99}, {st['delivered_fraction']:.2%} delivered"
                text += ", client-bound)" if st.get("client_bound") else ")"
                out.append(text)
            return "; ".join(out)

        rows = [
            ["room size x rate held, per repeat", *(cell(o, capacity_text) for o in opts)],
            [
                "deliveries/s at the capacity",
                *(
                    cell(o, lambda sr: None if (v := sr.median("capacity_deliveries_per_s")) is None else least(sr) + fmt_num(v))
                    for o in opts
                ),
            ],
            [
                "deliveries/s per server core",
                *(
                    cell(o, lambda sr: None if (v := sr.median("capacity_deliveries_per_core")) is None else least(sr) + fmt_num(v))
                    for o in opts
                ),
            ],
            [
                "server processes + nginx at the capacity, cores",
                *(cell(o, med("capacity_server_cores", lambda v: f"{v:.2f}")) for o in opts),
            ],
            ["Redis at the capacity, cores", *(cell(o, med("capacity_redis_cores", lambda v: f"{v:.2f}")) for o in opts)],
            ["PostgreSQL at the capacity, cores", *(cell(o, med("capacity_postgres_cores", lambda v: f"{v:.2f}")) for o in opts)],
            ["p99 at the capacity", *(cell(o, med("capacity_p99_ms", lambda v: fmt_num(v, "ms"))) for o in opts)],
            ["the load generator", *(cell(o, generator) for o in opts)],
            ["steps of the first repeat (msg/s per connection)", *(cell(o, steps) for o in opts)],
        ]
        p = next((sr.params for sr in srs.values() if sr is not None), None)
        rule = (
            ""
            if p is None
            else f"A step of {p['step_s']:g} s passes when all {p['connections']} connections stayed, at least {p['min_delivered']:.1%} of "
            f"the expected deliveries arrived within it (its schedule plus {p['grace_s']:g} s) and p99 <= {fmt_num(p['p99_ms'], 'ms')}; "
            f"the rate per connection is bisected geometrically between {fmt_num(p['lo_rate'])} and {fmt_num(p['hi_rate'])} msg/s "
            f"until within {p['ratio']:g}x, at most {p['max_steps']} steps. "
        )
        return Table(
            "Capacity: the busiest room each option holds within its bounds",
            ["Metric", *(titles[o] for o in opts)],
            rows,
            rule + "Deliveries/s at the capacity: the deliveries counted by the account in the highest passing step over its sending "
            "window; per server core: those deliveries over the CPU seconds the server processes and nginx used in that step "
            "(a core's worth of this traffic). Medians over repeats. One generator process receives every delivery; its CPU per "
            "delivery in the busiest step of the search says how many deliveries one generator core can take (a pessimistic figure "
            "when that step was light: the generator's cost per delivery falls as its batches grow). A capacity found where the "
            "load engine flagged the generator client-bound (90 % of its core, or behind its schedule), or where no step failed, "
            "is a lower bound: *at least*. Everything shares this machine's cores (nothing pinned).",
        )

    # -- cells ----------------------------------------------------------------------------------
    @staticmethod
    def _per_process(sr: ScenarioResult) -> str | None:
        ms = sr.find("process_memory_per_connection_bytes")
        if not ms:
            return None
        return ", ".join(f"#{m.tags['process']}: {_kib(m.median)}" for m in sorted(ms, key=lambda m: m.tags["process"]))

    @staticmethod
    def _canary_caption(run: RunResult, scenario: str, titles: dict[str, str]) -> str:
        """What became of the canary's probes in the first repeat, per option, and why, from the stored run."""

        def first(sr: ScenarioResult, name: str) -> float | None:
            try:
                return float(sr.measurement(name).repeats[0][0])
            except (KeyError, IndexError):
                return None

        parts = []
        for o in run.options:
            sr = run.ok(scenario, o)
            if sr is None or (sent := first(sr, "canary_sent")) is None:
                continue
            at_stop, in_drain, never = (first(sr, n) for n in ("canary_unanswered_at_stop", "canary_answered_in_drain", "canary_lost"))
            try:
                peak = max(sr.measurement("timeline_canary_latency_ms").repeats[0], default=None)
            except (KeyError, IndexError):
                peak = None
            if at_stop is None:  # a run before the drain was measured: unanswered 0.3 s after the stop, queued or dropped
                if not never:
                    continue
                text = f"{fmt_num(never)} of {fmt_num(sent)} probes unanswered 0.3 s after the run stopped (no drain measured: queued and dropped not separated)"
            elif not at_stop:
                continue
            else:
                drain = first(sr, "drain_s") or 0.0
                text = (
                    f"{fmt_num(at_stop)} of {fmt_num(sent)} probes unanswered when the run stopped; {fmt_num(in_drain or 0)} of them "
                    f"answered within a {drain:g} s drain (they were queued), {fmt_num(never or 0)} never"
                )
            why = []
            if peak is not None:
                why.append(f"the answered probes' latency reached {fmt_num(peak, 'ms')}")
                if period := sr.params.get("canary_ms"):
                    why.append(f"at one probe per {fmt_num(period, 'ms')} that is ~{peak / period:.0f} probes in flight")
            busiest = first(sr, "busiest_server_process_cores")
            if busiest is not None and busiest >= 0.85:
                why.append(f"the busiest server process ran at {busiest:.2f} of its core")
            if sr.facts and sr.facts[0].get("client_bound"):
                why.append("the generator was client-bound")
            parts.append(f"{titles[o]}: {text}" + (f" ({'; '.join(why)})" if why else ""))
        if not parts:
            return "Every probe was answered."
        return (
            "A rising line is a backlog: each probe waited behind the messages queued before it, so the probes sent in about the last "
            "latency-worth of the run had not come back when it stopped. " + "; ".join(parts) + "."
        )

    @staticmethod
    def _pg_ok(run: RunResult, scenario: str, option: str) -> bool:
        sr = run.ok(scenario, option)
        return sr is not None and pg_per_row(sr)[1]

    @staticmethod
    def _observer_cell(sr: ScenarioResult) -> str:
        due, at_stop, after = (sr.median(n) for n in ("observer_expected", "observer_received_at_stop", "observer_received_after_drain"))
        if due is None or at_stop is None or after is None:
            return "not measured" + (f" ({e})" if (e := sr.fact.get("observer_error")) else "")
        used = sr.median("observer_drain_used_s")
        return f"{fmt_num(at_stop)} / {fmt_num(after)} / {fmt_num(due)}" + ("" if used is None else f" (drained {used:.1f} s)")

    @staticmethod
    def _lost_cell(sr: ScenarioResult) -> str:
        delivered, expected, _ = deliveries(sr)
        lost = max(0.0, expected - delivered)
        split = account_lost(sr)
        share = f" ({lost / expected:.2%} of expected)" if expected and lost else ""
        if split is None:
            return f"{fmt_num(lost)}{share}; not split: this run predates the account"
        return f"{fmt_num(split[0])} / {fmt_num(split[1])}{share}"

    @staticmethod
    def _anomaly_cell(sr: ScenarioResult) -> str:
        values = [sr.median(n) for n in ("duplicated", "unexpected", "reordered")]
        if any(v is None for v in values):
            return "not counted: this run predates the account"
        return " / ".join(fmt_num(v) for v in values)

    @staticmethod
    def _never_cell(sr: ScenarioResult) -> str:
        due, never = sr.median("observer_expected"), sr.median("observer_undelivered_after_drain")
        if due is None or never is None:
            return "not measured" + (f" ({e})" if (e := sr.fact.get("observer_error")) else "")
        return f"{fmt_num(never)} ({never / due:.1%} of its broadcasts)" if due else fmt_num(never)

    @staticmethod
    def _marginal_cell(sr: ScenarioResult) -> str:
        v = marginal_cpu_per_message(sr)
        if v is None:
            total = ScalabilitySpike._per_msg(sr, "server_cpu_seconds", 1e6, "µs")
            return "not measured (no baseline in this run" + (f"; all server CPU / messages in: {total})" if total else ")")
        return f"{v * 1e6:.0f} µs" if v > 0 else "none above the baseline's noise"

    @staticmethod
    def _pg_cpu_cell(sr: ScenarioResult) -> str | None:
        sampled, (total, cumulative) = sr.median("postgres_cpu_seconds"), pg_cpu(sr)
        if sampled is None:
            return None
        if not cumulative:
            return f"{sampled:.2f} / not read in this run"
        return f"{sampled:.2f} / {total:.2f}"

    @staticmethod
    def _pg_row_cell(sr: ScenarioResult) -> str | None:
        per_row, ok = pg_per_row(sr)
        if per_row is None:
            return None
        secs, cumulative = pg_cpu(sr)
        where = (
            "all backends to the servers' stop" if cumulative else "sampled over the load only: this run predates the cumulative reading"
        )
        if not ok:
            return f"below measurement resolution ({secs:.2f} CPU-s, {where})"
        return f"{per_row * 1e6:.0f} µs ({secs:.2f} CPU-s / {fmt_num(sr.median('pg_rows'))} rows, {where})"

    @staticmethod
    def _ratio(sr: ScenarioResult, name: str) -> str:
        n, m = sr.median(name), sr.median("messages_in")
        return "n/a" if not m or n is None else f"{n / m:.2f} per message"

    @staticmethod
    def _per_msg(sr: ScenarioResult, name: str, scale: float, unit: str) -> str | None:
        n, m = sr.median(name), sr.median("messages_in")
        return None if not m or n is None else f"{n / m * scale:.0f} {unit}"

    @staticmethod
    def _quantile(sr: ScenarioResult, name: str, q: float) -> float | None:
        try:
            xs = sorted(sr.measurement(name).samples)
        except KeyError:
            return None
        return xs[max(0, min(len(xs) - 1, math.ceil(q * len(xs)) - 1))] if xs else None

    @staticmethod
    def _failed_cell(sr: ScenarioResult) -> str:
        n = sum(sr.measurement("connect_failed").samples)
        reasons: dict[str, int] = {}
        for f in sr.facts:
            for k, v in f.get("failed_connects", {}).items():
                reasons[k] = reasons.get(k, 0) + v
        return fmt_num(n) + (f" ({'; '.join(f'{k}: {v}' for k, v in reasons.items())})" if reasons else "")

    def _findings(self, run: RunResult) -> list[Finding]:
        out = []
        cores = int(run.machine.get("cpu_count_logical") or 1)
        for o in run.options:
            for s in LOAD_SCENARIOS:
                sr = run.ok(s, o)
                if sr is None:
                    continue
                reached, text = saturation(sr, cores)
                if not reached:
                    out.append(Finding(o, False, f"{_TITLES[s].lower()}: {text}."))
            sr = run.ok("capacity", o)
            if sr is not None and (dps := sr.median("capacity_deliveries_per_s")) is not None:
                per_core = sr.median("capacity_deliveries_per_core")
                least = "at least " if any(r["at_least"] for r in capacity_repeats(sr)) else ""
                out.append(
                    Finding(
                        o,
                        dps >= BUSY_ROOM_MIN,
                        f"busy-room capacity within p99 {fmt_num(sr.params['p99_ms'], 'ms')}: {capacity_text(sr)}, {least}{fmt_num(dps)} "
                        f"deliveries/s" + ("" if per_core is None else f", {least}{fmt_num(per_core)} per server core") + ".",
                    )
                )
        return out


spike = ScalabilitySpike()
