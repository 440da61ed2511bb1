"""Spike 8's plugin: browser storage for offline play, measured in Chromium, Firefox ESR and WebKitGTK.

The plugin object ``spike`` declares the six stores (one adapter each in ``web/stores.js``), the scenarios
(``scenarios.py``: limits, speed, persistence, offline sync, invalidation, eviction, bad input; each runs every
store in each engine) and how the stored results become the seed's table (size limit, persistence, sync per
engine), what to cache where, scores and findings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.plugin import Option, ReportContent, Scenario, Spike, Table
from harness.results import RunResult
from harness.stats import fmt_num
from spikes.s08_browser_storage import scenarios as _sc
from spikes.s08_browser_storage.decision import CRITERIA, GATES

__all__ = ["BrowserStorageSpike", "spike", "WEIGHTS", "KINDS"]

#: The seed's three points (size limit, persistence, sync: the gate and the sync scenario), speed, and the harness's Complexity.
WEIGHTS = {"Persistence": 30, "Size limit": 20, "Speed": 15, "Availability": 15, "Complexity": 20}

_STORES = ("web/stores.js",)

OPTIONS = (
    Option("localstorage", "localStorage", "synchronous string store; values JSON (binary as base64)", _STORES),
    Option("indexeddb", "IndexedDB", "the raw IndexedDB API: one object store, a transaction per put or one for many", _STORES),
    Option("idb", "IndexedDB through idb", "the same store through the `idb` library's promise wrapper", _STORES, ("idb",)),
    Option(
        "cacheapi",
        "Cache API",
        "values as Response objects under a versioned cache name (a service worker serves them)",
        (*_STORES, "web/sw.js"),
    ),
    Option("memory", "Memory only", "a Map in the page: nothing survives a reload", _STORES),
    Option("opfs", "Origin Private File System", "one file per key under navigator.storage.getDirectory()", _STORES),
)

_ONCE = (
    "Declared for the IndexedDB option, it measures every store in one page per engine (one browser start per engine, one "
    "engine at a time; Chromium headless, Firefox ESR and WebKitGTK under Xvfb); the values are tagged by store and engine."
)

SCENARIOS = (
    Scenario(
        "limits",
        "Size limits, enforced",
        "Each store takes incompressible chunks of `step_mib` MiB (random bytes: Chromium compresses IndexedDB values) until it "
        'refuses one or `max_mib` is stored ("at least", not reached) or `store_budget_s` passes; the error, and whether the '
        "failing write rolled back with the earlier chunks intact; localStorage's longest value in UTF-16 characters. Chromium "
        f"again under a `quota_mib` MiB per-origin quota set through the DevTools protocol, beside what estimate() says. {_ONCE}",
        _sc.run_limits,
        _sc.LIMITS,
        _sc.LIMITS_QUICK,
        options=(_sc.CARRIER,),
        requires=("chromium",),
        max_repeats=1,
    ),
    Scenario(
        "speed",
        "Speed",
        "The app's token records (`counts`), written one per transaction and all in one (where the store has transactions), then "
        "read back; the longest main-thread stall during each (the widest gap between setTimeout(0) heartbeats). " + _ONCE,
        _sc.run_speed,
        _sc.SPEED,
        _sc.SPEED_QUICK,
        options=(_sc.CARRIER,),
        requires=("chromium",),
        max_repeats=1,
    ),
    Scenario(
        "persistence",
        "Persistence",
        "Every data kind of the app (board of 100 tokens, preferences, outbox, map image, token art, code, the note, a marker) "
        "written to each store; then the browser closed cleanly and reopened on the same profile, killed (SIGKILL) right after a "
        "write and reopened, and the origin's data cleared (Chromium through the DevTools protocol with the tab open; Firefox and "
        "WebKitGTK as their session allows): what a reader finds, per kind. " + _ONCE,
        _sc.run_persistence,
        _sc.PERSISTENCE,
        _sc.PERSISTENCE_QUICK,
        options=(_sc.CARRIER,),
        requires=("chromium",),
        max_repeats=1,
    ),
    Scenario(
        "sync",
        "Offline to online sync",
        "A page online with this spike's pycrdt server goes offline, makes `edits` note edits (Yjs) and `moves` token moves, keeps "
        "them in IndexedDB (the note's update log and an outbox), is killed and reopened offline, then goes online and syncs by each "
        "of `strategies` (the CRDT state-vector diff, or replaying the outbox) while a second client edits online. The harness's "
        "account of every offline edit at the server, the outbox drained exactly once, the texts and boards equal, time and bytes.",
        _sc.run_sync,
        _sc.SYNC,
        _sc.SYNC_QUICK,
        options=(_sc.CARRIER,),
        requires=("chromium", "node", "npm"),
        max_repeats=1,
    ),
    Scenario(
        "invalidation",
        "Cache invalidation",
        "Map images and app code cached by a service worker under each strategy (cache-first with a versioned cache name, the "
        "same with an update check, stale-while-revalidate, network-first with ETag revalidation); the server changes version "
        "and the next loads count stale reads; cold (network) and warm (cache) load times.",
        _sc.run_invalidation,
        _sc.ONE_ENGINE_QUICK | {"engines": list(_sc.ENGINES)},
        _sc.ONE_ENGINE_QUICK,
        options=(_sc.CARRIER,),
        requires=("chromium",),
        max_repeats=1,
    ),
    Scenario(
        "eviction",
        "Eviction and full resync",
        "The origin's data evicted while the app is closed; on the next start the app notices its missing marker and resyncs in "
        "full from the server: time, bytes and whether its state then equals the server's, per store. " + _ONCE,
        _sc.run_eviction,
        {"engines": list(_sc.ENGINES)},
        _sc.ONE_ENGINE_QUICK,
        options=(_sc.CARRIER,),
        requires=("chromium",),
        max_repeats=1,
    ),
    Scenario(
        "bad-input",
        "Corrupted records and failed writes",
        "Truncated JSON, a schema version from the future, a CRDT update that does not decode, a quota error in the middle of a "
        "write (Chromium: a small DevTools quota) and an upgrade blocked by another open tab: each detected, and handled by a "
        "full resync, counted per engine.",
        _sc.run_bad_input,
        {"engines": list(_sc.ENGINES)},
        _sc.ONE_ENGINE_QUICK,
        options=(_sc.CARRIER,),
        requires=("chromium",),
        max_repeats=1,
    ),
)

#: The app's data kinds and what each needs of a store: (bytes it takes, must survive a crash, can be fetched again).
KINDS = (
    ("map images and token art", 200 * 1024 * 1024, False, True),
    ("board snapshot (100 tokens)", 20 * 1024, False, True),
    ("shared note with its update log", 1024 * 1024, True, False),
    ("user preferences", 4 * 1024, False, True),
    ("outbox of offline actions", 256 * 1024, True, False),
)


def _carrier(run: RunResult, scenario: str) -> Any:
    return run.ok(scenario, _sc.CARRIER)


class BrowserStorageSpike(Spike):
    """localStorage vs IndexedDB (raw and idb) vs Cache API vs memory vs OPFS, in three engines, with an offline sync."""

    number = 8
    slug = "browser-storage"
    title = "Browser Storage Strategy"
    priority = "nice"
    planned_hours = 4
    question = (
        "Where should the tabletop keep its offline data (map images and token art, the board, the shared note with its update "
        "log, preferences, an outbox of offline actions): localStorage, IndexedDB, the Cache API, memory or the Origin Private File "
        "System; how should cached data be invalidated; and how should offline edits be synced?"
    )
    options = OPTIONS
    scenarios = SCENARIOS
    weights = WEIGHTS
    criteria = CRITERIA
    gates = GATES
    default_repeat = 1
    quick_repeat = 1
    package_dir = Path(__file__).parent

    def report(self, run: RunResult) -> ReportContent:
        content = ReportContent()
        titles = {o.key: o.title for o in self.options}
        self._answers(run, titles, content)
        self._seed_table(run, titles, content)
        self._where(run, titles, content)
        self._sync(run, content)
        self._invalidation(run, content)
        self._quota_and_persist(run, titles, content)
        self._eviction(run, titles, content)
        self._bad_input(run, content)
        return content

    def _quota_and_persist(self, run: RunResult, titles: dict[str, str], content: ReportContent) -> None:
        """Chromium under a DevTools per-origin quota (enforced against reported), and what persist() did per engine."""
        limits, persist = _carrier(run, "limits"), _carrier(run, "persistence")
        q = (limits.fact.get("quota_override") or {}) if limits else {}
        if q.get("stores"):
            est = q.get("estimate") or {}
            rows = [[titles.get(store, store), e.get("verdict") or "n/a"] for store, e in q["stores"].items()]
            content.tables.append(
                Table(
                    f"Chromium under a {fmt_num((q.get('quota_bytes') or 0) / 1024 / 1024)} MiB per-origin quota (DevTools protocol)",
                    ["Store", "What the store did"],
                    rows,
                    f"Meanwhile navigator.storage.estimate() reported a quota of {fmt_num((est.get('quota') or 0) / 1024**3)} GiB: the "
                    "figure an app reads is not the limit that applies.",
                )
            )
        rows = []
        for engine, r in ((persist.fact.get("engines") or {}) if persist else {}).items():
            st = r.get("storage") or {}
            rows.append([engine, str(st.get("persist")), str(st.get("persisted")), str(r.get("persist_effect") or st.get("error") or "")])
        if rows:
            content.tables.append(
                Table(
                    "navigator.storage.persist(): what it answered, per engine",
                    ["Engine", "persist()", "persisted() after", "Effect"],
                    rows,
                    "Headless and unattended, no engine granted persistence, so eviction stays a normal path: see the next table.",
                )
            )

    def _eviction(self, run: RunResult, titles: dict[str, str], content: ReportContent) -> None:
        sr = _carrier(run, "eviction")
        if sr is None:
            return
        rows = []
        for engine, r in (sr.fact.get("engines") or {}).items():
            if r.get("status") != "measured":
                rows.append([engine, "-", f"{r.get('status')}: {r.get('reason', '')}", "", ""])
                continue
            for store, e in (r.get("stores") or {}).items():
                if e.get("error") and not e.get("resynced"):
                    rows.append([engine, titles.get(store, store), f"**no**: {str(e['error'])[:150]}", "", ""])
                    continue
                if not e.get("noticed") and not e.get("resynced"):
                    # The engine's clearing left this store's data (WebKitGTK keeps the Cache API's files): nothing to resync.
                    state = "state equal to the server's" if e.get("equals_server") else "**state differs from the server's**"
                    rows.append([engine, titles.get(store, store), f"nothing was evicted (the clearing left its data); {state}", "-", "-"])
                    continue
                rows.append(
                    [
                        engine,
                        titles.get(store, store),
                        ("yes" if e.get("resynced") else "**no**")
                        + ("" if e.get("equals_server") else ", **state differs from the server's**"),
                        fmt_num(e["resync_ms"], "ms") if e.get("resync_ms") is not None else "n/a",
                        fmt_num(e.get("bytes_fetched") or 0, "B"),
                    ]
                )
        content.tables.append(
            Table(
                "Eviction: the origin's data gone, the app resyncs in full",
                ["Engine", "Store", "Noticed and resynced, state equal to the server's", "Resync time", "Fetched"],
                rows,
            )
        )

    def _bad_input(self, run: RunResult, content: ReportContent) -> None:
        sr = _carrier(run, "bad-input")
        if sr is None:
            return
        rows = []
        for engine, r in (sr.fact.get("engines") or {}).items():
            if r.get("status") != "measured":
                rows.append([engine, "-", f"{r.get('status')}: {r.get('reason', '')}", "", ""])
                continue
            for case, c in (r.get("cases") or {}).items():
                if c.get("status") != "run":
                    rows.append([engine, case, f"not run: {c.get('why') or c.get('status')}", "", ""])
                    continue
                rows.append(
                    [
                        engine,
                        case,
                        ("detected" if c.get("detected") else "**not detected**")
                        + (", handled" if c.get("handled") else ", **not handled**"),
                        "; ".join(str(x) for x in (c.get("problems") or c.get("errors") or []))[:200],
                        ", ".join(c.get("kept") or []) or "-",
                    ]
                )
        content.tables.append(
            Table(
                "Corrupted records and failed writes (IndexedDB, the app's own checks)",
                ["Engine", "Case", "Outcome", "What the app saw", "Kept through the resync"],
                rows,
                "Handled means the app fell back to a full resync from the server and kept what must not be lost (outbox, preferences).",
            )
        )

    def _answers(self, run: RunResult, titles: dict[str, str], content: ReportContent) -> None:
        """The seed's three questions, each answered by a rule over the stored measurements (the tables below hold them)."""
        rows = []
        inval, sync = _carrier(run, "invalidation"), _carrier(run, "sync")
        if inval is not None:
            ran = [r for r in (inval.fact.get("engines") or {}).values() if r.get("status") == "measured"]
            fresh: dict[str, list[float]] = {}
            for r in ran:
                for strategy, c in (r.get("strategies") or {}).items():
                    if (c.get("stale") or {}).get("stale") == 0 and c.get("warm_ms_median") is not None:
                        fresh.setdefault(strategy, []).append(float(c["warm_ms_median"]))
            always = {k: v for k, v in fresh.items() if len(v) == len(ran)}
            if always:
                best = min(always, key=lambda k: max(always[k]))
                rows.append(
                    [
                        "How to invalidate cached map images and code",
                        f"{best}: 0 stale reads after a version change in all {len(ran)} engines, warm loads at most "
                        f"{fmt_num(max(always[best]), 'ms')} (also without stale reads: "
                        + (", ".join(k for k in always if k != best) or "none")
                        + ")",
                    ]
                )
        if sync is not None:
            ran = [r for r in (sync.fact.get("engines") or {}).values() if r.get("status") == "measured"]
            ok: dict[str, list[float]] = {}
            for r in ran:
                for strategy, st in (r.get("strategies") or {}).items():
                    t = st["account"]["total"]
                    exact = t["delivered"]["count"] == t["expected"] and t["duplicated"]["count"] == 0
                    if exact and st["texts_equal"] and st["boards_equal"] and (st.get("timing") or {}).get("bytes_up") is not None:
                        ok.setdefault(strategy, []).append(float(st["timing"]["bytes_up"]))
            exact_all = {k: v for k, v in ok.items() if len(v) == len(ran)}
            if exact_all:
                best = min(exact_all, key=lambda k: max(exact_all[k]))
                rows.append(
                    [
                        "How to sync offline edits",
                        f"{best}: every offline edit at the server exactly once, texts and boards equal, in all {len(ran)} engines, at "
                        f"most {fmt_num(max(exact_all[best]))} bytes up ("
                        + "; ".join(f"{k}: at most {fmt_num(max(v))}" for k, v in exact_all.items() if k != best)
                        + ")",
                    ]
                )
        if rows:
            rows.insert(0, ["What to cache where", "the table 'What to cache where (from the measurements)' below"])
            content.tables.append(Table("The seed's three questions, answered from the measurements", ["Question", "Answer"], rows))

    def _seed_table(self, run: RunResult, titles: dict[str, str], content: ReportContent) -> None:
        limits, persist = _carrier(run, "limits"), _carrier(run, "persistence")
        if limits is None and persist is None:
            return
        engines = list(_sc.ENGINES)
        rows = []
        for store, title in titles.items():
            for engine in engines:
                lim = ((limits.fact.get("engines") or {}).get(engine) or {}) if limits else {}
                entry = (lim.get("stores") or {}).get(store) or {}
                size = entry.get("verdict") or (lim.get("reason") and f"{lim.get('status')}: {lim.get('reason')}") or "not run"
                summ = ((persist.fact.get("summary") or {}).get(engine) or {}).get(store) if persist else None
                kept = "; ".join(f"{k}: {v}" for k, v in (summ or {}).items() if v) or "not run"
                rows.append([title, engine, size, kept])
        content.tables.append(
            Table(
                "The seed's table: size limit and persistence, per engine (measured)",
                ["Store", "Engine", "Size limit (enforced)", "Persistence (what a reader found after each event)"],
                rows,
                "Sync: see the offline-to-online sync below (the note and the outbox in IndexedDB, two strategies).",
            )
        )

    def _where(self, run: RunResult, titles: dict[str, str], content: ReportContent) -> None:
        """What to cache where: for each data kind, the stores that meet its needs by the measurements, fastest first."""
        from spikes.s08_browser_storage import decision as d

        rows = []
        for kind, need_bytes, must_survive, refetchable in KINDS:
            fits = []
            for store in titles:
                try:
                    if d._limit_mib(run, store) * d.MiB < need_bytes or d._engines(run, store) < 1.0:
                        continue
                    if must_survive and d.outbox_lost(run, store) > 0:
                        continue
                    fits.append((d._write_ms(run, store), store))
                except Exception:  # a store not measured cannot be chosen
                    continue
            fits.sort()
            rows.append(
                [
                    kind,
                    f"{fmt_num(need_bytes / 1024)} KiB"
                    + ("; must survive a crash" if must_survive else "")
                    + ("; can be fetched again" if refetchable else ""),
                    ", ".join(f"{titles[s]} ({fmt_num(ms)} ms per 1,000 records)" for ms, s in fits) or "none measured meets it",
                ]
            )
        content.tables.append(
            Table(
                "What to cache where (from the measurements)",
                ["Data kind", "What it needs", "Stores that meet it, fastest first"],
                rows,
                "A store meets a kind when its smallest enforced limit over the engines holds the kind's size, it is available in every "
                "engine run, and (for a kind that must survive a crash) it kept the outbox through a close and a kill in every engine.",
            )
        )

    def _sync(self, run: RunResult, content: ReportContent) -> None:
        sr = _carrier(run, "sync")
        if sr is None:
            return
        rows = []
        for engine, r in (sr.fact.get("engines") or {}).items():
            if r.get("status") != "measured":
                rows.append([engine, "-", f"{r.get('status')}: {r.get('reason', '')}", "", "", "", ""])
                continue
            for strategy, s in r["strategies"].items():
                t = s["account"]["total"]
                timing = s.get("timing") or {}
                rows.append(
                    [
                        engine,
                        strategy,
                        f"{t['delivered']['count']} / {t['expected']}",
                        f"{t['duplicated']['count']} duplicated, {s['outbox']['applied_twice']} applied twice, {s['outbox']['left_in_outbox']} left",
                        "yes" if s["texts_equal"] and s["boards_equal"] else "**no**",
                        f"{fmt_num(timing.get('bytes_up') or 0)} up, {fmt_num(timing.get('bytes_down') or 0)} down",
                        fmt_num(timing["online_to_all_edits_ms"], "ms") if timing.get("online_to_all_edits_ms") is not None else "n/a",
                    ]
                )
        content.tables.append(
            Table(
                "Offline to online sync (the harness's account)",
                [
                    "Engine",
                    "Strategy",
                    "Offline edits at the server / made",
                    "Outbox",
                    "Texts and boards equal",
                    "Bytes",
                    "Online to every edit at the server",
                ],
                rows,
            )
        )

    def _invalidation(self, run: RunResult, content: ReportContent) -> None:
        sr = _carrier(run, "invalidation")
        if sr is None:
            return
        rows = []
        for engine, r in (sr.fact.get("engines") or {}).items():
            if r.get("status") != "measured":
                rows.append([engine, "-", f"{r.get('status')}: {r.get('reason', '')}", "", ""])
                continue
            for strategy, c in (r.get("strategies") or {}).items():
                st = c.get("stale") or {}
                rows.append(
                    [
                        engine,
                        strategy,
                        f"{st.get('stale', 'n/a')} of {st.get('reads', 'n/a')}",
                        fmt_num(c["cold_ms"], "ms") if c.get("cold_ms") is not None else "n/a",
                        fmt_num(c["warm_ms_median"], "ms") if c.get("warm_ms_median") is not None else "n/a",
                    ]
                )
        content.tables.append(
            Table(
                "Cache invalidation after a server version change",
                ["Engine", "Strategy", "Stale reads after the change", "Cold load", "Warm load (median)"],
                rows,
            )
        )


spike = BrowserStorageSpike()
