"""Issue 18: OT serves N authors through one central server (a concurrent trace of four authors reaches its endContent),
CRDT peers converge under any delivery order with the Yjs sync step, and the document's convergence claims come from one
set of stored facts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from harness.results import RunResult
from spikes.s02_state_sync import crdt, ot, scenarios, spike, traces
from spikes.s02_state_sync.decision import _fmt_s

STORED = Path(__file__).parent / "data" / "tiny-run.json"


@pytest.fixture(scope="module")
def four():
    return traces.interleaved("friendsforever", 2)


def _vectors(trace):
    """Per transaction, per author: how many of that author's transactions its causal history holds (computed here, from parents)."""
    n = trace["numAgents"]
    vec, count = [], [0] * n
    for t in trace["txns"]:
        v = [0] * n
        for p in t["parents"]:
            v = [max(a, b) for a, b in zip(v, vec[p], strict=True)]
        assert v[t["agent"]] == count[t["agent"]], "an author's transactions must be fully ordered"
        count[t["agent"]] += 1
        v[t["agent"]] = count[t["agent"]]
        vec.append(v)
    return vec, count


# -- the four-author trace --------------------------------------------------------------------


def test_the_derived_trace_has_four_authors_and_the_trace_format(four):
    src = traces.load("friendsforever")
    assert four["numAgents"] == 4 and src["numAgents"] == 2
    assert len(four["txns"]) == 2 * len(src["txns"]) + 1  # two copies and the separators' transaction
    assert four["endContent"] == src["endContent"] + "\n\n" + src["endContent"]
    assert [t for t in four["txns"] if not t["parents"]] == [four["txns"][0]]
    assert all(0 <= p < i for i, t in enumerate(four["txns"]) for p in t["parents"])
    vec, count = _vectors(four)
    assert count == [count[0], len(src["txns"]) - count[0] + 1, count[0] - 1, len(src["txns"]) - count[0] + 1]
    # Parents are minimal: none is in another parent's history.
    for t in four["txns"]:
        for p in t["parents"]:
            for q in t["parents"]:
                ap = four["txns"][p]["agent"]
                assert p == q or vec[q][ap] < vec[p][ap], (p, q)
    assert "friendsforever" in four["how"] and "seed 1" in four["how"]


def test_the_four_authors_are_concurrent_across_the_copies(four):
    """Not a relabelled two-author trace: authors of different copies edit without knowing each other's latest edits."""
    vec, _ = _vectors(four)
    seen_by = [[0] * 4 for _ in range(4)]  # per author: transactions of each author made so far
    across = three_way = 0
    for t, v in zip(four["txns"], vec, strict=True):
        a = t["agent"]
        unknown = [b for b in range(4) if b != a and v[b] < seen_by[a][b]]
        across += any(b // 2 != a // 2 for b in unknown)
        three_way += len(unknown) >= 2
        for b in range(4):
            seen_by[b][a] += 1
    assert across > 1000 and three_way > 100, (across, three_way)


@pytest.mark.parametrize("replay", [traces.replay_concurrent_ot, traces.replay_concurrent_crdt])
def test_four_authors_replay_to_end_content(four, replay):
    r = replay(four)
    assert r.extra == {"replicas_equal": True, "mapping_failures": 0, "authors": 4}
    assert r.final_text == four["endContent"]


def test_a_history_a_central_server_cannot_give_is_a_counted_mapping_failure():
    """Author 0 knows author 2's edit but not author 1's, which the server ordered first: no client of it is in that state."""
    trace = {
        "numAgents": 3,
        "endContent": "",
        "txns": [
            {"agent": 0, "parents": [], "patches": [[0, 0, "a"]]},
            {"agent": 1, "parents": [0], "patches": [[1, 0, "b"]]},
            {"agent": 2, "parents": [0], "patches": [[0, 0, "c"]]},
            {"agent": 0, "parents": [2], "patches": [[1, 0, "d"]]},
        ],
    }
    assert traces.replay_concurrent_ot(trace).extra["mapping_failures"] == 1
    trace["txns"][3]["parents"] = [1, 2]  # knows both: fine, and every replica ends equal
    trace["txns"][3]["patches"] = [[2, 0, "d"]]
    r = traces.replay_concurrent_ot(trace)
    assert r.extra["mapping_failures"] == 0 and r.extra["replicas_equal"] and r.final_text == "cadb"


# -- the Jupiter server on its own ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_jupiter_server_clients_converge_under_random_delivery(seed):
    rng = random.Random(seed)
    n = 3 + seed % 3
    server = ot.JupiterServer()
    clients = [ot.JupiterSite(priority=True) for _ in range(n)]
    up: list[list[tuple[list, int]]] = [[] for _ in range(n)]  # FIFO per direction and client
    down: list[list[tuple[list, int]]] = [[] for _ in range(n)]
    for c in range(n):
        assert server.connect(c) == []
    for step in range(300):
        c = rng.randrange(n)
        r = rng.random()
        if r < 0.35:
            doc = clients[c].state["note"]
            pos = rng.randrange(len(doc) + 1)
            nd = rng.randrange(min(3, len(doc) - pos) + 1)
            up[c].append(clients[c].local([("note", ot.text_op(len(doc), pos, nd, f"{c}{step};"))]))
        elif r < 0.45:
            up[c].append(clients[c].local([("token", "t", float(c), float(step))]))
        elif r < 0.7 and up[c]:
            for d, op, seen in server.receive(c, *up[c].pop(0)):
                down[d].append((op, seen))
        elif down[c]:
            clients[c].receive(*down[c].pop(0))
    while any(up) or any(down):
        for c in range(n):
            while up[c]:
                for d, op, seen in server.receive(c, *up[c].pop(0)):
                    down[d].append((op, seen))
            while down[c]:
                clients[c].receive(*down[c].pop(0))
    assert all(cl.state == server.state for cl in clients)
    # A late joiner gets the history and reaches the same state.
    late = ot.JupiterSite(priority=True)
    for op, seen in server.connect("late"):
        late.receive(op, seen)
    assert late.state == server.state and len(server.history) > 50


def test_jupiter_server_refuses_what_no_client_could_send():
    server = ot.JupiterServer()
    server.connect(0)
    with pytest.raises(ot.OTError):
        server.receive(1, [], 0)  # never connected
    with pytest.raises(ot.OTError):
        server.receive(0, [], 5)  # saw messages never sent
    with pytest.raises(ot.OTError):
        server.connect(0)


# -- the CRDT sync step --------------------------------------------------------------------------------


def test_an_update_with_a_gap_asks_its_sender_and_the_answer_fills_it():
    a, c = crdt.CrdtReplica(1), crdt.CrdtReplica(3)
    a.insert_note(0, "hello")
    (u1,) = a.take_outbox()
    a.insert_note(5, " world")
    (u2,) = a.take_outbox()
    (ask,) = c.receive(u2)  # u2 before u1: held pending, the sender is asked
    assert ask[:1] == crdt.STATE and c.gaps == 1 and c.view()["note"] == ""
    (answer,) = a.receive(ask)
    assert answer[:1] == crdt.SYNC
    assert c.receive(answer) == [] and c.view()["note"] == "hello world"
    assert c.receive(u1) == []  # arriving late changes nothing and asks nothing
    # An answer never asks again (a sync ends), even when it leaves a gap.
    b = crdt.CrdtReplica(2)
    assert b.receive(crdt.SYNC + u2[1:]) == [] and b.gaps == 0


@pytest.mark.parametrize("seed", range(12))
def test_crdt_peers_converge_in_any_delivery_order_with_the_sync_step(seed):
    with_sync = scenarios._peer_to_peer("crdt", random.Random(seed))
    assert with_sync is not None and with_sync["converged"], seed
    assert with_sync["updates"] == 120


def test_the_sync_step_did_the_work_in_those_orders():
    """The orders above do hit gaps (the sync step answered them), and without it the same orders leave peers behind."""
    runs = [scenarios._peer_to_peer("crdt", random.Random(seed)) for seed in range(12)]
    bare = [scenarios._peer_to_peer("crdt", random.Random(seed), sync=False) for seed in range(12)]
    assert sum(r["sync_requests"] for r in runs) > 0
    assert sum(1 for r in bare if not r["converged"]) > 0
    assert all(r["converged"] or r["unapplied"] > 0 for r in bare)


# -- one set of facts behind both convergence claims --------------------------------------------------


def _run_with_p2p(converged: list[bool]) -> RunResult:
    """The stored tiny run, its CRDT intent step given new-format peer-to-peer facts and their samples."""
    data = json.loads(STORED.read_text())
    k = len(converged)
    for sr in data["scenarios"]:
        if sr["scenario"] == "intent" and sr["option"] == "crdt":
            per = [{"converged": c, "updates": 120, "sync_requests": 3, "sync_bytes": 900} for c in converged]
            sr["facts"][-1]["peer_to_peer"] = {
                "rounds": k,
                "converged": sum(converged),
                "per_round": per,
                "sync": "state vectors on connect and on a gap",
                "sync_requests": 3 * k,
                "sync_bytes": 900 * k,
                "without_sync": {"converged": 1, "updates": 120 * k, "unapplied": 7, "rounds_behind": k - 1, "per_round": []},
            }
            sr["measurements"].append(
                {
                    "name": "p2p_converged",
                    "unit": "bool",
                    "tags": {},
                    "better": "higher",
                    "repeats": [[1.0 if c else 0.0 for c in converged]],
                }
            )
    return RunResult.from_dict(data)


def _rows(run: RunResult) -> dict[str, list[str]]:
    matrix = next(t for t in spike.report(run).tables if t.title == "Comparison matrix")
    return {r[0].split(" (")[0]: r for r in matrix.rows}


def test_the_matrix_rows_agree_on_peer_to_peer_convergence():
    old = spike.checks(RunResult.from_dict(json.loads(STORED.read_text())), "crdt")
    run = _run_with_p2p([True] * 10)
    rows = _rows(run)
    col = 1 + run.options.index("crdt")
    assert rows["Convergence guarantee"][col] == f"{old[0] + 10} of {old[1] + 10} checks converged/exact"
    assert "peer-to-peer rounds with the option's own sync" in rows["Convergence guarantee"][0]
    cell = rows["Needs a central server"][col]
    assert cell.startswith("no: with its sync step") and "converged in 10 of 10 random delivery orders" in cell
    assert "Without the sync step" in cell and "converged in 1 of 10" in cell and "NOT" not in cell
    # One round that did not converge shows in both rows.
    run = _run_with_p2p([True] * 9 + [False])
    rows = _rows(run)
    assert rows["Convergence guarantee"][col] == f"{old[0] + 9} of {old[1] + 10} checks converged/exact"
    assert "NOT every round converged" in rows["Needs a central server"][col] and "9 of 10" in rows["Needs a central server"][col]


def test_the_concurrent_table_names_each_trace_and_its_authors():
    data = json.loads(STORED.read_text())
    how = traces.INTERLEAVED.format(copies=2, name="friendsforever", authors=2, total=4, seed=1)
    for sr in data["scenarios"]:
        if sr["scenario"] == "concurrent-trace":
            for name, v in (
                ("final_text_equal", 1.0),
                ("replicas_equal", 1.0),
                ("mapping_failures", 0.0),
                ("replay_s", 9.0),
                ("bytes_per_txn", 40.0),
            ):
                sr["measurements"].append(
                    {"name": name, "unit": "", "tags": {"trace": "friendsforever-x2"}, "better": "lower", "repeats": [[v]]}
                )
            sr["facts"][-1]["traces"] = {
                "friendsforever": {"authors": 2, "txns": 26078, "end_length": 21362, "final_length": 21362, "how": "vendored, unchanged"},
                "friendsforever-x2": {
                    "authors": 4,
                    "txns": 52157,
                    "end_length": 42726,
                    "final_length": 42726,
                    "how": how,
                    "concurrent_txns": 23400,
                },
            }
    table = next(t for t in spike.report(RunResult.from_dict(data)).tables if t.title.startswith("Replay of concurrent traces"))
    assert table.title == "Replay of concurrent traces (friendsforever: 2 authors; friendsforever-x2: 4 authors)"
    rows = {r[0]: r[1:] for r in table.rows}
    assert rows["friendsforever-x2, 4 authors: final text equals endContent"] == ["yes", "yes"]
    assert rows["friendsforever-x2, 4 authors: replay time"] == [_fmt_s(9.0)] * 2
    assert rows["friendsforever, 2 authors: replay time"] != rows["friendsforever-x2, 4 authors: replay time"]
    assert "Jupiter server" in table.note and how in table.note and "23,400" in table.note
    # A run from before the four-author trace: friendsforever alone.
    old = next(
        t for t in spike.report(RunResult.from_dict(json.loads(STORED.read_text()))).tables if t.title.startswith("Replay of concurrent")
    )
    assert old.title == "Replay of concurrent traces (friendsforever: 2 authors)" and len(old.rows) == 5
