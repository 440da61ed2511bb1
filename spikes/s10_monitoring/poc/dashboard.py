"""The custom dashboard: an aiohttp page beside the tabletop server, live charts of its five signals over SSE.

``python -m spikes.s10_monitoring.poc.dashboard --host 127.0.0.1 --port 0 --metrics-url URL`` scrapes
``URL`` (the server's ``/metrics``) every ``--interval`` seconds, parses it with ``prometheus_client.parser``,
and pushes one JSON snapshot per scrape to every page subscribed to ``/events`` (Server-Sent Events). It
prints ``READY port=N`` once it listens. Routes:

- ``/``: ``web/dashboard.html`` (which loads ``/dashboard.js``): one canvas chart per signal, the last 60 s,
  drawn without any chart library;
- ``/events``: ``text/event-stream``, one ``data: {snapshot}`` per scrape (live only: no replay of history);
- ``/snapshot``: the latest snapshot as JSON; ``/health``: ``ok``.

A snapshot (:func:`snapshot_of`): ``t_s`` (unix time of the scrape), ``up`` and ``error`` (the scrape failed:
the server is gone or answers no metrics), ``scrape_ms``, and the five signals: ``connections`` (open now),
``opened_per_s``, ``closed_per_s`` by code class; ``messages_per_s`` by op and ``messages_per_s_total``,
``bytes_per_s``; ``errors_per_s`` by kind and ``errors_per_s_total``; ``p50_ms`` and ``p99_ms`` of the
handling-latency histogram over the last ``LATENCY_WINDOW_S`` seconds (``None`` when no message was handled
in it), computed from the bucket deltas as Prometheus's ``histogram_quantile`` does; ``rss_bytes``,
``cpu_cores`` (CPU seconds per second), ``open_fds``. Rates are the counter deltas since the previous scrape
over the time between them (a counter that went down, a restarted server, counts from zero).

:func:`capture_dashboard` starts this dashboard for a running server, opens it in headless Chromium
(Playwright on Debian's ``/usr/bin/chromium``, :func:`harness.browser.launch_chromium`), waits until the
page has drawn ``seconds`` of live snapshots and saves a PNG screenshot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import sys
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "WEB_DIR",
    "LATENCY_WINDOW_S",
    "Scrape",
    "parse_metrics",
    "histogram_quantile",
    "snapshot_of",
    "Dashboard",
    "make_app",
    "capture_dashboard",
    "run_dashboard",
    "main",
]

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
#: The handling-latency quantiles cover the bucket increments of the last few seconds (Prometheus: rate(...[5s])).
LATENCY_WINDOW_S = 5.0
#: How many snapshots the server keeps for /snapshot and the page keeps on its charts (60 s at 1 s).
HISTORY = 60

_HIST = "tabletop_handle_seconds"

Labels = tuple[tuple[str, str], ...]


@dataclass
class Scrape:
    """One scrape of /metrics: when, and every sample as ``{name: {labels: value}}`` (labels sorted)."""

    t_s: float
    samples: dict[str, dict[Labels, float]] = field(default_factory=dict)
    error: str | None = None
    scrape_ms: float = 0.0

    def value(self, name: str, **match: str) -> float | None:
        """The sum of ``name``'s samples whose labels include ``match`` (None when there is none)."""
        found = [v for labels, v in self.samples.get(name, {}).items() if all((k, val) in labels for k, val in match.items())]
        return sum(found) if found else None

    def by(self, name: str, label: str) -> dict[str, float]:
        """``name``'s samples summed by the value of ``label``."""
        out: dict[str, float] = {}
        for labels, v in self.samples.get(name, {}).items():
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + v
        return out


def parse_metrics(text: str, t_s: float | None = None) -> Scrape:
    """Parse a Prometheus text exposition with ``prometheus_client.parser`` into a :class:`Scrape`."""
    scrape = Scrape(time.time() if t_s is None else t_s)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = tuple(sorted(s.labels.items()))
            scrape.samples.setdefault(s.name, {})[labels] = float(s.value)
    return scrape


def _le(labels: Labels) -> float:
    le = dict(labels).get("le", "+Inf")
    return math.inf if le in ("+Inf", "Inf", "inf") else float(le)


def _buckets(scrape: Scrape) -> dict[float, float]:
    """The latency histogram's cumulative bucket counts by upper bound, summed over every other label."""
    out: dict[float, float] = {}
    for labels, v in scrape.samples.get(f"{_HIST}_bucket", {}).items():
        le = _le(labels)
        out[le] = out.get(le, 0.0) + v
    return out


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus's ``histogram_quantile``: ``q`` of cumulative ``{upper bound: count}``, linear within a bucket.

    None when the histogram holds no observation. A quantile in the ``+Inf`` bucket is the highest finite bound.
    """
    bounds = sorted(buckets)
    if not bounds or math.isinf(bounds[-1]) is False:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        count = buckets[b]
        if count >= rank:
            if math.isinf(b):
                return prev_bound if len(bounds) > 1 else None
            if b <= 0 or count == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = b, count
    return prev_bound


def _delta(cur: float | None, prev: float | None) -> float:
    """A counter's increase since the previous scrape. A counter absent then (a labelled child is created on its
    first increment) started from zero; one that went down was reset (the server restarted): it counts from zero."""
    if cur is None:
        return 0.0
    if prev is None or cur < prev:
        return cur
    return cur - prev


def _rates(cur: Mapping[str, float], prev: Mapping[str, float], dt: float) -> dict[str, float]:
    return {k: _delta(v, prev.get(k)) / dt for k, v in sorted(cur.items())} if dt > 0 else {}


def _round(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def snapshot_of(cur: Scrape, prev: Scrape | None, window_base: Scrape | None) -> dict[str, Any]:
    """The JSON snapshot the page draws: the five signals from ``cur``, rates against ``prev`` (see the module doc).

    ``window_base`` is the scrape ``LATENCY_WINDOW_S`` ago (or the oldest kept): the latency quantiles are taken
    from the bucket increments since it.
    """
    snap: dict[str, Any] = {"t_s": round(cur.t_s, 3), "up": cur.error is None, "error": cur.error, "scrape_ms": round(cur.scrape_ms, 2)}
    if cur.error is not None:
        return snap
    ok_prev = prev if prev is not None and prev.error is None else None
    dt = cur.t_s - ok_prev.t_s if ok_prev is not None else 0.0
    p = ok_prev or Scrape(cur.t_s)
    snap["connections"] = cur.value("tabletop_connections")
    snap["opened_per_s"] = (
        _round(_delta(cur.value("tabletop_connections_opened_total"), p.value("tabletop_connections_opened_total")) / dt)
        if dt > 0
        else None
    )
    snap["closed_per_s"] = {
        k: round(v, 3)
        for k, v in _rates(
            cur.by("tabletop_connections_closed_total", "code_class"), p.by("tabletop_connections_closed_total", "code_class"), dt
        ).items()
    }
    msgs = _rates(cur.by("tabletop_messages_total", "op"), p.by("tabletop_messages_total", "op"), dt)
    snap["messages_per_s"] = {k: round(v, 3) for k, v in msgs.items()}
    snap["messages_per_s_total"] = round(sum(msgs.values()), 3) if dt > 0 else None
    snap["bytes_per_s"] = (
        _round(_delta(cur.value("tabletop_message_bytes_total"), p.value("tabletop_message_bytes_total")) / dt) if dt > 0 else None
    )
    errs = _rates(cur.by("tabletop_errors_total", "kind"), p.by("tabletop_errors_total", "kind"), dt)
    snap["errors_per_s"] = {k: round(v, 3) for k, v in errs.items()}
    snap["errors_per_s_total"] = round(sum(errs.values()), 3) if dt > 0 else None
    base = window_base if window_base is not None and window_base.error is None else None
    now_b = _buckets(cur)
    base_b = _buckets(base) if base is not None else {}
    window = {le: _delta(v, base_b.get(le)) if base is not None else v for le, v in now_b.items()}
    for q, key in ((0.5, "p50_ms"), (0.99, "p99_ms")):
        v = histogram_quantile(q, window)
        snap[key] = None if v is None else round(v * 1000, 4)
    snap["latency_window_s"] = round(cur.t_s - base.t_s, 3) if base is not None else None
    snap["latency_count"] = window.get(math.inf, 0.0)
    snap["rss_bytes"] = cur.value("process_resident_memory_bytes")
    cpu_now, cpu_prev = cur.value("process_cpu_seconds_total"), p.value("process_cpu_seconds_total")
    snap["cpu_cores"] = _round(_delta(cpu_now, cpu_prev) / dt, 4) if dt > 0 and cpu_now is not None else None
    snap["open_fds"] = cur.value("process_open_fds")
    return snap


class Dashboard:
    """Scrapes ``metrics_url`` every ``interval_s`` and fans each snapshot out to the SSE subscribers."""

    def __init__(self, metrics_url: str, interval_s: float = 1.0):
        self.metrics_url = metrics_url
        self.interval_s = interval_s
        self.scrapes: deque[Scrape] = deque(maxlen=max(2, int(LATENCY_WINDOW_S / interval_s) + 2))
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.scrape_count = 0
        self._task: asyncio.Task[None] | None = None

    async def scrape_once(self, session: ClientSession) -> dict[str, Any]:
        t0 = time.perf_counter()
        t_s = time.time()
        try:
            async with session.get(self.metrics_url) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status} from {self.metrics_url}")
            scrape = parse_metrics(text, t_s)
        except Exception as exc:  # a scrape of a server that is gone is a snapshot saying so
            scrape = Scrape(t_s, error=f"{type(exc).__name__}: {exc}"[:300])
        scrape.scrape_ms = (time.perf_counter() - t0) * 1000
        prev = self.scrapes[-1] if self.scrapes else None
        base = next((s for s in self.scrapes if s.error is None and scrape.t_s - s.t_s <= LATENCY_WINDOW_S + self.interval_s / 2), None)
        snap = snapshot_of(scrape, prev, base)
        self.scrapes.append(scrape)
        self.scrape_count += 1
        snap["seq"] = self.scrape_count
        self.history.append(snap)
        for q in list(self.subscribers):
            if q.qsize() < 100:  # a stalled page loses snapshots instead of growing the server's memory
                q.put_nowait(snap)
        return snap

    async def _loop(self) -> None:
        async with ClientSession(timeout=ClientTimeout(total=max(0.5, self.interval_s * 0.9))) as session:
            next_t = time.monotonic()
            while True:
                await self.scrape_once(session)
                next_t += self.interval_s
                await asyncio.sleep(max(0.0, next_t - time.monotonic()))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def make_app(dash: Dashboard) -> web.Application:
    """The aiohttp app: the page, its script, the SSE stream, the latest snapshot, a health check."""

    async def index(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(
            WEB_DIR / "dashboard.html", headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}
        )

    async def script(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_DIR / "dashboard.js", headers={"Content-Type": "text/javascript", "Cache-Control": "no-store"})

    async def snapshot(request: web.Request) -> web.Response:
        return web.json_response(
            {"metrics_url": dash.metrics_url, "scrapes": dash.scrape_count, "latest": dash.history[-1] if dash.history else None}
        )

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def events(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        dash.subscribers.add(queue)
        try:
            await resp.write(
                f"retry: 1000\nevent: hello\ndata: {json.dumps({'metrics_url': dash.metrics_url, 'interval_s': dash.interval_s})}\n\n".encode()
            )
            while True:
                try:
                    snap = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                await resp.write(f"data: {json.dumps(snap)}\n\n".encode())
        except ConnectionResetError:
            pass
        finally:
            dash.subscribers.discard(queue)
        return resp

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/dashboard.js", script)
    app.router.add_get("/events", events)
    app.router.add_get("/snapshot", snapshot)
    app.router.add_get("/health", health)

    async def on_startup(app: web.Application) -> None:
        dash.start()

    async def on_cleanup(app: web.Application) -> None:
        await dash.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


async def _serve(host: str, port: int, metrics_url: str, interval_s: float) -> None:
    dash = Dashboard(metrics_url, interval_s)
    runner = web.AppRunner(make_app(dash), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"READY port={bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m spikes.s10_monitoring.poc.dashboard", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--metrics-url", required=True, help="the tabletop server's /metrics")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between scrapes")
    args = ap.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.metrics_url, args.interval))


# -- capture: the dashboard in Chromium, as a screenshot ---------------------------------------------------------

_WEBGL_PROBE = """() => {
  try {
    const c = document.createElement('canvas');
    const gl = c.getContext('webgl2') || c.getContext('webgl');
    if (!gl) return null;
    const ext = gl.getExtension('WEBGL_debug_renderer_info');
    return ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
  } catch (e) { return null; }
}"""


@contextlib.contextmanager
def _dashboard_process(metrics_url: str, workdir: Path, interval_s: float) -> Iterator[Any]:
    from harness.poc import REPO_ROOT
    from harness.process import LogReady, ServerProcess

    proc = ServerProcess(
        "s10-dashboard",
        [
            sys.executable,
            "-m",
            "spikes.s10_monitoring.poc.dashboard",
            "--host",
            "{host}",
            "--port",
            "{port}",
            "--metrics-url",
            metrics_url,
            "--interval",
            str(interval_s),
        ],
        cwd=REPO_ROOT,
        ready=LogReady("READY port="),
        log_path=workdir / "dashboard.log",
        ready_timeout=30.0,
        grace=2.0,
    )
    with proc:
        yield proc


async def _traffic(ws_url: str, rate_per_s: float, connections: int, fail_every: int, stop: asyncio.Event) -> dict[str, int]:
    """A little load for the charts to show: echoes at ``rate_per_s`` over ``connections``, one ``fail`` in ``fail_every``."""
    import websockets

    counts = {"sent": 0, "received": 0, "connections": 0, "errors": 0}

    async def one(c: int) -> None:
        try:
            async with websockets.connect(ws_url, max_size=None, compression=None) as ws:
                counts["connections"] += 1

                async def reader() -> None:
                    async for _ in ws:
                        counts["received"] += 1

                rt = asyncio.create_task(reader())
                seq = 0
                period = connections / rate_per_s
                next_t = time.monotonic() + random.random() * period
                while not stop.is_set():
                    await asyncio.sleep(max(0.0, next_t - time.monotonic()))
                    next_t += period
                    seq += 1
                    if fail_every and seq % fail_every == 0:
                        msg: dict[str, Any] = {"op": "fail", "kind": "value"}
                    else:
                        msg = {"op": "echo", "seq": seq, "t": time.time_ns(), "c": c, "d": "x" * 32}
                    await ws.send(json.dumps(msg))
                    counts["sent"] += 1
                rt.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await rt
        except Exception:  # the server went away: the dashboard shows it; the traffic just stops
            counts["errors"] += 1

    tasks = [asyncio.create_task(one(i)) for i in range(connections)]
    await stop.wait()
    await asyncio.gather(*tasks, return_exceptions=True)
    return counts


async def _capture(dash_url: str, out_png: Path, seconds: float, traffic: Mapping[str, Any] | None, timeout_s: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from harness.browser import CHROMIUM_ARGS, launch_chromium, software_renderer

    stop = asyncio.Event()
    traffic_task: asyncio.Task[dict[str, int]] | None = None
    if traffic and traffic.get("ws_url"):
        traffic_task = asyncio.create_task(
            _traffic(
                str(traffic["ws_url"]),
                float(traffic.get("rate_per_s", 50)),
                int(traffic.get("connections", 4)),
                int(traffic.get("fail_every", 20)),
                stop,
            )
        )
    try:
        async with async_playwright() as pw:
            browser = await launch_chromium(pw)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
                page_errors: list[str] = []
                page.on("pageerror", lambda exc: page_errors.append(str(exc)))
                t0 = time.monotonic()
                await page.goto(dash_url)
                # N seconds of data: the page's live snapshots span ``seconds`` (first to last), at least 2 of them.
                await page.wait_for_function(
                    "(s) => window.__dashboard && window.__dashboard.received >= 2 && window.__dashboard.spanS() >= s",
                    arg=seconds,
                    timeout=timeout_s * 1000,
                    polling=200,
                )
                await page.wait_for_timeout(150)  # let the frame with the last snapshot paint
                state = await page.evaluate(
                    "() => ({received: window.__dashboard.received, span_s: window.__dashboard.spanS(), "
                    "frames: window.__dashboard.frames, last: window.__dashboard.last, errors: window.__dashboard.errors})"
                )
                renderer = await page.evaluate(_WEBGL_PROBE)
                out_png.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(out_png), full_page=True)
                elapsed = time.monotonic() - t0
                version = browser.version
            finally:
                await browser.close()
    finally:
        stop.set()
    traffic_counts = await traffic_task if traffic_task is not None else None
    png = out_png.read_bytes()
    width, height = (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) if png[:8] == b"\x89PNG\r\n\x1a\n" else (0, 0)
    software = software_renderer(renderer) or renderer is None
    if renderer is None:
        rendering = "software: headless Chromium with --disable-gpu, canvas 2D rasterised by Skia on the CPU, no WebGL context"
    elif software_renderer(renderer):
        rendering = f"software: {renderer}" + (" (SwiftShader)" if "swiftshader" in renderer.lower() else "")
    else:
        rendering = f"GPU: {renderer}"
    return {
        "png_path": str(out_png),
        "png_bytes": len(png),
        "png_width": width,
        "png_height": height,
        "snapshots_received": int(state["received"]),
        "data_span_s": round(float(state["span_s"]), 3),
        "frames_drawn": int(state["frames"]),
        "last_snapshot": state["last"],
        "page_errors": [*page_errors, *state.get("errors", [])],
        "chromium_version": version,
        "chromium_args": list(CHROMIUM_ARGS),
        "webgl_renderer": renderer,
        "software_rendering": software,
        "rendering": rendering,
        "capture_s": round(elapsed, 3),
        "traffic": traffic_counts,
    }


def capture_dashboard(
    metrics_url: str,
    out_png: str | Path,
    seconds: float,
    *,
    traffic: Mapping[str, Any] | None = None,
    interval_s: float = 1.0,
    workdir: str | Path | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Start the dashboard for ``metrics_url``, open it in Chromium, wait for ``seconds`` of live data, screenshot it.

    ``traffic`` (``{"ws_url", "rate_per_s", "connections", "fail_every"}``) sends echoes and a few ``fail`` ops to
    the server meanwhile so the charts move. Returns ``png_path``, ``png_bytes``, ``png_width``, ``png_height``,
    ``snapshots_received`` (live SSE snapshots the page got), ``data_span_s``, ``frames_drawn``, ``last_snapshot``,
    ``page_errors``, ``chromium_version``, ``chromium_args``, ``webgl_renderer``, ``software_rendering``,
    ``rendering`` (a label: SwiftShader / CPU raster / GPU), ``capture_s``, ``traffic`` (counts or None),
    ``dashboard_url``, ``metrics_url``, ``interval_s``, ``seconds``. Raises :class:`harness.plugin.NotRunnable`
    without Chromium or Playwright.
    """
    from harness.browser import find_engine
    from harness.plugin import NotRunnable

    if find_engine("chromium") is None:
        raise NotRunnable("Chromium is not installed (install: apt-get install -y chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError as exc:
        raise NotRunnable("playwright is not installed (install: pip install playwright==1.64.1)") from exc
    out = Path(out_png)
    base = Path(workdir) if workdir is not None else out.parent
    base.mkdir(parents=True, exist_ok=True)
    with _dashboard_process(metrics_url, base, interval_s) as proc:
        url = f"http://{proc.host}:{proc.port}/"
        result = asyncio.run(_capture(url, out, seconds, traffic, timeout_s if timeout_s is not None else seconds * 3 + 30))
    return {**result, "dashboard_url": url, "metrics_url": metrics_url, "interval_s": interval_s, "seconds": seconds}


@contextlib.contextmanager
def _tabletop_server(workdir: Path, instrument: str) -> Iterator[Any]:
    from spikes.s10_monitoring.poc import launch

    proc = launch.server_process(instrument, workdir)
    with proc:
        yield proc


def run_dashboard(params: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The scenario's measurement: the tabletop server (``params["instrument"]``, prometheus by default) under a
    little traffic, its dashboard captured after ``params["seconds"]`` (default 20) of live data.

    Returns :func:`capture_dashboard`'s dict plus ``instrument``; the PNG is ``workdir/dashboard.png``
    (``params["png"]`` overrides it).
    """
    instrument = str(params.get("instrument", "prometheus"))
    seconds = float(params.get("seconds", 20))
    out = Path(params.get("png") or workdir / "dashboard.png")
    traffic: dict[str, Any] = {
        "rate_per_s": float(params.get("rate_per_s", 50)),
        "connections": int(params.get("connections", 4)),
        "fail_every": int(params.get("fail_every", 20)),
    }
    with _tabletop_server(workdir, instrument) as server:
        base = f"{server.host}:{server.port}"
        result = capture_dashboard(f"http://{base}/metrics", out, seconds, traffic={**traffic, "ws_url": f"ws://{base}/"}, workdir=workdir)
    return {**result, "instrument": instrument}


if __name__ == "__main__":
    main()
