"""Spike 8's decision, declared as data for ``harness.decide``: the seed's three points (size limit, persistence, sync) and speed.

Each scenario ran once for the ``indexeddb`` carrier and measured every store, tagged ``store`` and ``engine``; the
values here read the option's own store from there. Not part of the source hash (like ``harness/decide``).
"""

from __future__ import annotations

import statistics

from harness.decide import Criterion, Derived, Gate, NotMeasured, Part, Utility
from harness.results import RunResult, ScenarioResult
from harness.stats import fmt_num

CARRIER = "indexeddb"
MiB = 1024 * 1024


def _carrier(run: RunResult, scenario: str) -> ScenarioResult:
    sr = run.ok(scenario, CARRIER)
    if sr is None:
        raise NotMeasured(f"the {scenario} scenario did not run")
    return sr


def _values(run: RunResult, scenario: str, name: str, option: str, **tags: str) -> dict[str, float]:
    """The option's store's value of ``name`` per engine (the median of the stored samples)."""
    sr = _carrier(run, scenario)
    out = {}
    for m in sr.find(name):
        if m.tags.get("store") == option and all(m.tags.get(k) == v for k, v in tags.items()):
            out[m.tags["engine"]] = m.median
    if not out:
        raise NotMeasured(f"{scenario} measured no {name} for this store (not available in any engine run)")
    return out


def outbox_lost(run: RunResult, option: str) -> float:
    """Engine and event pairs (a clean close, a SIGKILL of the browser) after which the store no longer held the outbox."""
    lost = 0.0
    for event in ("after_close", "after_kill"):
        lost += sum(1.0 - v for v in _values(run, "persistence", f"outbox_{event}", option).values())
    return lost


def _limit_mib(run: RunResult, option: str) -> float:
    """The smallest enforced limit over the engines, in MiB (a probe that reached its top counts as the top).

    A store that kept nothing across a clean close and reopen in every engine (memory) holds nothing for offline
    use whatever its page can hold: 0, from the persistence scenario, rather than "not measured" (which would take
    the criterion out for every store).
    """
    try:
        return min(_values(run, "limits", "limit_bytes", option).values()) / MiB
    except NotMeasured:
        kept = _values(run, "persistence", "outbox_after_close", option)
        if kept and max(kept.values()) == 0:
            return 0.0
        raise


def _kept_after_kill(run: RunResult, option: str) -> float:
    """The share of the app's data kinds still present after the browser was killed, the worst engine's."""
    sr = _carrier(run, "persistence")
    kept = _values(run, "persistence", "kept_after_kill", option)
    kinds = next((len(c["kinds"]) for r in (sr.fact.get("engines") or {}).values() for c in (r.get("after_kill") or {}).values()), 8)
    return min(kept.values()) / kinds


def _write_ms(run: RunResult, option: str) -> float:
    """Writing 1,000 token records, the store's faster way (one transaction for all where it has them), median over engines."""
    best: dict[str, float] = {}
    for name in ("write_all_ms", "write_each_ms"):
        try:
            for engine, v in _values(run, "speed", name, option, records="1000").items():
                best[engine] = min(best.get(engine, v), v)
        except NotMeasured:
            continue
    if not best:
        raise NotMeasured("speed measured no 1,000-record write for this store")
    return statistics.median(best.values())


def _stall_ms(run: RunResult, option: str) -> float:
    """The longest main-thread stall while writing 1,000 records one by one, the worst engine's.

    A store whose one-by-one run was cut by its time budget (OPFS wrote 500 of 1,000 in Chromium) is read at the
    most records it wrote, up to 1,000: a stall is the widest gap between heartbeats, not a sum over records.
    """
    sr = _carrier(run, "speed")
    best: dict[str, tuple[int, float]] = {}
    for m in sr.find("write_each_stall_ms"):
        records = int(m.tags.get("records", "0") or 0)
        if m.tags.get("store") != option or not 0 < records <= 1000:
            continue
        engine = m.tags["engine"]
        if engine not in best or records > best[engine][0]:
            best[engine] = (records, m.median)
    if not best:
        raise NotMeasured("speed measured no one-by-one write stall for this store (not available in any engine run)")
    return max(v for _, v in best.values())


def _engines(run: RunResult, option: str) -> float:
    """Engines in which the store was available (limits probe), of those that ran."""
    sr = _carrier(run, "limits")
    ran = [r for r in (sr.fact.get("engines") or {}).values() if r.get("status") == "measured"]
    if not ran:
        raise NotMeasured("no engine ran the limits probe")
    ok = sum(1 for r in ran if ((r.get("stores") or {}).get(option) or {}).get("available"))
    return ok / len(ran)


GATES = (
    Gate(
        "keeps the outbox of offline edits through a close and a browser kill",
        "data loss",
        Derived(
            outbox_lost,
            "engine x event pairs (a clean close and reopen, a SIGKILL of the browser and reopen, on the same profile) after which "
            "the store's outbox of offline actions was gone or stale",
            exact=True,
        ),
        "losses",
        "the issue's gate: a store that loses offline edits in the persistence or sync scenarios cannot hold them",
        at_most=0,
        fmt=lambda v: f"{fmt_num(v)} losses",
    ),
)

CRITERIA = (
    Criterion(
        "Size limit",
        (
            Part(
                "enforced limit, smallest over the engines",
                Derived(
                    _limit_mib,
                    "bytes stored when the store refused more incompressible data, or the probe's top; 0 for a store that kept nothing "
                    "across a clean close and reopen",
                    exact=True,
                ),
                "MiB",
                Utility(
                    1024, 5, "1 GiB holds a campaign's maps and art; 5 MiB (localStorage's size) holds a board and no images", log=True
                ),
                min_diff=16,
                fmt=lambda v: f"{fmt_num(v)} MiB",
            ),
        ),
        "what the engines enforced, not what navigator.storage.estimate() reported",
    ),
    Criterion(
        "Persistence",
        (
            Part(
                "data kinds kept through a browser kill, worst engine",
                Derived(_kept_after_kill, "data kinds present after a SIGKILL and reopen on the same profile / kinds written", exact=True),
                "share",
                Utility(1.0, 0.0, "a crash must not lose what the player did"),
                min_diff=0.13,
                fmt=lambda v: f"{v:.0%}",
            ),
        ),
        "a clean close and reopen, a browser killed right after the write, on the same profile",
    ),
    Criterion(
        "Speed",
        (
            Part(
                "writing 1,000 token records",
                Derived(_write_ms, "median over the engines of the store's faster write (one transaction for all where it has them)"),
                "ms",
                Utility(5, 1000, "5 ms is invisible; a second of saving is felt on every board change", log=True),
                min_diff=5,
                fmt=lambda v: f"{fmt_num(v)} ms",
            ),
            Part(
                "longest main-thread stall while writing them one by one",
                Derived(
                    _stall_ms,
                    "the widest gap between heartbeats on the page's main thread, worst engine; at 1,000 records, or at the most a "
                    "store wrote within its time budget",
                ),
                "ms",
                Utility(16, 200, "16 ms is one frame; 200 ms is a visible freeze of the map", log=True),
                min_diff=8,
                fmt=lambda v: f"{fmt_num(v)} ms",
            ),
        ),
    ),
    Criterion(
        "Availability",
        (
            Part(
                "engines where the store works",
                Derived(_engines, "engines where the store opened / engines run (Chromium, Firefox ESR, WebKitGTK)", exact=True),
                "share",
                Utility(1.0, 0.34, "a store missing in one engine needs a second code path for its users"),
                min_diff=0.3,
                fmt=lambda v: f"{v:.0%}",
            ),
        ),
    ),
)

#: What each option needs to run, for the cross-spike summary in results/README.md.
NEEDS = {o: ("browser",) for o in ("localstorage", "indexeddb", "idb", "cacheapi", "memory", "opfs")}
