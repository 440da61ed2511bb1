"""Spike 1's decision, declared as data for ``harness.decide``: what the options are judged on and must pass.

Not part of the source hash (like ``harness/decide``): changing a utility or a gate re-scores the stored
runs (``spike report``) without making them stale. Everything here reads only a stored run.
"""

from __future__ import annotations

import dataclasses

from harness.decide import Criterion, Derived, Gate, Largest, Metric, NotMeasured, Part, Utility, cost
from harness.decide.model import memory_per_connection_part
from harness.results import RunResult
from harness.stats import fmt_num


def _ms(x: float | None) -> str:
    return "n/a" if x is None else fmt_num(x, "ms")


def _kib(x: float | None) -> str:
    return "n/a" if x is None else f"{x / 1024:.1f} KiB"


#: A reconnection that never happened counts as this many milliseconds (past every utility's "unacceptable").
NEVER_MS = 60_000.0


def _lost_counts(run: RunResult, option: str, key: str) -> float:
    """A per-repeat count the reconnect step stored for each fault (``lost_while_disconnected``, ``lost_in_flight``), summed."""
    sr = run.ok("reconnect", option)
    if sr is None:
        raise NotMeasured("the reconnect step did not run")
    repeats = sr.facts if isinstance(sr.facts, list) else [sr.facts]
    counts = [item[key] for rep in repeats if isinstance(rep, dict) for item in rep.values() if isinstance(item, dict) and key in item]
    if not counts:
        raise NotMeasured(f"the reconnect step stored no {key.replace('_', ' ')}")
    return float(sum(counts))


def _lost_across_reconnects(run: RunResult, option: str) -> float:
    """Messages the app handed over while the client knew it was disconnected, never delivered: the client library's to keep.

    A message sent in the few milliseconds between the server's death and the client seeing the close is lost by
    every option here alike (none has application-level acknowledgements and an outbox: Spike 7's question), and
    whether one falls in that window in a given run is chance; it is reported beside the gate, not gated.
    """
    return _lost_counts(run, option, "lost_while_disconnected")


def lost_in_flight(run: RunResult, option: str) -> float:
    """Messages sent into a connection that had died before the client knew, never delivered (every restart and cut)."""
    return _lost_counts(run, option, "lost_in_flight")


def _recovery(mode: str):
    def value(run: RunResult, option: str) -> float:
        sr = run.ok("reconnect", option)
        if sr is None:
            raise NotMeasured("the reconnect step did not run")
        ok = sr.measurement("recovered", mode=mode).samples
        if not ok or not all(ok):
            return NEVER_MS
        return sr.measurement("recovery_ms", mode=mode).median

    return value


def _features(run: RunResult, option: str) -> float:
    present, probed = run.median("features", option, "features_present"), run.median("features", option, "features_probed")
    if present is None or not probed:
        raise NotMeasured("the features step did not run")
    return present / probed


def _recovery_text(v: float) -> str:
    return "never, in some run" if v >= NEVER_MS else _ms(v)


_FRAME = Utility(16, 100, "16 ms is one 60 fps frame; past 100 ms a dragged token visibly lags the pointer", log=True)
_BACK = Utility(1000, 10_000, "a player whose connection blips should be back before they notice; 10 s feels like a crash", log=True)

GATES = (
    Gate(
        "no message lost across a reconnect",
        "data loss",
        Derived(
            _lost_across_reconnects,
            "messages the app sent through the browser client while it knew it was disconnected, never echoed, over every "
            "server restart and connection cut (messages in flight when the connection died are counted apart: no option "
            "here can keep those without application acknowledgements)",
        ),
        "messages",
        "a chat line or a move sent while the connection blips must arrive once it is back",
        at_most=0,
    ),
)


def _marginal_bundle(run: RunResult, option: str) -> float:
    sr = run.ok("bundle", option)
    if sr is None:
        raise NotMeasured("bundle did not run")
    v = sr.median("marginal_gzip_bytes")
    if v is None:
        raise NotMeasured("this run predates the framework-baseline measurement (no `marginal_gzip_bytes`)")
    return v


#: Memory readings whose repeats spread by more than this share of their median tie rather than rank (issue 18: V8 hands
#: memory back when it decides, so a Node server's RSS per connection can differ by a quarter from one run to the next).
MEMORY_MAX_SPREAD = 0.10


def memory_counts(run: RunResult, option: str) -> list[str]:
    """The idle connection counts the memory step measured for ``option``, smallest first; ``[]`` for a run from before the
    counts were tagged (one untagged reading)."""
    sr = run.ok("memory", option)
    found = {m.tags["connections"] for m in (sr.find("memory_per_connection_bytes") if sr else []) if "connections" in m.tags}
    return sorted(found, key=float)


def memory_per_connection(run: RunResult, option: str) -> float:
    """Memory per idle connection at the most connections measured (RSS with N minus RSS with none, over N)."""
    sr = run.ok("memory", option)
    if sr is None:
        raise NotMeasured("the memory step did not run")
    counts = memory_counts(run, option)
    v = sr.median("memory_per_connection_bytes", **({"connections": counts[-1]} if counts else {}))
    if v is None:
        raise NotMeasured("the memory step stored no memory per connection")
    return v


def _usage(run: RunResult, option: str) -> cost.Usage:
    """What the open-model echo at the most connections measured, per player, with the idle memory per connection."""
    sr = run.ok("echo", option)
    if sr is None:
        raise NotMeasured("echo did not run")
    n = max((m.tags["connections"] for m in sr.find("open_server_cpu") if "connections" in m.tags), key=float, default=None)
    if n is None:
        raise NotMeasured("echo stored no server CPU")
    cpu = cost.require(sr.median("open_server_cpu", connections=n), "server CPU")
    got, rate = sr.median("open_received", connections=n), sr.median("open_received_rate", connections=n)
    bytes_in = sr.median("open_bytes_in", connections=n)
    egress = bytes_in / got * rate if got and rate and bytes_in else 0.0
    mem = memory_per_connection(run, option)
    users = float(n)
    return cost.Usage(
        users=users,
        cores=cpu,
        memory_bytes=max(0.0, mem) * users,
        egress_bytes_per_s=egress,
        basis=(
            f"echo at {n} connections ({fmt_num((rate or 0) / users)} echoes/s each): {cpu:.3f} server cores, {fmt_num(egress)} B/s to "
            f"players; {fmt_num(mem / 1024)} KiB per idle connection (memory scenario); priced as if scaled out behind a balancer "
            "(Spike 6 measures what that adds)"
        ),
    )


CRITERIA = (
    Criterion(
        "Performance",
        (
            Part(
                "closed-loop echo throughput at the most connections",
                Metric("echo", "closed_received_rate", {"connections": Largest()}),
                "echoes/s",
                Utility(50_000, 2_000, "20 moves/s from each of 2,500 players is 50,000 echoes/s; 2,000/s is 100 players", log=True),
                min_diff=5_000,
            ),
            Part(
                "open-model echo p99 at the most connections",
                Metric("echo", "open_latency_p99_ms", {"connections": Largest()}),
                "ms",
                _FRAME,
                min_diff=2,
            ),
        ),
        "what one server process relays, and how its tail latency holds at a fixed rate",
    ),
    Criterion(
        "Maintenance",
        (
            Part(
                "features present",
                Derived(
                    _features,
                    "features present / probed (`features`: rooms, acknowledgements, binary, fallback, reconnect, backpressure)",
                    exact=True,
                ),
                "of the features",
                Utility(1.0, 0.0, "each missing feature is code the team writes and maintains itself"),
                min_diff=0.17,
                weight=3,
                fmt=lambda v: f"{v:.0%}",
            ),
            Part(
                "back after a server restart",
                Derived(
                    _recovery("restart"),
                    "median ms from the server being back to the next echo, in Chromium; never recovering counts as 60 s",
                ),
                "ms",
                _BACK,
                min_diff=500,
                fmt=_recovery_text,
            ),
            Part(
                "back after a dropped connection",
                Derived(_recovery("drop"), "median ms from the cut to the next echo, in Chromium; never recovering counts as 60 s"),
                "ms",
                _BACK,
                min_diff=500,
                fmt=_recovery_text,
            ),
        ),
        "what the team builds and debugs itself: missing features, and reconnection",
    ),
    Criterion(
        "Scalability",
        (
            dataclasses.replace(
                memory_per_connection_part(
                    Derived(
                        memory_per_connection,
                        "`memory_per_connection_bytes` of scenario `memory` at the most idle connections measured, the median "
                        "of each repeat's servers",
                    ),
                    "memory per idle connection",
                ),
                max_spread=MEMORY_MAX_SPREAD,
            ),
            Part("broadcast p99 in one room", Metric("broadcast", "latency_p99_ms"), "ms", _FRAME, min_diff=2),
        ),
        "what each extra player costs in memory, and how a room's fan-out holds its tail",
    ),
    Criterion(
        "Cost",
        (
            cost.money_part(_usage, "the echo run's server CPU and egress at its most connections, with the idle memory per connection"),
            Part(
                "gzipped JavaScript the option adds to a page",
                Derived(
                    _marginal_bundle,
                    "gzipped bytes of the option's client bundle minus an empty SvelteKit page's (`marginal_gzip_bytes` of `bundle`): "
                    "the app ships SvelteKit whichever option wins, so only what the option adds is charged",
                    exact=True,
                ),
                "B",
                Utility(10_000, 200_000, "bytes every player downloads: 10 KB is 50 ms on a 1.6 Mbit/s mobile link, 200 KB is a second"),
                min_diff=5_000,
            ),
        ),
        "money per month to serve the players, and what each of them downloads",
    ),
)

#: What each option needs to run, for the cross-spike summary in results/README.md.
NEEDS = {"native": ("python",), "socketio": ("python",), "socketio-node": ("node",), "sveltekit": ("node",)}
