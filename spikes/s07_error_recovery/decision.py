"""Spike 7's decision, declared as data for ``harness.decide``: what the strategies are judged on and must pass.

Not part of the source hash (like ``harness/decide``): changing a utility or a gate re-scores the stored
runs (``spike report``) without making them stale. Everything here reads only a stored run.
"""

from __future__ import annotations

from harness.decide import Criterion, Derived, Gate, NotMeasured, Part, Utility
from harness.results import RunResult
from harness.stats import fmt_num

#: The failure scenarios a strategy is judged in (its declared cells): the gate reads every one that ran.
FAULT_SCENARIOS = ("network-reset", "network-blackhole", "server-restart", "redis-failure", "db-failure")


def _worst(run: RunResult, option: str, name: str) -> float:
    """The largest value of ``name`` in any repeat, fault and cell of the failure scenarios that ran for ``option``."""
    values = []
    for scen in FAULT_SCENARIOS:
        sr = run.ok(scen, option)
        if sr is None:
            continue
        for m in sr.find(name):
            values.extend(m.samples)
    if not values:
        raise NotMeasured("no failure scenario ran")
    return max(values)


def _median_of(run: RunResult, option: str, name: str) -> float:
    values = []
    for scen in FAULT_SCENARIOS:
        sr = run.ok(scen, option)
        if sr is not None:
            for m in sr.find(name):
                values.extend(m.samples)
    if not values:
        raise NotMeasured(f"no failure scenario measured {name}")
    values.sort()
    return values[len(values) // 2]


def _plural(word: str):
    return lambda v: f"{fmt_num(v)} {word if v == 1 else (word[:-1] + 'ies' if word.endswith('y') else word + 's')}"


GATES = (
    Gate(
        "no message lost",
        "data loss",
        Derived(
            lambda run, o: _worst(run, o, "lost"),
            "messages handed to the client library that some member never received (lost after or without acknowledgement), "
            "in the worst run of any failure scenario the option is declared for",
            exact=True,
        ),
        "messages",
        "a move, chat line or note edit the app handed over and that a player never sees is a silently diverged table",
        at_most=0,
        fmt=_plural("message"),
    ),
    Gate(
        "replicas equal",
        "data loss",
        Derived(
            lambda run, o: _worst(run, o, "replicas_differ"),
            "runs whose watcher replica (token map and note text, hashed) differed from the server's at the end",
            exact=True,
        ),
        "runs",
        "two players looking at different tables after a fault is the failure the strategy exists to prevent",
        at_most=0,
        fmt=_plural("run"),
    ),
)


def _stream_missing(run: RunResult, option: str) -> float:
    sr = run.ok("redis-failure", option)
    if sr is None:
        raise NotMeasured("the Redis failure did not run (the option keeps no log in Redis)")
    values = [x for m in sr.find("stream_missing") for x in m.samples]
    if not values:
        raise NotMeasured("no stream length stored")
    return max(values)


GATES = GATES + (
    Gate(
        "durable log complete after a Redis failure",
        "data loss",
        Derived(
            _stream_missing,
            "entries of the room's log that neither the Redis stream nor the last PostgreSQL checkpoint held at the end of the Redis "
            "failure run (Redis restarts empty): messages a restarted server could no longer rebuild",
            exact=True,
        ),
        "entries",
        "a server that keeps serving while its log silently lost entries turns the next restart into lost moves, chat and edits",
        at_most=0,
        fmt=_plural("entry"),
    ),
)


CRITERIA = (
    Criterion(
        "Performance",
        (
            Part(
                "recovery time (median)",
                Derived(
                    lambda run, o: _median_of(run, o, "recover_ms"),
                    "ms from the fault's end until the slowest connection received its first message again, median over cells and repeats",
                ),
                "ms",
                Utility(
                    1000, 10_000, "back within a second feels like a hiccup; ten seconds of a frozen table makes players reload", log=True
                ),
                min_diff=200,
            ),
        ),
        "how fast the table is live again after a fault",
    ),
    Criterion(
        "Maintenance",
        (
            Part(
                "duplicates delivered",
                Derived(lambda run, o: _worst(run, o, "duplicated"), "duplicated deliveries in the worst run", exact=True),
                "messages",
                Utility(0, 50, "every duplicate is a move or chat line the client code must drop itself"),
                min_diff=1,
            ),
        ),
        "what the app's own code must still handle",
    ),
)

#: What each option needs to run, for the cross-spike summary in results/README.md.
NEEDS = {
    "reconnect": (),
    "queue": (),
    "reconstruct": ("redis",),
    "queue-reconstruct": ("redis",),
    "checkpoint": ("redis", "postgres"),
    "fallback": ("redis",),
}


def _crash_lost(run: RunResult, option: str) -> float:
    """Edits lost through a browser crash with the option's best outbox: the worst run of each outbox, the best outbox."""
    sr = run.ok("client-crash", option)
    if sr is None:
        raise NotMeasured("the client crash did not run for this option")
    worst: dict[str, float] = {}
    for m in sr.find("lost"):
        variant = m.tags.get("outbox", "")
        worst[variant] = max(worst.get(variant, 0.0), max(m.samples, default=0.0))
    if not worst:
        raise NotMeasured("no crash run stored")
    return min(worst.values())


GATES = GATES + (
    Gate(
        "no edit lost in a client crash",
        "data loss",
        Derived(
            _crash_lost,
            "edits the page handed over before Chromium was killed that the server never applied after the relaunch, in the worst run "
            "(online or behind a cut) of the option's best outbox (IndexedDB or memory; none for reconnect only)",
            exact=True,
        ),
        "edits",
        "a player's moves made just before the browser died are gone when it comes back",
        at_most=0,
        fmt=_plural("edit"),
    ),
)
