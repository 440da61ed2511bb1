"""Browser DevTools integration: round trips on a DevTools custom track, read back over the DevTools protocol.

The client page (``web/devtools.html`` + ``web/devtools.js``, served from a small aiohttp server on loopback)
opens a WebSocket to the tabletop server, sends ``n`` echo messages one after the other and marks each round
trip with ``performance.measure(name, {start, end, detail: {devtools: {dataType: "track-entry", track:
"Tabletop", ...}}})``: Chrome DevTools' extensibility API, which draws the entries on a "Tabletop" track of
the Performance panel. The page also runs the npm ``web-vitals`` library (pinned in ``npm/package-lock.json``,
installed from the lock by :func:`harness.npm.ensure_installed`, its ES module build served as
``/web-vitals.js``), reporting every change of TTFB, FCP, LCP, CLS and INP.

The harness drives headless Chromium through Playwright (Debian's ``/usr/bin/chromium``,
:func:`harness.browser.launch_chromium`) and reads everything back through a DevTools protocol session
(``context.new_cdp_session(page)``), not through the page's own reporting: ``Runtime.evaluate`` of
``performance.getEntriesByType("measure")``, ``Performance.getMetrics``, and a trace (``Tracing.start`` /
``Tracing.end``, categories ``blink.user_timing`` and ``devtools.timeline``) in which the custom-track
entries are counted, as the Performance panel would load them. One click on the page's button gives INP an
interaction to report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from harness import npm
from harness.plugin import NotRunnable

__all__ = ["WEB_DIR", "NPM_DIR", "NPM_NAME", "TRACK", "VITALS", "web_vitals_js", "web_vitals_version", "percentile", "run_devtools"]

HERE = Path(__file__).resolve().parent
WEB_DIR = HERE / "web"
NPM_DIR = HERE / "npm"
NPM_NAME = "s10-monitoring"
TRACK = "Tabletop"
VITALS = ("TTFB", "FCP", "LCP", "CLS", "INP")
_TRACE_CATEGORIES = ["blink.user_timing", "devtools.timeline", "disabled-by-default-devtools.timeline"]


def web_vitals_js() -> Path:
    """The locked ``web-vitals`` ES module build, installed from ``npm/package-lock.json`` into the npm cache."""
    path = npm.ensure_installed(NPM_DIR, NPM_NAME) / "node_modules" / "web-vitals" / "dist" / "web-vitals.js"
    if not path.is_file():
        raise npm.NpmError(f"web-vitals has no ES module build at {path}")
    return path


def web_vitals_version() -> str:
    return npm.locked_versions(NPM_DIR, ["web-vitals"])["web-vitals"]


def percentile(xs: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``xs``, linear between closest ranks; None for no sample."""
    if not xs:
        return None
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@contextlib.asynccontextmanager
async def _page_server(vitals_js: Path) -> AsyncIterator[str]:
    """The page, its script and web-vitals, on a loopback port: yields the page's URL."""

    def file(path: Path, ctype: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(path, headers={"Content-Type": ctype, "Cache-Control": "no-store"})

        return handler

    app = web.Application()
    app.router.add_get("/", file(WEB_DIR / "devtools.html", "text/html; charset=utf-8"))
    app.router.add_get("/devtools.js", file(WEB_DIR / "devtools.js", "text/javascript"))
    app.router.add_get("/web-vitals.js", file(vitals_js, "text/javascript"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


def _is_track_entry(detail: Any) -> bool:
    if isinstance(detail, str):
        try:
            detail = json.loads(detail)
        except ValueError:
            return False
    dt = detail.get("devtools") if isinstance(detail, dict) else None
    return isinstance(dt, dict) and dt.get("dataType") == "track-entry" and dt.get("track") == TRACK


def _trace_entries(events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The custom-track measures in a trace: user-timing async begin events named ``echo N`` (one per measure)."""
    user_timing = [e for e in events if "blink.user_timing" in str(e.get("cat", ""))]
    begins = [e for e in user_timing if e.get("ph") in ("b", "B", "S") and str(e.get("name", "")).startswith("echo ")]
    names = {str(e["name"]) for e in begins}
    with_detail = 0
    for e in begins:
        args = e.get("args") or {}
        data = args.get("data") if isinstance(args.get("data"), dict) else args
        detail = data.get("detail") if isinstance(data, dict) else None
        if detail is not None and _is_track_entry(detail):
            with_detail += 1
    return {
        "trace_events": len(events),
        "trace_user_timing_events": len(user_timing),
        "trace_echo_measures": len(names),
        "trace_echo_measures_with_track_detail": with_detail,
        "trace_sample_event": begins[0] if begins else None,
    }


_MEASURES_JS = """JSON.stringify(performance.getEntriesByType('measure').map(e => ({
  name: e.name, start_ms: e.startTime, duration_ms: e.duration, detail: e.detail})))"""


async def _run(params: dict[str, Any], ws_url: str, workdir: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from harness.browser import launch_chromium

    n = int(params.get("n", 200))
    payload_bytes = int(params.get("payload_bytes", 64))
    trace = bool(params.get("trace", True))
    timeout_ms = float(params.get("timeout_s", 60)) * 1000
    vitals_js = await asyncio.to_thread(web_vitals_js)
    async with _page_server(vitals_js) as page_url, async_playwright() as pw:
        browser = await launch_chromium(pw)
        try:
            context = await browser.new_context(viewport={"width": 1000, "height": 700})
            page = await context.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            cdp = await context.new_cdp_session(page)
            await cdp.send("Performance.enable")
            events: list[dict[str, Any]] = []
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            cdp.on("Tracing.dataCollected", lambda p: events.extend(p.get("value", [])))

            def on_complete(_: Any) -> None:
                if not done.done():
                    done.set_result(None)

            cdp.on("Tracing.tracingComplete", on_complete)
            await page.goto(page_url)
            await page.wait_for_function("() => window.__devtools && window.__devtools.ready", timeout=timeout_ms)
            if trace:
                await cdp.send("Tracing.start", {"transferMode": "ReportEvents", "traceConfig": {"includedCategories": _TRACE_CATEGORIES}})
            t0 = time.perf_counter()
            page_result = await page.evaluate("([url, n, b]) => window.__devtools.runRoundTrips(url, n, b)", [ws_url, n, payload_bytes])
            wall_s = time.perf_counter() - t0
            await page.click("#poke")  # an interaction for INP (and the final LCP: input stops LCP candidates)
            await page.wait_for_timeout(300)
            if trace:
                await cdp.send("Tracing.end")
                await asyncio.wait_for(done, timeout=timeout_ms / 1000)
            measures_raw = await cdp.send("Runtime.evaluate", {"expression": _MEASURES_JS, "returnByValue": True})
            measures: list[dict[str, Any]] = json.loads(measures_raw["result"]["value"])
            metrics_raw = await cdp.send("Performance.getMetrics")
            vitals_raw = await cdp.send(
                "Runtime.evaluate", {"expression": "JSON.stringify(window.__devtools.vitals)", "returnByValue": True}
            )
            vitals: dict[str, Any] = json.loads(vitals_raw["result"]["value"])
            page_js_errors = await page.evaluate("() => window.__devtools.errors")
            version = browser.version
        finally:
            await browser.close()
    echo = [m for m in measures if m["name"].startswith("echo ")]
    on_track = [m for m in echo if _is_track_entry(m.get("detail"))]
    durations = [float(m["duration_ms"]) for m in on_track]
    metrics = {m["name"]: m["value"] for m in metrics_raw.get("metrics", [])}
    keep_metrics = (
        "JSHeapUsedSize",
        "JSHeapTotalSize",
        "Nodes",
        "JSEventListeners",
        "Documents",
        "LayoutCount",
        "RecalcStyleCount",
        "TaskDuration",
        "ScriptDuration",
    )
    out: dict[str, Any] = {
        "ws_url": ws_url,
        "sent": n,
        "payload_bytes": payload_bytes,
        "page_round_trips": int(page_result["received"]),
        "page_failed": page_result.get("failed"),
        "connect_ms": round(float(page_result["connect_ms"]), 3),
        "measures_read_cdp": len(echo),
        "measures_on_track_cdp": len(on_track),
        "all_measures_read_cdp": len(measures),
        "rtt_p50_ms": _r(percentile(durations, 0.5)),
        "rtt_p99_ms": _r(percentile(durations, 0.99)),
        "rtt_max_ms": _r(max(durations)) if durations else None,
        "rtt_ms": [round(d, 4) for d in durations],
        "round_trips_wall_s": round(wall_s, 3),
        "sample_measure": on_track[0] if on_track else None,
        "performance_metrics": {k: metrics[k] for k in keep_metrics if k in metrics},
        "web_vitals": {k: vitals[k] for k in VITALS if k in vitals},
        "web_vitals_not_reported": [k for k in VITALS if k not in vitals],
        "web_vitals_version": web_vitals_version(),
        "chromium_version": version,
        "trace": trace,
        "page_errors": [*page_errors, *page_js_errors],
    }
    if trace:
        out.update(_trace_entries(events))
        trace_path = workdir / "devtools-trace.json"
        trace_path.write_text(json.dumps({"traceEvents": events}), encoding="utf-8")
        out["trace_path"] = str(trace_path)
        out["trace_bytes"] = trace_path.stat().st_size
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


@contextlib.contextmanager
def _server(workdir: Path, instrument: str) -> Iterator[str]:
    from spikes.s10_monitoring.poc import launch

    proc = launch.server_process(instrument, workdir, log_name=f"devtools-server-{instrument}.log")
    with proc:
        yield f"ws://{proc.host}:{proc.port}/"


def run_devtools(params: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Round trips on a DevTools custom track, read back over CDP, with web-vitals and a trace.

    ``params``: ``n`` (echo round trips, default 200), ``payload_bytes`` (64), ``trace`` (True), ``timeout_s`` (60),
    ``ws_url`` (a running tabletop server; without it the spike's server is started with ``instrument``, default
    ``prometheus``). Returns ``sent``, ``page_round_trips``, ``measures_read_cdp`` (``echo N`` measures read over
    CDP), ``measures_on_track_cdp`` (those whose detail names the Tabletop track), ``all_measures_read_cdp``,
    ``rtt_p50_ms``, ``rtt_p99_ms``, ``rtt_max_ms``, ``rtt_ms`` (raw, from the CDP-read measures), ``connect_ms``,
    ``round_trips_wall_s``, ``sample_measure``, ``performance_metrics`` (``Performance.getMetrics``),
    ``web_vitals`` (``{name: {value, rating, navigationType, reports}}``; CLS unitless, others ms),
    ``web_vitals_not_reported``, ``web_vitals_version``, ``chromium_version``, ``page_errors``, and with a trace
    ``trace_events``, ``trace_user_timing_events``, ``trace_echo_measures``, ``trace_echo_measures_with_track_detail``,
    ``trace_sample_event``, ``trace_path``, ``trace_bytes``. Raises :class:`NotRunnable` without Chromium,
    Playwright, node or npm.
    """
    from harness.browser import find_engine

    if find_engine("chromium") is None:
        raise NotRunnable("Chromium is not installed (install: apt-get install -y chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError as exc:
        raise NotRunnable("playwright is not installed (install: pip install playwright==1.64.1)") from exc
    npm.require_program("node")
    npm.require_program("npm")
    workdir.mkdir(parents=True, exist_ok=True)
    if params.get("ws_url"):
        return asyncio.run(_run(params, str(params["ws_url"]), workdir))
    with _server(workdir, str(params.get("instrument", "prometheus"))) as ws_url:
        return {**asyncio.run(_run(params, ws_url, workdir)), "instrument": str(params.get("instrument", "prometheus"))}
