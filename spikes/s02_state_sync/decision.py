"""Spike 2's decision, declared as data for ``harness.decide``: what the options are judged on and must pass.

Not part of the source hash (like ``harness/decide``): changing a utility or a gate re-scores the stored
runs (``spike report``) without making them stale. Everything here reads only a stored run.
"""

from __future__ import annotations

from harness.decide import Criterion, Derived, Gate, Largest, Metric, NotMeasured, Part, Utility, cost
from harness.results import RunResult
from harness.stats import fmt_num


def _spike():  # the plugin module imports this one: look it up when a value is read
    from spikes.s02_state_sync import StateSyncSpike

    return StateSyncSpike


def _fmt_s(x: float | None) -> str:
    if x is None:
        return "not run"
    return f"{fmt_num(x * 1000)} ms" if x < 1 else f"{fmt_num(x)} s"


def _fmt_b(x: float | None) -> str:
    if x is None:
        return "not run"
    if x >= 1_000_000:
        return f"{fmt_num(x / 1_000_000)} MB"
    if x >= 10_000:
        return f"{fmt_num(x / 1000)} kB"
    return f"{fmt_num(x)} B"


def _checks_fraction(run: RunResult, option: str) -> float:
    """Correctness checks passed / made: trace end states, replicas equal, sessions and offline merges converged, peer to peer."""
    passed, total = _spike().checks(run, option)
    if not total:
        raise NotMeasured("no correctness check ran")
    return passed / total


def _cases_kept(run: RunResult, option: str) -> float:
    """Fraction of the intent cases in which no intent was lost and no edits interleaved."""
    sr = run.ok("intent", option)
    if sr is None:
        raise NotMeasured("the intent step did not run")
    cases = [m.tags["case"] for m in sr.find("case_lost")]
    if not cases:
        raise NotMeasured("the intent step stored no case")
    kept = sum(
        1 for c in cases if sr.measurement("case_lost", case=c).median == 0 and sr.measurement("case_interleaved", case=c).median == 0
    )
    return kept / len(cases)


LARGEST = {"clients": Largest()}

GATES = (
    Gate(
        "no intent lost in live sessions",
        "data loss",
        Metric("session", "lost_intents", LARGEST, stat="sum"),
        "intents",
        "a lost intent is a player's move, stroke or note edit that vanishes for everyone; drawings and notes must not lose them",
        at_most=0,
    ),
    Gate(
        "no intent lost in the random concurrent workload",
        "data loss",
        Metric("intent", "workload_lost_fraction", stat="max"),
        "",
        "the same, under a seeded random mix of concurrent edits of every kind",
        at_most=0,
        fmt=lambda v: f"{v:.1%} of intents",
    ),
    Gate(
        "every correctness check passes",
        "data loss",
        Derived(
            _checks_fraction,
            "correctness checks passed / made (trace end states equal endContent, replicas equal, sessions and offline merges "
            "converged, peer-to-peer rounds converged with the option's own sync)",
        ),
        "of checks",
        "replicas that disagree lose edits silently",
        at_least=1.0,
        fmt=lambda v: f"{v:.0%} of checks passed",
    ),
)


def _usage(run: RunResult, option: str) -> cost.Usage:
    """The largest session's server CPU, memory growth and bytes per client, as one table of players."""
    sr = run.ok("session", option)
    if sr is None:
        raise NotMeasured("session did not run")
    n = max((m.tags["clients"] for m in sr.find("server_cpu_percent") if "clients" in m.tags), key=float, default=None)
    if n is None:
        raise NotMeasured("session stored no server CPU")
    users = float(n)
    cpu = cost.require(sr.median("server_cpu_percent", clients=n), "server CPU") / 100
    mem = cost.require(sr.median("server_rss_growth_bytes", clients=n), "server memory growth")
    per_client = cost.require(sr.median("bytes_per_client_per_s", clients=n), "bytes per client")
    return cost.Usage(
        users=users,
        cores=cpu,
        memory_bytes=max(0.0, mem),
        egress_bytes_per_s=per_client * users,
        basis=(
            f"one session of {n} clients editing at the session scenario's rate: {cpu:.3f} server cores, {_fmt_b(mem)} of server memory "
            f"growth, {_fmt_b(per_client)}/s per client, sent and received together (`bytes_per_client_per_s`): priced as "
            "egress, an upper bound, since only what the server sends is billed"
        ),
    )


CRITERIA = (
    Criterion(
        "Performance",
        (
            Part(
                "replaying automerge-paper",
                Metric("trace-replay", "prefix_ops_per_s"),
                "edits/s",
                Utility(
                    10_000, 500, "loading a document replays its history: 50,000 edits take 5 s at 10,000 edits/s, 100 s at 500", log=True
                ),
                min_diff=1000,
            ),
            Part(
                "convergence of the largest session",
                Metric("session", "convergence_s", LARGEST),
                "s",
                Utility(
                    0.1, 2.0, "a move should reach every screen within a tenth of a second; past 2 s players act on stale state", log=True
                ),
                min_diff=0.05,
                fmt=_fmt_s,
            ),
        ),
        "how fast edits apply and reach everyone",
    ),
    Criterion(
        "Maintenance",
        (
            Part(
                "conflict cases kept whole",
                Derived(_cases_kept, "intent cases with no intent lost and no interleaving / cases (`intent`)", exact=True),
                "of the cases",
                Utility(1.0, 0.0, "each case lost is a conflict players will see and the team must work around by hand"),
                min_diff=0.2,
                fmt=lambda v: f"{v:.0%}",
            ),
        ),
        "what a team must work around: the conflict cases the strategy gets wrong",
    ),
    Criterion(
        "Scalability",
        (
            Part(
                "bytes per client per second, largest session",
                Metric("session", "bytes_per_client_per_s", LARGEST),
                "B/s",
                Utility(2_000, 100_000, "downstream per player: 2 kB/s is nothing on mobile, 100 kB/s is 360 MB an hour", log=True),
                min_diff=500,
                fmt=lambda v: f"{_fmt_b(v)}/s",
            ),
            Part(
                "server CPU, largest session",
                Metric("session", "server_cpu_percent", LARGEST),
                "% of a core",
                Utility(10, 100, "one core for one table is where a single server process stops", log=True),
                min_diff=5,
                fmt=lambda v: f"{fmt_num(v)} % of a core",
            ),
        ),
        "what each more player costs the network and the server",
    ),
    Criterion(
        "Cost",
        (
            cost.money_part(_usage, "the largest session's server CPU, memory growth and bytes per client"),
            Part(
                "bytes to merge after the offline period",
                Metric("offline", "merge_bytes", exact=True),
                "B",
                Utility(4_000, 1_000_000, "what a player coming back online downloads before the table is live again", log=True),
                min_diff=1000,
                fmt=_fmt_b,
            ),
        ),
        "money per month to serve the tables, and bandwidth per reconnection",
    ),
)
