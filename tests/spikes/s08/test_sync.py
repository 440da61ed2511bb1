"""Spike 8's sync scenario: the account on hand-made server states (exact), then the whole run in each engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import browser
from spikes.s08_browser_storage import sync
from spikes.s08_browser_storage.sync_server import SyncCore
from tests.utils import UNIT, missing_program, require_program


def state(tags: list[str], seen: dict[str, int] | None = None, **clients: Any) -> dict[str, Any]:
    seen = seen or {t: 1_000_000 * (i + 1) for i, t in enumerate(tags)}
    return {"tags": tags, "seen": {t: {"t_ns": v, "client": "off"} for t, v in seen.items()}, "clients": clients, "text": "", "board": {}}


def totals(acc: dict[str, Any]) -> dict[str, int]:
    return {
        k: v["count"] if isinstance(v, dict) else v
        for k, v in acc["total"].items()
        if k in ("sent", "delivered", "lost_after_ack", "lost_without_ack", "duplicated", "unexpected", "reordered", "expected")
    }


def test_every_edit_once_is_exactly_once() -> None:
    made = {"off": ["off.e0", "off.m0", "off.e1"], "on": ["on.e0"]}
    acc = sync.account(made, {"off": made["off"], "on": made["on"]}, state(["on.e0", "off.e0", "off.m0", "off.e1"]))
    assert totals(acc) == {
        "sent": 4,
        "expected": 4,
        "delivered": 4,
        "lost_after_ack": 0,
        "lost_without_ack": 0,
        "duplicated": 0,
        "unexpected": 0,
        "reordered": 0,
    }
    assert acc["connections"]["0"]["delivered"]["count"] == 3


def test_lost_duplicated_unexpected_and_reordered_are_told_apart() -> None:
    made = {"off": ["off.e0", "off.e1", "off.e2", "off.m0"]}
    acked = {"off": ["off.e0", "off.e1"]}  # e2 and m0 were never acknowledged
    # e1 twice (an action applied twice), e0 after e1 (reordered), e2 and m0 never came (never acknowledged either),
    # and a tag of no client's edit (unexpected).
    server = state(["off.e1", "off.e0", "off.e1", "x.e9"], seen={"off.e1": 1, "off.e0": 2, "x.e9": 3})
    acc = sync.account(made, acked, server)
    assert totals(acc) == {
        "sent": 4,
        "expected": 4,
        "delivered": 2,
        "lost_after_ack": 0,
        "lost_without_ack": 2,
        "duplicated": 1,
        "unexpected": 1,
        "reordered": 1,
    }
    acc = sync.account(made, {"off": ["off.e2"]}, state(["off.e0"]))
    assert totals(acc)["lost_after_ack"] == 1 and totals(acc)["lost_without_ack"] == 2


def test_the_account_reads_a_real_core_state() -> None:
    core = SyncCore()
    core.connect("A", "off")
    from pycrdt import Doc, Map, Text

    d = Doc()
    note, board = d.get("note", type=Text), d.get("board", type=Map)
    note.insert(0, "<off.e0>")
    note.insert(0, "<off.e1>")
    board["t0"] = {"x": 1.0, "y": 2.0, "id": "off.m0"}
    core.on_message("A", b"U" + d.get_update())
    acc = sync.account({"off": ["off.e0", "off.e1", "off.m0"]}, {"off": []}, core.state())
    assert totals(acc)["delivered"] == 3 and totals(acc)["duplicated"] == 0


def test_timing_and_outbox_from_the_server_record() -> None:
    server = state(
        ["off.e0", "off.m0"],
        seen={"off.e0": 5_000_000, "off.m0": 7_500_000},
        off={"online_ns": 1_000_000, "online_bytes_up": 120, "online_bytes_down": 80, "online_frames_up": 3, "online_frames_down": 3},
    )
    timing = sync.sync_timing(server, ["off.e0", "off.m0"])
    assert timing["online_to_all_edits_ms"] == 6.5 and timing["bytes_up"] == 120 and timing["bytes_down"] == 80
    assert sync.sync_timing(server, ["off.e0", "off.e1"])["online_to_all_edits_ms"] is None  # not all arrived
    rec = {"received": [{"kind": "action"}] * 3 + [{"kind": "state"}], "applied_actions": {"0": "a", "1": "b"}, "duplicate_actions": 1}
    assert sync.outbox_account(rec, 2, 0, 0) == {
        "actions_made": 2,
        "action_frames_received": 3,
        "applied": 2,
        "duplicate_copies_ignored": 1,
        "applied_twice": 0,
        "left_in_outbox": 0,
    }


def test_run_sync_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        sync.run_sync("chromium", tmp_path, edits=1, moves=1, strategy="guess")
    with pytest.raises(ValueError):
        sync.run_sync("chromium", tmp_path, edits=1, moves=sync.MAX_MOVES + 1, strategy="state-vector")


def test_versions_are_pinned() -> None:
    v = sync.versions()
    assert v["yjs"] == "13.6.33" and v["pycrdt"] and v["websockets"]


# -- the run in each engine ----------------------------------------------------------------------------------------


def _engine(name: str) -> None:
    require_program("node", "npm")
    if browser.find_engine(name) is None:
        missing_program(f"{browser.ENGINES[name].title} is not installed")


def _exactly_once(r: dict[str, Any], edits: int, moves: int, other: int) -> None:
    t = r["account"]["total"]
    assert t["expected"] == edits + moves + other
    assert t["delivered"]["count"] == t["expected"], r["account"]
    assert t["duplicated"]["count"] == t["unexpected"]["count"] == 0
    assert r["outbox"]["applied_twice"] == 0 and r["outbox"]["left_in_outbox"] == 0
    assert r["texts_equal"] and r["boards_equal"], r
    assert r["exactly_once"]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["chromium", "firefox", "webkit"])
@pytest.mark.parametrize("strategy", sync.STRATEGIES)
def test_offline_edits_arrive_exactly_once(engine: str, strategy: str, tmp_path: Path) -> None:
    _engine(engine)
    r = sync.run_sync(engine, tmp_path, edits=3, moves=2, strategy=strategy, other_edits=2, other_moves=1, timeout=60 * UNIT)
    _exactly_once(r, 3, 2, 3)
    assert r["restore"]["text_restored_equal_to_offline"] and r["restore"]["outbox"] == 5
    assert r["timing"]["online_to_all_edits_ms"] is not None and r["timing"]["bytes_up"] > 0
    if strategy == "outbox-replay":
        assert r["outbox"]["applied"] == 5 and r["outbox"]["action_frames_received"] == 5
    else:
        assert r["outbox"]["action_frames_received"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["chromium", "firefox", "webkit"])
@pytest.mark.parametrize("strategy", sync.STRATEGIES)
def test_a_killed_browser_loses_nothing_and_a_resent_action_is_applied_once(engine: str, strategy: str, tmp_path: Path) -> None:
    _engine(engine)
    resend = 2 if strategy == "outbox-replay" else 0  # two acknowledgements lost: those actions come twice
    r = sync.run_sync(
        engine, tmp_path, edits=2, moves=2, strategy=strategy, kill=True, resend=resend, other_edits=1, other_moves=0, timeout=60 * UNIT
    )
    _exactly_once(r, 2, 2, 1)
    assert r["browser_stop"] == "kill" and r["restore"]["outbox"] == 4 and r["restore"]["text_restored_equal_to_offline"]
    if strategy == "outbox-replay":
        assert r["outbox"]["action_frames_received"] == 6 and r["outbox"]["duplicate_copies_ignored"] == 2 and r["outbox"]["applied"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["chromium"])
@pytest.mark.parametrize("strategy", sync.STRATEGIES)
def test_a_corrupt_log_record_falls_back_to_a_full_resync(engine: str, strategy: str, tmp_path: Path) -> None:
    _engine(engine)
    r = sync.run_sync(engine, tmp_path, edits=2, moves=1, strategy=strategy, corrupt=True, other_edits=1, other_moves=0, timeout=60 * UNIT)
    assert r["health"]["corrupt_updates"] == 1 and r["health"]["full_resyncs"] == 1 and r["fallback_full_resync"]
    _exactly_once(r, 2, 1, 1)  # the outbox held the edits the log lost
