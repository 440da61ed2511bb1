"""Spike 8's plugin end to end in Chromium: a tiny real run through the runner, the gate recomputed, the document rendered.

Every scenario at a smoke-test size in one engine (headless Chromium); the per-store values the decision reads are
checked against the stored facts, and the memory store, which keeps nothing across a reopen, fails the outbox gate.
"""

from __future__ import annotations

import dataclasses

import pytest

import harness.browser  # noqa: F401  (registers chromium with the harness's programs)
from harness.report.render import decide, render_spike
from harness.results import load
from harness.runner import RunPlan, run_spike
from spikes.s08_browser_storage import BrowserStorageSpike, spike
from spikes.s08_browser_storage.decision import outbox_lost
from tests.utils import require_program

pytestmark = pytest.mark.slow

TINY = {
    "limits": {"engines": ["chromium"], "max_mib": 8, "step_mib": 4, "store_budget_s": 5.0, "quota_mib": 8},
    "speed": {"engines": ["chromium"], "counts": [50], "budget_s": 3.0},
    "persistence": {"engines": ["chromium"]},
    "sync": {"engines": ["chromium"], "edits": 3, "moves": 2, "strategies": ["state-vector"], "kill": True},
    "invalidation": {"engines": ["chromium"]},
    "eviction": {"engines": ["chromium"]},
    "bad-input": {"engines": ["chromium"]},
}


class TinySpike(BrowserStorageSpike):
    scenarios = tuple(dataclasses.replace(sc, quick_params={**sc.quick_params, **TINY[sc.key]}) for sc in spike.scenarios)


def test_tiny_run_is_stored_gated_and_rendered(tmp_path):
    require_program("chromium", "node", "npm")
    tiny = TinySpike()
    run = run_spike(RunPlan(tiny, quick=True), tmp_path)
    assert [(s.scenario, s.option, s.status, s.reason) for s in run.scenarios if s.status != "ok"] == []
    stored = load(run.path)
    persist = stored.ok("persistence", "indexeddb")
    kept = {m.tags["store"]: m.median for m in persist.find("outbox_after_close")}
    assert kept["indexeddb"] == 1.0 and kept["memory"] == 0.0  # measured, not assumed: memory keeps nothing across a reopen
    sync = stored.ok("sync", "indexeddb")
    assert sync.median("sync_exactly_once", engine="chromium", strategy="state-vector") == 1.0
    assert sync.median("sync_lost", engine="chromium", strategy="state-vector") == 0.0

    d = decide(tiny, stored)
    for option in ("indexeddb", "memory"):
        gate = {g.gate.name: g for g in d.gates[option]}["keeps the outbox of offline edits through a close and a browser kill"]
        assert gate.value == outbox_lost(stored, option)
    assert {g.gate.name: g for g in d.gates["memory"]}[
        "keeps the outbox of offline edits through a close and a browser kill"
    ].status == "fail"
    assert {g.gate.name: g for g in d.gates["indexeddb"]}[
        "keeps the outbox of offline edits through a close and a browser kill"
    ].status == "pass"

    doc = render_spike(tiny, stored, tmp_path).read_text()
    for title in (
        "The seed's table: size limit and persistence, per engine (measured)",
        "What to cache where (from the measurements)",
        "Offline to online sync (the harness's account)",
        "Cache invalidation after a server version change",
        "Eviction: the origin's data gone, the app resyncs in full",
        "Corrupted records and failed writes (IndexedDB, the app's own checks)",
        "navigator.storage.persist(): what it answered, per engine",
    ):
        assert title in doc, title
