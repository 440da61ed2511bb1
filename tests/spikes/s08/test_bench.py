"""Spike 8's bench: its page config and pins in plain Python, the verdicts and table rows it derives, then small runs in real engines.

The engine runs are small (a few MiB, a few hundred records): they check that every figure the spike reads is there
and consistent, not its size; the spike's own runs measure.
"""

from __future__ import annotations

import json

import pytest

from harness import browser
from spikes.s08_browser_storage import bench
from tests.utils import UNIT, missing_program, require_program

MiB = bench.MiB


def _need(engine: str) -> None:
    if browser.find_engine(engine) is None or (browser.ENGINES[engine].needs_display and browser.shutil.which("Xvfb") is None):
        missing_program(f"{browser.ENGINES[engine].title} is not installed ({browser.ENGINES[engine].install})")


# -- plain Python ------------------------------------------------------------------------------------------------------


def test_idb_is_pinned_exactly_and_locked():
    pkg = json.loads((bench.NPM_DIR / "package.json").read_text())
    version = pkg["dependencies"]["idb"]
    assert version[0].isdigit() and all(p.isdigit() for p in version.split(".")), version
    assert bench.idb_version() == version
    assert not (bench.NPM_DIR / "node_modules").exists()


def test_the_config_goes_into_the_page_and_cannot_end_its_script_block():
    html = bench.page_html({"mode": "roundtrip", "stores": ["memory"], "evil": "</script><script>alert(1)"})
    assert "__CONFIG__" not in html
    block = html.split('<script id="config" type="application/json">', 1)[1].split("</script>", 1)[0]
    assert json.loads(block)["evil"] == "</script><script>alert(1)"


def test_unknown_stores_are_refused_before_a_browser_starts(tmp_path):
    with pytest.raises(ValueError, match="unknown store"):
        bench.run_limits("chromium", tmp_path, max_mib=8, stores=["floppy"])
    with pytest.raises(ValueError, match="unknown store"):
        bench.run_speed("chromium", tmp_path, counts=[10], stores=["floppy"])


def _failed(**after):
    return {
        "kind": "indexeddb",
        "available": True,
        "reached": False,
        "stopped": None,
        "bytesStored": 48 * MiB,
        "maxBytes": 100 * MiB,
        "error": {"name": "QuotaExceededError", "message": "quota"},
        "afterError": after,
    }


def test_limit_verdicts_say_not_reached_failed_and_rolled_back():
    assert bench.limit_verdict({"kind": "opfs", "available": True, "reached": True, "maxBytes": 1024 * MiB}) == (
        "at least 1.00 GiB, not reached"
    )
    assert bench.limit_verdict(_failed(rolledBack=True, earlierIntact=True)) == (
        "failed after 48 MiB: QuotaExceededError (the failing write rolled back, earlier data intact)"
    )
    assert "NOT rolled back" in bench.limit_verdict(_failed(rolledBack=False, earlierIntact=False))
    stopped = {"kind": "cacheapi", "available": True, "reached": False, "stopped": "time budget", "bytesStored": 8 * MiB}
    assert bench.limit_verdict(stopped) == "at least 8 MiB, stopped by the time budget"
    missing = {"kind": "opfs", "available": False, "error": {"name": "NotSupportedError", "message": "no OPFS"}}
    assert bench.limit_verdict(missing) == "not available: NotSupportedError: no OPFS"


def test_limit_verdicts_for_localstorage_and_memory():
    ls = {
        "kind": "localstorage",
        "available": True,
        "latin1": {"available": True, "reached": False, "valueChars": 5_242_868, "error": {"name": "QuotaExceededError"}},
        "nonLatin1": {"available": True, "reached": True, "valueChars": 1 << 25},
    }
    text = bench.limit_verdict(ls)
    assert "Latin-1: 5,242,868 UTF-16 characters in one value (QuotaExceededError)" in text
    assert "non-Latin-1: at least 33,554,432 characters, not reached" in text
    mem = {"kind": "memory", "available": True, "mibHeld": 64.0, "capBytes": 64 * MiB}
    assert "not storage" in bench.limit_verdict(mem)


def test_speed_rows_flatten_modes_and_say_na_capped_and_skipped():
    result = {
        "stores": {
            "memory": {
                "available": True,
                "counts": {
                    "1000": {
                        "eachTx": {"records": 1000, "ms": 1.0, "recordsPerS": 10**6, "longestStallMs": 1.0, "rounds": 3},
                        "oneTx": {"records": 1000, "na": True, "note": "n/a: memory has no transactions"},
                        "readAll": {"records": 1000, "ms": 0.5, "rounds": 3},
                    },
                    "10000": {"count": 10000, "skipped": "the engine's speed budget was spent"},
                },
            },
            "indexeddb": {
                "available": True,
                "counts": {"10000": {"eachTx": {"records": 3000, "of": 10000, "capped": True, "ms": 2500.0}, "oneTx": {}, "readAll": {}}},
            },
            "opfs": {"available": False, "error": {"name": "NotSupportedError"}},
        }
    }
    rows = bench.speed_rows(result)
    mem = [r for r in rows if r["store"] == "memory"]
    assert [r["mode"] for r in mem] == ["one per record", "all in one", "read all", "-"]
    assert mem[1]["na"] and mem[1]["note"].startswith("n/a")
    assert mem[3]["note"] == "the engine's speed budget was spent"
    capped = next(r for r in rows if r["store"] == "indexeddb" and r["mode"] == "one per record")
    assert capped["records"] == 3000 and capped["note"] == "capped: 3,000 of 10,000"
    assert next(r for r in rows if r["store"] == "opfs")["note"] == "not available"


# -- real engines ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("engine", tuple(browser.ENGINES))
def test_limits_in_each_engine_are_reported_per_store(engine, tmp_path):
    _need(engine)
    require_program("node", "npm")
    out = bench.run_limits(engine, tmp_path, max_mib=16, step_mib=8, memory_cap_mib=16, store_budget_s=30 * UNIT)
    assert out["mode"] == "limits" and out["engine"] == engine
    stores = out["stores"]
    assert set(stores) == set(bench.STORES)
    for kind in ("indexeddb", "idb", "cacheapi"):
        s = stores[kind]
        assert s["available"], (kind, s)
        # 16 MiB fit everywhere: written in full, in two incompressible chunks, then deleted.
        assert (s["reached"], s["bytesStored"], s["chunks"]) == (True, 16 * MiB, 2), (kind, s)
        assert s["verdict"] == "at least 16 MiB, not reached"
        assert s["cleared"] is True
    ls = stores["localstorage"]["latin1"]
    # Far below the 32 Mi-character cap, an error with a name.
    assert not ls["reached"] and 0 < ls["valueChars"] < 1 << 25 and ls["error"]["name"], ls
    assert stores["memory"]["storage"] is False and stores["memory"]["bytesHeld"] == 16 * MiB


@pytest.mark.slow
@pytest.mark.parametrize("engine", tuple(browser.ENGINES))
def test_speed_in_each_engine_gives_each_mode_per_store(engine, tmp_path):
    _need(engine)
    require_program("node", "npm")
    out = bench.run_speed(engine, tmp_path, counts=[200], rounds=1, budget_s=60 * UNIT)
    assert out["mode"] == "speed"
    for kind in ("localstorage", "indexeddb", "idb", "cacheapi", "memory"):
        c = out["stores"][kind]["counts"]["200"]
        assert c["eachTx"]["records"] == 200 and c["eachTx"]["ms"] >= 0 and c["eachTx"]["error"] is None, (kind, c)
        assert c["readAll"]["verified"] is True, (kind, c)
        if kind in ("memory", "localstorage"):
            assert c["oneTx"]["na"] is True
        else:
            assert c["oneTx"]["records"] == 200 and c["oneTx"]["error"] is None, (kind, c)
    rows = bench.speed_rows(out)
    assert {r["store"] for r in rows} == set(bench.STORES)


@pytest.mark.slow
@pytest.mark.parametrize("driver", ["session", "playwright"])
def test_chromium_enforces_a_devtools_quota_override(driver, tmp_path):
    _need("chromium")
    require_program("node", "npm", *(["playwright"] if driver == "playwright" else []))
    out = bench.run_quota_override(tmp_path, quota_mib=12, max_mib=32, step_mib=2, stores=("indexeddb", "cacheapi"), driver=driver)
    assert out["cdp_usage_and_quota"]["quota"] == 12 * MiB
    for kind in ("indexeddb", "cacheapi"):
        s = out["stores"][kind]
        # Stopped by the override well before the 32 MiB written elsewhere, with a named error, and nothing half-written.
        assert not s["reached"] and s["bytesStored"] <= 12 * MiB and s["error"]["name"], (kind, s)
        assert s["afterError"]["rolledBack"] is True, (kind, s)
