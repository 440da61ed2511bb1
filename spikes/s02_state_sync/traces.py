"""The editing traces (josephg/editing-traces, CC BY 4.0) and their replays through each option.

``data/README.md`` holds the source, commit and credit. A sequential trace
is replayed by one writer replica whose every message is delivered to a
second (reader) replica, so each option does the work of real sync: produce
the message, ship its bytes, apply it elsewhere. A concurrent trace
(any number of authors with a ``parents`` DAG) is replayed with every
transaction made on exactly the state its parents describe: for OT, every
author a client of one central Jupiter server. ``interleaved`` derives a
trace with more authors from a two-author one (``INTERLEAVED`` says how).
"""

from __future__ import annotations

import bisect
import gzip
import json
import random
import time
from collections import deque
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
    "interleaved",
    "INTERLEAVED",
    "TraceError",
]

DATA = Path(__file__).parent / "data"
CREDIT = (
    "Editing traces from the public josephg/editing-traces repository (commit 762fa6c51605c88a05ebe5c4b9d4540caca30b97), "
    "licensed CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). Credit: Joseph Gentle and the Automerge project "
    "(automerge-paper). Files unchanged, copied to spikes/s02_state_sync/data/. The four-author trace friendsforever-x2 is an "
    "adaptation of friendsforever made at run time (traces.interleaved), not a file of the repository."
)

#: How ``interleaved`` derives a trace with more authors (no trace of three or more authors is vendored).
INTERLEAVED = (
    "{copies} copies of {name} ({authors} authors each, {total} in all), each copy typing its own region of one document, "
    "the regions in copy order separated by a blank line that a first transaction inserts. The copies' transactions are "
    "merged into one order at random (seed {seed}), each copy's own order kept. A transaction keeps its patches and its "
    "parents in its copy, and also knows every transaction of the other copies that comes before its cut: the place in the "
    "merged order of the first transaction of its own copy's other authors it does not know (or its own place, if it "
    "knows all before it). It therefore knows of every other author exactly the transactions before that cut, as a client "
    "of a central server that orders transactions as they were made would. Patches of a copy after the first are shifted "
    "by the length of the earlier regions as the transaction sees them (their merged state at the cut, computed with "
    "pycrdt) plus the separators. No two authors insert concurrently at one place, so endContent is the copies' "
    "endContents joined by the separator."
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
    # In order from one writer: no gap can occur, so the reader skips the sync step's gap check.
    writer, reader = crdt.CrdtReplica(client_id=1), crdt.CrdtReplica(client_id=2, resync_on_gap=False)
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
    docs = [crdt.CrdtReplica(client_id=a + 1, resync_on_gap=False) for a in range(n)]  # causal delivery: no gap
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
        "crdt",
        len(txns),
        dt,
        nbytes,
        nmsg,
        texts[0],
        docs[0].size(),
        {"replicas_equal": len(set(texts)) == 1, "mapping_failures": 0, "authors": n},
    )


def replay_concurrent_ot(trace: dict[str, Any], limit: int | None = None) -> Replay:
    """Every author a client of one Jupiter server (``ot.JupiterServer``); each transaction is made on exactly its parents' state.

    A client sends each transaction's operation to the server as it makes it; the server transforms it
    past what it had sent that client and the client had not yet applied, applies it and sends it to every
    other client, in its own order (here the file order). Before a transaction, its author's client
    applies the server's messages, in the order they came, while they belong to the transaction's causal
    history. When the history wants a message that waits behind one it does not know (or one not yet
    made), the transaction cannot be made on its parents' state through a central server: a mapping
    failure, counted. Any number of authors.
    """
    txns = trace["txns"] if limit is None else trace["txns"][:limit]
    _check_order(txns)
    n = int(trace.get("numAgents") or (1 + max((t["agent"] for t in txns), default=0)))
    server = ot.JupiterServer()
    clients = [ot.JupiterSite(priority=True) for _ in range(n)]
    for a in range(n):
        server.connect(a)
    inbox: list[deque[tuple[int, list, int]]] = [deque() for _ in range(n)]  # server -> client: (txn, op, seen), in server order
    vec: list[list[int]] = []  # per txn: per author, how many of that author's txns its causal history holds (itself included)
    nth: list[int] = []  # per txn: its place among its author's txns
    count = [0] * n
    applied = [[0] * n for _ in range(n)]  # per client, per author: that author's operations applied from the server
    failures = 0
    nbytes = nmsg = 0
    t0 = time.perf_counter()
    for i, t in enumerate(txns):
        a = t["agent"]
        if not 0 <= a < n:
            raise TraceError(f"transaction {i}: agent {a} is not one of the trace's {n}")
        v = [0] * n
        for p in t["parents"]:
            v = [x if x >= y else y for x, y in zip(v, vec[p], strict=True)]
        box, got = inbox[a], applied[a]
        while box and nth[box[0][0]] < v[txns[box[0][0]]["agent"]]:
            j, op, seen = box.popleft()
            clients[a].receive(op, seen)
            got[txns[j]["agent"]] += 1
            nbytes += len(json.dumps(op)) + 8
            nmsg += 1
        if v[a] != count[a] or any(got[b] != v[b] for b in range(n) if b != a):
            failures += 1  # the parents' state is not one this client can be in
        ops = []
        doc_len = len(clients[a].state["note"])
        for pos, nd, ins in t["patches"]:
            ops.append(("note", ot.text_op(doc_len, pos, nd, ins)))
            doc_len += len(ins) - nd
        op, seen = clients[a].local(ops)
        nbytes += len(json.dumps(op)) + 8
        nmsg += 1
        for c, sop, s in server.receive(a, op, seen):
            inbox[c].append((i, sop, s))
        v[a] = count[a] + 1
        vec.append(v)
        nth.append(count[a])
        count[a] += 1
    for a in range(n):
        while inbox[a]:
            _, op, seen = inbox[a].popleft()
            clients[a].receive(op, seen)
            nbytes += len(json.dumps(op)) + 8
            nmsg += 1
    dt = time.perf_counter() - t0
    texts = [c.state["note"] for c in clients]
    return Replay(
        "ot",
        len(txns),
        dt,
        nbytes,
        nmsg,
        server.state["note"],
        len(server.state["note"].encode()),
        {"replicas_equal": all(x == server.state["note"] for x in texts), "mapping_failures": failures, "authors": n},
    )


# -- a concurrent trace with more authors, derived from a concurrent trace ---------------------------


def _merged_lengths(trace: dict[str, Any]) -> list[int]:
    """``L[k]``: code points of the merged state of the trace's first ``k`` transactions (pycrdt, independent of the OT code)."""
    txns = trace["txns"]
    n = int(trace.get("numAgents") or (1 + max(t["agent"] for t in txns)))
    docs = [crdt.CrdtReplica(client_id=a + 1, resync_on_gap=False) for a in range(n)]
    have: list[set[int]] = [set() for _ in range(n)]
    update: list[bytes] = []
    cut = crdt.CrdtReplica(client_id=n + 1, resync_on_gap=False)
    ascii_only = all(ins.isascii() for t in txns for _, _, ins in t["patches"])
    out = [0]
    for i, t in enumerate(txns):
        a = t["agent"]
        for j in _ancestors_missing(txns, t["parents"], have[a]):
            have[a].add(j)
            if len(update[j]) > 1:
                docs[a].receive(update[j])
        with docs[a].transaction():
            for pos, nd, ins in t["patches"]:
                docs[a].delete_note(pos, nd)
                if ins:
                    docs[a].insert_note(pos, ins)
        got = docs[a].take_outbox()
        update.append(got[0] if len(got) == 1 else crdt.UPDATE)
        have[a].add(i)
        if len(update[i]) > 1:
            cut.receive(update[i])
        out.append(len(cut.note) if ascii_only else len(str(cut.note)))
    return out


@lru_cache(maxsize=2)
def interleaved(name: str, copies: int = 2, seed: int = 1, sep: str = "\n\n") -> dict[str, Any]:
    """A concurrent trace of ``copies`` x its authors, derived from the concurrent trace ``name``, as ``INTERLEAVED`` says.

    The result has the trace format (``numAgents``, ``endContent``, ``txns`` with ``agent``, ``parents``,
    ``patches``; parents minimal) plus ``derived_from`` and ``how`` (``INTERLEAVED`` filled in).
    """
    src = load(name)
    if src.get("startContent"):
        raise TraceError(f"{name}: a concurrent trace starts from the empty document")
    txns = src["txns"]
    na = int(src.get("numAgents") or (1 + max(t["agent"] for t in txns)))
    _check_order(txns)
    n = copies * na
    lengths = _merged_lengths(src)
    rng = random.Random(seed)
    # The merged order: each step takes the next transaction of a copy chosen at random (seeded).
    left = [len(txns)] * copies
    order: list[tuple[int, int]] = []
    nxt = [0] * copies
    while any(left):
        c = rng.choice([k for k in range(copies) if left[k]])
        order.append((c, nxt[c]))
        nxt[c] += 1
        left[c] -= 1
    where = {ck: m + 1 for m, ck in enumerate(order)}  # merged index in the new trace (0 is the separators)
    # The original trace: per txn, how many of each author's txns its history holds (itself included).
    count, vec = [0] * na, []
    for t in txns:
        v = [0] * na
        for p in t["parents"]:
            v = [max(x, y) for x, y in zip(v, vec[p], strict=True)]
        count[t["agent"]] += 1
        v[t["agent"]] = count[t["agent"]]
        vec.append(v)
    chains = [[k for k, t in enumerate(txns) if t["agent"] == x] for x in range(na)]
    positions = [[m for m, (c, k) in enumerate(order, 1) if c == cc and txns[k]["agent"] == x] for cc in range(copies) for x in range(na)]
    seps = sep * (copies - 1)
    out: list[dict[str, Any]] = [{"agent": 0, "parents": [], "patches": [[0, 0, seps]] if seps else []}]
    newvec: list[list[int]] = [[0] * n]
    newvec[0][0] = 1
    newnth = [0]
    newcount = [0] * n
    newcount[0] = 1
    unaware = 0  # transactions made without knowing every earlier one (concurrent with at least one)
    for m, (c, k) in enumerate(order, 1):
        t = txns[k]
        x = t["agent"]
        agent = c * na + x
        # The cut: this transaction knows, of every other author, exactly the transactions before it in the merged order.
        cut = m
        for y in range(na):
            if y != x and vec[k][y] < len(chains[y]):
                cut = min(cut, where[(c, chains[y][vec[k][y]])])
        unaware += cut < m
        cand = [where[(c, p)] for p in t["parents"]] or [0]
        offset = 0  # this copy's region starts after the earlier copies' regions, as this transaction sees them
        for cc in range(copies):
            if cc == c:
                continue
            known = 0
            for y in range(na):
                got = bisect.bisect_left(positions[cc * na + y], cut)
                if got:
                    cand.append(positions[cc * na + y][got - 1])
                known += got
            if cc < c:
                offset += lengths[known] + len(sep)
        # Minimal parents: drop one that another candidate's history already holds.
        cand = sorted(set(cand))
        parents = [p for p in cand if not any(q != p and newvec[q][out[p]["agent"]] > newnth[p] for q in cand)]
        v = [0] * n
        for p in parents:
            v = [max(a_, b_) for a_, b_ in zip(v, newvec[p], strict=True)]
        newnth.append(newcount[agent])
        newcount[agent] += 1
        v[agent] = newcount[agent]
        newvec.append(v)
        out.append({"agent": agent, "parents": parents, "patches": [[pos + offset, nd, ins] for pos, nd, ins in t["patches"]]})
    end = sep.join([src["endContent"]] * copies)
    how = INTERLEAVED.format(copies=copies, name=name, authors=na, total=n, seed=seed)
    return {
        "kind": "concurrent",
        "numAgents": n,
        "startContent": "",
        "endContent": end,
        "txns": out,
        "derived_from": name,
        "how": how,
        "concurrent_txns": unaware,
    }
