"""Projection from measured per-connection costs to 10k, 100k and 1M connections (pure arithmetic).

The model is linear in connections, with each scenario's traffic per
connection held fixed (same messages per connection per second, same room
size, so the same fan-out per message):

    server cores(N)   = N x (measured server-process + nginx cores / measured connections)
    server memory(N)  = N x measured memory per connection
    app machines(N)   = max(ceil(server cores(N) / (cores x headroom)), ceil(server memory(N) / (memory x headroom)), 1)
    Redis ops/s(N)    = N x measured Redis commands/s per connection
    Redis cores(N)    = Redis ops/s(N) x measured Redis CPU seconds per command
    PostgreSQL rows/s(N), transactions/s(N) = N x the measured per-connection rate
    PostgreSQL cores(N) = rows/s(N) x measured PostgreSQL CPU seconds per row

Redis and PostgreSQL are projected from their cost per operation, not per
connection: at a light measured load their idle housekeeping would otherwise
be multiplied by the connection count.

Memory per connection comes from the most connections measured at once (the scale scenario's 10k and 100k points
when they ran), and a shape measured to stop short of a target (one process at its descriptor limit) is limited
there: the projection never goes past a measured failure.

Assumptions, stated in the document: costs stay linear (no contention
effect beyond what was measured, no per-process fixed cost beyond the
idle RSS measured); a machine is the one the run was measured on, used to
``headroom`` of its cores and memory; Redis runs one command thread, so a
single instance serves at most ``headroom`` of one core; a single-process
option cannot use more than ``headroom`` of one core whatever the machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = ["Costs", "Machine", "Projection", "at_target", "project", "TARGETS", "HEADROOM", "FORMULA"]

#: The connection counts the seed asks about.
TARGETS = (10_000, 100_000, 1_000_000)
#: Share of a machine's cores and memory planned for use (the rest absorbs bursts and the OS).
HEADROOM = 0.7

FORMULA = (
    "linear in connections at each scenario's measured traffic per connection: cores(N) = N x measured cores / measured connections "
    "(server processes plus nginx), memory(N) = N x measured RSS delta per connection, app machines = max(ceil(cores(N) / (machine cores x "
    f"{HEADROOM:.0%})), ceil(memory(N) / (machine memory x {HEADROOM:.0%})), 1); Redis commands/s and PostgreSQL rows/s and transactions/s "
    "= N x their measured rate per connection; Redis cores = commands/s(N) x measured Redis CPU seconds per command; PostgreSQL cores = "
    "rows/s(N) x measured PostgreSQL CPU seconds per row (its cumulative CPU, every backend included, from the load's start to the "
    "servers' stop, over the rows written). Memory per connection is the scale scenario's at the most connections held at once "
    "(10k or 100k real connections) when it ran, else the scenario's own; a shape measured to stop short of a target is capped "
    "at what it held. A run that delivered less than its target is first brought to the target: "
    "its server cores x (expected / delivered deliveries) and one PostgreSQL row per message in, at the measured cost per row"
)


@dataclass(frozen=True)
class Costs:
    """What one scenario measured for one option, reduced to per-connection figures' inputs."""

    connections: float
    memory_per_connection: float  # bytes
    server_cores: float  # server processes + front, mean over the load
    redis_ops_per_s: float = 0.0
    redis_cpu_per_op: float = 0.0  # CPU seconds per command
    pg_rows_per_s: float = 0.0
    pg_xact_per_s: float = 0.0
    pg_cpu_per_row: float = 0.0  # CPU seconds per row
    multi_process: bool = True
    shortfall: float = 1.0  # expected / delivered deliveries of the run these came from (1: the target was reached)
    held_limit: float = math.inf  # the most connections the shape was measured to hold when it could not hold more (scale)

    def __post_init__(self) -> None:
        if self.connections <= 0:
            raise ValueError("costs need at least one measured connection")


@dataclass(frozen=True)
class Machine:
    """The reference machine: the one the run was measured on."""

    cores: int
    memory_bytes: int
    headroom: float = HEADROOM

    def __post_init__(self) -> None:
        if self.cores < 1 or self.memory_bytes <= 0 or not 0 < self.headroom <= 1:
            raise ValueError("a machine needs >= 1 core, some memory and a headroom in (0, 1]")


@dataclass(frozen=True)
class Projection:
    """The projected load at ``connections``; ``feasible`` False with ``limit`` naming what does not fit."""

    connections: int
    server_cores: float
    server_memory_bytes: float
    machines: int
    redis_ops_per_s: float
    redis_cores: float
    pg_rows_per_s: float
    pg_xact_per_s: float
    pg_cores: float
    feasible: bool
    limit: str


def at_target(costs: Costs, delivered: float, expected: float, messages_in: float, wall_s: float) -> Costs:
    """``costs`` measured by a run that fell short of its target, brought to the target traffic.

    A saturated run's server cores are a floor (the server did what it could,
    not what was asked) and its database rows were only those written before
    the stop. At the target, each expected delivery is assumed to cost what a
    delivered one cost (cores x expected / delivered), and every message in is
    a row, at the measured CPU per row. A run that reached its target is
    returned unchanged.
    """
    if delivered <= 0 or expected <= delivered:
        return costs
    shortfall = expected / delivered
    rows = max(costs.pg_rows_per_s, messages_in / wall_s if wall_s > 0 else 0.0)
    return replace(costs, server_cores=costs.server_cores * shortfall, pg_rows_per_s=rows, shortfall=shortfall)


def project(costs: Costs, n: int, machine: Machine) -> Projection:
    """Project ``costs`` to ``n`` connections on machines like ``machine``."""
    if n <= 0:
        raise ValueError("n must be positive")
    scale = n / costs.connections
    cores = costs.server_cores * scale
    memory = max(0.0, costs.memory_per_connection) * n
    by_cpu = math.ceil(cores / (machine.cores * machine.headroom)) if cores > 0 else 1
    by_mem = math.ceil(memory / (machine.memory_bytes * machine.headroom)) if memory > 0 else 1
    machines = max(by_cpu, by_mem, 1)
    redis_ops = costs.redis_ops_per_s * scale
    redis_cores = redis_ops * costs.redis_cpu_per_op
    pg_rows = costs.pg_rows_per_s * scale
    pg_cores = pg_rows * costs.pg_cpu_per_row
    limits = []
    if n > costs.held_limit:
        limits.append(f"held at most {costs.held_limit:,.0f} connections when measured")
    if not costs.multi_process and cores > machine.headroom:
        limits.append(f"one process needs {cores:.2f} cores")
    if not costs.multi_process and memory > machine.memory_bytes * machine.headroom:
        limits.append("one process's memory exceeds the machine")
    if costs.multi_process and redis_cores > machine.headroom:
        limits.append(f"one Redis needs {redis_cores:.2f} cores")
    if pg_cores > machine.cores * machine.headroom:
        limits.append(f"PostgreSQL needs {pg_cores:.1f} cores")
    return Projection(
        n, cores, memory, machines, redis_ops, redis_cores, pg_rows, costs.pg_xact_per_s * scale, pg_cores, not limits, "; ".join(limits)
    )


def max_connections(costs: Costs, machine: Machine) -> float:
    """Connections the option can hold before the first hard limit (a single process's core, one Redis, one database machine)."""
    caps = []
    per_conn_cores = costs.server_cores / costs.connections
    if not costs.multi_process:
        if per_conn_cores > 0:
            caps.append(machine.headroom / per_conn_cores)
        if costs.memory_per_connection > 0:
            caps.append(machine.memory_bytes * machine.headroom / costs.memory_per_connection)
    else:
        redis_per_conn = costs.redis_ops_per_s / costs.connections * costs.redis_cpu_per_op
        if redis_per_conn > 0:
            caps.append(machine.headroom / redis_per_conn)
    pg_per_conn = costs.pg_rows_per_s / costs.connections * costs.pg_cpu_per_row
    if pg_per_conn > 0:
        caps.append(machine.cores * machine.headroom / pg_per_conn)
    caps.append(costs.held_limit)
    return min(caps)


__all__.append("max_connections")
