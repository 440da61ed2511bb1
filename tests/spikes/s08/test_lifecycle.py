"""Spike 8's lifecycle scenarios: the harness's versioned server and the scoring without a browser, then the app page
in real engines (persistence across a close and a kill, invalidation, eviction and resync, bad input)."""

from __future__ import annotations

import json

import pytest

from harness import browser
from harness.browser_session import Reply, Request
from spikes.s08_browser_storage import lifecycle
from spikes.s08_browser_storage.lifecycle import AppServer

ENGINES = tuple(browser.ENGINES)


# -- the server, without sockets ------------------------------------------------------------------------------------


def test_an_asset_names_its_version_and_a_matching_etag_is_answered_304():
    server = AppServer("/* sw */")
    status, headers, body = server.respond("GET", "/s/cache-first/asset/map.bin", {}) or (0, {}, b"")
    assert status == 200 and body.startswith(b"v1\n") and len(body) == 512 * 1024
    again = server.respond("GET", "/s/cache-first/asset/map.bin", {"If-None-Match": headers["ETag"]})
    assert again is not None and again[0] == 304 and again[2] == b""
    assert server.served["/s/cache-first/asset/map.bin"] == {"requests": 2, "bytes": len(body), "not_modified": 1}


def test_a_new_version_is_new_bytes_a_new_etag_and_a_new_worker_script():
    server = AppServer("/* sw */")
    _, h1, b1 = server.respond("GET", "/s/network-first/asset/code.js", {}) or (0, {}, b"")
    sw1 = (server.respond("GET", "/sw.js?strategy=x", {}) or (0, {}, b""))[2]
    server.bump()
    stale = server.respond("GET", "/s/network-first/asset/code.js", {"if-none-match": h1["ETag"]})
    assert stale is not None and stale[0] == 200 and stale[2].startswith(b"v2\n") and stale[1]["ETag"] != h1["ETag"]
    assert b1[3:] != stale[2][3:]  # every byte new, not only the first line
    sw2 = (server.respond("GET", "/sw.js", {}) or (0, {}, b""))[2]
    assert sw1.startswith(b'self.S08_VERSION = "v1";') and sw2.startswith(b'self.S08_VERSION = "v2";') and sw2.endswith(b"/* sw */")
    assert (server.respond("GET", "/version", {}) or (0, {}, b""))[2] == b"v2"


def test_the_snapshot_is_the_servers_state_and_other_paths_are_not_its_own():
    server = AppServer()
    status, _, body = server.respond("GET", "/api/snapshot", {}) or (0, {}, b"")
    snap = json.loads(body)
    assert status == 200 and len(snap["tokens"]) == 100 and snap == server.snapshot
    assert server.respond("GET", "/app.html", {}) is None
    assert server.respond("GET", "/s/cache-first/asset/other.bin", {}) is None
    assert server.respond("POST", "/api/snapshot", {}) is None


def test_the_session_handlers_answer_with_replies():
    server = AppServer("//sw")
    handlers = lifecycle._handlers(server)
    for s in lifecycle.STRATEGIES:
        assert f"/s/{s}/asset/map.bin" in handlers and f"/s/{s}/asset/code.js" in handlers
    reply = handlers["/sw.js"](Request("GET", "/sw.js", {"strategy": "cache-first"}, {}))
    assert isinstance(reply, Reply) and reply.status == 200 and reply.content_type == "text/javascript"
    assert "Content-Type" not in reply.headers


def test_the_page_is_served_in_each_strategys_scope():
    files = lifecycle.page_files({"idb.js": b"export {}"})
    for s in lifecycle.STRATEGIES:
        assert files[f"s/{s}/app.html"] == files["app.html"]
    assert "sw.js" not in files  # the server serves it, with the version in front
    assert "harness.nextMessage" in str(files["blank.html"]) and files["idb.js"] == b"export {}"


# -- scoring -------------------------------------------------------------------------------------------------------------


def test_persistence_cells_per_store_and_kind():
    kinds = dict.fromkeys(lifecycle.DATA_KINDS, "present")
    report = {
        "stores": {
            "indexeddb": {"kinds": kinds, "errors": {}, "held_in_memory": True},
            "memory": {"kinds": dict.fromkeys(lifecycle.DATA_KINDS, "absent")},
            "localstorage": {"kinds": {**kinds, "map": "corrupted"}},
            "opfs": {"open_error": {"name": "NotSupportedError", "message": "no"}},
        }
    }
    cells = lifecycle.persistence_cells(report)
    assert cells["indexeddb"]["summary"] == "all kept" and cells["indexeddb"]["held_in_memory"] is True
    assert cells["memory"]["summary"] == "all lost" and cells["memory"]["kept"] == 0
    assert cells["localstorage"]["summary"] == "7 of 8 kept" and cells["localstorage"]["kinds"]["map"] == "corrupted"
    assert set(cells["opfs"]["kinds"].values()) == {"error"} and cells["opfs"]["errors"]["open"]["name"] == "NotSupportedError"
    assert lifecycle.persistence_cells(None) == {}


def test_stale_reads_count_assets_older_than_the_server():
    loads = [
        {"server": "v2", "map": {"version": "v1"}, "code": {"version": "v1"}},
        {"server": "v2", "map": {"version": "v2"}, "code": {"version": "v1"}},
        {"server": "v2", "map": {"version": "v2"}, "code": {"version": "v2"}},
    ]
    assert lifecycle.stale_reads(loads) == {"stale": 3, "reads": 6, "per_load": [2, 1, 0], "first_fresh_load": 2}
    assert lifecycle.stale_reads([{"server": "v2", "error": "x"}])["first_fresh_load"] is None


def test_a_resync_is_ok_only_when_it_equals_the_server():
    server = AppServer()
    snap = server.snapshot
    assert lifecycle.resync_ok({"gen": snap["gen"], "tokens": snap["tokens"], "note": snap["note"]}, snap)
    moved = [dict(t) for t in snap["tokens"]]
    moved[5]["x"] += 1
    assert not lifecycle.resync_ok({"gen": snap["gen"], "tokens": moved, "note": snap["note"]}, snap)
    assert not lifecycle.resync_ok({"gen": snap["gen"], "tokens": snap["tokens"], "note": None}, snap)
    assert not lifecycle.resync_ok(None, snap)


def test_the_bad_input_account_leaves_out_what_could_not_run():
    cases = {
        "a": {"status": "run", "detected": True, "handled": True},
        "b": {"status": "run", "detected": True, "handled": False},
        "c": {"status": "not available"},
    }
    assert lifecycle.bad_input_account(cases) == {"cases": 3, "run": 2, "detected": 2, "handled": 1}


# -- the app page in real engines (one browser at a time) ----------------------------------------------------------------


def _need(engine: str) -> None:
    from tests.utils import missing_program

    if browser.find_engine(engine) is None or (browser.ENGINES[engine].needs_display and browser.shutil.which("Xvfb") is None):
        missing_program(f"{browser.ENGINES[engine].title} is not installed ({browser.ENGINES[engine].install})")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_indexeddb_keeps_every_kind_across_a_clean_close_and_memory_keeps_nothing(engine, tmp_path):
    _need(engine)
    out = lifecycle.run_persistence(engine, tmp_path, stores=("indexeddb", "memory"), extra_files={})
    # A read whose report never came leaves no cells: the whole account (its errors included) says why.
    assert set(out["same_page"]) == set(out["after_close"]) == {"indexeddb", "memory"}, out
    assert out["same_page"]["indexeddb"]["summary"] == "all kept", out["same_page"]
    assert out["same_page"]["memory"]["summary"] == "all kept", out["same_page"]
    assert out["after_close"]["indexeddb"]["summary"] == "all kept", out["after_close"]
    assert out["after_close"]["memory"]["summary"] == "all lost", out["after_close"]
    assert out["clear"]["cleared"], out["clear"]
    after = out.get("after_clear_fresh_handles") or out.get("after_clear_reopen")
    assert after["indexeddb"]["kinds"]["board"] != "present", after
    assert "no difference observable here" in out["persist_effect"]


@pytest.mark.slow
def test_after_eviction_the_app_notices_and_resyncs_to_the_servers_state_in_chromium(tmp_path):
    _need("chromium")
    out = lifecycle.run_eviction("chromium", tmp_path, stores=("indexeddb", "localstorage"), extra_files={})
    assert out["clear"]["cleared"] and out["clear"]["while_open"], out["clear"]
    for store, row in out["stores"].items():
        assert row["first_run"]["resynced"], (store, row)
        assert any("meta: missing" in p for p in row["noticed"] or []), (store, row)
        assert row["resynced"] and row["equals_server"] and not row["problems_after"], (store, row)
        assert row["bytes_fetched"] == out["server_snapshot_bytes"], (store, row)


@pytest.mark.slow
def test_each_bad_input_is_detected_and_resynced_in_chromium(tmp_path):
    _need("chromium")
    out = lifecycle.run_bad_input("chromium", tmp_path, extra_files={})
    cases = out["cases"]
    assert out["account"] == {"cases": 5, "run": 5, "detected": 5, "handled": 5}, cases
    assert any("does not parse" in p for p in cases["truncated_json"]["problems"]), cases["truncated_json"]
    assert any("from the future" in p for p in cases["future_schema"]["problems"]), cases["future_schema"]
    assert any(p.startswith("note:") for p in cases["bad_crdt"]["problems"]), cases["bad_crdt"]
    assert "outbox" in (cases["truncated_json"]["kept"] or []), cases["truncated_json"]  # the offline actions survive a resync
    assert any("QuotaExceededError" in e for e in cases["quota"]["errors"]), cases["quota"]
    assert cases["upgrade_blocked"]["blocked_events"] >= 1, cases["upgrade_blocked"]


@pytest.mark.slow
def test_network_first_with_etags_reads_nothing_stale_in_chromium(tmp_path):
    _need("chromium")
    out = lifecycle.run_invalidation("chromium", tmp_path, warm_loads=1, after_loads=2, extra_files={})
    assert out["service_worker"] == {"available": True}, out["service_worker"]
    nf = out["strategies"]["network-first"]
    assert nf["stale"]["stale"] == 0, nf
    assert nf["warm"][0]["map"]["via"] == "revalidated", nf["warm"]
    update = out["strategies"]["cache-first-update"]
    assert update["stale"]["stale"] == 0 and update["warm"][0]["map"]["via"] == "cache", update
    swr = out["strategies"]["stale-while-revalidate"]
    assert swr["warm"][0]["map"]["via"] == "cache", swr["warm"]
    assert swr["stale"]["per_load"][-1] == 0, swr  # the revalidated copy is there by the second load


def test_the_persistence_summary_is_one_word_per_event_and_store():
    kinds = dict.fromkeys(lifecycle.DATA_KINDS, "present")
    cells = lifecycle.persistence_cells({"stores": {"indexeddb": {"kinds": kinds}, "localstorage": {"kinds": {**kinds, "map": "absent"}}}})
    gone = lifecycle.persistence_cells({"stores": {"indexeddb": {"kinds": dict.fromkeys(lifecycle.DATA_KINDS, "absent")}}})
    result = {"stores": ["indexeddb", "localstorage"], "after_close": cells, "after_kill": cells, "after_clear_fresh_handles": gone}
    summary = lifecycle.persistence_summary(result)
    assert summary["indexeddb"] == {"clean close": "all kept", "SIGKILL": "all kept", "cleared, fresh handles": "all lost"}
    assert summary["localstorage"]["SIGKILL"] == "7 of 8 kept: map absent"
    assert summary["localstorage"]["cleared, fresh handles"] is None
