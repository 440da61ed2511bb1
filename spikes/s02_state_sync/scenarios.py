"""Spike 2's scenarios: trace replays, the concurrent trace, intent cases, sessions and offline merges over real servers."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pycrdt import Doc

from harness.plugin import ScenarioContext, ScenarioOutput
from harness.poc import poc_server
from harness.probes import ProcessSampler, rss_bytes
from harness.process import ServerProcess, pin_plan
from spikes.s02_state_sync import crdt, session, traces
from spikes.s02_state_sync.tabletop import Ledger, Network, Workload, lost_total, make_replica

__all__ = [
    "run_trace_replay",
    "run_concurrent_trace",
    "run_intent",
    "run_session",
    "run_offline",
    "TRACE_PARAMS",
    "TRACE_QUICK",
    "INTENT_PARAMS",
    "INTENT_QUICK",
    "SESSION_PARAMS",
    "SESSION_QUICK",
    "OFFLINE_PARAMS",
    "OFFLINE_QUICK",
    "KINDS",
]

ROOT = Path(__file__).resolve().parents[2]
#: The tabletop's kinds of state, and the lost-intent counters that belong to each.
KINDS = {
    "token positions": ("token_move",),
    "strokes": ("stroke_add", "stroke_delete", "stroke_extend"),
    "note text": ("note_insert", "note_delete"),
}

#: edits 0: the whole trace. LWW sends the whole note on every edit, so its replay is quadratic in the
#: trace length; it replays a prefix (``lww_edits``), and the document says so.
TRACE_PARAMS = {"edits": 0, "lww_edits": 50000, "rounds": 2, "batches": [1, 10, 100, 1000], "memory": True}
TRACE_QUICK = {"edits": 20000, "lww_edits": 5000, "rounds": 3}
INTENT_PARAMS = {"rounds": 30, "replicas": 4, "edits": 80, "note_chars": 1000, "p2p_rounds": 10}
INTENT_QUICK = {"rounds": 8}
SESSION_PARAMS = {"clients": [2, 10, 50], "rate": 2.0, "duration_s": 10.0, "latency_ms": 50}
SESSION_QUICK = {"clients": [2, 10], "duration_s": 2.0}
OFFLINE_PARAMS = {"offline_s": 60.0, "rate": 2.0, "latency_ms": 50}
OFFLINE_QUICK = {"offline_s": 3.0, "rate": 5.0}


# -- trace replay ------------------------------------------------------------------------


def _memory_child(option: str, edits: int) -> dict[str, Any]:
    """Peak RSS growth of a replay, in a fresh process (pycrdt's memory lives outside Python's allocator)."""
    res = subprocess.run(
        [sys.executable, "-m", "spikes.s02_state_sync.replay_memory", option, str(edits)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(f"memory replay of {option} failed: {res.stderr.strip()[-500:]}")
    found: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return found


def run_trace_replay(ctx: ScenarioContext) -> ScenarioOutput:
    """automerge-paper through one option: time, ops/s, bytes per op, final state size, memory; CRDT also direct pycrdt and batching."""
    p, opt = ctx.params, ctx.option.key
    trace = traces.load("automerge-paper")
    limit = (p["lww_edits"] if opt == "lww" else p["edits"]) or None
    seq = traces.patches(trace, limit)
    expected = trace["endContent"] if limit is None else traces.apply_patches(trace["startContent"], seq)
    out = ScenarioOutput()
    # Every option also on the same first ``lww_edits`` edits, so speeds compare like for like. When that
    # prefix is the whole replay (LWW), the rounds' replays are those timings; otherwise each round replays it too.
    common = traces.patches(trace, p["lww_edits"])
    same = len(common) == len(seq)
    times, direct, prefix = [], [], []
    r = None
    for k in range(p["rounds"]):
        if opt == "crdt":  # interleaved, so machine noise hits both alike
            d = traces.replay_pycrdt_direct(seq, trace["startContent"])
            if d.final_text != expected:
                raise traces.TraceError("the direct pycrdt replay did not reach the expected text")
            direct.append(d.seconds)
        r = traces.replay(opt, seq, trace["startContent"])
        times.append(r.seconds)
        prefix.append(r.seconds if same else traces.replay(opt, common, trace["startContent"]).seconds)
        ctx.advance((k + 1) / (p["rounds"] + 2))
    assert r is not None
    out.add("prefix_ops_per_s", "ops/s", [len(common) / t for t in prefix], "higher")
    out.add("final_text_equal", "bool", [1.0 if r.final_text == expected else 0.0], "higher")
    out.add("replay_s", "s", times)
    out.add("ops_per_s", "ops/s", [len(seq) / t for t in times], "higher")
    out.add("bytes_per_op", "bytes", [r.message_bytes / len(seq)])
    out.add("messages_per_op", "messages", [r.messages / len(seq)])
    out.add("state_bytes", "bytes", [r.state_bytes])
    if p.get("memory", True):
        mem = _memory_child(opt, len(seq) if limit else 0)
        out.add("memory_bytes", "bytes", [mem["rss_growth_bytes"]])
    out.facts.update(
        {
            "edits": len(seq),
            "whole_trace": limit is None,
            "final_length": len(r.final_text),
            "prefix_edits": len(common),
            "prefix_is_the_replay": same,
            **r.extra,
        }
    )
    if opt == "crdt":
        out.add("direct_replay_s", "s", direct)
        out.add("harness_over_direct", "ratio", [h / d for h, d in zip(times, direct, strict=True)])
        out.add("direct_bytes_per_op", "bytes", [d.message_bytes / len(seq)])
        for b in p["batches"]:
            rb = traces.replay("crdt", seq, trace["startContent"], batch=b)
            if rb.final_text != expected:
                raise traces.TraceError(f"CRDT replay in batches of {b} did not reach the expected text")
            out.add("batch_replay_s", "s", [rb.seconds], batch=str(b))
            out.add("batch_bytes_per_edit", "bytes", [rb.message_bytes / len(seq)], batch=str(b))
            out.add("batch_state_bytes", "bytes", [rb.state_bytes], batch=str(b))
    return out


#: The concurrent traces replayed: (label, copies). ``None``: the vendored two-author trace itself; ``2``: two
#: interleaved copies of it, four authors (``traces.interleaved``; no trace of three or more authors is vendored).
CONCURRENT_TRACES: tuple[tuple[str, int | None], ...] = (("friendsforever", None), ("friendsforever-x2", 2))


def run_concurrent_trace(ctx: ScenarioContext) -> ScenarioOutput:
    """friendsforever (two authors) and friendsforever-x2 (four, derived from it) through OT (a Jupiter server, every author
    a client) or CRDT (a Doc per author): exact endContent match, time.

    The two-author trace's measurements carry no tag (as in earlier runs); the derived trace's carry ``trace``.
    """
    fn = traces.replay_concurrent_ot if ctx.option.key == "ot" else traces.replay_concurrent_crdt
    out = ScenarioOutput()
    facts: dict[str, Any] = {}
    for label, copies in CONCURRENT_TRACES:
        trace = traces.load("friendsforever") if copies is None else traces.interleaved("friendsforever", copies)
        r = fn(trace)
        tags = {} if copies is None else {"trace": label}
        out.add("final_text_equal", "bool", [1.0 if r.final_text == trace["endContent"] else 0.0], "higher", **tags)
        out.add("replicas_equal", "bool", [1.0 if r.extra["replicas_equal"] else 0.0], "higher", **tags)
        out.add("mapping_failures", "txns", [r.extra["mapping_failures"]], **tags)
        out.add("replay_s", "s", [r.seconds], **tags)
        out.add("bytes_per_txn", "bytes", [r.message_bytes / r.edits], **tags)
        facts[label] = {
            "authors": r.extra["authors"],
            "txns": r.edits,
            "end_length": len(trace["endContent"]),
            "final_length": len(r.final_text),
            "how": trace.get("how", "vendored, unchanged"),
            "concurrent_txns": trace.get("concurrent_txns"),
        }
        if copies is None:
            out.facts.update({k: facts[label][k] for k in ("txns", "end_length", "final_length")})
    out.facts["traces"] = facts
    return out


# -- intent ------------------------------------------------------------------------------


def _fresh(option: str, n: int, base: Any = None) -> Network:
    net = Network(option, n)
    if base:
        base(net.replicas[0])
        net.settle()
    return net


def _typing_case(option: str) -> dict[str, Any]:
    """Two users type "abc" and "xyz", one character per edit, at the same place, concurrently."""
    net = _fresh(option, 2, lambda r: r.insert_note(0, "--"))
    for i, word in enumerate(("abc", "xyz")):
        for k, ch in enumerate(word):
            net.replicas[i].insert_note(1 + k, ch)
        net.flush(i)
    net.settle(random.Random(1))
    note = net.views()[0]["note"][1:-1]
    kept = sum(1 for ch in "abcxyz" if ch in note)
    return {"result": note, "lost": 6 - kept, "interleaved": kept == 6 and note not in ("abcxyz", "xyzabc")}


def _case(option: str, setup: Any, edits: list[Any], check: Any) -> dict[str, Any]:
    net = _fresh(option, 2, setup)
    for i, fn in enumerate(edits):
        fn(net.replicas[i])
        net.flush(i)
    net.settle(random.Random(1))
    views = net.views()
    lost, result = check(views[0])
    return {"result": result, "lost": lost, "interleaved": False, "converged": all(v == views[0] for v in views)}


def _cases(option: str) -> dict[str, dict[str, Any]]:
    def stroke(r: Any) -> None:
        r.add_stroke("s", [0.0, 0.0])

    cases = {"same-place typing": _typing_case(option)}
    cases["same token moved"] = _case(
        option,
        lambda r: r.move_token("t", 0.0, 0.0),
        [lambda r: r.move_token("t", 1.0, 1.0), lambda r: r.move_token("t", 2.0, 2.0)],
        lambda v: (sum(1 for pos in ([1.0, 1.0], [2.0, 2.0]) if v["tokens"].get("t") != pos), f"token at {v['tokens'].get('t')}"),
    )
    cases["delete vs extend stroke"] = _case(
        option,
        stroke,
        [lambda r: r.delete_stroke("s"), lambda r: r.extend_stroke("s", [9.0])],
        lambda v: (
            (1, "stroke deleted, extension lost")
            if "s" not in v["strokes"]
            else ((1, "stroke kept, delete lost") if 9.0 in v["strokes"]["s"] else (2, "both lost"))
        ),
    )
    cases["both extend one stroke"] = _case(
        option,
        stroke,
        [lambda r: r.extend_stroke("s", [1.0]), lambda r: r.extend_stroke("s", [2.0])],
        lambda v: (sum(1 for p in (1.0, 2.0) if p not in v["strokes"].get("s", [])), f"points {v['strokes'].get('s')}"),
    )
    cases["note edits far apart"] = _case(
        option,
        lambda r: r.insert_note(0, "0123456789"),
        [lambda r: r.insert_note(0, "A"), lambda r: r.insert_note(10, "B")],
        lambda v: (sum(1 for ch in "AB" if ch not in v["note"]), v["note"]),
    )
    return cases


def _message_bytes(option: str, note_chars: int) -> dict[str, float]:
    """Bytes of the message one edit of each kind sends, on a tabletop with a note of ``note_chars`` characters."""
    r = make_replica(option, 0)
    r.insert_note(0, "x" * note_chars)
    r.add_stroke("s", [float(i) for i in range(100)])
    r.move_token("t", 1.0, 1.0)
    r.take_outbox()
    if hasattr(r, "client"):  # an OT client waits for the acknowledgement before its next send
        r.client.outstanding = None
    out = {}
    for kind, edit in (
        ("token positions", lambda: r.move_token("t", 2.0, 3.0)),
        ("strokes", lambda: r.extend_stroke("s", [7.0, 8.0])),
        ("note text", lambda: r.insert_note(note_chars // 2, "y")),
    ):
        edit()
        out[kind] = float(sum(len(m) for m in r.take_outbox()))
        if hasattr(r, "client"):
            r.client.outstanding = None
    return out


def _unapplied(replica: Any, received: list[bytes]) -> int:
    """CRDT: updates ``replica`` received that its state lacks (applying one again to a copy of its state adds to it)."""
    state = replica.doc.get_update()
    n = 0
    for m in received:
        if m[:1] != crdt.UPDATE:
            continue
        copy: Doc[Any] = Doc()
        copy.apply_update(state)
        before = copy.get_state()
        copy.apply_update(m[1:])
        n += copy.get_state() != before
    return n


def _peer_to_peer(option: str, rng: random.Random, sync: bool = True) -> dict[str, Any] | None:
    """Three replicas edit and exchange their messages directly, in random order, no server: do they converge?

    Every update is delivered once to every other peer, in a random order (a peer may get an update
    before one it depends on). ``sync`` (CRDT): the Yjs sync step, as deployments run it: on connect
    every peer sends its state vector to every other (answered with what it lacks), and a peer that
    receives an update with a gap sends its state vector back to that update's sender, whose answer
    re-sends what is missing; answers travel in the same random order. Without it (``sync=False``),
    the updates are only delivered once. Returns ``converged``, ``updates`` (update messages
    delivered), for the CRDT ``sync_requests`` (gaps answered) and ``sync_bytes`` (state vectors and
    answers, connect included), and, without the sync step, ``unapplied`` (delivered updates missing
    from the state of the peer that received them at the end: Yrs holds an update whose dependencies
    have not arrived as pending) and ``peers_behind`` (the peers missing at least one).
    None: the option has no peer-to-peer mode.
    """
    if option == "ot":
        return None  # OT client operations carry server revisions: the protocol needs the server's order
    is_crdt = option == "crdt"
    sync = sync and is_crdt
    reps = [crdt.CrdtReplica(client_id=i + 1, resync_on_gap=sync) if is_crdt else make_replica(option, i) for i in range(3)]
    ledger = Ledger()
    work = [Workload(i, ledger, rng) for i in range(3)]
    inflight: list[tuple[int, int, bytes]] = []  # (from, to, message)
    received: list[list[bytes]] = [[] for _ in reps]
    sync_bytes = 0
    if sync:  # on connect
        inflight += [(i, j, reps[i].state_vector()) for i in range(3) for j in range(3) if i != j]

    def deliver(src: int, dst: int, m: bytes) -> None:
        nonlocal sync_bytes
        if is_crdt and m[:1] != crdt.UPDATE:
            sync_bytes += len(m)
        received[dst].append(m)
        inflight.extend((dst, src, r) for r in reps[dst].receive(m))

    for _ in range(60):
        i = rng.randrange(3)
        work[i].edit(reps[i])
        inflight += [(i, j, m) for m in reps[i].take_outbox() for j in range(3) if j != i]
        while inflight and rng.random() < 0.5:
            deliver(*inflight.pop(rng.randrange(len(inflight))))
    while inflight:
        deliver(*inflight.pop(rng.randrange(len(inflight))))
    views = [r.view() for r in reps]
    updates = sum(1 for got in received for m in got if not is_crdt or m[:1] == crdt.UPDATE)
    out: dict[str, Any] = {"converged": all(v == views[0] for v in views), "updates": updates}
    if is_crdt and sync:
        out.update({"sync_requests": sum(r.gaps for r in reps), "sync_bytes": sync_bytes})
    elif is_crdt:
        missing = [_unapplied(r, got) for r, got in zip(reps, received, strict=True)]
        out.update({"unapplied": sum(missing), "peers_behind": sum(1 for n in missing if n)})
    return out


def _peer_to_peer_rounds(option: str, rounds: int) -> dict[str, Any] | None:
    """``_peer_to_peer`` over ``rounds`` seeded random orders, with the option's sync (the CRDT's sync step) and, for the
    CRDT, the same orders again without it: per-round results and totals, the facts both the matrix rows are written from."""
    if option == "ot":
        return None
    runs = [_peer_to_peer(option, random.Random(3 + k)) for k in range(rounds)]
    out: dict[str, Any] = {
        "rounds": rounds,
        "converged": sum(1 for r in runs if r and r["converged"]),
        "per_round": runs,
        "sync": "state vectors on connect and on a gap" if option == "crdt" else None,
    }
    if option == "crdt":
        bare = [_peer_to_peer(option, random.Random(3 + k), sync=False) for k in range(rounds)]
        out["sync_requests"] = sum(r["sync_requests"] for r in runs if r)
        out["sync_bytes"] = sum(r["sync_bytes"] for r in runs if r)
        out["without_sync"] = {
            "converged": sum(1 for r in bare if r and r["converged"]),
            "updates": sum(r["updates"] for r in bare if r),
            "unapplied": sum(r["unapplied"] for r in bare if r),
            "rounds_behind": sum(1 for r in bare if r and r["peers_behind"]),
            "per_round": bare,
        }
    return out


def run_intent(ctx: ScenarioContext) -> ScenarioOutput:
    """The intent cases, lost intents of a random concurrent workload, message size per kind, peer-to-peer merge."""
    p, opt = ctx.params, ctx.option.key
    out = ScenarioOutput()
    cases = _cases(opt)
    for name, c in cases.items():
        out.add("case_lost", "intents", [c["lost"]], case=name)
        out.add("case_interleaved", "bool", [1.0 if c["interleaved"] else 0.0], case=name)
    out.facts["cases"] = cases
    rng = random.Random(2)
    lost: dict[str, list[float]] = {}
    fractions = []
    for k in range(p["rounds"]):
        n = p["replicas"]
        net, ledger = Network(opt, n), Ledger()
        work = [Workload(i, ledger, rng) for i in range(n)]
        for _ in range(p["edits"]):
            i = rng.randrange(n)
            work[i].edit(net.replicas[i])
            net.flush(i)
            if rng.random() < 0.1:
                j = rng.randrange(n)
                net.connected[j] = not net.connected[j]
            for _ in range(rng.randrange(3)):
                net.step(rng)
        net.settle(rng)
        views = net.views()
        if not all(v == views[0] for v in views):
            raise RuntimeError(f"{opt}: replicas differ after delivering everything (round {k})")
        counts = ledger.lost(views[0])
        for key, v in counts.items():
            lost.setdefault(key, []).append(v)
        fractions.append(lost_total(counts) / max(1, ledger.intents))
        ctx.advance((k + 1) / p["rounds"])
    for key, samples in lost.items():
        out.add("workload_lost", "intents", samples, kind=key)
    out.add("workload_lost_fraction", "fraction", fractions)
    for kind, b in _message_bytes(opt, p["note_chars"]).items():
        out.add("edit_message_bytes", "bytes", [b], kind=kind)
    p2p = _peer_to_peer_rounds(opt, p.get("p2p_rounds", 10))
    out.facts["peer_to_peer"] = p2p
    if p2p is not None:  # the option's own protocol (the CRDT with its sync step): a correctness check
        out.add("p2p_converged", "bool", [1.0 if r["converged"] else 0.0 for r in p2p["per_round"]], "higher")
        if "without_sync" in p2p:  # shown, labelled, not a check: why the sync step is there
            out.add("p2p_converged_without_sync", "bool", [1.0 if r["converged"] else 0.0 for r in p2p["without_sync"]["per_round"]], None)
            out.add("p2p_sync_requests", "requests", [r["sync_requests"] for r in p2p["per_round"]], None)
    out.facts["library"] = {d: importlib.metadata.version(d) for d in ctx.option.dependencies}
    return out


# -- sessions over the real relay servers ------------------------------------------------------


@contextlib.contextmanager
def relay(ctx: ScenarioContext, tag: str) -> Iterator[tuple[ServerProcess, str]]:
    """The option's relay server (as the option declares it), fresh, on a free port, pinned to its own core when there are two."""
    plan = pin_plan()
    with poc_server(
        ctx.option,
        ctx.workdir,
        name=f"s02 {ctx.option.key} relay",
        log_name=f"relay-{tag}.log",
        cpus=plan.server if plan else None,
    ) as (server, url):
        yield server, url


def run_session(ctx: ScenarioContext) -> ScenarioOutput:
    """N clients edit the tabletop over the real server with injected latency: convergence, bandwidth, server CPU and memory, lost intents."""
    p, opt = ctx.params, ctx.option.key
    out = ScenarioOutput()
    facts = {}
    for k, n in enumerate(p["clients"]):
        with relay(ctx, f"n{n}") as (server, url):
            pid = server.pid
            assert pid is not None  # started by the context manager
            base_rss = rss_bytes(pid)  # the idle server, before any client
            sampler = ProcessSampler(pid, hz=10).start()
            try:
                res = session.run_session(opt, url, n, p["rate"], p["duration_s"], p["latency_ms"] / 1000, seed=ctx.repeat + 1)
            finally:
                sampler.stop()
            if not server.alive:
                raise RuntimeError(f"the {opt} relay exited during the session: {' | '.join(server.last_log_lines(5))}")
        if res.errors:
            raise RuntimeError(f"{opt} clients hit protocol errors: {res.errors[:3]}")
        tag = str(n)
        out.add("converged", "bool", [0.0 if res.convergence_s is None else 1.0], "higher", clients=tag)
        if res.convergence_s is not None:
            out.add("convergence_s", "s", [res.convergence_s], clients=tag)
        out.add("bytes_per_client_per_s", "bytes/s", [b / res.duration_s for b in res.bytes_per_client], clients=tag)
        out.add("server_cpu_percent", "% of one core", [sampler.mean_cpu()], clients=tag)
        out.add("server_rss_bytes", "bytes", [sampler.peak_rss()], clients=tag)
        out.add("server_rss_growth_bytes", "bytes", [max(0, sampler.peak_rss() - base_rss)], clients=tag)
        out.add("lost_intents", "intents", [lost_total(res.lost)], clients=tag)
        out.add("edits", "edits", [res.edits], None, clients=tag)
        facts[tag] = {"lost": res.lost, "intents": res.intents}
        ctx.advance((k + 1) / len(p["clients"]))
    out.facts["by_clients"] = facts
    return out


def run_offline(ctx: ScenarioContext) -> ScenarioOutput:
    """A client edits disconnected while another edits online, then reconnects: merge time, bytes exchanged, what was lost."""
    p, opt = ctx.params, ctx.option.key
    with relay(ctx, "offline") as (_, url):
        res = session.run_offline(opt, url, p["offline_s"], p["rate"], p["latency_ms"] / 1000, seed=ctx.repeat + 1)
    if res.errors:
        raise RuntimeError(f"{opt} clients hit protocol errors: {res.errors[:3]}")
    out = ScenarioOutput()
    out.add("merged", "bool", [0.0 if res.merge_s is None else 1.0], "higher")
    if res.merge_s is not None:
        out.add("merge_s", "s", [res.merge_s])
    out.add("merge_bytes", "bytes", [res.merge_bytes])
    out.add("offline_edits", "edits", [res.offline_edits], None)
    out.add("lost_intents", "intents", [lost_total(res.lost)])
    out.facts.update({"lost": res.lost, "intents": res.intents})
    return out
