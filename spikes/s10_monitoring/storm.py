"""Completeness under an error storm, with each error back end up and then down.

:func:`run_storm` starts the tabletop POC server once per back end and phase, and a client sends ``errors``
``{"op": "fail"}`` messages paced evenly over ``storm_s`` seconds on one WebSocket connection; the server
raises a real ``ValueError`` for each and records it through its instrumentation, then acknowledges it
(``{"op": "failed"}``). Meanwhile a probe client on a second connection sends an echo every
``probe_interval_s`` and times the round trip, before the storm and during it: a server that blocks on its
back end shows it there.

Back ends and what "received" is:

- ``sentry``: sentry-sdk to a local Sentry ingest (``poc/sinks.py``): error events the ingest received, against
  the fails acknowledged (and the server's own count of ``capture_exception`` calls, its ``STOPPED ... captured=``
  line). sentry-sdk's ``transport_queue_size`` defaults to 100: a queue that overflows drops events, which the SDK
  only counts in a *client report* (``discarded_events``) sent with a later envelope (every 30 s at most, or at
  flush): whether the ingest got such a report is the "reported" column.
- ``datadog``: DogStatsD increments of ``tabletop.errors`` the UDP sink received.
- ``prometheus``, ``otel``: the ``tabletop_errors_total`` counter scraped after the storm, minus before.

Phase ``up``: the back end runs throughout; after the storm the run waits up to ``drain_s`` for deliveries to
settle; then the server is stopped gracefully (it flushes its back end) and anything delivered at that flush
is counted too (``received_at_stop``). Phase ``down``: the sink is stopped before the storm (for a pull back end:
nothing scrapes during it); after the storm it is started again on the same port, the run waits ``drain_s``
(does anything arrive late?), then stops the server gracefully. Memory: the server's RSS before the storm,
right after it, and after the drain (psutil).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from harness.process import ServerProcess, pin_plan
from spikes.s10_monitoring.overhead import Scraper
from spikes.s10_monitoring.poc import launch

__all__ = [
    "BACKENDS",
    "DEFAULT_PARAMS",
    "QUICK_PARAMS",
    "run_storm",
    "errors_in_exposition",
    "percentile",
    "summarise_rtts",
    "loss",
    "parse_stopped",
]

BACKENDS = ("sentry", "datadog", "prometheus", "otel")
PULL = ("prometheus", "otel")
#: A probe echo not back within this is counted as a timeout (the server blocked).
PROBE_TIMEOUT_S = 2.0

DEFAULT_PARAMS: dict[str, Any] = {
    "backends": list(BACKENDS),
    "errors": 1000,
    "storm_s": 1.0,
    "baseline_s": 1.0,
    "drain_s": 5.0,
    "probe_interval_s": 0.01,
    "phases": ["up", "down"],
    "kind": "value",
}
QUICK_PARAMS: dict[str, Any] = DEFAULT_PARAMS | {"errors": 300, "drain_s": 2.0, "baseline_s": 0.5}

_ERRORS_LINE = re.compile(r"^tabletop_errors_total(?:\{[^}]*\})?\s+([0-9.eE+-]+|NaN|[+-]Inf)\s*(?:\d+)?$")
_LOG_LOSS = re.compile(r"(drop|discard|lost|queue full|overflow|failed to send|unable to send|error sending|network)", re.IGNORECASE)


# -- pure helpers ---------------------------------------------------------------------------


def errors_in_exposition(text: str) -> float:
    """The sum of every ``tabletop_errors_total`` sample (all kinds) in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        m = _ERRORS_LINE.match(line.strip())
        if m:
            total += float(m.group(1))
    return total


def percentile(xs: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by nearest rank; None for no values."""
    if not xs:
        return None
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]


def summarise_rtts(rtts_ms: Sequence[float], timeouts: int = 0) -> dict[str, Any]:
    """Count, p50, p99, max of round trips in ms (and how many probes got no answer in time)."""
    return {
        "count": len(rtts_ms),
        "timeouts": timeouts,
        "p50_ms": _r(percentile(rtts_ms, 50)),
        "p99_ms": _r(percentile(rtts_ms, 99)),
        "max_ms": _r(max(rtts_ms) if rtts_ms else None),
        "mean_ms": _r(statistics.fmean(rtts_ms) if rtts_ms else None),
    }


def loss(sent: int, received: float | None) -> dict[str, Any]:
    """``lost`` and ``lost_pct`` of ``sent`` (None when nothing could be counted)."""
    if received is None:
        return {"lost": None, "lost_pct": None}
    lost = max(0, sent - int(received))
    return {"lost": lost, "lost_pct": round(lost / sent * 100, 2) if sent else None}


def parse_stopped(log_text: str) -> dict[str, str]:
    """The ``key=value`` fields of the server's last ``STOPPED ...`` line ({} when it printed none)."""
    lines = [ln for ln in log_text.splitlines() if ln.startswith("STOPPED")]
    if not lines:
        return {}
    return dict(tok.split("=", 1) for tok in lines[-1].split()[1:] if "=" in tok)


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


# -- the sinks (poc/sinks.py) ------------------------------------------------------------------


def _start_sink(backend: str) -> Any:
    """A running DogStatsD sink or Sentry ingest (``stop()`` then ``start()`` keeps its port)."""
    from spikes.s10_monitoring.poc.sinks import DogStatsdSink, SentryIngest

    sink = DogStatsdSink() if backend == "datadog" else SentryIngest()
    return sink.start()


def _server_args(backend: str, sink: Any) -> list[str]:
    if backend == "datadog":
        return ["--dogstatsd", sink.address]
    if backend == "sentry":
        return ["--sentry-dsn", sink.dsn]
    return []


def _received(backend: str, sink: Any) -> int:
    """Error events (sentry) or ``tabletop.errors`` increments (datadog) the sink counted so far."""
    if backend == "sentry":
        return int(sink.counts()["events"])
    entry = sink.counts()["by_name"].get("tabletop.errors")
    return int(entry["sum"]) if entry else 0


def _reported(backend: str, sink: Any) -> dict[str, Any]:
    """What the back end itself said about losses: sentry-sdk's client reports (discarded events by reason)."""
    if backend == "sentry":
        counts = sink.counts()
        return {"client_report_discarded": counts["discarded"], "client_reports": counts["items_by_type"].get("client_report", 0)}
    return {}


# -- one phase -----------------------------------------------------------------------------------


async def _reply_to(ws: Any, seq: int) -> None:
    """Read until the echo of probe ``seq`` (a late echo of an earlier probe is skipped)."""
    while True:
        frame = await ws.recv()
        if json.loads(frame).get("seq") == seq:
            return


async def _probe(url: str, interval_s: float, stop: asyncio.Event, out: list[tuple[float, float | None]]) -> None:
    """Echo every ``interval_s``; append (send time on perf_counter, round trip ms or None on a timeout)."""
    from websockets.asyncio.client import connect

    from harness.load.protocol import echo_message, encode_ws

    async with connect(url, open_timeout=10, close_timeout=2, max_queue=None) as ws:
        seq = 0
        nxt = time.perf_counter()
        while not stop.is_set():
            t0 = time.perf_counter()
            await ws.send(encode_ws(echo_message(seq, time.time_ns(), 1, "p")).decode())
            try:
                await asyncio.wait_for(_reply_to(ws, seq), PROBE_TIMEOUT_S)
                out.append((t0, (time.perf_counter() - t0) * 1000))
            except TimeoutError:
                out.append((t0, None))
            seq += 1
            nxt += interval_s
            await asyncio.sleep(max(0.0, nxt - time.perf_counter()))


async def _storm(url: str, n: int, storm_s: float, kind: str) -> dict[str, Any]:
    """Send ``n`` fail messages evenly over ``storm_s``; count acknowledgements; return timings."""
    from websockets.asyncio.client import connect

    msg = f'{{"op":"fail","kind":"{kind}"}}'
    acks = 0
    async with connect(url, open_timeout=10, close_timeout=2, max_queue=None) as ws:

        async def reader() -> None:
            nonlocal acks
            async for frame in ws:
                if '"failed"' in (frame if isinstance(frame, str) else frame.decode()):
                    acks += 1
                    if acks >= n:
                        return

        rd = asyncio.create_task(reader())
        t0 = time.perf_counter()
        sent = 0
        while sent < n:
            due = int(min(n, (time.perf_counter() - t0) / storm_s * n + 1)) if storm_s > 0 else n
            while sent < due:
                await ws.send(msg)
                sent += 1
            await asyncio.sleep(0.001)
        send_s = time.perf_counter() - t0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(rd, 30.0)
        ack_s = time.perf_counter() - t0
        rd.cancel()
    return {"sent_msgs": sent, "acked": acks, "send_s": round(send_s, 4), "ack_s": round(ack_s, 4), "t0": t0, "t1": t0 + ack_s}


async def _storm_with_probe(url: str, p: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[float, float | None]]]:
    stop = asyncio.Event()
    samples: list[tuple[float, float | None]] = []
    probe = asyncio.create_task(_probe(url, float(p["probe_interval_s"]), stop, samples))
    await asyncio.sleep(float(p["baseline_s"]))
    storm = await _storm(url, int(p["errors"]), float(p["storm_s"]), str(p["kind"]))
    stop.set()
    await probe
    return storm, samples


def _split_probe(samples: list[tuple[float, float | None]], t0: float, t1: float) -> dict[str, Any]:
    before = [ms for t, ms in samples if t < t0 and ms is not None]
    during = [ms for t, ms in samples if t0 <= t <= t1 and ms is not None]
    return {
        "before": summarise_rtts(before, sum(1 for t, ms in samples if t < t0 and ms is None)),
        "during": summarise_rtts(during, sum(1 for t, ms in samples if t0 <= t <= t1 and ms is None)),
        "raw_during_ms": [_r(ms) for t, ms in samples if t0 <= t <= t1],
    }


def _scrape_errors(port: int) -> float:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        if resp.status != 200:
            raise OSError(f"GET /metrics: HTTP {resp.status}")
    finally:
        conn.close()
    return errors_in_exposition(body)


def _wait_settled(count: Any, target: int, max_s: float, quiet_s: float = 1.0) -> tuple[int, float]:
    """Poll ``count()`` until it reaches ``target`` or stops changing for ``quiet_s``, at most ``max_s``."""
    t0 = time.perf_counter()
    last = count()
    changed = t0
    while time.perf_counter() - t0 < max_s and last < target:
        time.sleep(0.1)
        now = count()
        if now != last:
            last, changed = now, time.perf_counter()
        elif time.perf_counter() - changed >= quiet_s:
            break
    return last, round(time.perf_counter() - t0, 3)


def _phase(backend: str, phase: str, p: dict[str, Any], workdir: Path, cpus: Sequence[int] | None) -> dict[str, Any]:
    sink = _start_sink(backend) if backend not in PULL else None
    out: dict[str, Any] = {"backend": backend, "phase": phase}
    server: ServerProcess | None = None
    try:
        server = launch.server_process(
            backend,
            workdir,
            extra=_server_args(backend, sink) if sink is not None else [],
            name=f"s10 storm server ({backend}, {phase})",
            log_name=f"storm-{backend}-{phase}.log",
            cpus=cpus,
            grace=5.0,
        )
        server.start()
        assert server.port is not None and server.pid is not None
        url = f"ws://127.0.0.1:{server.port}/"
        proc = psutil.Process(server.pid)
        before_count = _scrape_errors(server.port) if backend in PULL else 0.0
        if phase == "down" and sink is not None:
            sink.stop()
        rss0 = proc.memory_info().rss
        # Up, a pull back end is scraped once a second meanwhile, as Prometheus would; down, nothing scrapes.
        scraper = Scraper("127.0.0.1", server.port, 1.0) if backend in PULL and phase == "up" else None
        with scraper if scraper is not None else contextlib.nullcontext():
            storm, samples = asyncio.run(_storm_with_probe(url, p))
        rss1 = proc.memory_info().rss
        if scraper is not None:
            out["scrape"] = scraper.to_dict()
        sent = int(storm["acked"])
        out["storm"] = {k: v for k, v in storm.items() if k not in ("t0", "t1")}
        out["probe"] = _split_probe(samples, storm["t0"], storm["t1"])
        received: float | None
        if backend in PULL:
            # The counter scraped after the storm (down: the first scrape once the back end is back).
            received = _scrape_errors(server.port) - before_count
            out["drain_s"] = 0.0
        else:
            assert sink is not None
            if phase == "down":
                out["received_while_down"] = _received(backend, sink)
                sink.start()  # the same port: the back end is back
            got, waited = _wait_settled(lambda: _received(backend, sink), sent, float(p["drain_s"]))
            received = float(got)
            out["drain_s"] = waited
        rss2 = proc.memory_info().rss
        server.stop()
        log = server.log_since_start()
        stopped = parse_stopped(log)
        out["received_before_stop"] = received
        if sink is not None:
            time.sleep(0.3)  # UDP datagrams flushed at exit are still in flight
            received = float(_received(backend, sink))
            out["reported"] = _reported(backend, sink)
        else:
            out["reported"] = {}
        out["reported"]["server_log_lines"] = [ln for ln in log.splitlines() if _LOG_LOSS.search(ln)][:10]
        out["received_at_stop"] = None if received is None else received - out["received_before_stop"]
        out.update(
            sent=sent,
            captured=int(stopped["captured"]) if "captured" in stopped else None,
            received=received,
            **loss(sent, received),
            rss_before_bytes=rss0,
            rss_after_storm_bytes=rss1,
            rss_after_drain_bytes=rss2,
            rss_delta_bytes=rss1 - rss0,
            rss_delta_after_drain_bytes=rss2 - rss0,
            probe_p99_before_ms=out["probe"]["before"]["p99_ms"],
            probe_p99_during_ms=out["probe"]["during"]["p99_ms"],
            stopped=stopped,
        )
        disc = out["reported"].get("client_report_discarded") or {}
        out["loss_reported"] = bool(disc) or bool(out["reported"]["server_log_lines"])
        out["silent_loss"] = bool(out["lost"]) and not out["loss_reported"]
    finally:
        if server is not None and server.alive:
            server.kill()
        if sink is not None:
            with contextlib.suppress(Exception):
                sink.stop()
    return out


def run_storm(params: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The storm with each back end up and down; see the module docstring.

    Returns ``params``, ``pinning`` and ``results``: ``results[backend][phase]`` with ``sent`` (fails acknowledged),
    ``captured`` (sentry: the server's own capture_exception count), ``received``, ``lost``, ``lost_pct``,
    ``received_at_stop`` (delivered by the flush at a graceful stop), ``received_while_down`` (phase down),
    ``probe_p99_before_ms``, ``probe_p99_during_ms``, ``probe`` (summaries and raw RTTs during),
    ``rss_before_bytes``, ``rss_after_storm_bytes``, ``rss_after_drain_bytes``, ``rss_delta_bytes`` (after the storm),
    ``rss_delta_after_drain_bytes``, ``scrape`` (pull back ends, phase up), ``storm``
    (send and ack times), ``reported`` (client reports, loss lines in the server log), ``loss_reported``,
    ``silent_loss``; or ``error`` when that phase could not run. Also ``wall_s``.
    """
    p = DEFAULT_PARAMS | dict(params)
    unknown = [b for b in p["backends"] if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown back ends {unknown}; known: {', '.join(BACKENDS)}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    plan = pin_plan(1)
    cpus = sorted(plan.server) if plan else None
    t0 = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for backend in p["backends"]:
        results[backend] = {}
        for phase in p["phases"]:
            try:
                results[backend][phase] = _phase(backend, phase, p, workdir, cpus)
            except Exception as e:  # recorded; the other back ends still run
                results[backend][phase] = {"backend": backend, "phase": phase, "error": f"{type(e).__name__}: {e}"}
    return {
        "params": p,
        "pinning": {"server_cpus": cpus},
        "results": results,
        "wall_s": round(time.perf_counter() - t0, 2),
    }
