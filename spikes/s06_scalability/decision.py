"""Spike 6's decision, declared as data for ``harness.decide``: what the options are judged on and must pass.

Not part of the source hash (like ``harness/decide``): changing a utility or a gate re-scores the stored
runs (``spike report``) without making them stale. Everything here reads only a stored run.
"""

from __future__ import annotations

from harness.decide import Criterion, Derived, Gate, Metric, NotMeasured, Part, Utility, cost
from harness.decide.model import memory_per_connection_part
from harness.results import RunResult
from harness.stats import fmt_num
from spikes.s06_scalability import extrapolate as _x


def _spike():  # the plugin module imports this one: look it up when a value is read
    from spikes.s06_scalability import ScalabilitySpike

    return ScalabilitySpike


#: The connection count the seed asks the app to reach, and the gate's target.
TARGET = 100_000
#: The least a deployment must deliver in a busy room within the capacity search's bounds: 50 players each sending one chat
#: message a second (50 x 50 x 1 deliveries/s).
BUSY_ROOM_MIN = 2_500


def _costs(run: RunResult, scenario: str, option: str) -> _x.Costs:
    c = _spike().costs(run, scenario, option)
    if c is None:
        raise NotMeasured(f"{scenario} did not run or stored no connection count")
    return c


def _usage(run: RunResult, option: str) -> cost.Usage:
    """What the many-idle deployment needed, for the harness's cost model (the seed's many-connections case)."""
    c = _costs(run, "many-idle", option)
    sr = run.ok("many-idle", option)
    assert sr is not None  # _costs raised otherwise
    wall = sr.median("load_wall_s")
    bytes_in = sr.median("bytes_in")
    egress = bytes_in / wall if bytes_in and wall else 0.0
    return cost.Usage(
        users=c.connections,
        cores=c.server_cores,
        memory_bytes=max(0.0, c.memory_per_connection) * c.connections,
        egress_bytes_per_s=egress,
        redis=c.multi_process,
        redis_cores=c.redis_ops_per_s * c.redis_cpu_per_op,
        postgres=True,
        pg_cores=c.pg_rows_per_s * c.pg_cpu_per_row,
        scales_out=c.multi_process,
        basis=(
            f"many-idle at {fmt_num(c.connections)} connections: {c.server_cores:.3f} server and nginx cores, "
            f"{fmt_num(c.memory_per_connection / 1024)} KiB per connection, {fmt_num(egress)} B/s to players, "
            f"{c.redis_ops_per_s:.1f} Redis commands/s, {c.pg_rows_per_s:.1f} PostgreSQL rows/s"
            + (" (one process: cannot add machines)" if not c.multi_process else "")
        ),
    )


def _components(run: RunResult, option: str) -> float:
    sr = run.ok("many-idle", option) or run.ok("burst", option)
    if sr is None or not sr.fact.get("components"):
        raise NotMeasured("no load scenario recorded its deployment")
    return float(sum(sr.fact["components"].values()))


def _conns(v: float) -> str:
    return "no limit measured" if v >= 1e12 else f"{fmt_num(v)} connections"


def _held(run: RunResult, option: str) -> float:
    """Connections the option held at once at the scale scenario's largest target (its own shape)."""
    from spikes.s06_scalability import scale_points

    points = scale_points(run, option)
    if not points:
        raise NotMeasured("the scale scenario did not run for this option")
    high = max(points, key=lambda pt: pt["target"])
    if high["target"] < TARGET:
        raise NotMeasured(f"this run's largest scale target was {fmt_num(high['target'])} connections, not {fmt_num(TARGET)} (a quick run)")
    return float(high["held"])


GATES = (
    Gate(
        f"holds {fmt_num(TARGET)} real connections",
        "scale",
        Derived(
            _held,
            f"connections held open at once when {fmt_num(TARGET)} were opened (the scale scenario: one process for a one-process option, "
            "as many as the target needs for a multi-process one, several generator processes); what stopped a shape short is in "
            "the scale table",
            exact=True,
        ),
        "connections",
        f"the seed's target is {fmt_num(TARGET)} connections; an option whose shape cannot hold them here must be replaced later",
        at_least=TARGET,
        fmt=_conns,
    ),
    Gate(
        "holds a busy room within its bounds",
        "scale",
        Metric("capacity", "capacity_deliveries_per_s"),
        "deliveries/s",
        f"the capacity search's highest passing step (p99 within its bound, 99.9 % delivered): a room of 50 players each sending one "
        f"chat message a second is {fmt_num(BUSY_ROOM_MIN)} deliveries/s; a deployment that cannot hold that cannot host a busy table "
        "(the seed's few-busy load, 100 messages a second each, is far beyond it and is scored under Performance)",
        at_least=BUSY_ROOM_MIN,
        fmt=lambda v: f"{fmt_num(v)} deliveries/s",
    ),
)

_LATENCY = Utility(50, 1000, "50 ms feels immediate at a table; past 1 s players act on stale state", log=True)

CRITERIA = (
    Criterion(
        "Performance",
        (
            Part("busy-room p99", Metric("few-busy", "latency_p99_ms"), "ms", _LATENCY, min_diff=10),
            Part("burst p99", Metric("burst", "latency_p99_ms"), "ms", _LATENCY, min_diff=10),
        ),
        "message latency under the seed's busy room and under a burst of arrivals",
    ),
    Criterion(
        "Scalability",
        (
            memory_per_connection_part(
                Metric("scale", "scale_high_memory_per_connection_bytes"), "server memory per connection at the most held at once"
            ),
            Part(
                "burst connect p99",
                Metric("burst", "connect_ms", stat="p99"),
                "ms",
                Utility(50, 1000, "players arriving together (a session start) should be in within a moment; a second is felt", log=True),
                min_diff=10,
            ),
            Part(
                "busy-room deliveries/s per server core at the capacity",
                Metric("capacity", "capacity_deliveries_per_core"),
                "deliveries/s/core",
                Utility(
                    100_000,
                    5_000,
                    "100,000: one core serves about 80 busy 8-player tables at 20 moves a second each; 5,000: four such tables per "
                    "core, and 100k players need thousands of cores",
                    log=True,
                ),
                min_diff=5_000,
                fmt=lambda v: f"{fmt_num(v)} deliveries/s per core",
            ),
        ),
        "what each more connection costs, how arrivals are absorbed, how much busy-room traffic a core carries within the latency "
        "bound (the capacity search; a capacity at the generator's limit is a lower bound, marked in its table)",
    ),
    Criterion(
        "Cost",
        (cost.money_part(_usage, "the many-idle deployment's measured cores, memory, egress, Redis and PostgreSQL load"),),
        "money per month for the seed's many mostly idle connections",
    ),
    Criterion(
        "Maintenance",
        (
            Part(
                "processes and services to run",
                Derived(_components, "server processes and services (PostgreSQL, Redis, nginx) in the deployment", exact=True),
                "components",
                Utility(2, 10, "each is something to deploy, monitor and upgrade; 2 is a server and its database"),
                min_diff=1,
                fmt=lambda v: f"{fmt_num(v)}",
            ),
        ),
    ),
)

#: What each option needs to run, for the cross-spike summary in results/README.md.
NEEDS = {
    "native": ("python", "postgres"),
    "native-redis": ("python", "postgres", "redis", "nginx"),
    "socketio": ("python", "postgres"),
    "socketio-redis": ("python", "postgres", "redis", "nginx"),
    "node": ("node", "postgres"),
    "node-redis": ("node", "postgres", "redis", "nginx"),
}
