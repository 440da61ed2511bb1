"""Spike 8's store adapters (web/stores.js): the interface every page relies on, and a round-trip of the app's data in each engine.

The round-trip writes what the app keeps offline (the board snapshot of 100 tokens, preferences, the outbox, map art
as bytes, the note's update log, a key with characters a URL or a file name would mangle) through ``put`` and
``putMany``, and reads it back through ``get``, ``getMany`` and ``keys``; then ``delete``, ``clear`` and ``destroy``.
"""

from __future__ import annotations

import re

import pytest

from harness import browser
from spikes.s08_browser_storage import bench
from tests.utils import UNIT, missing_program, require_program

ENGINES = tuple(browser.ENGINES)


def _need(engine: str) -> None:
    if browser.find_engine(engine) is None or (browser.ENGINES[engine].needs_display and browser.shutil.which("Xvfb") is None):
        missing_program(f"{browser.ENGINES[engine].title} is not installed ({browser.ENGINES[engine].install})")


def test_the_adapters_name_the_same_six_stores_as_the_python_side():
    source = (bench.WEB_DIR / "stores.js").read_text(encoding="utf-8")
    m = re.search(r"export const KINDS = \[([^\]]*)\]", source)
    assert m is not None
    assert tuple(re.findall(r'"([a-z]+)"', m.group(1))) == bench.STORES
    for kind in bench.STORES:
        assert f'case "{kind}":' in source, kind


def test_every_adapter_has_the_whole_interface():
    """Each store object names each method of the interface (a missing one would only fail in one engine's page)."""
    source = (bench.WEB_DIR / "stores.js").read_text(encoding="utf-8")
    starts = {k: source.index(f'kind: "{k}"') for k in bench.STORES}
    order = sorted(starts.values()) + [len(source)]
    for kind, start in starts.items():
        body = source[start : order[order.index(start) + 1]]
        for method in ("put", "get", "putMany", "getMany", "keys", "delete", "clear", "destroy"):
            assert re.search(rf"(async )?\b{method}\b\s*[(:]", body), (kind, method)
        assert "transactional:" in body and "persistent:" in body, kind


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_each_store_round_trips_the_apps_offline_data(engine, tmp_path):
    _need(engine)
    require_program("node", "npm")
    out = bench.run_roundtrip(engine, tmp_path, timeout=90 * UNIT)
    assert out["mode"] == "roundtrip" and out["engine"] == engine
    stores = out["stores"]
    assert set(stores) == set(bench.STORES)
    # Every engine here has these; OPFS's writable streams may be missing in one (reported, not hidden).
    for kind in ("localstorage", "indexeddb", "idb", "cacheapi", "memory"):
        assert stores[kind]["available"], (kind, stores[kind])
        assert stores[kind]["ok"], (kind, stores[kind]["problems"])
    opfs = stores["opfs"]
    if opfs["available"] and not opfs["ok"]:
        assert all("NotSupportedError" in p for p in opfs["problems"]), opfs["problems"]
