"""Spike 7's client crash: the account of which edits survive, the page server, the table, and a real Chromium killed mid-edit."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter

import pytest

from harness.plugin import ScenarioContext, ScenarioOutput
from harness.results import MeasurementRecord, RunResult, ScenarioResult
from spikes.s07_error_recovery import core, crash, spike
from tests.utils import UNIT, require_program


def _edit(stage: str, seq: int) -> dict:
    return {"stage": stage, "phase": "edit", "seq": seq}


def _events(made: range, handed: range, acked: range) -> list[dict]:
    return [_edit("made", s) for s in made] + [_edit("handed", s) for s in handed] + [_edit("acked", s) for s in acked]


# -- the account ------------------------------------------------------------------------------------------------


def test_an_outbox_that_kept_everything_loses_nothing():
    evs = _events(range(1, 11), range(1, 11), range(1, 7))
    evs += [
        {"stage": "reopened", "phase": "reopen", "kept": [7, 8, 9, 10]},
        {"stage": "drained", "phase": "reopen", "ok": True, "resent": 4},
    ]
    t = crash.tally(evs, range(1, 11))
    assert (t["made"], t["handed"], t["acked"], t["survived"]) == (10, 10, 6, 10)
    assert t["lost"] == t["lost_acked"] == t["in_write"] == t["unexpected"] == t["duplicated"] == []
    assert t["kept"] == [7, 8, 9, 10] and t["resent"] == 4 and t["drained"]


def test_a_memory_outbox_loses_what_was_not_acknowledged_and_an_edit_in_the_write_is_its_own_count():
    # 12 made, 11 handed over (12 was in the outbox write at the kill), 8 acknowledged, the server applied 1..8.
    evs = _events(range(1, 13), range(1, 12), range(1, 9)) + [{"stage": "drained", "phase": "reopen", "ok": True, "resent": 0}]
    t = crash.tally(evs, range(1, 9), Counter({s: 1 for s in range(1, 9)}))
    assert t["survived"] == 8 and t["lost"] == [9, 10, 11] and t["lost_acked"] == []
    assert t["in_write"] == [12] and t["in_write_survived"] == []
    assert t["duplicated"] == [] and t["kept"] == []


def test_acknowledged_edits_the_server_lacks_duplicates_and_strangers_are_counted():
    evs = _events(range(1, 6), range(1, 6), range(1, 6))
    t = crash.tally(evs, [1, 2, 4, 9], Counter({1: 1, 2: 2}))
    assert t["lost"] == [3, 5] and t["lost_acked"] == [3, 5]
    assert t["unexpected"] == [9] and t["duplicated"] == [2]
    assert not t["drained"]  # the reopened page never said so


def test_events_of_the_reopened_page_are_not_edits():
    evs = _events(range(1, 3), range(1, 3), range(0)) + [{"stage": "acked", "phase": "reopen", "seq": 2}]
    assert crash.tally(evs, [1, 2])["acked"] == 0


def test_every_outbox_option_runs_both_outboxes_and_reconnect_only_none():
    assert crash.VARIANTS["reconnect"] == ("none",)
    for key in crash.CRASH_OPTIONS[1:]:
        assert crash.VARIANTS[key] == ("indexeddb", "memory")
    assert set(crash.CRASH_OPTIONS) <= {o.key for o in spike.options}
    assert 0 < crash.CRASH_PARAMS["offline_at"] < crash.CRASH_PARAMS["kill_at"] < 1


def test_the_server_answers_which_seqs_of_a_client_it_applied():
    room = core.Room("r")
    for c, seq in ((1, 3), (1, 1), (2, 1)):
        room.apply(c, seq, 100)
    assert core.applied_of(room, "r", 1) == {"op": "applied", "room": "r", "c": 1, "seqs": [1, 3]}
    assert core.applied_of(room, "r", 5)["seqs"] == []
    assert core.applied_of(None, "x", 1)["code"] == "unknown-room"
    assert core.applied_of(room, "r", "1")["code"] == "bad-message"
    assert core.applied_of(room, "r", True)["code"] == "bad-message"


# -- the page server ---------------------------------------------------------------------------------------------


def test_the_page_server_serves_the_page_and_records_each_log_entry_before_answering():
    log = crash.PageLog()
    with crash.PageServer(log) as pages:
        url = pages.url(c=7, phase="edit")
        assert url.startswith(f"http://127.0.0.1:{pages.port}/crash.html?") and "c=7" in url
        with urllib.request.urlopen(url, timeout=10 * UNIT) as r:
            assert b"crash.js" in r.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{pages.port}/crash.js", timeout=10 * UNIT) as r:
            assert r.headers["Content-Type"] == "text/javascript" and b"indexedDB" in r.read()
        req = urllib.request.Request(
            f"http://127.0.0.1:{pages.port}/log", json.dumps(_edit("handed", 1)).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10 * UNIT) as r:
            assert r.status == 204
        assert [e for _, e in log.events] == [_edit("handed", 1)]  # recorded when the answer came
        assert log.wait_for(lambda evs: len(evs) == 1, 0)
        assert log.arrival("handed", "edit") is not None and log.arrival("handed", "reopen") is None
        req = urllib.request.Request(f"http://127.0.0.1:{pages.port}/log", b"not json")
        with urllib.request.urlopen(req, timeout=10 * UNIT):
            pass
        with pytest.raises(crash.BrowserError, match="malformed"):
            log.wait_for(lambda evs: False, 10 * UNIT)


def test_a_wait_gives_up_when_the_browser_is_gone():
    assert not crash.PageLog().wait_for(lambda evs: False, 60 * UNIT, alive=lambda: False)


# -- the table ---------------------------------------------------------------------------------------------------


def _run_dict(variant: str, network: str, lost: list[int], drain_ms: float | None) -> dict:
    return {
        "variant": variant,
        "network": network,
        "handed": 50,
        "acked": 50 - len(lost),
        "survived": 50 - len(lost),
        "lost": lost,
        "lost_acked": [],
        "in_write": [],
        "in_write_survived": [],
        "kept": [] if variant != "indexeddb" else lost,
        "resent": 0,
        "resent_known": 0,
        "duplicated": [],
        "unexpected": [],
        "drained": drain_ms is not None,
        "drain_ms": drain_ms,
    }


def _result(option: str, runs: list[dict], status: str = "ok", reason: str = "") -> ScenarioResult:
    out = ScenarioOutput()
    for r in runs:
        crash.record(out, r)
    ms = [MeasurementRecord(m.name, m.unit, m.tags, m.better, [m.samples]) for m in out.measurements]
    return ScenarioResult("client-crash", option, status, reason, measurements=ms)


def _stored(*results: ScenarioResult) -> RunResult:
    return RunResult("r", {"number": 7}, "quick", "t", "", "", 1.0, {}, {"options": list(crash.CRASH_OPTIONS)}, {}, list(results))


def test_the_table_has_a_column_per_option_and_outbox_and_a_section_per_network():
    run = _stored(
        _result("reconnect", [_run_dict("none", "online", [], 500.0), _run_dict("none", "offline", list(range(26, 51)), 600.0)]),
        _result(
            "queue",
            [
                _run_dict("indexeddb", "online", [], 700.0),
                _run_dict("indexeddb", "offline", [], 900.0),
                _run_dict("memory", "online", [], 400.0),
                _run_dict("memory", "offline", list(range(26, 51)), None),
            ],
        ),
        _result("checkpoint", [], status="not_run", reason="postgres is not installed\nmore"),
    )
    titles = {o.key: o.title for o in spike.options}
    table = crash.crash_table(run, titles)
    assert table is not None
    assert table.headers[1:] == [
        "Reconnect only (baseline), no outbox",
        "Message queuing, IndexedDB outbox",
        "Message queuing, memory outbox",
        "Checkpoints, IndexedDB outbox",
        "Checkpoints, memory outbox",
    ]
    rows = {(section, r[0]): r[1:] for section, r in _sections(table.rows)}
    assert rows[("online", "handed over, **lost**")][:3] == ["0", "0", "0"]
    assert rows[("offline", "handed over, **lost**")][:3] == ["25", "0", "25"]
    assert rows[("offline", "relaunch to outbox drained and rejoined, ms")][2] == "not drained"
    assert rows[("online", "handed over, **lost**")][3] == "not run: postgres is not installed"
    assert all(len(r) == len(table.headers) for r in table.rows)


def _sections(rows: list[list[str]]):
    section = ""
    for r in rows:
        if r[0].startswith("**"):
            section = r[0].strip("*").split(":")[0]
            continue
        yield section, r


def test_no_table_without_a_crash_run():
    assert crash.crash_table(_stored(), {}) is None
    assert crash.crash_table(_stored(_result("queue", [], status="failed", reason="x")), {}) is None


# -- end to end: real Chromium, killed mid-edit -------------------------------------------------------------------


@pytest.mark.slow
def test_chromium_killed_mid_edit_the_indexeddb_outbox_keeps_every_edit_and_memory_loses_none_acknowledged(tmp_path):
    require_program("chromium")
    p = {**crash.CRASH_PARAMS, **crash.CRASH_QUICK, "networks": ["online", "offline"], "edits": 40, "timeout_s": 60 * UNIT}
    out = crash.run_crash(ScenarioContext(spike.option("queue"), p, 0, True, tmp_path))
    runs = {(r["variant"], r["network"]): r for r in out.facts["runs"]}
    assert set(runs) == {(v, n) for v in ("indexeddb", "memory") for n in ("online", "offline")}
    for r in runs.values():
        assert r["page_loads"] == ["edit", "reopen"]  # the relaunch opened the page once, no restored tab made edits
        assert r["handed"] >= r["kill_at"] and r["drained"]
        assert r["lost_acked"] == [] and r["unexpected"] == [] and r["duplicated"] == []
        assert [f["details"]["signal"] for f in r["faults"] if f["kind"] == "kill"] == ["SIGKILL"]
    for net in ("online", "offline"):
        idb = runs[("indexeddb", net)]
        assert idb["lost"] == [] and idb["survived"] == idb["handed"]  # every handed-over edit was applied after the relaunch
    # Offline since a quarter of the edits: nothing after it was acknowledged, and the reopened page found it in IndexedDB.
    idb = runs[("indexeddb", "offline")]
    assert idb["acked"] < idb["handed"] and set(range(idb["acked"] + 1, idb["handed"] + 1)) <= set(idb["kept"])
    assert idb["resent"] >= len(idb["kept"])
    # A memory outbox loses exactly what was handed over and not acknowledged when the browser died.
    mem = runs[("memory", "offline")]
    assert mem["kept"] == [] and 0 < len(mem["lost"]) <= mem["handed"] - mem["acked"]
    names = {m.name for m in out.measurements}
    assert {"handed", "survived", "lost", "lost_acked", "duplicated", "drain_ms"} <= names
    assert {m.tags["outbox"] for m in out.measurements} == {"indexeddb", "memory"}


@pytest.mark.slow
def test_reconnect_only_has_no_outbox_and_loses_the_edits_made_offline(tmp_path):
    require_program("chromium")
    p = {**crash.CRASH_PARAMS, **crash.CRASH_QUICK, "edits": 40, "networks": ["offline"], "timeout_s": 60 * UNIT}
    out = crash.run_crash(ScenarioContext(spike.option("reconnect"), p, 0, True, tmp_path))
    (r,) = out.facts["runs"]
    assert r["variant"] == "none" and r["acked"] == 0 and r["kept"] == [] and r["resent"] == 0
    assert r["lost"] and r["lost_acked"] == [] and r["drained"]
    assert r["survived"] + len(r["lost"]) == r["handed"]
