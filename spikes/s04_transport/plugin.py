"""Spike 4's plugin: SSE vs long polling vs WebSocket for the activity feed.

The plugin object ``spike`` declares the three options (POC servers under ``poc/``, one room model in
``poc/feed.py``), the scenarios (``scenarios.py``: latency and cost per rate, directly and through nginx over
HTTP/1.1 and HTTP/2; capacity; reconnect and resume through the fault injector; the proxy matrix of
``proxies.py``; the browser matrix of ``browsers.py``; the published compatibility data of ``compat.py``; bad
input of ``badinput.py``; the hostile frame battery) and how the stored results become the seed's test matrix,
the proxy table, scores and findings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.plugin import Finding, Option, ReportContent, Scenario, Spike, Table
from harness.results import RunResult
from harness.stats import fmt_num
from spikes.s04_transport import badinput as _bi
from spikes.s04_transport import proxies as _px  # registers squid, openssl and curl with the harness's programs
from spikes.s04_transport import robustness as _rb
from spikes.s04_transport import scenarios as _sc
from spikes.s04_transport.decision import CRITERIA, CUTS, GATES
from spikes.s04_transport.poc import server

__all__ = ["TransportSpike", "spike", "WEIGHTS"]

#: The seed's five comparison points; Complexity is the harness's own criterion.
WEIGHTS = {"Browser support": 20, "Proxy compatibility": 25, "Resource usage": 15, "Latency": 20, "Complexity": 20}

_WEB = "{repo}/spikes/s04_transport/web"
_SHARED = ("poc/feed.py", "poc/common.py")

OPTIONS = (
    Option(
        "sse",
        "Server-sent events",
        "aiohttp with aiohttp-sse: one text/event-stream per listener, event ids (epoch and number) for Last-Event-ID resume, a "
        "keep-alive comment, `Cache-Control: no-store` and `X-Accel-Buffering: no`; events published by POST",
        (*_SHARED, "poc/sse_server.py"),
        ("aiohttp", "aiohttp-sse"),
        server=server("sse", "--static", _WEB),
        client="sse",
    ),
    Option(
        "longpoll",
        "Long polling",
        "aiohttp: each poll names the client's cursor and is held up to 25 s until an event exists, so nothing between polls is "
        "lost; events published by POST",
        (*_SHARED, "poc/longpoll_server.py"),
        ("aiohttp",),
        server=server("poll", "--static", _WEB),
        client="longpoll",
    ),
    Option(
        "ws",
        "WebSocket",
        "a `websockets` server as in Spike 1 with a feed channel: numbered broadcasts, resume by sequence number (join with `after`)",
        (*_SHARED, "poc/ws_server.py"),
        ("websockets", "aiohttp"),
        server=server("ws", "--static", _WEB),
        client="ws",
    ),
)

_LOAD = (
    "The harness's open-model engine: one publisher connection sends the room's events on a fixed schedule, every other connection "
    "only listens; latency runs from each event's intended send time to its arrival (coordinated omission corrected; one clock); every "
    "event is counted by the harness's account. The POC server is one process, sampled for CPU and RSS."
)

SCENARIOS = (
    Scenario(
        "latency",
        "Latency and cost per rate",
        f"`listeners` listeners and one publisher in one room, the publisher sending `rates` events/s for `duration_s` each, directly over "
        "HTTP/1.1 (one fresh room per rate); then `front_rate` events/s through nginx with the documented settings over HTTP/1.1, and "
        "over HTTP/2 with TLS (a throwaway certificate; the load engine's HTTP/2 clients, every stream of a generator process on one "
        "connection, as a browser does; WebSocket has none: nginx does not carry WebSocket over HTTP/2). Server memory per connection is "
        "(peak RSS - RSS before the first load) / connections; CPU per event is the server's CPU time over the events delivered; bytes "
        f"per event are what the clients read off the wire over the events delivered. {_LOAD}",
        _sc.run_latency,
        _sc.LATENCY,
        _sc.LATENCY_QUICK,
        requires=("nginx",),
    ),
    Scenario(
        "capacity",
        "Capacity of a feed room",
        "Not a long run but a search over short steps: `listeners` listeners and one publisher; a step at a rate passes when at least "
        "`min_delivered` of the events reached every listener within the step (plus `grace_s`), p99 stayed at most `p99_ms` and no "
        "connection dropped. The rate is bisected geometrically between `lo_rate` and `hi_rate` until within `ratio`, or `max_steps` "
        "steps ran; a capacity where the generator was the limit, or that never failed, is *at least*. " + _LOAD,
        _sc.run_capacity,
        _sc.CAPACITY,
        _sc.CAPACITY_QUICK,
    ),
    Scenario(
        "resume",
        "Reconnect and resume",
        "Each fault on a fresh server: `listeners` listeners and the publisher connect through the harness's fault proxy and send `rate` "
        "events/s; `lead_s` in, either every connection is cut (reset, and new connections refused) for 1 or 10 s, or the server is "
        "killed (SIGKILL) and restarted on its port after `restart_down_s` (its in-memory history is lost: clients are told to reload, "
        "by an epoch change). Clients reconnect with exponential backoff and full jitter (0.1 s, at most 1 s) and resume with the "
        "transport's resume point: Last-Event-ID for SSE, the cursor for long polling, `after` for WebSocket. The account says what was "
        "lost after the server acknowledged it, lost before (the publisher's own sends into the cut), duplicated, and the gap from the "
        "fault's end to the first event delivered after it. " + _LOAD,
        _sc.run_resume,
        _sc.RESUME,
        _sc.RESUME_QUICK,
        max_repeats=1,
    ),
    Scenario(
        "proxies",
        "Through proxies",
        "The option's transport through each proxy path (nginx with its default proxy settings, with the documented settings, with "
        "gzip on, gzip with buffering, a read timeout shorter than the feed's keep-alive, HTTP/2 with TLS; Debian's squid as a forward "
        "proxy; the fault injector's buffering proxy): a real client subscribes through it, `events` events are published directly to "
        "the server, and the client watches for `window_s`. A cell counts only if the proxy's own log shows the request.",
        _sc.run_proxies,
        _sc.PROXIES,
        _sc.PROXIES_QUICK,
        requires=("nginx", "squid", "openssl", "curl"),
        max_repeats=1,
    ),
    Scenario(
        "browsers",
        "In three browser engines",
        "A page served from the feed's own origin opens the option's transport in each engine (Chromium through Playwright, Firefox ESR "
        "and WebKitGTK's MiniBrowser under Xvfb), receives 5 events, has every connection of its origin reset by a fault proxy while 5 "
        "more are published, then receives 5 live ones; it reports what it received (lost, duplicated, by event number) and how long "
        "it took to come back. With SSE the page also opens 8 EventSources on one origin over HTTP/1.1, and over HTTP/2 through nginx "
        "(the 6-connections-per-origin limit).",
        _sc.run_browsers,
        _sc.BROWSERS,
        _sc.BROWSERS_QUICK,
        requires=("chromium",),
        max_repeats=1,
    ),
    Scenario(
        "compat",
        "Published browser support",
        "@mdn/browser-compat-data, pinned by the spike's lock file and installed by `npm ci`, read for EventSource, WebSocket, fetch and "
        "their relatives: the first version of Chrome, Firefox, Safari, Edge, Chrome Android and Safari on iOS. Data, not measurement.",
        _sc.run_compat,
        {},
        {},
        options=("sse",),
        requires=("node", "npm"),
        max_repeats=1,
    ),
    Scenario(
        "bad-input",
        "Bad resume points and bodies",
        "Resume points that are malformed, in the future, older than the history kept or of another epoch, and hostile publish "
        "bodies: the answer each gets, whether another client is still served afterwards, and whether the server logged a traceback.",
        _bi.run_bad_input,
        {},
        {},
        max_repeats=1,
    ),
    _rb.SCENARIO,
)


#: What a proxy must do for a feed that failed through a path: the setting the path lacks (the failure itself is measured).
NEEDS_FROM_PROXY = {
    "nginx-default": "`proxy_http_version 1.1` and the Upgrade/Connection headers passed on",
    "nginx-correct": "a working reverse proxy (it failed with the documented settings)",
    "nginx-gzip": "no compression of the stream, or a client that reads a compressed stream",
    "nginx-gzip-buffered": "`proxy_buffering off` (or the feed's `X-Accel-Buffering: no` honoured)",
    "nginx-short-read-timeout": "`proxy_read_timeout` above the feed's keep-alive interval (or a keep-alive below the proxy's timeout)",
    "nginx-h2-tls": "HTTP/1.1 with Upgrade to the feed behind a TLS front (nginx carries no WebSocket over HTTP/2)",
    "squid-forward": "CONNECT allowed to the feed's port (Debian's squid allows 443 only)",
    "buffering-proxy": "nothing the server can set: a proxy that holds bytes until a buffer fills needs another transport as a fallback",
}


def _engine_merge(run: RunResult) -> dict[str, Any] | None:
    """The browser scenario's matrices of every option, merged into one (one option measured one transport per engine)."""
    merged: dict[str, Any] | None = None
    for o in run.options:
        sr = run.ok("browsers", o)
        if sr is None:
            continue
        m = sr.fact.get("matrix") or {}
        if merged is None:
            merged = {k: v for k, v in m.items() if k != "engines"} | {"engines": {}}
        for e, row in (m.get("engines") or {}).items():
            have = merged["engines"].setdefault(e, {k: v for k, v in row.items() if k != "transports"} | {"transports": {}})
            have["transports"].update(row.get("transports") or {})
            if row.get("per_origin") and row["per_origin"].get("http1", {}).get("measured"):
                have["per_origin"] = row["per_origin"]
    return merged


def _pct(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else "n/a"


class TransportSpike(Spike):
    """SSE vs long polling vs WebSocket for the activity feed, measured through proxies and in three browser engines."""

    number = 4
    slug = "sse-vs-polling"
    title = "SSE vs Long Polling vs WebSocket"
    priority = "important"
    planned_hours = 3
    question = (
        "Which transport should carry the tabletop's activity feed (joins, dice rolls, token moves summarised, chat notices): "
        "server-sent events, long polling or WebSocket, judged by browser support, proxy and firewall compatibility, resource usage, "
        "latency and implementation complexity?"
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
        opts = run.options
        head = [titles[o] for o in opts]
        self._seed_matrix(run, content)
        self._latency(run, opts, head, content)
        self._capacity(run, opts, titles, content)
        self._resume(run, opts, titles, content)
        self._proxies(run, opts, titles, content)
        self._browsers(run, content)
        table = _bi.table(run, titles)
        if table is not None:
            content.tables.append(table)
        return content

    # -- the seed's test matrix -----------------------------------------------------------------
    def _seed_matrix(self, run: RunResult, content: ReportContent) -> None:
        from spikes.s04_transport import compat

        sr = next((s for o in run.options if (s := run.ok("compat", o)) is not None), None)
        measured = _engine_merge(run)
        if sr is None and measured is None:
            return
        table = sr.fact["compat"] if sr is not None else None
        if table is None:
            content.notes.append("**Published data** not read in this run: the compat scenario did not run.")
            return
        content.notes.append("**The seed's test matrix**, filled:\n\n" + compat.beside_markdown(table, measured))
        content.notes.append("**Published data in full**:\n\n" + compat.to_markdown(table))

    # -- latency and cost -----------------------------------------------------------------------
    def _latency(self, run: RunResult, opts: list[str], head: list[str], content: ReportContent) -> None:
        rows = []
        paths: list[tuple[str, str]] = []
        for o in opts:
            sr = run.ok("latency", o)
            for p in (sr.fact.get("paths") or []) if sr else []:
                key = (p["path"], str(p["rate"]))
                if key not in paths:
                    paths.append(key)
        for path, rate in paths:
            for label, name, unit in (
                ("p50 latency", "latency_p50_ms", "ms"),
                ("p99 latency", "latency_p99_ms", "ms"),
                ("server CPU per event", "server_cpu_us_per_event", "µs"),
                ("bytes in per event", "bytes_in_per_event", "B"),
                ("server memory per connection", "memory_per_connection_bytes", "KiB"),
                ("delivered / expected", "delivered", ""),
            ):
                cells = []
                for o in opts:
                    sr = run.ok("latency", o)
                    if sr is None:
                        cells.append("not run")
                        continue
                    v = sr.median(name, path=path, rate=rate)
                    if v is None:
                        cells.append("n/a")
                    elif name == "delivered":
                        e = sr.median("expected", path=path, rate=rate)
                        cells.append(f"{fmt_num(v)} / {fmt_num(e or 0)}")
                    elif unit == "KiB":
                        cells.append(fmt_num(v / 1024, "KiB"))
                    else:
                        cells.append(fmt_num(v, unit))
                rows.append([path, f"{rate}/s", label, *cells])
        if rows:
            content.tables.append(
                Table(
                    "Latency and cost per rate (medians over repeats)",
                    ["Path", "Events", "Measure", *head],
                    rows,
                    "direct-h1: the POC server directly over HTTP/1.1; nginx-h1: through nginx with the documented settings; nginx-h2: "
                    "through nginx over HTTP/2 with TLS (n/a where the transport has no HTTP/2 client; the load engine's HTTP/2 clients "
                    "share one connection per 50 clients, so memory per connection there is per stream). Latency from the intended send "
                    "time (open model). Server CPU is the POC process's CPU time over the events delivered; the kernel counts it in 10 ms "
                    "ticks, so at 1 event/s a figure rests on a few ticks. nginx's own CPU is not in it.",
                )
            )

    def _capacity(self, run: RunResult, opts: list[str], titles: dict[str, str], content: ReportContent) -> None:
        rows = []
        for o in opts:
            sr = run.ok("capacity", o)
            if sr is None:
                continue
            for i, f in enumerate(sr.facts):
                best = [s for s in f.get("steps", []) if s["passed"]]
                top = max(best, key=lambda s: s["rate"]) if best else None
                rows.append(
                    [
                        titles[o],
                        str(i + 1),
                        ("at least " if f.get("at_least") else "") + (fmt_num(top["rate"], "events/s") if top else "none passed"),
                        fmt_num(top["deliveries_per_s"], "deliveries/s") if top else "n/a",
                        fmt_num(top["p99_ms"], "ms") if top and top["p99_ms"] is not None else "n/a",
                        fmt_num(f["fail_rate"], "events/s") if f.get("fail_rate") else "none failed",
                        f.get("why", ""),
                        ", ".join(f"{fmt_num(s['rate'])}{'✓' if s['passed'] else '✗'}" for s in f.get("steps", [])),
                    ]
                )
        if rows:
            content.tables.append(
                Table(
                    "Capacity of a feed room, per repeat",
                    ["Option", "Repeat", "Capacity", "Deliveries/s", "p99 there", "Lowest failing rate", "Limit", "Steps (✓ passed)"],
                    rows,
                    "Limit: server (the option failed above it), generator (the load generator was the limit: a lower bound), range (nothing "
                    "failed up to the top of the range).",
                )
            )

    def _resume(self, run: RunResult, opts: list[str], titles: dict[str, str], content: ReportContent) -> None:
        rows = []
        for o in opts:
            sr = run.ok("resume", o)
            for c in (sr.fact.get("cells") or []) if sr else []:
                t = c["total"]
                gaps = [r["first_delivery_ms"] for r in c.get("recoveries") or [] if r.get("first_delivery_ms") is not None]
                back = [r["slowest_connection_ms"] for r in c.get("recoveries") or [] if r.get("slowest_connection_ms") is not None]
                rows.append(
                    [
                        titles[o],
                        c["fault"],
                        c["resume"],
                        f"{fmt_num(t.get('delivered', 0))} / {fmt_num(t.get('expected', 0))}",
                        fmt_num(t.get("lost_after_ack", 0)),
                        fmt_num(t.get("lost_without_ack", 0)),
                        fmt_num(t.get("duplicated", 0)),
                        fmt_num(t.get("unexpected", 0)),
                        fmt_num(c.get("reconnected", 0)),
                        fmt_num(max(gaps), "ms") if gaps else "none delivered after it",
                        fmt_num(max(back), "ms") if back else "n/a",
                    ]
                )
        if rows:
            content.tables.append(
                Table(
                    "Reconnect and resume (the harness's account)",
                    [
                        "Option",
                        "Fault",
                        "Resume by",
                        "Delivered / expected",
                        "Lost after ack",
                        "Lost before ack",
                        "Duplicated",
                        "Unexpected (resets)",
                        "Reconnections",
                        "Fault end to first event",
                        "Fault end to every listener's next event",
                    ],
                    rows,
                    "Lost after ack: events the server had accepted that a listener never got (the gate reads these and duplicates, "
                    f"over {', '.join(CUTS)}). Lost before ack: the publisher's own sends that never reached the server (it sends "
                    "through the same cut). Unexpected: the server's reset messages (after a restart the history is gone: the client "
                    "is told to reload).",
                )
            )

    def _proxies(self, run: RunResult, opts: list[str], titles: dict[str, str], content: ReportContent) -> None:
        cells: dict[tuple[str, str], dict[str, Any]] = {}
        versions: dict[str, Any] = {}
        for o in opts:
            sr = run.ok("proxies", o)
            if sr is None:
                continue
            versions = sr.fact.get("versions") or versions
            for c in sr.fact.get("cells") or []:
                cells[(c["path"], o)] = c
        if not cells:
            return
        rows = []
        for path, setting in _px.PATHS.items():
            row = [path, setting]
            for o in opts:
                c = cells.get((path, o))
                if c is None:
                    row.append("not run")
                elif not c.get("counted"):
                    row.append(f"not counted: {c.get('reason', '')[:100]}")
                elif c["outcome"] in ("works", "delayed"):
                    row.append(
                        f"{c['outcome']}: first event {fmt_num(c.get('first_event_ms') or 0, 'ms')}, worst {fmt_num(c.get('max_delay_ms') or 0, 'ms')}"
                    )
                else:
                    row.append(f"**{c['outcome']}**: {c.get('reason', '')[:140]}")
            rows.append(row)
        content.tables.append(
            Table(
                "Through proxies",
                ["Path", "Setting", *(titles[o] for o in opts)],
                rows,
                "Each cell: a real client through the proxy, events published directly to the server. "
                + ", ".join(f"{k} {v}" for k, v in versions.items() if v)
                + ". Evidence (the proxy's own log lines for each request) is in the stored run's facts.",
            )
        )
        evidence_rows = []
        for path in _px.PATHS:
            for o in opts:
                c = cells.get((path, o))
                if c is None:
                    continue
                ev = c.get("evidence") or {}
                line = (ev.get("lines") or ["(none: the cell is not counted)"])[0]
                evidence_rows.append([path, titles[o], str(ev.get("log", "")), f"`{line[:160]}`"])
        content.tables.append(
            Table(
                "Through proxies: the evidence (the proxy's own log)",
                ["Path", "Option", "Log", "First line for the cell's request"],
                evidence_rows,
                "Each counted cell's request as the proxy logged it (nginx's access log with the protocol, upstream status and "
                "gzip ratio; squid's access.log; the fault proxy's fault log); every line is in the stored run.",
            )
        )
        need_rows = []
        for o in opts:
            bad = [p for p in _px.PATHS if (c := cells.get((p, o))) and c.get("counted") and c["outcome"] not in ("works", "delayed")]
            if bad:
                content.findings.append(Finding(o, False, f"fails through {', '.join(bad)}"))
            need_rows.append(
                [titles[o], "; ".join(f"{NEEDS_FROM_PROXY[p]} (fails through {p})" for p in bad) or "nothing: it got through every path"]
            )
        content.tables.append(
            Table(
                "What each transport needs from the proxies in front of it",
                ["Option", "Settings it needs (each from a path it failed through, measured above)"],
                need_rows,
                "The setting that path lacked, for each path the option failed through; a path it got through asks nothing of it.",
            )
        )

    def _browsers(self, run: RunResult, content: ReportContent) -> None:
        merged = _engine_merge(run)
        if merged is None:
            return
        rows = []
        for e, row in merged["engines"].items():
            name = f"{row.get('title', e)} {row.get('version', '')}".strip()
            if row.get("status") != "measured":
                rows.append([name, "all", f"{row.get('status')}: {row.get('reason', '')}", "", "", ""])
                continue
            for t, c in (row.get("transports") or {}).items():
                rows.append(
                    [
                        name,
                        t,
                        "yes" if c.get("opened") else "no",
                        f"{fmt_num(c.get('events_received') or 0)} received, {fmt_num(c.get('lost') or 0)} lost, "
                        f"{fmt_num(c.get('duplicated') or 0)} duplicated",
                        fmt_num(c["reconnect_gap_ms"], "ms") if c.get("reconnect_gap_ms") is not None else "n/a",
                        str(c.get("resume_by") or ""),
                    ]
                )
            po = row.get("per_origin") or {}
            for proto in ("http1", "h2"):
                p = po.get(proto) or {}
                if p.get("measured"):
                    rows.append(
                        [
                            name,
                            f"8 EventSources, {proto}",
                            f"{p.get('opened')} of {p.get('count')} opened",
                            "fetch stalled" if p.get("fetch_stalled") else "fetch answered",
                            "",
                            "",
                        ]
                    )
                elif p:
                    rows.append([name, f"8 EventSources, {proto}", f"not measured: {p.get('reason', '')}", "", "", ""])
        content.tables.append(
            Table(
                "In the browser engines (measured)",
                ["Engine", "Transport", "Opened", "Across a cut of every connection", "Back after", "Resumed by"],
                rows,
                str(merged.get("cut_method") or ""),
            )
        )


spike = TransportSpike()
