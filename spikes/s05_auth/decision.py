"""Spike 5's decision, declared as data for ``harness.decide``: what the options are judged on and must pass.

Not part of the source hash (like ``harness/decide``): changing a utility or a gate re-scores the stored
runs (``spike report``) without making them stale. Everything here reads only a stored run.
"""

from __future__ import annotations

from harness.decide import Criterion, Derived, Gate, Metric, NotMeasured, Part, Utility, cost
from harness.decide.model import memory_per_connection_part
from harness.results import RunResult
from harness.stats import fmt_num


def _spike():  # the plugin module imports this one: look it up when a value is read
    from spikes.s05_auth import AuthSpike

    return AuthSpike


def _security(run: RunResult, option: str) -> tuple[int, int, list[str]]:
    sec = _spike()().security(run, option)
    if sec is None:
        raise NotMeasured("the attack battery did not run")
    return sec


#: A live connection still open when the revocation scenario's window ends: shown as such, scored as unacceptable.
STILL_OPEN_MS = 1e9


def _revocation_ms(run: RunResult, option: str) -> float:
    """Milliseconds from logout on instance A to the close of the live connection on instance B (``STILL_OPEN_MS`` if it stayed open)."""
    sr = run.ok("revocation", option)
    if sr is None:
        raise NotMeasured("the revocation step did not run")
    closed = sr.measurement("closed_after_logout").samples
    ms = sr.median("revocation_ms")
    if closed and all(closed) and ms is not None:
        return ms
    return STILL_OPEN_MS


def _revocation_text(v: float) -> str:
    if v >= STILL_OPEN_MS:
        return "still open when the observation window ended"
    return f"{fmt_num(v / 1000)} s" if v >= 1000 else f"{fmt_num(v)} ms"


GATES = (
    Gate(
        "no attack through",
        "security",
        Derived(
            lambda run, o: float(len(_security(run, o)[2])),
            "attacks of the battery that got through the option's recommended setup, plus the revocation scenario's replay of a "
            "logged-out credential on the other instance",
            exact=True,
        ),
        "attacks",
        "an attack class that gets through with the recommended settings is a hole the app ships",
        at_most=0,
        fmt=lambda v: f"{fmt_num(v)} attack{'' if v == 1 else 's'} through",
    ),
)

#: How often a player logs in or reconnects, for the cost model: an assumption (the spike measures per handshake).
HANDSHAKES_PER_PLAYER_HOUR = 1.0


def _usage(run: RunResult, option: str) -> cost.Usage:
    """Memory per authenticated connection, handshake CPU at one handshake per player an hour, and the shared store if any."""
    sr = run.ok("cost", option)
    if sr is None:
        raise NotMeasured("cost did not run")
    mem = cost.require(sr.median("memory_per_connection_bytes"), "memory per connection")
    cpu = cost.require(sr.median("closed_server_cpu"), "server CPU during handshakes")
    rate = cost.require(sr.median("connections_per_s"), "handshakes per second")
    store = sr.median("store_commands_per_connection") or 0.0
    per_handshake = cpu / rate if rate else 0.0
    cores = per_handshake * HANDSHAKES_PER_PLAYER_HOUR / 3600
    return cost.Usage(
        users=1,
        cores=cores,
        memory_bytes=max(0.0, mem),
        redis=store > 0,
        from_users=False,
        basis=(
            f"per player: {fmt_num(mem / 1024)} KiB of server memory per authenticated connection, {fmt_num(per_handshake * 1e3)} ms of "
            f"server CPU per handshake at {fmt_num(HANDSHAKES_PER_PLAYER_HOUR)} handshake a player an hour (an assumption)"
            + (f"; {fmt_num(store)} Redis commands per handshake: the option needs a Redis" if store > 0 else "; no shared store")
        ),
    )


CRITERIA = (
    Criterion(
        "Security",
        (
            Part(
                "attacks blocked",
                Derived(
                    lambda run, o: (lambda sec: sec[0] / sec[1] if sec[1] else 1.0)(_security(run, o)),
                    "attacks blocked / attacks that applied to the option, with its recommended settings (battery + cross-instance replay)",
                    exact=True,
                ),
                "of the attacks",
                Utility(1.0, 0.5, "every attack class blocked is the bar; half of them through is no better than no hardening"),
                min_diff=0.1,
                fmt=lambda v: f"{v:.0%}",
            ),
        ),
        "what an attacker gets through",
    ),
    Criterion(
        "Performance",
        (
            Part(
                "handshake median",
                Metric("cost", "handshake_ms"),
                "ms",
                Utility(5, 100, "authentication runs on every join and every reconnect: 100 ms of it is felt", log=True),
                min_diff=0.5,
            ),
            Part(
                "authenticated connections per second",
                Metric("cost", "connections_per_s"),
                "connections/s",
                Utility(
                    1000,
                    50,
                    "a server restart reconnects every player at once: 10,000 players are back in 10 s at 1,000/s, 200 s at 50/s",
                    log=True,
                ),
                min_diff=100,
            ),
        ),
        "what authenticating costs each connection, and a reconnect storm",
    ),
    Criterion(
        "Maintenance",
        (
            Part(
                "logout reaches a live connection on another instance",
                Derived(
                    _revocation_ms,
                    "ms from logout on instance A to the close of the user's live connection on instance B; the observation window if it stayed open",
                ),
                "ms",
                Utility(
                    1000,
                    8000,
                    "a banned or logged-out player must lose the table within a second; 8 s is the scenario's observation window, past it the connection may live as long as its token",
                ),
                min_diff=250,
                fmt=lambda v: f"{fmt_num(v / 1000)} s" if v >= 1000 else f"{fmt_num(v)} ms",
            ),
        ),
        "operating it: ending a user's session everywhere",
    ),
    Criterion(
        "Scalability",
        (memory_per_connection_part(Metric("cost", "memory_per_connection_bytes"), "server memory per authenticated connection"),),
    ),
    Criterion(
        "Cost",
        (
            cost.money_part(
                _usage, "server memory per authenticated connection, handshake CPU, and a Redis machine where the option needs one"
            ),
            Part(
                "shared-store commands per handshake",
                Metric("cost", "store_commands_per_connection"),
                "commands",
                Utility(
                    0,
                    10,
                    "each is a Redis round trip that must be run and paid for; at 10 per handshake the store is the bottleneck of a reconnect storm",
                ),
                min_diff=1,
                fmt=lambda v: f"{fmt_num(v)} command{'' if v == 1 else 's'}",
            ),
        ),
    ),
)

#: What each option needs to run, for the cross-spike summary in results/README.md.
NEEDS = {"jwt-param": (), "cookie": (), "refresh": (), "sessions": ("redis",)}
