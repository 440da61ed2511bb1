"""Spike 8's scenarios: each runs every store in each engine (Chromium, Firefox ESR, WebKitGTK), one engine at a time.

A scenario is declared for one option (the ``indexeddb`` carrier, as Spike 6's generator scenario is for one) and
measures all six stores in one page per engine, so a browser starts once per engine and scenario instead of once per
store: the measurements are tagged ``store`` and ``engine`` and the decision reads each option's own. The work is in
``bench.py`` (limits, speed), ``lifecycle.py`` (persistence, invalidation, eviction, bad input) and ``sync.py`` (the
offline-to-online sync against this spike's pycrdt server); this module runs them and stores what they return.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.browser import BrowserError
from harness.plugin import NotRunnable, ScenarioContext, ScenarioOutput

__all__ = [
    "ENGINES",
    "STORES",
    "CARRIER",
    "LIMITS",
    "LIMITS_QUICK",
    "SPEED",
    "SPEED_QUICK",
    "PERSISTENCE",
    "PERSISTENCE_QUICK",
    "SYNC",
    "SYNC_QUICK",
    "ONE_ENGINE_QUICK",
    "run_limits",
    "run_speed",
    "run_persistence",
    "run_sync",
    "run_invalidation",
    "run_eviction",
    "run_bad_input",
]

ENGINES = ("chromium", "firefox", "webkit")
STORES = ("localstorage", "indexeddb", "idb", "cacheapi", "memory", "opfs")
#: The option a scenario is declared for; its measurements cover every store.
CARRIER = "indexeddb"

LIMITS = {"engines": list(ENGINES), "max_mib": 1024, "step_mib": 32, "store_budget_s": 20.0, "quota_mib": 50}
LIMITS_QUICK = {"engines": ["chromium"], "max_mib": 32, "step_mib": 8, "store_budget_s": 8.0, "quota_mib": 16}
SPEED = {"engines": list(ENGINES), "counts": [1000, 10000], "budget_s": 20.0}
SPEED_QUICK = {"engines": ["chromium"], "counts": [200], "budget_s": 5.0}
PERSISTENCE = {"engines": list(ENGINES)}
PERSISTENCE_QUICK = {"engines": ["chromium"]}
SYNC = {"engines": list(ENGINES), "edits": 50, "moves": 20, "strategies": ["state-vector", "outbox-replay"], "kill": True}
SYNC_QUICK = {"engines": ["chromium"], "edits": 5, "moves": 3, "strategies": ["state-vector", "outbox-replay"], "kill": True}
ONE_ENGINE_QUICK = {"engines": ["chromium"]}


def _each_engine(ctx: ScenarioContext, fn: Callable[[str, Path], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``fn(engine, workdir)`` for each engine of the scenario in turn; an engine missing or failing is a row saying so."""
    out: dict[str, dict[str, Any]] = {}
    engines = ctx.params["engines"]
    for i, engine in enumerate(engines):
        ctx.advance(i / len(engines))
        workdir = ctx.workdir / engine
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            out[engine] = {"status": "measured", **fn(engine, workdir)}
        except NotRunnable as exc:
            out[engine] = {"status": "not run", "reason": str(exc)}
        except BrowserError as exc:
            out[engine] = {"status": "failed", "reason": str(exc)[:500]}
    if not any(r["status"] == "measured" for r in out.values()):
        raise NotRunnable("no engine ran: " + "; ".join(f"{e}: {r.get('reason', '')}" for e, r in out.items()))
    return out


def _measured(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e: r for e, r in results.items() if r["status"] == "measured"}


def run_limits(ctx: ScenarioContext) -> ScenarioOutput:
    """Each store's enforced limit with incompressible chunks, per engine; Chromium also under a DevTools per-origin quota."""
    from spikes.s08_browser_storage import bench

    p = ctx.params
    out = ScenarioOutput()
    results = _each_engine(
        ctx,
        lambda e, wd: bench.run_limits(
            e, wd, max_mib=p["max_mib"], step_mib=p["step_mib"], stores=STORES, store_budget_s=p["store_budget_s"]
        ),
    )
    for engine, r in _measured(results).items():
        for store, entry in (r.get("stores") or {}).items():
            if not entry.get("available", False):
                continue
            if store == "localstorage":  # one value's longest string, in UTF-16 code units: 2 bytes each
                chars = (entry.get("latin1") or {}).get("valueChars")
                stored = None if chars is None else 2 * chars
            else:
                stored = entry.get("bytesStored")
            if stored is not None:
                out.add("limit_bytes", "bytes", [float(stored)], "higher", store=store, engine=engine)
            out.add("limit_not_reached", "flag", [1.0 if entry.get("reached") else 0.0], "higher", store=store, engine=engine)
    quota: dict[str, Any] = {}
    if "chromium" in p["engines"]:
        try:
            quota = bench.run_quota_override(ctx.workdir / "quota", quota_mib=p["quota_mib"])
        except (NotRunnable, BrowserError) as exc:
            quota = {"status": "not run", "reason": str(exc)[:500]}
    out.facts.update({"engines": results, "quota_override": quota})
    return out


def run_speed(ctx: ScenarioContext) -> ScenarioOutput:
    """Each store's write and read speed for the app's token records, and the longest main-thread stall, per engine."""
    from spikes.s08_browser_storage import bench

    p = ctx.params
    out = ScenarioOutput()
    results = _each_engine(ctx, lambda e, wd: bench.run_speed(e, wd, counts=p["counts"], stores=STORES, budget_s=p["budget_s"]))
    names = {"one per record": "write_each_ms", "all in one": "write_all_ms", "read all": "read_all_ms"}
    for engine, r in _measured(results).items():
        for row in bench.speed_rows(r):
            name = names.get(row.get("mode", ""))
            if name is None or row.get("ms") is None:
                continue
            tags = {"store": row["store"], "engine": engine, "records": str(row["records"])}
            out.add(name, "ms", [float(row["ms"])], **tags)
            stall = row.get("longest_stall_ms", row.get("stall_ms"))
            if stall is not None:
                out.add(name.replace("_ms", "_stall_ms"), "ms", [float(stall)], **tags)
    out.facts["engines"] = results
    return out


def run_persistence(ctx: ScenarioContext) -> ScenarioOutput:
    """Every data kind written to each store, then a clean close, a SIGKILL and a clearing of the origin: what remained."""
    from spikes.s08_browser_storage import lifecycle

    out = ScenarioOutput()
    results = _each_engine(ctx, lambda e, wd: lifecycle.run_persistence(e, wd, stores=STORES))
    for engine, r in _measured(results).items():
        for event in ("after_close", "after_kill"):
            for store, cell in (r.get(event) or {}).items():
                kinds = cell.get("kinds") or {}
                out.add(f"kept_{event}", "kinds", [float(cell.get("kept", 0))], "higher", store=store, engine=engine)
                out.add(f"outbox_{event}", "flag", [1.0 if kinds.get("outbox") == "present" else 0.0], "higher", store=store, engine=engine)
    out.facts.update({"engines": results, "summary": {e: lifecycle.persistence_summary(r) for e, r in _measured(results).items()}})
    return out


def run_sync(ctx: ScenarioContext) -> ScenarioOutput:
    """Offline edits (Yjs note and token moves) through a close or kill offline, then online: the account, bytes and time."""
    from spikes.s08_browser_storage import sync

    p = ctx.params

    def one_engine(engine: str, workdir: Path) -> dict[str, Any]:
        runs = {}
        for strategy in p["strategies"]:
            runs[strategy] = sync.run_sync(
                engine, workdir / strategy, edits=p["edits"], moves=p["moves"], strategy=strategy, kill=p["kill"]
            )
        return {"strategies": runs}

    out = ScenarioOutput()
    results = _each_engine(ctx, one_engine)
    for engine, r in _measured(results).items():
        for strategy, run in r["strategies"].items():
            tags = {"engine": engine, "strategy": strategy}
            total = run["account"]["total"]
            out.add("sync_expected", "edits", [float(total["expected"])], **tags)
            out.add("sync_lost", "edits", [float(total["lost_after_ack"]["count"] + total["lost_without_ack"]["count"])], **tags)
            out.add("sync_duplicated", "edits", [float(total["duplicated"]["count"])], **tags)
            out.add("sync_applied_twice", "actions", [float(run["outbox"]["applied_twice"])], **tags)
            out.add("sync_outbox_left", "actions", [float(run["outbox"]["left_in_outbox"])], **tags)
            out.add("sync_exactly_once", "flag", [1.0 if run["exactly_once"] else 0.0], "higher", **tags)
            out.add("sync_texts_equal", "flag", [1.0 if run["texts_equal"] and run["boards_equal"] else 0.0], "higher", **tags)
            timing = run.get("timing") or {}
            for name, unit in (("online_to_all_edits_ms", "ms"), ("bytes_up", "bytes"), ("bytes_down", "bytes")):
                if timing.get(name) is not None:
                    out.add(f"sync_{name}", unit, [float(timing[name])], **tags)
    out.facts["engines"] = results
    return out


def run_invalidation(ctx: ScenarioContext) -> ScenarioOutput:
    """Cached map images and app code after a server version change, per caching strategy: stale reads, cold vs warm load."""
    from spikes.s08_browser_storage import lifecycle

    out = ScenarioOutput()
    results = _each_engine(ctx, lambda e, wd: lifecycle.run_invalidation(e, wd))
    for engine, r in _measured(results).items():
        for strategy, cell in (r.get("strategies") or {}).items():
            stale = cell.get("stale") or {}
            if stale.get("stale") is not None:
                out.add("stale_reads", "reads", [float(stale["stale"])], strategy=strategy, engine=engine)
            if cell.get("cold_ms") is not None and cell.get("warm_ms_median") is not None:
                out.add("cold_load_ms", "ms", [float(cell["cold_ms"])], strategy=strategy, engine=engine)
                out.add("warm_load_ms", "ms", [float(cell["warm_ms_median"])], strategy=strategy, engine=engine)
    out.facts["engines"] = results
    return out


def run_eviction(ctx: ScenarioContext) -> ScenarioOutput:
    """The origin's data evicted while the app is closed, then the app's full resync from the server: time, bytes, equality."""
    from spikes.s08_browser_storage import lifecycle

    out = ScenarioOutput()
    results = _each_engine(ctx, lambda e, wd: lifecycle.run_eviction(e, wd, stores=STORES))
    for engine, r in _measured(results).items():
        for store, cell in (r.get("stores") or {}).items():
            if cell.get("resync_ms") is not None:
                out.add("resync_ms", "ms", [float(cell["resync_ms"])], store=store, engine=engine)
            if cell.get("equals_server") is not None:
                out.add("resync_equal", "flag", [1.0 if cell["equals_server"] else 0.0], "higher", store=store, engine=engine)
    out.facts["engines"] = results
    return out


def run_bad_input(ctx: ScenarioContext) -> ScenarioOutput:
    """Corrupted records, a CRDT update that does not decode, a future schema, a quota error mid-write, a blocked upgrade."""
    from spikes.s08_browser_storage import lifecycle

    out = ScenarioOutput()
    results = _each_engine(ctx, lambda e, wd: lifecycle.run_bad_input(e, wd))
    for engine, r in _measured(results).items():
        acc = r.get("account") or lifecycle.bad_input_account(r.get("cases") or {})
        for name in ("run", "detected", "handled"):
            if acc.get(name) is not None:
                out.add(f"bad_input_{name}", "cases", [float(acc[name])], engine=engine)
    out.facts["engines"] = results
    return out
