"""The cost of each instrumentation on the real tabletop server: closed-loop throughput and open-model latency.

:func:`run_overhead` starts the POC server (``python -m spikes.s10_monitoring.poc.server``) once per
instrument and repeat, pinned to one core with the load generator on the others, and measures with the
harness load engine (``harness.load.run_load``), echo traffic only (the error storm is ``storm.py``'s):

- **open model** first, at a fixed total rate (``open_rate_msg_s``) well below saturation, the same for every
  instrument: p50/p99/p99.9 from the HDR histogram, latency from the intended send time (coordinated
  omission corrected);
- then the **closed loop** (``window`` requests outstanding per connection): messages per second.

Each instrument's back end is live while it is measured: ``datadog`` sends to a DogStatsD sink and ``sentry``
to a Sentry ingest (both from ``poc/sinks.py``); for ``prometheus`` and ``otel`` a thread of this harness
scrapes ``/metrics`` once a second, as a Prometheus would, so the exposition's cost is in the numbers.

Repeats are interleaved (A B C ... A B C ...), so drift on the machine hits every instrument alike, and each
result is also given against the ``none`` instrument of the same repeat, in per cent. The load engine's
``client_bound`` verdict is kept per run: a throughput where the generator was the limit is the generator's,
not the server's, and the result says so.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.process import ServerProcess, pin_plan

__all__ = [
    "INSTRUMENTS",
    "BASELINE",
    "DEFAULT_PARAMS",
    "QUICK_PARAMS",
    "run_overhead",
    "run_order",
    "pct_vs",
    "summarise",
    "Scraper",
    "backend",
]

#: Every instrument the server knows, the baseline first.
INSTRUMENTS = ("none", "prometheus", "otel", "datadog", "sentry")
BASELINE = "none"
#: Instruments with a /metrics endpoint (scraped during the runs).
SCRAPED = ("prometheus", "otel")

#: One round of the five instruments: about 75 s on a two-core machine (5 x (8 s + 5 s + about 2 s to start and spawn)).
#: The spike runs this scenario three times (its repeats), so each repeat interleaves every instrument once; ``repeats``
#: here adds rounds inside one repeat (the module used alone).
DEFAULT_PARAMS: dict[str, Any] = {
    "instruments": list(INSTRUMENTS),
    "repeats": 1,
    "connections": 16,
    "open_rate_msg_s": 1000.0,
    "open_s": 8.0,
    "closed_s": 5.0,
    "window": 4,
    "payload_bytes": 64,
    "warmup_messages": 300,
    "scrape_interval_s": 1.0,
}
#: About forty seconds.
QUICK_PARAMS: dict[str, Any] = DEFAULT_PARAMS | {"repeats": 1, "open_s": 1.5, "closed_s": 1.5, "warmup_messages": 100}

_PERCENTILES = ("p50", "p99", "p99.9")


def run_order(instruments: Sequence[str], repeats: int) -> list[tuple[int, str]]:
    """(repeat, instrument) in the order they run: every instrument once per repeat (A B C A B C ...)."""
    return [(r, name) for r in range(repeats) for name in instruments]


def pct_vs(value: float | None, base: float | None) -> float | None:
    """``value`` against ``base`` in per cent (+10.0: 10 % more); None when either is missing or the base is 0."""
    if value is None or base is None or base == 0 or not math.isfinite(value) or not math.isfinite(base):
        return None
    return round((value - base) / base * 100.0, 3)


def _median(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return round(statistics.median(vals), 4) if vals else None


# -- back ends -------------------------------------------------------------------------


@contextlib.contextmanager
def backend(instrument: str) -> Iterator[tuple[list[str], Any]]:
    """The extra server arguments for ``instrument``'s back end, and the running sink (None when it needs none).

    ``datadog``: a DogStatsD UDP sink; ``sentry``: a Sentry ingest endpoint (both ``poc/sinks.py``), stopped after.
    """
    if instrument == "datadog":
        from spikes.s10_monitoring.poc.sinks import DogStatsdSink

        with DogStatsdSink() as sink:
            yield ["--dogstatsd", f"{sink.host}:{sink.port}"], sink
    elif instrument == "sentry":
        from spikes.s10_monitoring.poc.sinks import SentryIngest

        with SentryIngest() as ingest:
            yield ["--sentry-dsn", ingest.dsn], ingest
    else:
        yield [], None


def server_process(instrument: str, extra: Sequence[str], log_path: Path, cpus: Sequence[int] | None) -> ServerProcess:
    """The tabletop POC server with ``instrument`` (not started)."""
    from spikes.s10_monitoring.poc import launch

    return launch.server_process(
        instrument, log_path.parent, extra=extra, name=f"s10 server ({instrument})", log_name=log_path.name, cpus=cpus, grace=5.0
    )


class Scraper:
    """Scrape ``http://host:port/metrics`` every ``interval_s`` in a thread, as a Prometheus server would."""

    def __init__(self, host: str, port: int, interval_s: float = 1.0, cpus: Sequence[int] | None = None) -> None:
        self.host, self.port, self.interval_s = host, port, interval_s
        self.cpus = set(cpus) if cpus else None
        self.durations_ms: list[float] = []
        self.sizes: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="s10-scraper", daemon=True)

    def scrape(self) -> str:
        """One scrape: the exposition text (raises on a failure)."""
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5.0)
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise OSError(f"GET /metrics: HTTP {resp.status}")
        finally:
            conn.close()
        self.durations_ms.append(round((time.perf_counter() - t0) * 1000, 3))
        self.sizes.append(len(body))
        return body.decode("utf-8", "replace")

    def _loop(self) -> None:
        if self.cpus and hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, self.cpus)  # this thread only (Linux): off the server's core
        while not self._stop.wait(self.interval_s):
            try:
                self.scrape()
            except (OSError, http.client.HTTPException) as e:
                if len(self.errors) < 20:
                    self.errors.append(f"{type(e).__name__}: {e}")

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scrapes": len(self.durations_ms),
            "scrape_ms": list(self.durations_ms),
            "scrape_bytes": list(self.sizes),
            "scrape_errors": list(self.errors),
        }


def _warm_up(url: str, messages: int, payload_bytes: int) -> None:
    """Echo ``messages`` messages over one connection, so imports and first-use costs are paid before measuring."""
    if messages <= 0:
        return
    from websockets.sync.client import connect

    from harness.load.protocol import decode_ws, echo_message, encode_ws, make_payload

    payload = make_payload(payload_bytes)
    with connect(url, open_timeout=10, close_timeout=2) as ws:
        for i in range(messages):
            ws.send(encode_ws(echo_message(i, time.time_ns(), 0, payload)).decode())
            decode_ws(ws.recv(timeout=10))


# -- one run ----------------------------------------------------------------------------


def _load_result(result: Any) -> dict[str, Any]:
    """What a LoadResult says that this module keeps (raw numbers; the histogram encoded)."""
    return {
        "sent": result.sent,
        "received": result.received,
        "lost": result.lost,
        "errors": result.error_count,
        "error_messages": list(result.errors)[:5],
        "duration_s": round(result.duration_s, 4),
        "achieved_rate": round(result.achieved_rate, 2),
        "received_rate": round(result.received_rate, 2),
        "latency_ms": dict(result.latency_ms),
        "service_ms": dict(result.service_ms),
        "send_lag_ms": dict(result.send_lag_ms),
        "generator_cpu": list(result.generator_cpu),
        "generator_us_per_msg": result.generator_us_per_msg,
        "client_bound": result.client_bound,
        "client_bound_reasons": list(result.client_bound_reasons),
        "latency_hdr": result.histogram,
        "load_spec": dict(result.spec),
    }


def _one_run(
    instrument: str, repeat: int, p: dict[str, Any], workdir: Path, server_cpus: list[int] | None, load_cpus: tuple[int, ...] | None
) -> dict[str, Any]:
    import psutil

    from harness.load import LoadSpec, run_load

    conns = int(p["connections"])
    out: dict[str, Any] = {"instrument": instrument, "repeat": repeat}
    with backend(instrument) as (extra, sink):
        server = server_process(instrument, extra, workdir / f"server-{instrument}-{repeat}.log", server_cpus)
        with server:
            assert server.port is not None
            url = f"ws://127.0.0.1:{server.port}/"
            _warm_up(url, int(p["warmup_messages"]), int(p["payload_bytes"]))
            proc = psutil.Process(server.pid)
            cpu0 = proc.cpu_times()
            scraper = Scraper("127.0.0.1", server.port, float(p["scrape_interval_s"]), load_cpus) if instrument in SCRAPED else None
            with scraper if scraper is not None else contextlib.nullcontext():
                open_spec = LoadSpec(
                    url=url,
                    connections=conns,
                    rate=float(p["open_rate_msg_s"]) / conns,
                    duration_s=float(p["open_s"]),
                    payload_bytes=int(p["payload_bytes"]),
                    grace_s=1.0,
                    seed=repeat,
                    cpu_affinity=load_cpus,
                )
                open_res = run_load(open_spec)
                cpu1 = proc.cpu_times()
                closed_spec = LoadSpec(
                    url=url,
                    connections=conns,
                    rate=math.inf,
                    closed_loop=True,
                    window=int(p["window"]),
                    duration_s=float(p["closed_s"]),
                    payload_bytes=int(p["payload_bytes"]),
                    grace_s=1.0,
                    seed=repeat,
                    cpu_affinity=load_cpus,
                )
                closed_res = run_load(closed_spec)
                cpu2 = proc.cpu_times()
            rss = proc.memory_info().rss
            out["open"] = _load_result(open_res)
            out["closed"] = _load_result(closed_res)
            # Server CPU per message: the cost figure that holds even when the generator was the limit.
            for key, c0, c1, res in (("open", cpu0, cpu1, open_res), ("closed", cpu1, cpu2, closed_res)):
                used = (c1.user - c0.user) + (c1.system - c0.system)
                out[key]["server_cpu_s"] = round(used, 4)
                out[key]["server_us_per_msg"] = round(used / res.received * 1e6, 3) if res.received else None
            out["server_rss_bytes"] = rss
            if scraper is not None:
                out["scrape"] = scraper.to_dict()
        if sink is not None:
            out["sink"] = _sink_counts(sink)
    return out


def _sink_counts(sink: Any) -> dict[str, Any]:
    """What the sink says it received (its ``counts()`` if it has one, else its public int attributes)."""
    counts = getattr(sink, "counts", None)
    if callable(counts):
        with contextlib.suppress(Exception):
            got = counts()
            if isinstance(got, dict):
                return {str(k): v for k, v in got.items() if isinstance(v, (int, float, str, bool))}
    return {k: v for k, v in vars(sink).items() if not k.startswith("_") and isinstance(v, (int, float)) and not isinstance(v, bool)}


# -- the whole measurement ----------------------------------------------------------------


def summarise(runs: list[dict[str, Any]], instruments: Sequence[str]) -> dict[str, Any]:
    """Per instrument: raw per-repeat values, their median, and each repeat against the baseline of the same repeat."""
    base_by_repeat = {r["repeat"]: r for r in runs if r["instrument"] == BASELINE and "error" not in r}
    out: dict[str, Any] = {}
    for name in instruments:
        mine = sorted((r for r in runs if r["instrument"] == name), key=lambda r: r["repeat"])
        ok = [r for r in mine if "error" not in r]
        row: dict[str, Any] = {
            "repeats": len(ok),
            "failed_runs": [r["error"] for r in mine if "error" in r],
            "throughput_msg_s": [r["closed"]["received_rate"] for r in ok],
            "closed_server_us_per_msg": [r["closed"]["server_us_per_msg"] for r in ok],
            "open_server_us_per_msg": [r["open"]["server_us_per_msg"] for r in ok],
            "open_rate_msg_s": [r["open"]["achieved_rate"] for r in ok],
            "open_lost": [r["open"]["lost"] for r in ok],
            "server_rss_bytes": [r["server_rss_bytes"] for r in ok],
            "client_bound_closed": [r["closed"]["client_bound"] for r in ok],
            "client_bound_open": [r["open"]["client_bound"] for r in ok],
        }
        for pct in _PERCENTILES:
            row[f"latency_{pct}_ms"] = [r["open"]["latency_ms"].get(pct) for r in ok]
        # Against the baseline of the same repeat (None where that baseline is missing).
        vs: dict[str, list[float | None]] = {"throughput_vs_none_pct": [], "closed_server_us_per_msg_vs_none_pct": []}
        for pct in _PERCENTILES:
            vs[f"latency_{pct}_vs_none_pct"] = []
        for r in ok:
            b = base_by_repeat.get(r["repeat"])
            vs["throughput_vs_none_pct"].append(pct_vs(r["closed"]["received_rate"], b["closed"]["received_rate"] if b else None))
            vs["closed_server_us_per_msg_vs_none_pct"].append(
                pct_vs(r["closed"]["server_us_per_msg"], b["closed"]["server_us_per_msg"] if b else None)
            )
            for pct in _PERCENTILES:
                vs[f"latency_{pct}_vs_none_pct"].append(
                    pct_vs(r["open"]["latency_ms"].get(pct), b["open"]["latency_ms"].get(pct) if b else None)
                )
        row.update(vs)
        row["median"] = {
            k: _median(v) for k, v in row.items() if isinstance(v, list) and k not in ("failed_runs",) and not k.startswith("client_bound")
        }
        row["client_bound"] = any(row["client_bound_closed"]) or any(row["client_bound_open"])
        if any(row["client_bound_closed"]):
            row["note"] = "the load generator was the limit in a closed-loop run: that throughput is the generator's, not the server's"
        out[name] = row
    return out


def run_overhead(params: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Measure each instrument's cost on the real server; see the module docstring.

    Returns ``params``, ``pinning`` (server and load cores, or None on one core), ``order`` (the
    (repeat, instrument) sequence run), ``runs`` (raw per-run dicts: ``open`` and ``closed`` load results with
    the server's CPU per message, ``server_rss_bytes``, ``scrape``, ``sink``), ``instruments`` (per instrument:
    per-repeat lists, ``*_vs_none_pct`` per repeat, ``median``, ``client_bound``), ``client_bound`` (any run),
    ``notes`` and ``wall_s``.
    """
    p = DEFAULT_PARAMS | dict(params)
    instruments = list(p["instruments"])
    unknown = [i for i in instruments if i not in INSTRUMENTS]
    if unknown:
        raise ValueError(f"unknown instruments {unknown}; known: {', '.join(INSTRUMENTS)}")
    if BASELINE not in instruments:
        instruments.insert(0, BASELINE)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    plan = pin_plan(1)
    server_cpus = sorted(plan.server) if plan else None
    load_cpus = tuple(sorted(plan.load)) if plan else None
    notes: list[str] = []
    if plan is None:
        notes.append(f"only {os.cpu_count()} CPU: server and load generator share it; the numbers are not of the server alone")
    order = run_order(instruments, int(p["repeats"]))
    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for repeat, name in order:
        try:
            runs.append(_one_run(name, repeat, p, workdir, server_cpus, load_cpus))
        except Exception as e:  # one failed run is recorded, the others still run
            runs.append({"instrument": name, "repeat": repeat, "error": f"{type(e).__name__}: {e}"})
    summary = summarise(runs, instruments)
    client_bound = any(row["client_bound"] for row in summary.values())
    if client_bound:
        notes.append("the load generator was the limit in at least one run (client_bound): see instruments[*].note")
    return {
        "params": p,
        "pinning": {"server_cpus": server_cpus, "load_cpus": list(load_cpus) if load_cpus else None},
        "order": [[r, n] for r, n in order],
        "runs": runs,
        "instruments": summary,
        "client_bound": client_bound,
        "notes": notes,
        "wall_s": round(time.perf_counter() - t0, 2),
    }
