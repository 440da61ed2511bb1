"""What a per-user label costs (Spike 10, "cardinality"): server memory, /metrics size and scrape time.

For each instrument (prometheus_client, OpenTelemetry), the tabletop server is run twice: with ``--user-labels``
(``tabletop_user_messages_total{user}``, one series per user) and without. ``users`` distinct users each send one
echo through a real WebSocket connection (batches of ``batch`` connections at a time, each connection one user:
within the fd limit, and right whether the server labels by a message's ``c`` or by the connection's first ``c``).
Then: the server's RSS (psutil) before and after, ``scrapes`` timed GETs of ``/metrics`` (bytes, lines, series of
the user metric), and through a real Prometheus scraping every second: its ``scrape_duration_seconds``,
``scrape_samples_scraped`` and ``scrape_series_added`` for the server, its head series and its own RSS.

Raw numbers only; the document derives a label budget from them.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from harness.process import ServerProcess, free_port
from harness.prometheus import PrometheusService, require_prometheus
from spikes.s10_monitoring.alerts import start_server

__all__ = ["USER_METRIC", "run_cardinality", "send_users", "scrape_metrics"]

USER_METRIC = "tabletop_user_messages_total"


async def _send_batch(url: str, first: int, count: int, timeout: float) -> tuple[int, int]:
    import websockets

    async def one(user: int) -> bool:
        try:
            async with websockets.connect(url, open_timeout=timeout, close_timeout=2) as ws:
                await ws.send(json.dumps({"op": "echo", "seq": 0, "t": time.time_ns(), "c": user, "d": "u"}))
                await asyncio.wait_for(ws.recv(), timeout)
                return True
        except Exception:  # counted as a failed user; the caller reports how many
            return False

    results = await asyncio.gather(*(one(u) for u in range(first, first + count)))
    ok = sum(results)
    return ok, count - ok


def send_users(url: str, users: int, *, batch: int = 200, timeout: float = 10.0) -> dict[str, Any]:
    """``users`` connections, ``batch`` at a time, each sending one echo with ``c`` = its user id; waits for the echo."""

    async def main() -> tuple[int, int]:
        ok = failed = 0
        for first in range(0, users, batch):
            o, f = await _send_batch(url, first, min(batch, users - first), timeout)
            ok, failed = ok + o, failed + f
        return ok, failed

    t0 = time.perf_counter()
    ok, failed = asyncio.run(main())
    return {"users": users, "ok": ok, "failed": failed, "seconds": round(time.perf_counter() - t0, 3), "batch": batch}


def scrape_metrics(url: str, scrapes: int = 5) -> dict[str, Any]:
    """GET ``url`` (``.../metrics``) ``scrapes`` times: each time in ms, the bytes and lines of the last."""
    times_ms: list[float] = []
    body = b""
    for _ in range(max(1, scrapes)):
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as resp:
            body = resp.read()
        times_ms.append(round((time.perf_counter() - t0) * 1000, 3))
    text = body.decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    return {
        "scrape_ms": times_ms,
        "metrics_bytes": len(body),
        "sample_lines": len(lines),
        "user_series": sum(1 for ln in lines if ln.startswith(USER_METRIC + "{")),
    }


def _rss(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        return int(proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True)))
    except psutil.Error:
        return None


def _prom_value(prom: PrometheusService, promql: str) -> float | None:
    try:
        return prom.query_value(promql)
    except Exception:
        return None


def _one(instrument: str, user_labels: bool, params: dict[str, Any], workdir: Path) -> dict[str, Any]:
    users = int(params.get("users", 1000))
    scrapes = int(params.get("scrapes", 5))
    label = f"{instrument}-{'users' if user_labels else 'nolabel'}"
    wd = workdir / f"cardinality-{label}"
    wd.mkdir(parents=True, exist_ok=True)
    server: ServerProcess = start_server(wd, instrument, user_labels=user_labels, name=f"s10-card-{label}")
    try:
        prom_port = free_port()
        prom = PrometheusService(
            {"tabletop": [f"127.0.0.1:{server.port}"], "prometheus": [f"127.0.0.1:{prom_port}"]},
            scrape_interval=float(params.get("scrape_interval_s", 1.0)),
            port=prom_port,
            base_dir=wd,
        )
        with prom:
            metrics_url = f"http://127.0.0.1:{server.port}/metrics"
            time.sleep(0.5)
            rss_before = _rss(server.pid)
            before = scrape_metrics(metrics_url, 1)
            sent = send_users(f"ws://127.0.0.1:{server.port}/", users, batch=int(params.get("batch", 200)))
            time.sleep(0.5)
            rss_after = _rss(server.pid)
            after = scrape_metrics(metrics_url, scrapes)
            rss_after_scrapes = _rss(server.pid)
            # Let Prometheus scrape the grown endpoint a few times.
            t_sent = time.time()
            caught_up = True
            try:
                prom.wait_for(lambda: (_prom_value(prom, 'scrape_samples_scraped{job="tabletop"}') or 0) >= after["sample_lines"], 30.0)
            except TimeoutError:
                caught_up = False  # reported: Prometheus never saw as many samples as the GET did
            time.sleep(float(params.get("settle_s", 3.0)))
            window = f"[{max(2, int(time.time() - t_sent))}s]"
            prom_numbers = {
                "scrape_duration_s": _prom_value(prom, 'scrape_duration_seconds{job="tabletop"}'),
                "scrape_duration_max_s": _prom_value(prom, f'max_over_time(scrape_duration_seconds{{job="tabletop"}}{window})'),
                "scrape_samples_scraped": _prom_value(prom, 'scrape_samples_scraped{job="tabletop"}'),
                "scrape_series_added_max": _prom_value(prom, 'max_over_time(scrape_series_added{job="tabletop"}[1m])'),
                "caught_up": caught_up,
                "head_series": _prom_value(prom, "prometheus_tsdb_head_series"),
                "prometheus_rss_bytes": _rss(prom.pid),
            }
        return {
            "instrument": instrument,
            "user_labels": user_labels,
            "users": users,
            "sent": sent,
            "rss_before_bytes": rss_before,
            "rss_after_bytes": rss_after,
            "rss_after_scrapes_bytes": rss_after_scrapes,
            "rss_delta_bytes": (rss_after - rss_before) if rss_after is not None and rss_before is not None else None,
            "metrics_before": before,
            "metrics_after": after,
            "prometheus": prom_numbers,
        }
    finally:
        server.stop()


def run_cardinality(params: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """For each of ``params["instruments"]`` (prometheus, otel), with and without the user label: the raw numbers.

    Params: ``users`` (10000 full, 1000 quick), ``batch`` (connections at a time), ``scrapes`` (timed GETs),
    ``settle_s``, ``scrape_interval_s``. Returns ``{"users", "runs": {"<instrument>-users"|"<instrument>-nolabel": {...}}}``.
    """
    require_prometheus()
    workdir = Path(workdir)
    runs: dict[str, Any] = {}
    for instrument in params.get("instruments", ["prometheus", "otel"]):
        for user_labels in (False, True):
            runs[f"{instrument}-{'users' if user_labels else 'nolabel'}"] = _one(str(instrument), user_labels, params, workdir)
    return {"users": int(params.get("users", 1000)), "runs": runs}
