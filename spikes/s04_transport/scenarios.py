"""Spike 4's measured scenarios: latency and cost per rate, capacity, reconnect and resume, proxies, browsers, published data.

Every load here is the harness's open-model engine (``harness.load``) with the feed clients of ``harness.feed``
(SSE and long polling over HTTP/1.1, and over HTTP/2 through nginx) or its WebSocket client: one publisher
connection sends the room's events at the scenario's rate, every other connection only listens, and latency runs
from each event's intended send time to its arrival (the same ``time.time_ns()`` clock in every process). Every
event is counted by the harness's account (``harness.load.account``: delivered, lost after or without
acknowledgement, duplicated, unexpected, reordered).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil

import harness.feed  # noqa: F401  (registers the sse, longpoll and last-event-id adapters)
from harness.capacity import CapacityStep, search_capacity
from harness.faults import FaultLog, FaultProxy, Reset, kill_and_restart
from harness.load import LoadResult, LoadSpec, ReconnectPolicy, run_load
from harness.plugin import NotRunnable, ScenarioContext, ScenarioOutput
from harness.poc import poc_server
from harness.probes import ProcessSampler

__all__ = [
    "LATENCY",
    "LATENCY_QUICK",
    "CAPACITY",
    "CAPACITY_QUICK",
    "RESUME",
    "RESUME_QUICK",
    "RESUME_ADAPTER",
    "H2_TRANSPORT",
    "PAGE_TRANSPORT",
    "PROXIES",
    "PROXIES_QUICK",
    "BROWSERS",
    "BROWSERS_QUICK",
    "run_latency",
    "run_capacity",
    "run_resume",
    "run_proxies",
    "run_browsers",
    "run_compat",
]

#: The resume adapter each option's clients use after a reconnect (``harness.load.clients.resume``, ``harness.feed``).
RESUME_ADAPTER = {"sse": "last-event-id", "longpoll": "last-event-id", "ws": "last-seq-epoch"}
#: The browser page's name of each option's transport.
PAGE_TRANSPORT = {"sse": "sse", "longpoll": "poll", "ws": "ws"}
#: The HTTP/2 client of an option's transport (nginx has no WebSocket over HTTP/2: none for ws).
H2_TRANSPORT = {"sse": "sse-h2", "longpoll": "longpoll-h2"}

#: Latency and cost: ``listeners`` connections plus one publisher, the publisher sending ``rate`` events/s for ``duration_s``
#: at each of ``rates``, directly (HTTP/1.1); then at ``front_rate`` through nginx (HTTP/1.1, and HTTP/2 where the transport
#: has an HTTP/2 client). ``payload_bytes``: an activity event's size (a dice roll's JSON is about 150 bytes).
LATENCY = {"listeners": 200, "rates": [1, 10, 100], "duration_s": 5.0, "front_rate": 10, "payload_bytes": 120, "grace_s": 2.0, "hz": 5.0}
LATENCY_QUICK = {"listeners": 20, "rates": [1, 10], "duration_s": 2.0, "grace_s": 1.0}
#: Capacity: the highest events/s per room at which ``listeners`` listeners get at least ``min_delivered`` of the events
#: within the step and p99 stays under ``p99_ms``; bisected geometrically between ``lo_rate`` and ``hi_rate``.
CAPACITY = {
    "listeners": 100,
    "lo_rate": 5.0,
    "hi_rate": 2000.0,
    "ratio": 1.25,
    "max_steps": 6,
    "step_s": 2.0,
    "grace_s": 0.5,
    "p99_ms": 100.0,
    "min_delivered": 0.999,
    "payload_bytes": 120,
}
CAPACITY_QUICK = {"listeners": 10, "hi_rate": 200.0, "max_steps": 2, "step_s": 1.0}
#: Reconnect and resume: ``listeners`` listeners and the publisher through a fault proxy, ``rate`` events/s; each fault
#: starts ``lead_s`` into the run; the run goes on ``tail_s`` after it ends (the engine reconnects within its window).
RESUME = {
    "listeners": 20,
    "rate": 10.0,
    "faults": ["cut-1s", "cut-10s", "restart"],
    "lead_s": 3.0,
    "tail_s": 4.0,
    "restart_down_s": 1.0,
    "payload_bytes": 120,
    "grace_s": 3.0,
}
RESUME_QUICK = {"listeners": 5, "faults": ["cut-1s"], "lead_s": 1.5, "tail_s": 2.0}
#: Proxies: each cell publishes ``events`` events and watches for ``window_s``.
PROXIES = {"events": 5, "window_s": 4.0}
PROXIES_QUICK = {"events": 3, "window_s": 2.0}
#: Browsers: the engines, and whether an nginx HTTP/2 front is started for the per-origin probe.
BROWSERS = {"engines": ["chromium", "firefox", "webkit"], "h2": True}
BROWSERS_QUICK = {"engines": ["chromium"]}
#: A reconnecting client's backoff: quick first tries (a feed should come back within a second), full jitter, at most 1 s.
RECONNECT = ReconnectPolicy(base_s=0.1, cap_s=1.0)


def _spec(url: str, transport: str, listeners: int, rate: float, duration_s: float, p: dict[str, Any], **kw: Any) -> LoadSpec:
    """The feed's load: ``listeners`` + 1 connections in one room, the first the only sender; every event counted."""
    return LoadSpec(
        url=url,
        transport=transport,
        connections=listeners + 1,
        senders=1,
        rate=rate,
        duration_s=duration_s,
        mode="broadcast",
        room=kw.pop("room", "feed"),
        payload_bytes=p.get("payload_bytes", 120),
        grace_s=p.get("grace_s", 2.0),
        account=True,
        **kw,
    )


def _total(result: LoadResult) -> dict[str, int]:
    """The account's totals as plain counts (``{"delivered": {"count", "fraction"}, "expected": n}`` -> ``{"delivered": c, ...}``)."""
    total = (result.account or {}).get("total") or {}
    return {k: int(v["count"] if isinstance(v, dict) else v) for k, v in total.items()}


def _cpu_s(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system


def _measure(out: ScenarioOutput, spec: LoadSpec, pid: int, base_rss: int, hz: float, **tags: str) -> LoadResult:
    """Run ``spec`` against the server ``pid`` and store the load's samples, the account and the server's cost, tagged."""
    sampler = ProcessSampler(pid, hz=hz)
    cpu0 = _cpu_s(pid)
    sampler.start()
    try:
        result = run_load(spec)
    finally:
        sampler.stop()
    cpu = _cpu_s(pid) - cpu0
    result.add_to(out, **tags)
    total = _total(result)
    for name in ("expected", "delivered", "lost_after_ack", "lost_without_ack", "duplicated", "unexpected", "reordered"):
        out.add(name, "events", [float(total.get(name, 0))], **tags)
    delivered = float(total.get("delivered", result.received))
    rss = [s["rss_bytes"] for s in sampler.samples if s.get("rss_bytes")]
    out.add("server_cpu_s", "s", [cpu], **tags)
    if delivered:
        out.add("server_cpu_us_per_event", "µs", [cpu / delivered * 1e6], **tags)
        out.add("bytes_in_per_event", "B", [result.bytes_in / delivered], **tags)
    if rss:
        out.add("server_rss_peak_bytes", "bytes", [max(rss)], **tags)
        out.add("memory_per_connection_bytes", "bytes", [(max(rss) - base_rss) / spec.connections], **tags)
    return result


@contextlib.contextmanager
def _front(url: str, variant: str, workdir: Any) -> Iterator[str]:
    """nginx in front of the feed server at ``url`` with one of the proxy matrix's configurations; yields its base URL."""
    from spikes.s04_transport.proxies import FeedNginx, make_self_signed_cert

    port = int(url.rsplit(":", 1)[1].split("/")[0])
    cert = make_self_signed_cert(workdir / "cert") if variant == "nginx-h2-tls" else None
    with FeedNginx(port, variant, cert=cert, base_dir=workdir, keep_logs_in=workdir / f"{variant}-logs") as nginx:
        yield nginx.url


def _ws_url(http_base: str) -> str:
    return http_base.replace("https://", "wss://").replace("http://", "ws://").rstrip("/") + "/ws"


def run_latency(ctx: ScenarioContext) -> ScenarioOutput:
    """Each rate directly, then the front rate through nginx over HTTP/1.1 and HTTP/2: latency, server CPU, memory, bytes."""
    p = ctx.params
    key, transport = ctx.option.key, ctx.option.client
    out = ScenarioOutput()
    with poc_server(ctx.option, ctx.workdir) as (server, url):
        base_rss = psutil.Process(server.pid).memory_info().rss
        paths = [("direct-h1", url, transport, rate) for rate in p["rates"]]
        paths.append(("nginx-h1", "nginx-correct", transport, p["front_rate"]))
        if key in H2_TRANSPORT:
            paths.append(("nginx-h2", "nginx-h2-tls", H2_TRANSPORT[key], p["front_rate"]))
        for i, (path, where, client, rate) in enumerate(paths):
            ctx.advance(i / len(paths))
            tags = {"path": path, "rate": str(rate)}
            if path == "direct-h1":
                _measure(
                    out, _spec(url, client, p["listeners"], rate, p["duration_s"], p, room=f"r{i}"), server.pid, base_rss, p["hz"], **tags
                )
                continue
            with _front(url, where, ctx.workdir / path) as front:
                target = _ws_url(front) if key == "ws" else front
                spec = _spec(target, client, p["listeners"], rate, p["duration_s"], p, room=f"r{i}")
                _measure(out, spec, server.pid, base_rss, p["hz"], **tags)
    out.facts["paths"] = [{"path": path, "rate": rate, "client": client} for path, _, client, rate in paths]
    return out


def run_capacity(ctx: ScenarioContext) -> ScenarioOutput:
    """The highest events/s one room holds for ``listeners`` listeners within the bounds, by a short bisection."""
    p = ctx.params
    out = ScenarioOutput()
    steps: list[dict[str, Any]] = []
    with poc_server(ctx.option, ctx.workdir) as (server, url):

        def probe(rate: float) -> CapacityStep:
            spec = _spec(url, ctx.option.client, p["listeners"], rate, p["step_s"], p, room=f"c{len(steps)}")
            cpu0 = _cpu_s(server.pid)
            result = run_load(spec)
            cpu = _cpu_s(server.pid) - cpu0
            total = _total(result)
            expected, delivered = total.get("expected", 0), total.get("delivered", 0)
            p99 = result.latency_ms.get("p99")
            passed = bool(
                expected
                and delivered >= p["min_delivered"] * expected
                and p99 is not None
                and p99 <= p["p99_ms"]
                and result.dropped == 0
                and result.connect_failed == 0
            )
            detail = {
                "rate": rate,
                "expected": expected,
                "delivered": delivered,
                "p99_ms": p99,
                "dropped": result.dropped,
                "client_bound": result.client_bound,
                "client_bound_reasons": list(result.client_bound_reasons),
                "server_cpu_s": cpu,
                "deliveries_per_s": delivered / p["step_s"],
                "passed": passed,
            }
            steps.append(detail)
            ctx.advance(len(steps) / p["max_steps"])
            return CapacityStep(rate, passed, result.client_bound, detail)

        found = search_capacity(probe, p["lo_rate"], p["hi_rate"], ratio=p["ratio"], max_steps=p["max_steps"])
    out.facts.update({"steps": steps, "at_least": found.at_least, "why": found.why, "fail_rate": found.fail_rate})
    out.add("capacity_steps", "steps", [len(steps)])
    if found.rate is not None:
        best = found.passing_step
        assert best is not None
        out.add("capacity_events_per_s", "events/s", [found.rate], "higher")
        out.add("capacity_deliveries_per_s", "deliveries/s", [best.detail["deliveries_per_s"]], "higher")
        cpu = best.detail["server_cpu_s"]
        if cpu > 0:
            out.add("capacity_deliveries_per_core_s", "deliveries/CPU-s", [best.detail["delivered"] / cpu], "higher")
    return out


def _fault_at(kind: str, p: dict[str, Any], proxy: FaultProxy, server: Any, log: FaultLog) -> None:
    """Wait ``lead_s``, then inject ``kind``: a cut of every connection (RST, new ones refused) for 1 or 10 s, or a server restart."""
    time.sleep(p["lead_s"])
    if kind.startswith("cut-"):
        seconds = float(kind.removeprefix("cut-").removesuffix("s"))
        proxy.cut(seconds, Reset()).result(seconds + 30)
    elif kind == "restart":
        kill_and_restart(server, down_for=p["restart_down_s"], log=log)
    else:
        raise ValueError(f"unknown fault {kind!r}")


def _fault_s(kind: str, p: dict[str, Any]) -> float:
    return float(kind.removeprefix("cut-").removesuffix("s")) if kind.startswith("cut-") else p["restart_down_s"] + 2.0


def run_resume(ctx: ScenarioContext) -> ScenarioOutput:
    """Each fault on a fresh server: listeners and publisher through a fault proxy, reconnecting and resuming; the account."""
    p = ctx.params
    key = ctx.option.key
    out = ScenarioOutput()
    cells = []
    for i, kind in enumerate(p["faults"]):
        ctx.advance(i / len(p["faults"]))
        log = FaultLog()
        with poc_server(ctx.option, ctx.workdir / kind, grace=2.0) as (server, url), FaultProxy(server.port, log=log) as proxy:
            target = url.replace(f":{server.port}", f":{proxy.port}")
            duration = p["lead_s"] + _fault_s(kind, p) + p["tail_s"]
            spec = _spec(
                target,
                ctx.option.client,
                p["listeners"],
                p["rate"],
                duration,
                p,
                room=f"f{i}",
                reconnect=RECONNECT,
                resume=RESUME_ADAPTER[key],
            )
            errors: list[str] = []

            def inject(
                kind: str = kind, proxy: FaultProxy = proxy, server: Any = server, log: FaultLog = log, errors: list[str] = errors
            ) -> None:
                try:
                    _fault_at(kind, p, proxy, server, log)
                except Exception as exc:  # recorded, and the cell is marked: a fault that did not happen measures nothing
                    errors.append(f"{type(exc).__name__}: {exc}")

            injector = threading.Thread(target=inject, name=f"fault-{kind}", daemon=True)
            injector.start()
            result = run_load(spec, faults=log)
            injector.join(60)
        if errors:
            raise RuntimeError(f"the {kind} fault could not be injected: {errors[0]}")
        total = _total(result)
        recoveries = (result.account or {}).get("recovery") or []
        firsts = [r["first_delivery_ms"] for r in recoveries if r.get("first_delivery_ms") is not None]
        slowest = [r["slowest_connection_ms"] for r in recoveries if r.get("slowest_connection_ms") is not None]
        cell = {
            "fault": kind,
            "resume": RESUME_ADAPTER[key],
            "total": total,
            "recoveries": recoveries,
            "reconnected": result.reconnected,
            "dropped": result.dropped,
            "p99_ms": result.latency_ms.get("p99"),
            "faults": log.to_list(),
        }
        cells.append(cell)
        for name in ("expected", "delivered", "lost_after_ack", "lost_without_ack", "duplicated", "unexpected", "reordered"):
            out.add(f"resume_{name}", "events", [float(total.get(name, 0))], fault=kind)
        out.add("resume_reconnected", "connections", [float(result.reconnected)], fault=kind)
        if firsts:
            out.add("resume_gap_ms", "ms", [max(firsts)], fault=kind)
        if slowest:
            out.add("resume_all_back_ms", "ms", [max(slowest)], fault=kind)
    out.facts["cells"] = cells
    return out


def run_proxies(ctx: ScenarioContext) -> ScenarioOutput:
    """The option's transport through every proxy path of the matrix, each cell with the proxy's own log as evidence."""
    from spikes.s04_transport.proxies import PATHS, proxy_versions, run_cell

    p = ctx.params
    out = ScenarioOutput()
    cells = []
    with poc_server(ctx.option, ctx.workdir) as (server, url):
        base = url if ctx.option.key != "ws" else url.replace("ws://", "http://").removesuffix("/ws")
        for i, path in enumerate(PATHS):
            ctx.advance(i / len(PATHS))
            cell = run_cell(ctx.option.key, path, base, ctx.workdir / "cells", events=p["events"], window_s=p["window_s"])
            cells.append(cell)
    out.facts.update({"cells": cells, "versions": proxy_versions()})
    counted = [c for c in cells if c.get("counted")]
    out.add("proxy_paths_counted", "paths", [float(len(counted))])
    out.add("proxy_paths_working", "paths", [float(sum(1 for c in counted if c["outcome"] in ("works", "delayed")))], "higher")
    return out


def run_browsers(ctx: ScenarioContext) -> ScenarioOutput:
    """The option's transport in Chromium, Firefox ESR and WebKitGTK: open, receive, survive a cut, resume; the 6-per-origin probe."""
    from spikes.s04_transport import browsers

    p = ctx.params
    out = ScenarioOutput()
    with poc_server(ctx.option, ctx.workdir) as (server, url):
        base = url if ctx.option.key != "ws" else url.replace("ws://", "http://").removesuffix("/ws")
        feeds = {PAGE_TRANSPORT[ctx.option.key]: base}
        matrix = browsers.run_matrix(feeds, engines=tuple(p["engines"]), h2_front=p.get("h2", True), workdir=ctx.workdir)
    out.facts["matrix"] = matrix
    rows = [r for r in matrix["engines"].values() if r.get("status") == "measured"]
    if not rows:
        raise NotRunnable("no browser engine ran: " + "; ".join(f"{e}: {r.get('reason', '')}" for e, r in matrix["engines"].items()))
    ok = 0
    for engine, row in matrix["engines"].items():
        cell = (row.get("transports") or {}).get(PAGE_TRANSPORT[ctx.option.key])
        if not cell:
            continue
        good = bool(cell.get("opened") and cell.get("resumed_without_loss"))
        ok += good
        out.add("browser_lost", "events", [float(cell.get("lost") or 0)], engine=engine)
        out.add("browser_duplicated", "events", [float(cell.get("duplicated") or 0)], engine=engine)
        if cell.get("reconnect_gap_ms") is not None:
            out.add("browser_reconnect_gap_ms", "ms", [float(cell["reconnect_gap_ms"])], engine=engine)
    out.add("browser_engines_passed", "engines", [float(ok)], "higher")
    out.add("browser_engines_run", "engines", [float(len(rows))])
    return out


def run_compat(ctx: ScenarioContext) -> ScenarioOutput:
    """The published support data (@mdn/browser-compat-data, pinned by the lock), read from the installed package and stored."""
    from spikes.s04_transport import compat

    out = ScenarioOutput()
    out.facts["compat"] = compat.compat_table()
    return out
