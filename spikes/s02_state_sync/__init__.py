"""Spike 2: state synchronization. How should the tabletop resolve concurrent edits: OT, CRDT or Last-Write-Wins?

The plugin object ``spike`` declares the three options (a sans-I/O core each,
behind one WebSocket relay), the scenarios (real editing traces, intent
cases, sessions and offline merges over real servers), and how stored
measurements become scores, tables, charts, findings and a recommendation per
kind of tabletop state.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from harness import frames
from harness.plugin import Chart, Finding, Option, ReportContent, Scenario, Spike, Table
from harness.poc import PocServer
from harness.results import RunResult
from harness.stats import fmt_num
from spikes.s02_state_sync import robustness as _rb
from spikes.s02_state_sync import scenarios as _sc
from spikes.s02_state_sync.decision import CRITERIA, GATES, _fmt_b, _fmt_s
from spikes.s02_state_sync.traces import CREDIT

__all__ = ["StateSyncSpike", "spike"]

#: The relay every option runs (``poc/relay.py --option KEY``): one command, the option's core plugged in.
RELAY = PocServer(
    ("{python}", "-m", "spikes.s02_state_sync.poc.relay", "--option", "{option}", "--port", "{port}"),
    url="ws://{host}:{port}",
    ready="log:listening",
)

OPTIONS = (
    Option(
        "ot",
        "Operational Transformation (central server)",
        "ot.js-shaped text operations and tabletop operations, transformed by a central server; the client is the three-state "
        "Jupiter machine (synchronized, awaiting confirm, awaiting with buffer). Written here.",
        ("ot.py", "poc/relay.py"),
        ("websockets",),
        server=RELAY,
    ),
    Option(
        "crdt",
        "CRDT (pycrdt / Yrs)",
        "pycrdt documents: Text for the note, Map for token positions, an Array per stroke; sync by state vectors and updates; "
        "the server relays updates and keeps a copy to answer state vectors.",
        ("crdt.py", "poc/relay.py"),
        ("pycrdt", "websockets"),
        server=RELAY,
    ),
    Option(
        "lww",
        "Last-Write-Wins (hybrid logical clocks)",
        "A map of registers, one per field (token position, stroke, whole note), ordered by hybrid logical clocks with the replica "
        "id as tie-breaker; the server merges and forwards the writes that win. Written here.",
        ("lww.py", "poc/relay.py"),
        ("websockets",),
        server=RELAY,
    ),
)

SCENARIOS = (
    Scenario(
        "trace-replay",
        "Sequential trace replay (automerge-paper)",
        "The automerge-paper trace (259,778 edits by one author) replayed through each option: a writer replica makes each edit, its "
        "message is delivered (through the server core for OT and LWW) to a reader replica; time with perf_counter over the whole "
        "replay, bytes of every message, the final text checked against the trace. Memory: peak RSS growth of the same replay in a "
        "fresh process (pycrdt's memory is outside Python's allocator). For the CRDT also the same replay written directly on pycrdt (the reader skips the sync step's gap check: one writer, in order, no gap can occur), "
        "interleaved round by round, and one transaction per 1, 10, 100 and 1000 edits. Speed is reported twice: over the edits each "
        "option replayed (LWW replays a prefix, `lww_edits`), and over the same first `lww_edits` edits for every option (the figure "
        "the Performance score uses), replayed again in each round; for LWW both are the same replays.",
        _sc.run_trace_replay,
        _sc.TRACE_PARAMS,
        _sc.TRACE_QUICK,
        max_repeats=1,
    ),
    Scenario(
        "concurrent-trace",
        "Concurrent trace replay (friendsforever, two and four authors)",
        "The friendsforever trace (two authors typing at once, 26,078 transactions with a parents DAG), and friendsforever-x2, four "
        "authors derived from it (no trace of three or more authors is vendored; how: the table's note). CRDT: one Doc per author; "
        "before an author's transaction, exactly the updates of its parents' history it lacks are merged in. OT: one central Jupiter "
        "server, every author a client of it; a client sends each operation as it is made, the server transforms it past what it had "
        "sent that client and the client had not applied, and forwards it to every other client; before a transaction its author's "
        "client applies the server's messages its parents know. Both must end exactly at the trace's endContent.",
        _sc.run_concurrent_trace,
        options=("ot", "crdt"),
        max_repeats=1,
    ),
    Scenario(
        "intent",
        "Intent preservation and lost updates",
        "Sans-I/O replicas over simulated FIFO channels: five two-user conflict cases (same-place typing one character per edit, the "
        "same token moved, a stroke deleted while extended, one stroke extended by both, note edits far apart), then rounds of a random "
        "tabletop workload (token moves, strokes, note markers) from several replicas with random delivery and disconnects: after "
        "delivering everything the replicas must agree, and every intent missing from the final state is counted. A token keeps one "
        "position (the last writer wins, by design), so a token move counts as lost only when the token's final position is one the "
        "move's author had already seen, directly or through a chain of moves each made after seeing the previous (the later, "
        "informed move should have replaced it), or when a moved token is missing or stands where no move put it. Also the bytes "
        "one edit of each kind sends, and whether three replicas converge exchanging messages peer to peer with no server, every "
        "update delivered once in a random order, over `p2p_rounds` seeded orders. The CRDT runs its sync step (Yjs sync: state "
        "vectors exchanged on connect, and sent to an update's sender when the update has a gap, answered with what is missing, "
        "the answers in the same random order); the same orders are replayed without it, and the updates a peer received but "
        "whose content its state lacks are counted.",
        _sc.run_intent,
        _sc.INTENT_PARAMS,
        _sc.INTENT_QUICK,
        max_repeats=1,
    ),
    Scenario(
        "session",
        "Concurrent session over the real server",
        "The option's relay server (websockets, its own process, pinned to one core when there are two) and N clients in the harness "
        "process editing the tabletop on an open-model schedule at a fixed rate each, with latency injected in each client both ways. "
        "Convergence time runs from the last edit until every client is idle and all hold the same state; bandwidth is the WebSocket "
        "payload each client sent and received; server CPU and RSS sampled with psutil at 10 Hz; lost intents counted in the final state.",
        _sc.run_session,
        _sc.SESSION_PARAMS,
        _sc.SESSION_QUICK,
        max_repeats=2,
    ),
    Scenario(
        "offline",
        "Offline editing and reconnect",
        "Two clients on the real server; one disconnects and both keep editing at the same rate, then it reconnects with its option's "
        "protocol (OT: hello with its revision, then its pending operation; CRDT: state vectors; LWW: its queued writes, last per "
        "field). Merge time runs from the reconnect until both hold the same state; bytes are what the reconnecting client sent and "
        "received meanwhile; lost intents are counted in the final state.",
        _sc.run_offline,
        _sc.OFFLINE_PARAMS,
        _sc.OFFLINE_QUICK,
        max_repeats=1,
    ),
    frames.robustness_scenario(plan=_rb.plan),
)


class StateSyncSpike(Spike):
    """OT vs CRDT vs Last-Write-Wins for the tabletop's shared state."""

    number = 2
    slug = "state-sync"
    title = "State Synchronization Strategy"
    priority = "critical"
    planned_hours = 8
    question = (
        "How should the tabletop handle state conflicts when several users edit at once (token positions, drawings, shared notes): "
        "Operational Transformation, CRDTs or Last-Write-Wins?"
    )
    options = OPTIONS
    scenarios = SCENARIOS
    criteria = CRITERIA
    gates = GATES
    package_dir = Path(__file__).parent
    default_repeat = 2
    quick_repeat = 1

    # -- measurements a score is built from ---------------------------------------------
    @staticmethod
    def _largest(run: RunResult) -> str | None:
        sizes = [
            int(m.tags["clients"]) for sr in run.scenarios if sr.scenario == "session" and sr.status == "ok" for m in sr.find("converged")
        ]
        return str(max(sizes)) if sizes else None

    @staticmethod
    def checks(run: RunResult, o: str) -> tuple[int, int]:
        """Correctness checks passed and made: trace end states, replicas equal, sessions and offline merges converged, and peer-to-peer
        rounds converged with the option's own sync (``p2p_converged``; runs before it have none)."""
        passed = total = 0
        for scen, names in (
            ("trace-replay", ("final_text_equal",)),
            ("concurrent-trace", ("final_text_equal", "replicas_equal")),
            ("session", ("converged",)),
            ("offline", ("merged",)),
            ("intent", ("p2p_converged",)),
        ):
            sr = run.ok(scen, o)
            if sr is None:
                continue
            for name in names:
                for m in sr.find(name):
                    total += len(m.samples)
                    passed += sum(1 for s in m.samples if s == 1.0)
        return passed, total

    # -- the document ---------------------------------------------------------------------
    def recommendation_by_kind(self, run: RunResult) -> list[list[str]]:
        """Per kind of state: the option with the fewest lost intents of that kind, then the smallest message for one edit of it.

        A kind whose lost-intent counter the run lacks (token moves, in runs made before the counter existed)
        is decided by message size alone, and says "not measured" instead of showing a count of 0.
        """
        rows = []
        titles = {op.key: op.title for op in self.options}
        for kind, counters in _sc.KINDS.items():
            cand = []
            for o in run.options:
                sr = run.ok("intent", o)
                size = run.median("intent", o, "edit_message_bytes", kind=kind)
                if sr is None or size is None:
                    continue
                found = [m for c in counters for m in sr.measurements if m.name == "workload_lost" and m.tags.get("kind") == c]
                lost = sum(sum(m.samples) for m in found) if len(found) == len(counters) else None
                cand.append((lost, size, o))
            if not cand:
                continue
            measured = all(c[0] is not None for c in cand)
            cand.sort(key=lambda c: ((c[0] or 0.0) if measured else 0.0, c[1], c[2]))
            lost, size, best = cand[0]
            if measured:
                others = "; ".join(f"{titles[o]}: {fmt_num(n_lost or 0)} lost, {_fmt_b(b)}" for n_lost, b, o in cand[1:])
                basis = f"{fmt_num(lost or 0)} intents lost over the workload rounds, {_fmt_b(size)} per edit (others: {others})"
            else:
                others = "; ".join(f"{titles[o]}: {_fmt_b(b)}" for _, b, o in cand[1:])
                basis = f"lost intents not measured in this run (no counter for this kind when it ran); {_fmt_b(size)} per edit (others: {others})"
            rows.append([kind, titles[best], basis])
        return rows

    def report(self, run: RunResult) -> ReportContent:
        opts = run.options
        titles = {o.key: o.title for o in self.options}
        content = ReportContent()
        header = ["Measure", *(titles[o] for o in opts)]

        def cell(scen: str, o: str, name: str, fmt: Any, **tags: str) -> str:
            v = run.median(scen, o, name, **tags)
            return "not run" if v is None else fmt(v)

        yes_no = lambda v: "yes" if v == 1.0 else "NO"  # noqa: E731
        # Recommendation per kind of state.
        rec = self.recommendation_by_kind(run)
        if rec:
            content.tables.append(
                Table(
                    "Recommendation per kind of tabletop state (derived from the intent scenario)",
                    ["State", "Strategy", "Measured basis"],
                    rec,
                    "Rule: fewest intents of that kind lost in the random concurrent workload, then the fewest bytes one edit of that kind sends. "
                    "A token move is lost when the token ends at a position the move's author had already seen (directly or through a chain "
                    "of later moves), so the later, informed move vanished; two moves that did not see each other keep one, by design (see Method). "
                    "In the 'same token moved' case (two such concurrent moves) the moves overwritten were "
                    + ", ".join(f"{titles[o]} {cell('intent', o, 'case_lost', fmt_num, case='same token moved')}" for o in opts)
                    + ".",
                )
            )
        # Comparison matrix from the issue.
        big = self._largest(run)
        rows = []
        p2p_checked = any(sr is not None and sr.find("p2p_converged") for sr in (run.ok("intent", o) for o in opts))
        conv_row = [
            "Convergence guarantee (checks passed: trace end states, relay sessions, offline merges"
            + (", peer-to-peer rounds with the option's own sync)" if p2p_checked else "; measured through the server)")
        ]
        for o in opts:
            passed, total = self.checks(run, o)
            conv_row.append(f"{passed} of {total} checks converged/exact" if total else "not run")
        rows.append(conv_row)
        rows.append(["Intent: same-place typing", *(self._case_text(run, o, "same-place typing") for o in opts)])
        rows.append(
            [
                "Intents lost, random workload (median share)",
                *(cell("intent", o, "workload_lost_fraction", lambda v: f"{fmt_num(100 * v)} %") for o in opts),
            ]
        )
        rows.append(["Offline: merge after reconnect", *(self._offline_text(run, o) for o in opts)])
        rows.append(["Needs a central server", *(self._p2p_text(run, o) for o in opts)])
        rows.append(
            [
                f"Bandwidth per client, {big} clients",
                *(cell("session", o, "bytes_per_client_per_s", lambda v: _fmt_b(v) + "/s", clients=big or "") for o in opts),
            ]
        )
        rows.append(
            [
                f"Server CPU, {big} clients (mean)",
                *(cell("session", o, "server_cpu_percent", lambda v: f"{fmt_num(v)} %", clients=big or "") for o in opts),
            ]
        )
        rows.append(
            [
                f"Server memory, {big} clients (peak RSS growth over idle)",
                *(cell("session", o, "server_rss_growth_bytes", _fmt_b, clients=big or "") for o in opts),
            ]
        )
        rows.append(["Replay memory (peak RSS growth)", *(cell("trace-replay", o, "memory_bytes", _fmt_b) for o in opts)])
        rows.append(["Implementation size", *(f"{run.complexity[o]['loc']} lines" if o in run.complexity else "not run" for o in opts)])
        rows.append(["Library maturity", *(self._maturity(run, o) for o in opts)])
        content.tables.append(Table("Comparison matrix", header, rows, "Every cell is a stored measurement or fact of this run."))
        # Trace replay.
        lww_edits = next((s.params.get("lww_edits") for s in run.scenarios if s.scenario == "trace-replay" and s.params), None)
        tr = [
            ["final text equals the trace's", *(cell("trace-replay", o, "final_text_equal", yes_no) for o in opts)],
            [
                "edits replayed",
                *(fmt_num(sr.fact.get("edits", 0)) if sr else "not run" for sr in (run.ok("trace-replay", o) for o in opts)),
            ],
            ["replay time, median", *(cell("trace-replay", o, "replay_s", _fmt_s) for o in opts)],
            ["edits per second, over the edits replayed", *(cell("trace-replay", o, "ops_per_s", fmt_num) for o in opts)],
            [
                f"edits per second, first {fmt_num(lww_edits) if lww_edits else 'N'} edits for every option (the Performance score's figure)",
                *(cell("trace-replay", o, "prefix_ops_per_s", fmt_num) for o in opts),
            ],
            ["bytes sent per edit (all messages)", *(cell("trace-replay", o, "bytes_per_op", fmt_num) for o in opts)],
            ["final state size", *(cell("trace-replay", o, "state_bytes", _fmt_b) for o in opts)],
            ["peak RSS growth", *(cell("trace-replay", o, "memory_bytes", _fmt_b) for o in opts)],
        ]
        prefix = [
            titles[s.option] for s in run.scenarios if s.scenario == "trace-replay" and s.status == "ok" and not s.fact.get("whole_trace")
        ]
        note = (
            "The whole trace for every option."
            if not prefix
            else (
                f"A prefix of the trace for {', '.join(prefix)} (see 'edits replayed'; LWW sends the whole note on every edit, so its replay grows with the square "
                "of the trace length, and the quick profile shortens every replay); a prefix's final text is checked against the same edits applied to a Python string."
            )
        )
        note += " " + self._speed_note(run, titles)
        content.tables.append(Table("Replay of automerge-paper", header, tr, note))
        crdt = run.ok("trace-replay", "crdt")
        if crdt is not None:
            h, d = crdt.median("replay_s"), crdt.median("direct_replay_s")
            ratio = crdt.measurement("harness_over_direct").samples
            rows = [
                ["pycrdt directly (no spike code)", _fmt_s(d), fmt_num(crdt.median("direct_bytes_per_op") or 0)],
                ["through this spike's CrdtReplica", _fmt_s(h), fmt_num(crdt.median("bytes_per_op") or 0)],
                ["ratio, per round", ", ".join(f"{r:.2f}x" for r in ratio) + f" (median {statistics.median(ratio):.2f}x; target 1.2x)", ""],
            ]
            content.tables.append(
                Table(
                    "CRDT replay: this spike's code against pycrdt directly",
                    ["Replay", "Time, median", "Bytes per edit"],
                    rows,
                    "Rounds interleaved in one process, same edits, one transaction per edit, each update applied to a second document.",
                )
            )
            batches = sorted({m.tags["batch"] for m in crdt.find("batch_replay_s")}, key=int)
            content.tables.append(
                Table(
                    "CRDT: edits per transaction",
                    ["Edits per transaction", "Replay time", "Update bytes per edit", "Final document size"],
                    [
                        [
                            b,
                            _fmt_s(crdt.median("batch_replay_s", batch=b)),
                            fmt_num(crdt.median("batch_bytes_per_edit", batch=b) or 0),
                            _fmt_b(crdt.median("batch_state_bytes", batch=b)),
                        ]
                        for b in batches
                    ],
                )
            )
            content.charts.append(
                Chart(
                    "crdt-batching",
                    "pycrdt replay time by edits per transaction",
                    "bar",
                    "seconds",
                    {"replay time": [crdt.median("batch_replay_s", batch=b) for b in batches]},
                    batches,
                    xlabel="edits per transaction",
                    spread={"replay time": [crdt.spread("batch_replay_s", batch=b) for b in batches]},
                )
            )
        # Concurrent trace.
        copts = [o for o in opts if run.result("concurrent-trace", o) is not None]
        if copts:
            # Runs before the four-author trace stored no "traces" fact: friendsforever alone, untagged.
            tfacts: dict[str, Any] = next(
                (sr.fact["traces"] for sr in (run.ok("concurrent-trace", o) for o in copts) if sr and sr.fact.get("traces")), {}
            )
            labels = list(tfacts) or ["friendsforever"]
            rows = []
            for label in labels:
                f = tfacts.get(label, {})
                who = f"{label}, {f['authors']} authors" if f else f"{label}, 2 authors"
                tags = {"trace": label} if f.get("how", "vendored, unchanged") != "vendored, unchanged" else {}
                for name, measure, fmt in (
                    ("final_text_equal", "final text equals endContent", yes_no),
                    ("replicas_equal", "every author's replica equal", yes_no),
                    ("mapping_failures", "transactions that could not be mapped", fmt_num),
                    ("replay_s", "replay time", _fmt_s),
                    ("bytes_per_txn", "bytes exchanged per transaction", fmt_num),
                ):
                    rows.append([f"{who}: {measure}", *(cell("concurrent-trace", o, name, fmt, **tags) for o in copts)])
            lww_typing = cell("intent", "lww", "case_lost", fmt_num, case="same-place typing") if "lww" in opts else "not run"
            note = (
                "OT: one central Jupiter server, every author a client of it. "
                f"LWW is not replayed: its note is one register, which keeps one of two concurrent edits (same-place typing lost {lww_typing} of 6 characters in the intent cases)."
            )
            for label, f in tfacts.items():
                if f.get("how", "vendored, unchanged") != "vendored, unchanged":
                    note += f" {label} ({fmt_num(f['txns'])} transactions, {fmt_num(f['end_length'])} characters): {f['how']}"
                    if f.get("concurrent_txns") is not None:
                        note += f" {fmt_num(f['concurrent_txns'])} of its transactions were made without knowing every earlier one."
            title = (
                "Replay of concurrent traces ("
                + "; ".join(f"{label}: {tfacts[label]['authors'] if label in tfacts else 2} authors" for label in labels)
                + ")"
            )
            content.tables.append(Table(title, ["Measure", *(titles[o] for o in copts)], rows, note))
        # Intent cases.
        cases: dict[str, Any] = next((sr.fact.get("cases", {}) for sr in (run.ok("intent", o) for o in opts) if sr), {})
        if cases:
            rows = [[name, *(self._case_text(run, o, name) for o in opts)] for name in cases]
            content.tables.append(
                Table(
                    "Intent cases (two users, concurrent)",
                    ["Case", *(titles[o] for o in opts)],
                    rows,
                    "Intents lost, and the outcome every replica agreed on.",
                )
            )
            kinds = ["token_move", "note_insert", "note_delete", "stroke_add", "stroke_delete", "stroke_extend", "extend_of_deleted_stroke"]

            def lost_cell(o: str, k: str) -> str:
                if run.ok("intent", o) is None:
                    return "not run"
                v = run.median("intent", o, "workload_lost", kind=k)
                return "not measured" if v is None else fmt_num(v)

            rows = [[k.replace("_", " "), *(lost_cell(o, k) for o in opts)] for k in kinds]
            p = next((s.params for s in run.scenarios if s.scenario == "intent"), {})
            content.tables.append(
                Table(
                    "Lost intents in the random concurrent workload (median per round)",
                    ["Intent", *(titles[o] for o in opts)],
                    rows,
                    f"{p.get('rounds')} rounds of {p.get('edits')} edits from {p.get('replicas')} replicas. 'extend of deleted stroke' is an extension discarded "
                    "because another user deleted the stroke, the same rule in every option, so it is not counted as lost elsewhere. 'token move': "
                    "a move whose author had seen the token's final position (see Method); 'not measured': the run predates that counter.",
                )
            )
            rows = [[k, *(cell("intent", o, "edit_message_bytes", _fmt_b, kind=k) for o in opts)] for k in _sc.KINDS]
            content.tables.append(
                Table(
                    f"Bytes one edit sends, by kind (note of {p.get('note_chars')} characters)", ["Edit", *(titles[o] for o in opts)], rows
                )
            )
        # Sessions.
        sizes = sorted(
            {m.tags["clients"] for sr in run.scenarios if sr.scenario == "session" and sr.status == "ok" for m in sr.find("converged")},
            key=int,
        )
        if sizes:
            rows = []
            for n in sizes:
                for label, name, fmt in (
                    ("converged", "converged", yes_no),
                    ("convergence time", "convergence_s", _fmt_s),
                    ("bytes per client per second", "bytes_per_client_per_s", _fmt_b),
                    ("server CPU, mean", "server_cpu_percent", lambda v: f"{fmt_num(v)} %"),
                    ("server peak RSS", "server_rss_bytes", _fmt_b),
                    ("server RSS growth over idle", "server_rss_growth_bytes", _fmt_b),
                    ("lost intents", "lost_intents", fmt_num),
                ):
                    rows.append([f"{n} clients: {label}", *(cell("session", o, name, fmt, clients=n) for o in opts)])
            p = next((s.params for s in run.scenarios if s.scenario == "session"), {})
            content.tables.append(
                Table(
                    "Session over the real server",
                    header,
                    rows,
                    f"{p.get('rate')} edits/s per client for {p.get('duration_s')} s, {p.get('latency_ms')} ms injected each way; medians over repeats.",
                )
            )
            content.charts.append(
                Chart(
                    "session-bandwidth",
                    "Bytes per client per second by session size",
                    "bar",
                    "bytes/s (log scale)",
                    {titles[o]: [run.median("session", o, "bytes_per_client_per_s", clients=n) for n in sizes] for o in opts},
                    [f"{n} clients" for n in sizes],
                    log_y=True,
                    spread={titles[o]: [run.spread("session", o, "bytes_per_client_per_s", clients=n) for n in sizes] for o in opts},
                )
            )
            content.charts.append(
                Chart(
                    "session-convergence",
                    "Convergence time after the last edit",
                    "bar",
                    "seconds",
                    {titles[o]: [run.median("session", o, "convergence_s", clients=n) for n in sizes] for o in opts},
                    [f"{n} clients" for n in sizes],
                    spread={titles[o]: [run.spread("session", o, "convergence_s", clients=n) for n in sizes] for o in opts},
                )
            )
        rows = [
            ["offline edits", *(cell("offline", o, "offline_edits", fmt_num) for o in opts)],
            ["merged", *(cell("offline", o, "merged", yes_no) for o in opts)],
            ["merge time", *(cell("offline", o, "merge_s", _fmt_s) for o in opts)],
            ["bytes exchanged by the reconnecting client", *(cell("offline", o, "merge_bytes", _fmt_b) for o in opts)],
            ["lost intents", *(cell("offline", o, "lost_intents", fmt_num) for o in opts)],
        ]
        p = next((s.params for s in run.scenarios if s.scenario == "offline"), {})
        content.tables.append(
            Table(
                "Offline editing, then reconnect",
                header,
                rows,
                f"{p.get('offline_s')} s offline at {p.get('rate')} edits/s per client, {p.get('latency_ms')} ms injected each way.",
            )
        )
        content.charts.append(
            Chart(
                "replay-time",
                "automerge-paper replay time",
                "bar",
                "seconds (log scale)",
                {titles[o]: [run.median("trace-replay", o, "replay_s")] for o in opts},
                ["replay"],
                log_y=True,
                spread={titles[o]: [run.spread("trace-replay", o, "replay_s")] for o in opts},
            )
        )
        robustness = frames.robustness_table(run, titles)
        if robustness is not None:
            content.tables.append(robustness)
        content.findings = self._intent_findings(run) + frames.robustness_findings(run)
        content.notes.append(f"Data: {CREDIT}")
        content.notes.append(
            "Deterministic scenarios (trace checks, intent cases) run once; timed ones keep every raw sample. Scores come from these measurements by the utilities under the matrix."
        )
        return content

    @staticmethod
    def _speed_note(run: RunResult, titles: dict[str, str]) -> str:
        """Why the two speed rows of the replay table differ, or why they agree, option by option, from the stored run."""
        parts = []
        for o in run.options:
            sr = run.ok("trace-replay", o)
            if sr is None:
                continue
            edits, n = int(sr.fact.get("edits") or 0), int(sr.params.get("lww_edits") or 0)
            whole, prefix = sr.median("ops_per_s"), sr.median("prefix_ops_per_s")
            if whole is None or prefix is None or not edits:
                continue
            if sr.fact.get("prefix_is_the_replay"):
                parts.append(
                    f"{titles[o]}: both rows time the same {fmt_num(edits)} edits in the same "
                    f"{len(sr.measurement('ops_per_s').samples)} replay(s), so they are one figure ({fmt_num(whole)} edits/s)."
                )
            elif edits == n:
                k = len(sr.measurement("ops_per_s").samples)
                parts.append(
                    f"{titles[o]}: both rows time the same first {fmt_num(edits)} edits, the first as the median of {k} replay(s), the second "
                    f"in one separate replay after them (how this run measured it), so {fmt_num(whole)} against {fmt_num(prefix)} edits/s "
                    "is run-to-run noise, not a different workload."
                )
            else:
                parts.append(
                    f"{titles[o]}: different edits, the first row over all {fmt_num(edits)} edits replayed (a longer document), "
                    f"the second over the first {fmt_num(n)}."
                )
        return " ".join(["The two speed rows:", *parts]) if parts else ""

    # -- cells built from facts -------------------------------------------------------
    @staticmethod
    def _case_text(run: RunResult, o: str, name: str) -> str:
        sr = run.ok("intent", o)
        if sr is None or name not in sr.fact.get("cases", {}):
            return "not run"
        c = sr.fact["cases"][name]
        inter = ", interleaved" if c.get("interleaved") else ""
        return f"{c['lost']} lost{inter}: `{c['result']}`"

    @staticmethod
    def _offline_text(run: RunResult, o: str) -> str:
        sr = run.ok("offline", o)
        if sr is None:
            return "not run"
        m = sr.median("merge_s")
        return f"{'merged in ' + _fmt_s(m) if m is not None else 'did NOT merge'}, {_fmt_b(sr.median('merge_bytes'))}, {fmt_num(sr.median('lost_intents') or 0)} of {sr.fact.get('intents')} intents lost"

    @staticmethod
    def _p2p_text(run: RunResult, o: str) -> str:
        sr = run.ok("intent", o)
        if sr is None:
            return "not run"
        p2p = sr.fact.get("peer_to_peer")
        if p2p is None:
            return "yes: operations carry server revisions (no peer-to-peer mode)"
        if "rounds" in p2p:
            return StateSyncSpike._p2p_rounds_text(p2p)
        # Runs before the sync step: one random order, then one state-vector exchange per pair.
        if p2p["delivered"]:
            return "no: 3 replicas converged peer to peer, every message delivered once in random order"
        if "unapplied" in p2p:
            why = (
                f"{p2p['peers_behind']} of 3 peers lacked {p2p['unapplied']} of the {p2p['updates']} updates they had received "
                "(Yrs holds an update that arrives before one it depends on as pending; these were still not applied "
                "once every update had arrived, and nothing re-sent them)"
            )
        else:
            why = "the peers did NOT agree (the received updates each lacked were not counted in this run)"
        where = (
            "; through the relay updates arrive in the server's order, which is why the sessions and offline merges "
            "converged (the 'Convergence guarantee' row)"
        )
        if p2p["resynced"]:
            return (
                f"no, with a repair step: peer to peer with no server, every update delivered once in random order, {why}; "
                f"one state-vector exchange per pair re-sent what each peer lacked and they converged{where}"
            )
        return f"peer-to-peer merge did NOT converge, even after a state-vector exchange: {why}{where}"

    @staticmethod
    def _p2p_rounds_text(p2p: dict[str, Any]) -> str:
        """The peer-to-peer cell from the stored rounds: the option's own protocol first (the same samples as the
        'Convergence guarantee' row's peer-to-peer checks), then, labelled, the CRDT without its sync step."""
        k, ok = p2p["rounds"], p2p["converged"]
        head = "no" if ok == k else "not without a server: NOT every round converged"
        if p2p.get("sync") is None:
            return f"{head}: 3 replicas converged peer to peer in {ok} of {k} random delivery orders, every message delivered once"
        text = (
            f"{head}: with its sync step ({p2p['sync']}), 3 peers with no server converged in {ok} of {k} random delivery orders, "
            f"every update delivered once; {fmt_num(p2p['sync_requests'])} sync requests, {_fmt_b(p2p['sync_bytes'])} of state "
            "vectors and answers in all"
        )
        bare = p2p.get("without_sync")
        if bare:
            text += (
                f". Without the sync step (the same orders, each update delivered once and nothing more) they converged in "
                f"{bare['converged']} of {k}: in {bare['rounds_behind']} rounds a peer lacked updates it had received "
                f"({bare['unapplied']} of {fmt_num(bare['updates'])} in all; Yrs holds an update that arrives before one it depends on "
                "as pending, and it stayed unapplied)"
            )
        return text + "; through the relay updates arrive in the server's order"

    @staticmethod
    def _maturity(run: RunResult, o: str) -> str:
        sr = run.ok("intent", o)
        if sr is None:
            return "not run"
        libs = {k: v for k, v in sr.fact.get("library", {}).items() if k != "websockets"}
        if libs:
            return ", ".join(f"{k} {v} (installed)" for k, v in libs.items())
        return f"no library: {run.complexity.get(o, {}).get('loc', '?')} lines written here"

    def _intent_findings(self, run: RunResult) -> list[Finding]:
        out = []
        titles = {o.key: o.title for o in self.options}
        for o in run.options:
            sr = run.ok("intent", o)
            if sr is None:
                continue
            frac = sr.median("workload_lost_fraction")
            if frac is not None and frac > 0:
                out.append(Finding(o, False, f"{fmt_num(100 * frac)} % of intents lost in the random concurrent workload ({titles[o]})."))
            c = sr.fact.get("cases", {}).get("same-place typing")
            if c and c["lost"] == 0 and not c["interleaved"]:
                out.append(Finding(o, True, f"concurrent same-place typing kept both words whole: `{c['result']}`."))
        return out


spike = StateSyncSpike()
