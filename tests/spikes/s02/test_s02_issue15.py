"""Issue 15: token moves have a lost-intent counter, the two replay speeds are labelled, the peer-to-peer
CRDT result is explained from its counts, and every chart carries the spread across repeats."""

from __future__ import annotations

import json
import random
from pathlib import Path

from harness.results import RunResult, load
from spikes.s02_state_sync import lww, scenarios, spike
from spikes.s02_state_sync.tabletop import Ledger, Network, Workload, lost_total

STORED = Path(__file__).parent / "data" / "tiny-run.json"


# -- the token-move counter --------------------------------------------------------------


def _chain() -> Ledger:
    """t moved to (1, 1) by someone who saw nothing, then to (2, 2) after seeing it, then to (3, 3) after seeing that."""
    ledger = Ledger()
    ledger.move("t", (1.0, 1.0), None)
    ledger.move("t", (2.0, 2.0), [1.0, 1.0])
    ledger.move("t", (3.0, 3.0), [2.0, 2.0])
    return ledger


def test_a_move_is_lost_when_the_final_position_is_one_its_author_had_seen():
    ledger = _chain()
    assert ledger.lost_moves({"t": [3.0, 3.0]}) == 0  # the last informed move won
    assert ledger.lost_moves({"t": [2.0, 2.0]}) == 1  # the move to (3, 3) was made after seeing (2, 2)
    assert ledger.lost_moves({"t": [1.0, 1.0]}) == 2  # both later moves, through the chain
    assert ledger.lost_moves({}) == 3  # the token vanished: every move of it is lost
    assert ledger.lost_moves({"t": [9.0, 9.0]}) == 3  # a position no move set
    assert ledger.intents == 3 and lost_total(ledger.lost({"note": "", "strokes": {}, "tokens": {"t": [1.0, 1.0]}})) == 2


def test_two_moves_that_did_not_see_each_other_lose_nothing_whichever_wins():
    ledger = Ledger()
    ledger.move("t", (1.0, 1.0), None)
    ledger.move("t", (2.0, 2.0), None)
    assert ledger.lost_moves({"t": [1.0, 1.0]}) == ledger.lost_moves({"t": [2.0, 2.0]}) == 0


def test_the_workload_records_what_the_mover_saw():
    ledger = Ledger()
    net = Network("crdt", 1)
    work = Workload(0, ledger, random.Random(0), tokens=1, mix=(1, 0, 0))
    work.edit(net.replicas[0])
    work.edit(net.replicas[0])
    assert ledger.token_moves == {"t0": {(0.0, 1.0): None, (0.0, 2.0): (0.0, 1.0)}}
    assert ledger.lost(net.views()[0])["token_move"] == 0


def _lww_move_after_seeing(observe: bool) -> int:
    """Replica 1 (its wall clock far behind) moves a token after receiving replica 0's move of it."""
    clocks = [1_000_000, 0]
    net = Network("lww", 2)
    net.replicas = [lww.LWWReplica(f"c{i}", (lambda i=i: clocks[i])) for i in range(2)]
    if not observe:  # a broken clock: receiving a write does not move it forward
        for r in net.replicas:
            r.clock.observe = lambda stamp: None
    ledger = Ledger()
    net.replicas[0].move_token("t", 0.0, 1.0)
    ledger.move("t", (0.0, 1.0), None)
    net.settle()
    seen = net.replicas[1].view()["tokens"]["t"]
    net.replicas[1].move_token("t", 1.0, 1.0)
    ledger.move("t", (1.0, 1.0), seen)
    net.settle()
    views = net.views()
    assert views[0] == views[1]
    return ledger.lost(views[0])["token_move"]


def test_the_counter_catches_a_move_that_lost_to_the_one_it_replaced():
    assert _lww_move_after_seeing(observe=True) == 0  # the hybrid logical clock orders the informed move last
    assert _lww_move_after_seeing(observe=False) == 1  # without it, the older write wins: counted


def test_the_same_token_case_counts_the_overwritten_move():
    for option in ("ot", "crdt", "lww"):
        assert scenarios._cases(option)["same token moved"]["lost"] == 1


# -- the document from an old run (no token counter, no peer-to-peer counts) -------------


def test_an_old_run_shows_token_moves_as_not_measured_not_zero():
    run = load(STORED)
    rows = {r[0]: r for r in spike.recommendation_by_kind(run)}
    assert "not measured" in rows["token positions"][2] and "0 intents lost" not in rows["token positions"][2]
    content = spike.report(run)
    table = next(t for t in content.tables if t.title.startswith("Lost intents in the random concurrent workload"))
    assert next(r for r in table.rows if r[0] == "token move")[1:] == ["not measured"] * 3


def _with_token_counter(lost: dict[str, list[float]]) -> RunResult:
    data = json.loads(STORED.read_text())
    for sr in data["scenarios"]:
        if sr["scenario"] == "intent":
            sr["measurements"].append(
                {
                    "name": "workload_lost",
                    "unit": "intents",
                    "tags": {"kind": "token_move"},
                    "better": "lower",
                    "repeats": [lost[sr["option"]]],
                }
            )
    return RunResult.from_dict(data)


def test_a_measured_token_counter_decides_the_token_row():
    run = _with_token_counter({"ot": [2.0, 1.0], "crdt": [0.0, 1.0], "lww": [0.0, 0.0]})
    row = next(r for r in spike.recommendation_by_kind(run) if r[0] == "token positions")
    # LWW lost no move, the others did: the count decides before the message size does.
    assert row[1] == "Last-Write-Wins (hybrid logical clocks)"
    assert row[2].startswith("0 intents lost") and "Operational Transformation (central server): 3 lost" in row[2]
    assert "CRDT (pycrdt / Yrs): 1 lost" in row[2]


def test_the_peer_to_peer_cell_explains_the_disagreement_from_its_counts():
    run = load(STORED)
    old = spike._p2p_text(run, "crdt")
    assert "not counted in this run" in old and "server's order" in old
    sr = run.ok("intent", "crdt")
    sr.facts[-1]["peer_to_peer"] = {"delivered": False, "resynced": True, "updates": 120, "unapplied": 4, "peers_behind": 2}
    text = spike._p2p_text(run, "crdt")
    assert "2 of 3 peers lacked 4 of the 120 updates they had received" in text and "pending" in text


def test_the_peer_to_peer_counts_are_consistent():
    p2p = scenarios._peer_to_peer("crdt", random.Random(3), sync=False)
    assert p2p is not None and p2p["updates"] > 0
    assert 0 <= p2p["peers_behind"] <= 3 and p2p["peers_behind"] <= p2p["unapplied"]
    # Peers that disagree after delivery lack received updates; peers that lack none agree.
    assert p2p["converged"] or p2p["unapplied"] > 0
    assert not p2p["unapplied"] or p2p["peers_behind"]


# -- the two replay speeds, and the charts' spread -----------------------------------------


def test_the_replay_table_says_why_its_two_speeds_differ():
    run = load(STORED)
    content = spike.report(run)
    table = next(t for t in content.tables if t.title == "Replay of automerge-paper")
    labels = [r[0] for r in table.rows]
    assert "edits per second, over the edits replayed" in labels
    n = run.ok("trace-replay", "lww").params["lww_edits"]
    assert any(label.startswith(f"edits per second, first {n:,} edits for every option") for label in labels)
    assert "The two speed rows:" in table.note
    # A run whose LWW prefix row reuses the replays of its rounds: one figure, said so.
    sr = run.ok("trace-replay", "lww")
    sr.facts[-1]["prefix_is_the_replay"] = True
    assert "so they are one figure" in spike._speed_note(run, {o.key: o.title for o in spike.options})


def test_every_chart_has_a_spread_for_every_bar():
    run = load(STORED)
    charts = spike.report(run).charts
    assert charts
    for chart in charts:
        assert set(chart.spread) == set(chart.series), chart.slug
        assert all(len(chart.spread[s]) == len(chart.series[s]) for s in chart.series), chart.slug
    conv = next(c for c in charts if c.slug == "session-convergence")
    for o in ("ot", "crdt", "lww"):
        title = next(op.title for op in spike.options if op.key == o)
        per_repeat = run.ok("session", o).measurement("convergence_s", clients="3").repeat_medians()
        assert conv.spread[title] == [(min(per_repeat), max(per_repeat))]
