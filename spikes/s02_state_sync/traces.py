"""The editing traces (josephg/editing-traces, CC BY 4.0) and their replays through each option.

``data/README.md`` holds the source, commit and credit. A sequential trace
is replayed by one writer replica whose every message is delivered to a
second (reader) replica, so each option does the work of real sync: produce
the message, ship its bytes, apply it elsewhere. The concurrent trace
(two authors with a ``parents`` DAG) is replayed with every transaction made
on exactly the state its parents describe.
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pycrdt import Doc, Text

from spikes.s02_state_sync import crdt, lww, ot

__all__ = [
    "DATA",
    "CREDIT",
    "load",
    "apply_patches",
    "Replay",
    "replay",
    "replay_pycrdt_direct",
    "replay_concurrent_crdt",
    "replay_concurrent_ot",
    "TraceError",
]

DATA = Path(__file__).parent / "data"
CREDIT = (
    "Editing traces from the public josephg/editing-traces repository (commit 762fa6c51605c88a05ebe5c4b9d4540caca30b97), "
    "licensed CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). Credit: Joseph Gentle and the Automerge project "
    "(automerge-paper). Files unchanged, copied to spikes/s02_state_sync/data/."
)


class TraceError(Exception):
    """A trace is missing, malformed, or cannot be replayed as its DAG says."""


@lru_cache(maxsize=4)
def load(name: str) -> dict[str, Any]:
    """A trace by name (``automerge-paper``, ``friendsforever``), parsed."""
    path = DATA / f"{name}.json.gz"
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise TraceError(f"no trace {name!r}: {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise TraceError(f"{path}: not a gzipped JSON trace ({exc})") from None
    if not isinstance(data.get("txns"), list) or "endContent" not in data:
        raise TraceError(f"{path}: no txns/endContent")
    return data


def patches(trace: dict[str, Any], limit: int | None = None) -> list[tuple[int, int, str]]:
    """The trace's patches in order (the first ``limit`` transactions' worth)."""
    txns = trace["txns"] if limit is None else trace["txns"][:limit]
    return [(p[0], p[1], p[2]) for t in txns for p in t["patches"]]


def apply_patches(start: str, seq: list[tuple[int, int, str]]) -> str:
    """The reference: the patches applied to a Python string (code points)."""
    parts = start
    for pos, nd, ins in seq:
        parts = parts[:pos] + ins + parts[pos + nd :]
    return parts


@dataclass
class Replay:
    """What one replay measured."""

    option: str
    edits: int
    seconds: float
    message_bytes: int
    messages: int
    final_text: str
    state_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ops_per_s(self) -> float:
        return self.edits / self.seconds if self.seconds else 0.0


def replay(option: str, seq: list[tuple[int, int, str]], start: str = "", batch: int = 1) -> Replay:
    """Replay edits through one option: a writer replica, its messages applied by a reader replica.

    ``batch`` groups that many edits into one CRDT transaction (CRDT only).
    """
    if option == "crdt":
        return _replay_crdt(seq, start, batch)
    if batch != 1:
        raise ValueError("batching applies to the CRDT option only")
    if option == "ot":
        return _replay_ot(seq, start)
    if option == "lww":
        return _replay_lww(seq, start)
    raise ValueError(f"unknown option {option!r}")


def _replay_crdt(seq: list[tuple[int, int, str]], start: str, batch: int) -> Replay:
    writer, reader = crdt.CrdtReplica(client_id=1), crdt.CrdtReplica(client_id=2)
    if start:
        writer.insert_note(0, start)
        for m in writer.take_outbox():
            reader.receive(m)
    nbytes = nmsg = 0
    t0 = time.perf_counter()
    for i in range(0, len(seq), batch):
        with writer.transaction():
            for pos, nd, ins in seq[i : i + batch]:
                writer.delete_note(pos, nd)
                if ins:
                    writer.insert_note(pos, ins)
        for m in writer.take_outbox():
            nbytes += len(m)
            nmsg += 1
            reader.receive(m)
    dt = time.perf_counter() - t0
    text = str(reader.note)
    if str(writer.note) != text:
        raise TraceError("CRDT writer and reader differ after the replay")
    return Replay("crdt", len(seq), dt, nbytes, nmsg, text, reader.size())


def _replay_ot(seq: list[tuple[int, int, str]], start: str) -> Replay:
    server = ot.OTRelay()
    writer, reader = ot.OTReplica(), ot.OTReplica()
    if start:
        server.server.state["note"] = start
        writer.client.state["note"] = reader.client.state["note"] = start
    nbytes = nmsg = 0
    clients = ["w", "r"]
    replicas = {"w": writer, "r": reader}
    for c in clients:
        server.on_message(c, replicas[c].hello(), clients)
    t0 = time.perf_counter()
    for pos, nd, ins in seq:
        writer.replace_note(pos, nd, ins)
        queue = [("w", m) for m in writer.take_outbox()]
        while queue:  # the writer's op to the server, the ack back, the op to the reader
            src, m = queue.pop(0)
            nbytes += len(m)
            nmsg += 1
            for dst, out in server.on_message(src, m, clients):
                nbytes += len(out)
                nmsg += 1
                queue.extend((dst, r) for r in replicas[dst].receive(out))
    dt = time.perf_counter() - t0
    text = reader.client.state["note"]
    if writer.client.state["note"] != text or server.server.state["note"] != text:
        raise TraceError("OT replicas differ after the replay")
    history = sum(len(json.dumps(h)) for h in server.server.history)
    return Replay("ot", len(seq), dt, nbytes, nmsg, text, len(text.encode()), {"server_history_bytes": history})


def _replay_lww(seq: list[tuple[int, int, str]], start: str) -> Replay:
    server = lww.LWWServer()
    writer, reader = lww.LWWReplica("w"), lww.LWWReplica("r")
    if start:
        writer.insert_note(0, start)
    nbytes = nmsg = 0
    t0 = time.perf_counter()
    for pos, nd, ins in seq:
        writer.replace_note(pos, nd, ins)
        for m in writer.take_outbox():
            nbytes += len(m)
            nmsg += 1
            for _, out in server.on_message("w", m, ["w", "r"]):
                nbytes += len(out)
                nmsg += 1
                reader.receive(out)
    dt = time.perf_counter() - t0
    text = reader.note
    if writer.note != text:
        raise TraceError("LWW replicas differ after the replay")
    return Replay("lww", len(seq), dt, nbytes, nmsg, text, len(lww.encode([("note", text, (0, 0, "w"))])))


def replay_pycrdt_direct(seq: list[tuple[int, int, str]], start: str = "") -> Replay:
    """The same replay written directly on pycrdt, without this spike's code: the 1.2x baseline.

    It does the same work (one transaction per edit, its update applied to a
    second Doc) with no position conversion: it is only correct for ASCII
    traces, which is checked.
    """
    if not all(ins.isascii() for _, _, ins in seq) or not start.isascii():
        raise TraceError("the direct pycrdt baseline handles ASCII traces only")
    a, b = Doc(client_id=1), Doc(client_id=2)
    ta, tb = a.get("note", type=Text), b.get("note", type=Text)
    updates: list[bytes] = []
    sub = a.observe(lambda e: updates.append(e.update))
    if start:
        ta.insert(0, start)
    for u in updates:
        b.apply_update(u)
    updates.clear()
    nbytes = nmsg = 0
    t0 = time.perf_counter()
    for pos, nd, ins in seq:
        with a.transaction():
            if nd:
                del ta[pos : pos + nd]
            if ins:
                ta.insert(pos, ins)
        for u in updates:
            nbytes += len(u)
            nmsg += 1
            b.apply_update(u)
        updates.clear()
    dt = time.perf_counter() - t0
    a.unobserve(sub)
    return Replay("pycrdt-direct", len(seq), dt, nbytes, nmsg, str(tb), len(b.get_update()))


# -- the concurrent trace --------------------------------------------------------------


def _check_order(txns: list[dict[str, Any]]) -> None:
    for i, t in enumerate(txns):
        for p in t["parents"]:
            if not 0 <= p < i:
                raise TraceError(f"transaction {i}: parent {p} is not earlier in the file (the trace must be in causal order)")


def _ancestors_missing(txns: list[dict[str, Any]], parents: list[int], have: set[int]) -> list[int]:
    """Transactions in the causal history of ``parents`` that are not in ``have`` (a causally closed set), in file order."""
    out, stack = set(), [p for p in parents if p not in have]
    while stack:
        j = stack.pop()
        if j in out:
            continue
        out.add(j)
        stack.extend(p for p in txns[j]["parents"] if p not in have and p not in out)
    return sorted(out)


def replay_concurrent_crdt(trace: dict[str, Any], limit: int | None = None) -> Replay:
    """One Doc per agent; before an agent's transaction, merge exactly the updates of its parents' history it lacks."""
    txns = trace["txns"] if limit is None else trace["txns"][:limit]
    _check_order(txns)
    n = trace.get("numAgents", 1 + max(t["agent"] for t in txns))
    docs = [crdt.CrdtReplica(client_id=a + 1) for a in range(n)]
    have: list[set[int]] = [set() for _ in range(n)]
    update: list[bytes] = []
    nbytes = nmsg = 0
    t0 = time.perf_counter()
    for i, t in enumerate(txns):
        a = t["agent"]
        for j in _ancestors_missing(txns, t["parents"], have[a]):
            have[a].add(j)
            if len(update[j]) > 1:
                docs[a].receive(update[j])
                nbytes += len(update[j])
                nmsg += 1
        with docs[a].transaction():
            for pos, nd, ins in t["patches"]:
                docs[a].delete_note(pos, nd)
                if ins:
                    docs[a].insert_note(pos, ins)
        out = docs[a].take_outbox()
        update.append(out[0] if len(out) == 1 else crdt.UPDATE)  # an empty transaction yields no update
        have[a].add(i)
    # Deliver everything everywhere, then every replica must hold the same text.
    for a in range(n):
        for j in range(len(txns)):
            if j not in have[a] and len(update[j]) > 1:
                docs[a].receive(update[j])
                nbytes += len(update[j])
                nmsg += 1
    dt = time.perf_counter() - t0
    texts = [str(d.note) for d in docs]
    return Replay(
        "crdt", len(txns), dt, nbytes, nmsg, texts[0], docs[0].size(), {"replicas_equal": len(set(texts)) == 1, "mapping_failures": 0}
    )


def replay_concurrent_ot(trace: dict[str, Any], limit: int | None = None) -> Replay:
    """Two-party Jupiter between the two agents: each transaction is made after receiving exactly the other's operations its parents know.

    Each message carries how many of the receiver's operations the sender had
    seen, and the receiver transforms it against its own operations the sender
    had not (the per-link algorithm a Jupiter server runs for each client). A
    transaction whose parents need an operation of the other agent not yet
    made, or a trace with other than two agents, is a mapping failure, counted.
    """
    txns = trace["txns"] if limit is None else trace["txns"][:limit]
    if trace.get("numAgents", 2) != 2:
        raise TraceError("the OT replay maps two agents onto two Jupiter sites")
    _check_order(txns)
    sites = [ot.JupiterSite(priority=True), ot.JupiterSite(priority=False)]
    inbox: list[list[tuple[int, list, int]]] = [[], []]  # per receiver: (txn index, op, seen) in send order
    known: list[int] = []  # per txn: how many of the other agent's txns its history holds
    count = [0, 0]  # txns made per agent so far
    idx_in_agent: list[int] = []
    failures = 0
    nbytes = nmsg = 0
    t0 = time.perf_counter()
    for i, t in enumerate(txns):
        a, b = t["agent"], 1 - t["agent"]
        # How many of b's transactions are in this transaction's causal history.
        k = 0
        for p in t["parents"]:
            k = max(k, idx_in_agent[p] + 1 if txns[p]["agent"] == b else known[p])
        known.append(k)
        idx_in_agent.append(count[a])
        if k > sites[a].received + len(inbox[a]):
            failures += 1  # the parents know an operation of b that b has not made
        while sites[a].received < k and inbox[a]:
            _, op, seen = inbox[a].pop(0)
            sites[a].receive(op, seen)
            nbytes += len(json.dumps(op)) + 8
            nmsg += 1
        ops = []
        doc_len = len(sites[a].state["note"])
        for pos, nd, ins in t["patches"]:
            ops.append(("note", ot.text_op(doc_len, pos, nd, ins)))
            doc_len += len(ins) - nd
        op, seen = sites[a].local(ops)
        inbox[b].append((i, op, seen))
        count[a] += 1
    for a in (0, 1):
        while inbox[a]:
            _, op, seen = inbox[a].pop(0)
            sites[a].receive(op, seen)
            nbytes += len(json.dumps(op)) + 8
            nmsg += 1
    dt = time.perf_counter() - t0
    texts = [s.state["note"] for s in sites]
    return Replay(
        "ot",
        len(txns),
        dt,
        nbytes,
        nmsg,
        texts[0],
        len(texts[0].encode()),
        {"replicas_equal": texts[0] == texts[1], "mapping_failures": failures},
    )
