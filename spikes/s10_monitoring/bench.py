"""Cost per call of each monitoring client library, on the calling thread, in nanoseconds.

:func:`run_bench` measures each operation of :data:`OPS` in its own child process
(``python -m spikes.s10_monitoring.bench --child OP ...``) pinned to one core
(``os.sched_setaffinity``): a warm-up, then ``repeats`` timed loops of ``calls`` calls of a
zero-argument function (``lambda: counter.inc()``...). ``baseline`` is the empty call
(``lambda: None``): the loop and call overhead inside every other number, which are raw
(``median_net_ns`` is the median minus the baseline's median, for reading convenience).

The push clients send to real local receivers started here in the parent process (so they do
not share the pinned core's process): DogStatsD to a :class:`~spikes.s10_monitoring.poc.sinks.DogStatsdSink`,
sentry-sdk to a :class:`~spikes.s10_monitoring.poc.sinks.SentryIngest`. ``capture_exception`` is timed
on the calling thread only: the SDK hands the event to its background transport, whose queue
(100 events by default) drops what does not fit; what arrived is reported under ``sinks``.

Params (:data:`DEFAULT_PARAMS`, :data:`QUICK_PARAMS`): ``calls`` for the cheap operations,
``slow_calls`` for spans and DogStatsD, ``sentry_calls``, ``repeats``. Default: about 20-30 s;
quick: about 8-12 s (most of it is starting 13 interpreters and importing the libraries).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.poc import REPO_ROOT

__all__ = ["OPS", "DEFAULT_PARAMS", "QUICK_PARAMS", "run_bench", "pick_core", "library_versions"]

DEFAULT_PARAMS: dict[str, Any] = {"calls": 100_000, "slow_calls": 10_000, "sentry_calls": 200, "repeats": 5}
QUICK_PARAMS: dict[str, Any] = {"calls": 20_000, "slow_calls": 2_000, "sentry_calls": 50, "repeats": 3}

#: op -> (library, what is called, which count of calls it gets).
OPS: dict[str, tuple[str, str, str]] = {
    "baseline": ("none", "lambda: None (loop + call overhead, inside every other number)", "calls"),
    "prom_counter_inc": ("prometheus_client", "Counter.inc()", "calls"),
    "prom_labels_inc": ("prometheus_client", "Counter.labels('echo').inc()", "calls"),
    "prom_child_inc": ("prometheus_client", "pre-bound child: child.inc()", "calls"),
    "prom_histogram_observe": ("prometheus_client", "Histogram.observe(0.001), 13 buckets", "calls"),
    "otel_counter_add": ("opentelemetry-sdk", "Counter.add(1)", "calls"),
    "otel_counter_add_attrs": ("opentelemetry-sdk", "Counter.add(1, {'op': 'echo'}) (dict built once)", "calls"),
    "otel_histogram_record": ("opentelemetry-sdk", "Histogram.record(0.001), 13 buckets", "calls"),
    "otel_span": (
        "opentelemetry-sdk",
        "with tracer.start_as_current_span('handle'): pass (BatchSpanProcessor, counting exporter)",
        "slow_calls",
    ),
    "dogstatsd_increment_unbuffered": ("datadog", "DogStatsd(disable_buffering=True).increment()", "slow_calls"),
    "dogstatsd_increment_buffered": ("datadog", "DogStatsd(disable_buffering=False).increment()", "slow_calls"),
    "sentry_capture_exception": ("sentry-sdk", "capture_exception(exc) on the calling thread", "sentry_calls"),
}

_DISTS = ("prometheus_client", "opentelemetry-sdk", "opentelemetry-exporter-prometheus", "datadog", "sentry-sdk")
BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for d in _DISTS:
        try:
            out[d] = importlib.metadata.version(d)
        except importlib.metadata.PackageNotFoundError:
            out[d] = "missing"
    return out


def pick_core() -> int:
    """The highest-numbered CPU this process may run on (CPU 0 takes most interrupts)."""
    return max(os.sched_getaffinity(0))


# -- the child: builds one operation and times it ---------------------------------------------------


def _make_op(op: str, dogstatsd: str, dsn: str) -> Callable[[], Any]:  # noqa: C901 - one branch per op
    if op == "baseline":
        return lambda: None
    if op.startswith("prom_"):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        reg = CollectorRegistry()
        c = Counter("bench", "bench", registry=reg)
        lc = Counter("bench_l", "bench", ["op"], registry=reg)
        child = lc.labels("echo")
        h = Histogram("bench_h", "bench", buckets=BUCKETS_S, registry=reg)
        return {
            "prom_counter_inc": lambda: c.inc(),
            "prom_labels_inc": lambda: lc.labels("echo").inc(),
            "prom_child_inc": lambda: child.inc(),
            "prom_histogram_observe": lambda: h.observe(0.001),
        }[op]
    if op.startswith("otel_"):
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from prometheus_client import CollectorRegistry

        from spikes.s10_monitoring.poc.inst_otel import _CountingSpanExporter

        view = View(instrument_name="bench_h", aggregation=ExplicitBucketHistogramAggregation(BUCKETS_S))
        mp = MeterProvider(metric_readers=[PrometheusMetricReader(registry=CollectorRegistry())], views=[view])
        m = mp.get_meter("bench")
        oc = m.create_counter("bench")
        oh = m.create_histogram("bench_h", unit="s")
        attrs = {"op": "echo"}
        tp = TracerProvider()
        tp.add_span_processor(BatchSpanProcessor(_CountingSpanExporter()))  # type: ignore[arg-type]
        tracer = tp.get_tracer("bench")

        def span() -> None:
            with tracer.start_as_current_span("handle"):
                pass

        return {
            "otel_counter_add": lambda: oc.add(1),
            "otel_counter_add_attrs": lambda: oc.add(1, attrs),
            "otel_histogram_record": lambda: oh.record(0.001),
            "otel_span": span,
        }[op]
    if op.startswith("dogstatsd_"):
        from datadog.dogstatsd.base import DogStatsd

        host, _, port = dogstatsd.rpartition(":")
        d = DogStatsd(
            host=host,
            port=int(port),
            disable_buffering=op.endswith("_unbuffered"),
            disable_telemetry=True,
            origin_detection_enabled=False,
        )
        return lambda: d.increment("bench.messages", tags=["op:echo"])
    if op == "sentry_capture_exception":
        import sentry_sdk
        from sentry_sdk.integrations.dedupe import DedupeIntegration

        # Without the dedupe integration: it drops every capture of the same exception object after the
        # first, which would time a discarded event, not a sent one.
        sentry_sdk.init(dsn=dsn, traces_sample_rate=None, disabled_integrations=[DedupeIntegration()])
        try:
            raise ValueError("bench error")
        except ValueError as e:
            exc = e
        return lambda: sentry_sdk.capture_exception(exc)
    raise ValueError(f"unknown op {op!r}")


def _finish(op: str) -> None:
    """Let the push clients hand over what they hold before the child exits."""
    if op == "sentry_capture_exception":
        import sentry_sdk

        sentry_sdk.flush(timeout=10)


def child(op: str, calls: int, repeats: int, core: int, dogstatsd: str, dsn: str) -> dict[str, Any]:
    """Time ``op`` in this process (pinned to ``core``): ns per call of each repeat."""
    os.sched_setaffinity(0, {core})
    f = _make_op(op, dogstatsd, dsn)
    for _ in itertools.repeat(None, max(1, calls // 10)):  # warm-up
        f()
    per_call: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in itertools.repeat(None, calls):
            f()
        per_call.append((time.perf_counter_ns() - t0) / calls)
    _finish(op)
    return {"ns_per_call": per_call, "pid": os.getpid(), "affinity": sorted(os.sched_getaffinity(0))}


# -- the parent -------------------------------------------------------------------------------------


def _run_child(op: str, calls: int, repeats: int, core: int, dogstatsd: str, dsn: str, timeout: float) -> dict[str, Any]:
    argv = [sys.executable, "-m", "spikes.s10_monitoring.bench", "--child", op, "--calls", str(calls)]
    argv += ["--repeats", str(repeats), "--core", str(core), "--dogstatsd", dogstatsd, "--dsn", dsn]
    proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    last = proc.stdout.strip().splitlines()[-1]
    result: dict[str, Any] = json.loads(last)
    return result


def run_bench(params: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Every op of :data:`OPS` (or ``params["ops"]``), each in its own pinned child.

    Returns ``{"params", "core", "versions", "ops": {op: {"library", "what", "calls", "repeats",
    "ns_per_call" (one per repeat), "median_ns", "min_ns", "max_ns", "median_net_ns"} or {"error"}},
    "sinks": {"dogstatsd": {packets, metrics, malformed}, "sentry": {envelopes, events, rejected_413}},
    "duration_s"}``.
    """
    from spikes.s10_monitoring.poc.sinks import DogStatsdSink, SentryIngest

    p = {**DEFAULT_PARAMS, **params}
    ops = list(p.get("ops") or OPS)
    core = int(p["core"]) if p.get("core") is not None else pick_core()
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    out: dict[str, Any] = {}
    with DogStatsdSink() as sink, SentryIngest() as ingest:
        for op in ops:
            library, what, count_key = OPS[op]
            calls = int(p[count_key])
            res = _run_child(op, calls, int(p["repeats"]), core, sink.address, ingest.dsn, timeout=120)
            entry: dict[str, Any] = {"library": library, "what": what, "calls": calls, "repeats": int(p["repeats"])}
            if "error" in res:
                entry["error"] = res["error"]
            else:
                ns = res["ns_per_call"]
                entry.update(ns_per_call=ns, median_ns=statistics.median(ns), min_ns=min(ns), max_ns=max(ns), affinity=res["affinity"])
            out[op] = entry
        time.sleep(0.2)  # the last datagrams
        dd = sink.counts()
        se = ingest.counts()
    base = out.get("baseline", {}).get("median_ns")
    if base is not None:
        for entry in out.values():
            if "median_ns" in entry:
                entry["median_net_ns"] = entry["median_ns"] - base
    result = {
        "params": p,
        "core": core,
        "versions": library_versions(),
        "ops": out,
        "sinks": {
            "dogstatsd": {k: dd[k] for k in ("packets", "bytes", "metrics", "malformed")},
            "sentry": {k: se[k] for k in ("requests", "envelopes", "events", "rejected_413", "bytes_wire")},
        },
        "duration_s": time.monotonic() - t0,
    }
    (workdir / "bench.json").write_text(json.dumps(result, indent=1))
    return result


def _main() -> None:
    ap = argparse.ArgumentParser(description="cost per call of monitoring clients")
    ap.add_argument("--child", required=False)
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--core", type=int, default=None)
    ap.add_argument("--dogstatsd", default="127.0.0.1:8125")
    ap.add_argument("--dsn", default="http://public@127.0.0.1:9/1")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.child:
        core = a.core if a.core is not None else pick_core()
        print(json.dumps(child(a.child, a.calls, a.repeats, core, a.dogstatsd, a.dsn)), flush=True)
    else:
        import tempfile

        res = run_bench(QUICK_PARAMS if a.quick else {}, Path(tempfile.mkdtemp(prefix="s10-bench-")))
        for op, e in res["ops"].items():
            print(f"{op:34s} {e.get('median_ns', float('nan')):10.1f} ns  {e.get('error', '')}")
        print(json.dumps(res["sinks"]), f"{res['duration_s']:.1f}s")


if __name__ == "__main__":
    _main()
