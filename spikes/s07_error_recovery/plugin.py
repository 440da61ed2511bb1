"""Spike 7's plugin: error recovery strategies, measured with real faults and the harness's loss account.

The plugin object ``spike`` declares the strategies (one POC server, ``poc/server.py --strategy KEY``, its logic
in ``core.py``; the client side is the load engine with a resume adapter per strategy), the scenarios
(``scenarios.py``) and the document: a table per failure scenario, the replicas compared, and the cells of the
declared matrix that this build does not run yet, each with its reason.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import websockets

from harness import frames
from harness.plugin import Chart, Finding, Option, ReportContent, Scenario, Spike, Table
from harness.poc import PocServer
from harness.results import RunResult
from harness.stats import fmt_num
from spikes.s07_error_recovery import anchor as _anchor
from spikes.s07_error_recovery import cluster as _cl
from spikes.s07_error_recovery import core
from spikes.s07_error_recovery import crash as _crash
from spikes.s07_error_recovery import scenarios as _sc
from spikes.s07_error_recovery.decision import CRITERIA, FAULT_SCENARIOS, GATES

__all__ = ["RecoverySpike", "spike", "NOT_BUILT"]

_SHARED = ("core.py", "poc/server.py", "poc/relay.py", "poc/chat_store.py")
SERVER = PocServer(
    (
        "{python}",
        "-m",
        "spikes.s07_error_recovery.poc.server",
        "--strategy",
        "{option}",
        "--port",
        "{port}",
        "--redis",
        "{redis}",
        "--log-len",
        "{log_len}",
        "--pg",
        "{pg}",
        "--checkpoint-every",
        "{every}",
        "--ping-interval",
        "{ping}",
        "--ping-timeout",
        "{ping_timeout}",
    ),
)

OPTIONS = (
    Option(
        "reconnect",
        "Reconnect only (baseline)",
        "the client reconnects with backoff and full jitter and rejoins; nothing is numbered, queued or replayed",
        _SHARED,
        ("websockets", "pycrdt"),
        server=SERVER,
        client="ws",
    ),
    Option(
        "queue",
        "Message queuing",
        "a client outbox (harness resume adapter `outbox`): every message kept until the server acknowledges it, sent again after the "
        "rejoin; the server acknowledges each and applies by (sender, seq), so a copy it had is acknowledged again and not broadcast",
        _SHARED,
        ("websockets", "pycrdt"),
        server=SERVER,
        client="ws",
    ),
    Option(
        "reconstruct",
        "State reconstruction",
        "every broadcast numbered in the room's log (memory, bounded by length and age, and a Redis stream per room trimmed to about the "
        "same length); a client rejoins after the last number it saw (`last-seq`) and gets what it missed, or a full snapshot when the log "
        "no longer holds it; a restarted server rebuilds rooms from the stream",
        _SHARED,
        ("websockets", "pycrdt", "redis"),
        server=SERVER,
        client="ws",
        requires=("redis-server",),
    ),
    Option(
        "queue-reconstruct",
        "Queuing plus reconstruction",
        "both: the client outbox and acknowledgements, and the numbered log in Redis with resume after the last number (`outbox-last-seq`)",
        _SHARED,
        ("websockets", "pycrdt", "redis"),
        server=SERVER,
        client="ws",
        requires=("redis-server",),
    ),
    Option(
        "fallback",
        "Fallback modes",
        "queuing plus reconstruction that keeps serving while Redis is down: failed stream writes go into a write-behind queue (bound 10,000 "
        "entries; overflow policy: read-only, new broadcasts refused with an error and left in the clients' outboxes), drained in order "
        "when Redis answers again; a stream Redis lost is re-seeded from the memory log",
        _SHARED,
        ("websockets", "pycrdt", "redis"),
        server=SERVER,
        client="ws",
        requires=("redis-server",),
    ),
    Option(
        "checkpoint",
        "Checkpoints",
        "queuing plus reconstruction, and a snapshot of every room that moved written to PostgreSQL every second (one row a room: its "
        "sequence number and its state, the note as a pycrdt update); a restarted server rebuilds a room from its checkpoint plus the stream's "
        "entries after it",
        _SHARED,
        ("websockets", "pycrdt", "redis", "asyncpg"),
        server=SERVER,
        client="ws",
        requires=("redis-server", "postgres"),
    ),
    _anchor.OPTION,
)

_METHOD_COMMON = (
    "The option's server (Python `websockets` {ws}, or for the anchor Node socket.io with the same heartbeat as its pingInterval / "
    "pingTimeout; with a throwaway redis-server for the options that log to Redis) behind the harness's "
    "fault proxy; `connections` load-engine clients, each a sender (`rate` broadcasts a second) and a member of one room, reconnecting "
    "(backoff {base} s doubling to {cap} s, full jitter) with the option's resume adapter, the account on (harness/load/account.py); "
    "one more member, the watcher, applies every broadcast to its own replica; at the end its token map and note text, hashed, are "
    "compared with the server's. Heartbeat: the server pings every {ping} s and closes a peer silent {timeout} s after a ping; the "
    "load-engine clients send no pings (they learn of a drop only from the socket), the watcher pings like the server. After the senders stop, deliveries are awaited `grace_s` plus `grace_per_fault_s` per second of fault (a long fault leaves a backlog to replay); a message not delivered by then counts as lost. Each fault variant runs `runs` times, all of a scenario's runs side by side (each its own "
    "server, stores, proxy, watcher and load: independent, on one shared 2-core machine, so CPU figures include the neighbours' load), "
    "once: the spread is over those runs. The watcher's deliveries per second, on seconds since the fault began, make the timeline charts."
).format(
    ws=websockets.__version__, base=_sc.POLICY["base_s"], cap=_sc.POLICY["cap_s"], ping=_sc.PING_INTERVAL_S, timeout=_sc.PING_TIMEOUT_S
)

#: Every option but those that differ only while a store is down (``scenarios.STORE_ONLY``).
_NETWORK_OPTIONS = tuple(o.key for o in OPTIONS if o.key not in _sc.STORE_ONLY)

SCENARIOS = (
    Scenario(
        "network-reset",
        "Network interruption, reset",
        _METHOD_COMMON + " After `before_s`, the proxy resets every connection and refuses new ones for each of `cuts_s` seconds "
        "then passes again; the run goes on `after_s` more.",
        _sc.run_cut,
        {**_sc.CUT_PARAMS, "mode": "reset"},
        _sc.CUT_QUICK,
        options=_NETWORK_OPTIONS,
        max_repeats=1,
    ),
    Scenario(
        "network-blackhole",
        "Network interruption, blackhole",
        _METHOD_COMMON + " After `before_s`, the proxy forwards nothing and closes nothing (half-open) for each of `cuts_s` seconds, "
        "then passes again; the run goes on `after_s` more.",
        _sc.run_cut,
        {**_sc.BLACKHOLE_PARAMS, "mode": "blackhole"},
        _sc.BLACKHOLE_QUICK,
        options=_NETWORK_OPTIONS,
        max_repeats=1,
    ),
    Scenario(
        "server-restart",
        "Server restart",
        _METHOD_COMMON + " After `before_s`, the server is killed (SIGKILL) and started again on the same port 0.2 s later, or stopped "
        "gracefully (SIGTERM: websockets closes every connection with 1001) and started again.",
        _sc.run_restart,
        _sc.RESTART_PARAMS,
        _sc.RESTART_QUICK,
        options=_NETWORK_OPTIONS,
        max_repeats=1,
    ),
    Scenario(
        "redis-failure",
        "Redis failure",
        _METHOD_COMMON
        + " After `before_s`, redis-server is killed (SIGKILL) and started again on the same port `down_s` later, empty (the "
        "harness's Redis keeps no data); the run goes on `after_s` more. One server process (two processes behind nginx: the next scenario). Also stored: the stream writes that failed (`store_errors`).",
        _sc.run_redis_failure,
        _sc.REDIS_PARAMS,
        _sc.REDIS_QUICK,
        requires=("redis-server",),
        options=_sc.USES_REDIS,
        max_repeats=1,
    ),
    Scenario(
        "db-failure",
        "Database failure",
        _METHOD_COMMON + " After `before_s`, PostgreSQL is shut down immediately (SIGQUIT to the postmaster) and started again on the same "
        "data `down_s` later (crash recovery); the run goes on `after_s` more. Stored: checkpoint writes that failed and that succeeded "
        "(one row a room, upserted: a checkpoint is never duplicated, a failed one is retried at the next interval).",
        _sc.run_db_failure,
        _sc.DB_PARAMS,
        _sc.DB_QUICK,
        requires=("redis-server", "postgres"),
        options=_sc.USES_PG,
        max_repeats=1,
    ),
    Scenario(
        "storm",
        "Reconnect storm",
        "The option's server behind the fault proxy; `connections` load-engine clients in one room (`senders` of them broadcasting `rate` a "
        "second each), reconnecting with backoff from 0.1 s doubling to `cap_s`, with full jitter and without (every client sleeps the "
        "whole ceiling: they come back together); after `before_s` the proxy resets every connection at once and lets new ones through. "
        "Stored: the time until every connection received a message again, reconnects per second over that time, the server's CPU peak "
        "after the cut (10 samples a second) and the account's loss. One option: the storm exercises the rejoin path, which every option "
        "shares apart from the replay.",
        _sc.run_storm,
        _sc.STORM_PARAMS,
        _sc.STORM_QUICK,
        requires=("redis-server",),
        options=("queue-reconstruct",),
    ),
    Scenario(
        "rebuild",
        "Rebuild time against room size",
        "In process, the code a restarted server runs: a room with `tokens` tokens and a note of N edits (with as many token moves and chat "
        "lines), for each N of `edits`, rebuilt by replaying every operation of its log (state reconstruction) or restored from its "
        "checkpoint (the JSON row it writes to PostgreSQL, the note as a pycrdt update); the rebuilt state's hash must equal the original's.",
        _sc.run_rebuild,
        _sc.REBUILD_PARAMS,
        _sc.REBUILD_QUICK,
        options=("reconstruct", "checkpoint"),
        max_repeats=2,
    ),
    Scenario(
        "redis-cluster",
        "Redis failure, two processes behind nginx",
        _cl.CLUSTER_METHOD,
        _cl.run_cluster_redis,
        _cl.CLUSTER_PARAMS,
        _cl.CLUSTER_QUICK,
        requires=("redis-server", "nginx"),
        options=_cl.CLUSTER_OPTIONS,
    ),
    Scenario(
        "chat-db",
        "Database failure, chat persisted per message",
        _cl.CHAT_DB_METHOD,
        _cl.run_chat_db,
        _cl.CHAT_DB_PARAMS,
        _cl.CHAT_DB_QUICK,
        requires=("postgres",),
        options=_cl.CHAT_DB_OPTIONS,
    ),
    Scenario(
        "client-crash",
        "Client crash (Chromium killed mid-edit, IndexedDB vs memory outbox)",
        _crash.CRASH_METHOD,
        _crash.run_crash,
        _crash.CRASH_PARAMS,
        _crash.CRASH_QUICK,
        requires=("chromium",),
        options=_crash.CRASH_OPTIONS,
    ),
    dataclasses.replace(
        frames.robustness_scenario(
            values={"redis": "", "pg": "", "log_len": 10_000, "ping": _sc.PING_INTERVAL_S, "ping_timeout": _sc.PING_TIMEOUT_S, "every": 1.0}
        ),
        quick_params={"timeout_s": 1.0},
        options=tuple(o.key for o in OPTIONS if o.key != _anchor.KEY),
    ),
)

#: Cells of the declared matrix this build does not run yet, and why (the document lists them; nothing is faked).
NOT_BUILT = {
    "A read-only notice pushed to every client while a store is down": "not built: the fallback option says read-only only to a "
    "client whose write it refuses (its write-behind queue full); the chat write-behind queue for PostgreSQL is measured (chat table)",
    "Network interruptions and server restarts for fallback modes": "not declared: with Redis up, fallback runs the code of queuing plus "
    "reconstruction (its queue is empty), so those cells would measure that option again",
    "Reconnect storm for the options other than queuing plus reconstruction": "not declared: the storm exercises the rejoin path, shared "
    "by every option apart from the replay",
    "Client-to-server at-least-once for the socket.io anchor (socket.io-client's `retries` / `ackTimeout`)": "not modelled: the "
    "load engine's raw socket.io client keeps no outbox, so the anchor's loss without acknowledgement is what a client without "
    "`retries` loses; socket.io's recovery replays server-to-client packets only",
    "Hostile frames, database failure, reconnect storm and client crash for the socket.io anchor": "not declared: the hostile-frames "
    "battery of socket.io framing is Spike 1's, the anchor persists nothing in PostgreSQL, and the storm and the crash exercise the "
    "POC's own rejoin and outbox",
}

ROWS = (
    ("lost", "lost (after + without acknowledgement)"),
    ("lost_after_ack", "lost after acknowledgement"),
    ("lost_without_ack", "lost without acknowledgement"),
    ("duplicated", "duplicated"),
    ("reordered", "reordered"),
    ("unexpected", "unexpected"),
    ("detect_ms", "time to detect (watcher), ms"),
    ("recover_ms", "time to recover (slowest connection), ms"),
    ("replicas_differ", "state equal"),
    ("stream_missing", "log entries missing from Redis at the end"),
    ("queue_high_water", "write-behind queue high-water mark, entries"),
    ("drain_ms", "from the first failed write to the queue drained, ms"),
    ("server_cpu_peak", "server CPU peak, % of a core (until a kill)"),
    ("server_rss_peak", "server RSS peak, bytes (until a kill)"),
    ("redis_cpu_peak", "redis-server CPU peak, % of a core (until a kill)"),
    ("redis_rss_peak", "redis-server RSS peak, bytes (until a kill)"),
    ("pg_cpu_peak", "PostgreSQL CPU peak (postmaster and backends), % of a core (until a shutdown)"),
    ("pg_rss_peak", "PostgreSQL RSS peak (postmaster and backends), bytes (until a shutdown)"),
)


#: The seed's matrix without Scalability and Cost: neither is measured by this build (the reconnect storm and the
#: service costs are not built), so their weight is spread over what is; adds up to 100.
WEIGHTS = {"Performance": 40, "Complexity": 30, "Maintenance": 30}


class RecoverySpike(Spike):
    """Reconnect only vs an outbox vs a numbered log in Redis vs both, under real network and server faults."""

    number = 7
    slug = "error-recovery"
    title = "Error Recovery Patterns"
    priority = "important"
    planned_hours = 4
    question = (
        "Which recovery strategy keeps every player's table whole through network interruptions and server restarts "
        "(reconnect only, a client outbox with acknowledgements, a numbered room log to resume from, or both), with which settings?"
    )
    options = OPTIONS
    scenarios = SCENARIOS
    weights = WEIGHTS
    criteria = CRITERIA
    gates = GATES
    default_repeat = 2
    quick_repeat = 1
    package_dir = Path(__file__).parent

    def report(self, run: RunResult) -> ReportContent:
        content = ReportContent()
        titles = {o.key: o.title for o in self.options}
        opts = list(run.options)
        for scen in FAULT_SCENARIOS:
            self._scenario_tables(run, scen, opts, titles, content)
            content.charts.extend(self._timeline_charts(run, scen, opts, titles))
        storm = self._storm_table(run)
        if storm is not None:
            content.tables.append(storm)
        content.tables.extend(_cl.cluster_tables(run, titles))
        content.tables.extend(_cl.chat_db_tables(run, titles))
        crash = _crash.crash_table(run, titles)
        if crash is not None:
            content.tables.append(crash)
        rebuild = self._rebuild_table(run, titles)
        if rebuild is not None:
            content.tables.append(rebuild)
        settings = self._settings(run, opts, titles)
        if settings is not None:
            content.tables.append(settings)
        table = frames.robustness_table(run, titles)
        if table is not None:
            content.tables.append(table)
        content.tables.append(
            Table(
                "Malformed resume requests: the answer",
                ["Request", "Error frame code", "Close code"],
                [
                    ["`after` not an integer or negative", "bad-after", f"{core.CLOSE_BAD_RESUME}"],
                    ["`after` past the room's last sequence number", "future-after", f"{core.CLOSE_FUTURE_SEQ}"],
                    ["resume into a room that does not exist", "unknown-room", f"{core.CLOSE_UNKNOWN_ROOM}"],
                ],
                "The POC's answers (core.parse_resume), checked by tests/spikes/s07/test_s07_server.py against the running server.",
            )
        )
        content.tables.append(
            Table(
                "Matrix cells not run by this build",
                ["Cell", "Why"],
                [[k, v] for k, v in NOT_BUILT.items()],
                "Nothing here is estimated or faked; each becomes a measured cell when built.",
            )
        )
        content.findings.extend(self._findings(run, opts))
        combo = self._combination_note(run)
        if combo:
            content.notes.append(combo)
        measured = [sc.title for sc in self.scenarios if any(run.ok(sc.key, o) for o in opts)]
        content.caveats.append(
            "Measured: "
            + "; ".join(measured)
            + f". Not run by this build: {len(NOT_BUILT)} cells of the declared matrix (the last table says which and why)."
        )
        if any(run.ok("redis-failure", o) for o in _sc.STORE_ONLY):
            content.caveats.append(
                "Fallback modes ran only the Redis failure and the hostile frames (with Redis up it runs the code of queuing plus "
                "reconstruction): its recovery time comes from the Redis failure alone"
            )
        content.notes.append(
            "python-socketio "
            + _version("python-socketio")
            + " has no connection state recovery (no replay of missed packets on reconnect); only Node's socket.io 4.6+ has it."
        )
        return content

    def _scenario_tables(self, run: RunResult, scen: str, opts: list[str], titles: dict[str, str], content: ReportContent) -> None:
        cells: dict[str, dict[str, Any]] = {}
        for o in opts:
            sr = run.result(scen, o)
            if sr is None:
                continue
            cells[o] = {"sr": run.ok(scen, o), "status": sr.status.replace("_", " ") + (f": {sr.reason}" if sr.reason else "")}
        if not cells:
            return
        tag_key = {"server-restart": "signal", "redis-failure": "down_s", "db-failure": "down_s"}.get(scen, "cut_s")
        tag_values: list[str] = []
        for c in cells.values():
            if c["sr"] is not None:
                for m in c["sr"].find("lost"):
                    v = m.tags.get(tag_key)
                    if v is not None and v not in tag_values:
                        tag_values.append(v)
        title = {s.key: s.title for s in self.scenarios}.get(scen, scen)
        if not tag_values:
            content.tables.append(Table(title, ["", *(titles[o] for o in cells)], [["status", *(c["status"] for c in cells.values())]]))
            return
        for tv in tag_values:
            rows = []
            for name, label in ROWS:
                row = [label]
                for c in cells.values():
                    sr = c["sr"]
                    if sr is None:
                        row.append(c["status"])
                        continue
                    try:
                        m = sr.measurement(name, **{tag_key: tv})
                    except KeyError:
                        missing = {"detect_ms": "no drop noticed", "recover_ms": "no delivery after the fault"}
                        if name == "replicas_differ" and sr.find("lost"):
                            missing[name] = "not compared (no room state)"
                        row.append(missing.get(name, "n/a"))
                        continue
                    if not m.samples:
                        row.append("none observed" if name == "detect_ms" else "n/a")
                    elif name == "replicas_differ":
                        differ = sum(1 for s in m.samples if s)
                        row.append("equal" if differ == 0 else f"**differ** in {differ} of {len(m.samples)} runs")
                    else:
                        row.append(", ".join(fmt_num(s) for s in m.samples))
                if any(x != "n/a" for x in row[1:]):  # a row no option measured here is left out
                    rows.append(row)
            label = {"cut_s": f"{tv} s", "down_s": f"down {tv} s"}.get(tag_key, tv)
            content.tables.append(
                Table(
                    f"{title}: {label}",
                    ["", *(titles[o] for o in cells)],
                    rows,
                    "One figure per run. Lost counts every member that never got a message it should have (the account's expected).",
                )
            )

    def _timeline_charts(self, run: RunResult, scen: str, opts: list[str], titles: dict[str, str]) -> list[Chart]:
        """Per fault variant: the watcher's deliveries per second around the fault, one line per option (its first run), and the fault's window."""
        by_tag: dict[str, dict[str, Any]] = {}
        for o in opts:
            sr = run.ok(scen, o)
            if sr is None:
                continue
            for f in sr.facts:
                for r in f.get("runs", []):
                    tl = r.get("timeline")
                    tag = str(r.get("cut_s") or r.get("signal") or r.get("down_s") or "")
                    if not tl or r.get("run", 1) != 1:
                        continue
                    entry = by_tag.setdefault(tag, {"series": {}, "windows": []})
                    if titles[o] in entry["series"]:
                        continue
                    entry["series"][titles[o]] = [(round(tl["start_s"] + (i + 0.5) * tl["bin_s"], 3), v) for i, v in enumerate(tl["per_s"])]
                    faults = r.get("faults") or []
                    if faults and faults[0].get("ended_wall") is not None:
                        entry["windows"].append(faults[0]["ended_wall"] - faults[0]["started_wall"])
        title = {s.key: s.title for s in self.scenarios}.get(scen, scen)
        charts = []
        for tag, entry in by_tag.items():
            top = max((y for pts in entry["series"].values() for _, y in pts), default=0.0)
            series = dict(entry["series"])
            if entry["windows"]:
                d = max(entry["windows"])
                series[f"fault window (0 to {fmt_num(d)} s)"] = [(0.0, 0.0), (0.0, top), (round(d, 3), top), (round(d, 3), 0.0)]
            label = f"down {tag} s" if scen in ("redis-failure", "db-failure") else (tag if scen == "server-restart" else f"{tag} s cut")
            charts.append(
                Chart(
                    f"timeline-{scen}-{tag}".lower().replace(".", "_"),
                    f"{title}, {label}: deliveries per second at the watcher",
                    "line",
                    "broadcasts received per second",
                    series,
                    xlabel="seconds since the fault began",
                    caption=f"The watcher's deliveries in bins of {fmt_num(_sc.TIMELINE_BIN_S)} s, each option's first run; the box is the "
                    "fault's window (the longest of the options' runs). A gap is the table frozen for that player; a spike after it is "
                    "a replay.",
                )
            )
        return charts

    def _storm_table(self, run: RunResult) -> Table | None:
        sr = run.ok("storm", "queue-reconstruct")
        if sr is None:
            return None
        rows = []
        for name, label in (
            ("all_back_ms", "time until every connection had a message again, ms"),
            ("connections_back", "connections back"),
            ("reconnects_per_s", "reconnects per second"),
            ("server_cpu_peak", "server CPU peak after the cut, % of a core"),
            ("lost", "messages lost"),
        ):
            row = [label]
            for j in ("with", "without"):
                try:
                    row.append(", ".join(fmt_num(x) for x in sr.measurement(name, jitter=j).samples))
                except KeyError:
                    row.append("not every connection came back" if name in ("all_back_ms", "reconnects_per_s") else "n/a")
            rows.append(row)
        n = sr.params.get("connections")
        return Table(
            f"Reconnect storm: {n} connections reset at once (Queuing plus reconstruction)",
            ["", "with jitter", "without jitter"],
            rows,
            "One figure per repeat.",
        )

    def _rebuild_table(self, run: RunResult, titles: dict[str, str]) -> Table | None:
        srs = {o: sr for o in ("reconstruct", "checkpoint") if (sr := run.ok("rebuild", o)) is not None}
        if not srs:
            return None
        sizes = sorted({m.tags["edits"] for sr in srs.values() for m in sr.find("rebuild_ms")}, key=int)
        rows = []
        for n in sizes:
            row = [f"{int(n):,} edits (+ as many moves and chat lines)"]
            for sr in srs.values():
                ms, size = sr.median("rebuild_ms", edits=n), sr.median("checkpoint_bytes", edits=n)
                row.append(
                    "n/a" if ms is None else f"{fmt_num(ms)} ms" + ("" if size is None else f" (checkpoint {fmt_num(size / 1024)} KiB)")
                )
            rows.append(row)
        return Table(
            "Rebuild time against room size",
            ["Room", *(("Replay the log: " if o == "reconstruct" else "From the checkpoint: ") + titles[o] for o in srs)],
            rows,
            "Median over repeats, in process (the code a restarted server runs); the rebuilt state's hash equals the original's.",
        )

    def _settings(self, run: RunResult, opts: list[str], titles: dict[str, str]) -> Table | None:
        """The settings the POC ran with, each beside the measurements of this run that bear on it."""
        rows = []
        hb = None
        blackhole: list[str] = []
        for o in opts:
            sr = run.ok("network-blackhole", o)
            if sr is None:
                continue
            hb = sr.fact.get("heartbeat", hb)
            for m in sr.find("detected"):
                cut = m.tags.get("cut_s")
                noticed = sum(1 for x in m.samples if x)
                blackhole.append(f"{titles[o]}, {cut} s: noticed in {noticed} of {len(m.samples)}")
        if hb:
            rows.append(
                [
                    "heartbeat (server ping interval / timeout)",
                    f"{fmt_num(hb['ping_interval_s'])} s / {fmt_num(hb['ping_timeout_s'])} s",
                    "blackholes: "
                    + ("; ".join(blackhole) if blackhole else "not measured")
                    + ". A cut shorter than interval + timeout goes unnoticed and the buffered frames flow after it; clients that send no "
                    "ping learn of a longer one only when the server's close reaches them",
                ]
            )
        heads, snaps = [], 0.0
        for o in opts:
            for scen in FAULT_SCENARIOS:
                sr = run.ok(scen, o)
                if sr is None:
                    continue
                for f in sr.facts:
                    for r in f.get("runs", []):
                        heads.append(int(r.get("server", {}).get("head", 0)))
                for m in sr.find("snapshots"):
                    snaps += sum(m.samples)
        if heads:
            rows.append(
                [
                    "room log length (entries)",
                    fmt_num(_sc.CUT_PARAMS["log_len"]),
                    f"the largest room head reached in one run was {fmt_num(max(heads))} entries; full snapshots sent for a gap older than the "
                    f"log: {fmt_num(snaps)}. At the runs' rate the log held every cut measured",
                ]
            )
        recovers = [
            s for o in opts for scen in FAULT_SCENARIOS if (sr := run.ok(scen, o)) for m in sr.find("recover_ms") for s in m.samples
        ]
        if recovers:
            rows.append(
                [
                    "reconnect backoff (base / cap, full jitter)",
                    f"{fmt_num(_sc.POLICY['base_s'])} s / {fmt_num(_sc.POLICY['cap_s'])} s",
                    f"slowest connection back after a fault: median {fmt_num(sorted(recovers)[len(recovers) // 2])} ms, worst "
                    f"{fmt_num(max(recovers))} ms over {len(recovers)} runs",
                ]
            )
        if not rows:
            return None
        return Table(
            "Settings, and the measurements of this run behind them",
            ["Setting", "Value run", "Evidence"],
            rows,
            f"Checkpoint interval: {fmt_num(_sc.CHECKPOINT_EVERY_S)} s (not varied in this build); rebuild times are in the rebuild table.",
        )

    @staticmethod
    def _worst_of(run: RunResult, option: str, name: str) -> float | None:
        values = [x for scen in FAULT_SCENARIOS if (sr := run.ok(scen, option)) for m in sr.find(name) for x in m.samples]
        return max(values) if values else None

    def _combination_note(self, run: RunResult) -> str | None:
        """Whether the combination was measured to be needed: what each half lost alone, and what both together lost."""
        w = self._worst_of
        q_after, r_without, both = (
            w(run, "queue", "lost_after_ack"),
            w(run, "reconstruct", "lost_without_ack"),
            w(run, "queue-reconstruct", "lost"),
        )
        if q_after is None or r_without is None or both is None:
            return None
        needed = q_after > 0 and r_without > 0 and both == 0
        return (
            f"**{'A combination is needed' if needed else 'Queuing and reconstruction, alone and together'}.** In the worst faulted run, message "
            f"queuing alone lost {fmt_num(q_after)} messages the server had acknowledged (members away missed broadcasts: nothing replays "
            f"them); state reconstruction alone lost {fmt_num(r_without)} messages the server never acknowledged (sent into a connection "
            f"that was dying: nothing sends them again); both together lost {fmt_num(both)}."
        )

    def _findings(self, run: RunResult, opts: list[str]) -> list[Finding]:
        out = []
        for o in opts:
            lost, differ, runs, compared = 0.0, 0.0, 0, 0
            for scen in FAULT_SCENARIOS:
                sr = run.ok(scen, o)
                if sr is None:
                    continue
                for m in sr.find("lost"):
                    lost = max(lost, max(m.samples, default=0.0))
                    runs += len(m.samples)
                for m in sr.find("replicas_differ"):
                    differ += sum(m.samples)
                    compared += len(m.samples)
            if not runs:
                continue
            if lost == 0 and differ == 0:
                replicas = "replicas equal" if compared else "replicas not compared (no room state on the server)"
                out.append(Finding(o, True, f"no message lost and {replicas} in all {runs} faulted runs."))
            else:
                if lost:
                    out.append(Finding(o, False, f"lost up to {fmt_num(lost)} messages in one faulted run."))
                if differ:
                    out.append(Finding(o, False, f"the watcher's replica differed from the server's in {fmt_num(differ)} of {runs} runs."))
        return out


def _version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


spike = RecoverySpike()
