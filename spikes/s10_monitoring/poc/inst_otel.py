"""The OpenTelemetry back end of Spike 10's server: the metrics SDK through its Prometheus exporter, one span per message."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from typing import Any

import psutil

from spikes.s10_monitoring.poc.instruments import BUCKETS_S, ERROR_KINDS, LAG_BUCKETS_S, OPS, Instruments, process_resources


class _CountingSpanExporter:
    """A span exporter that only counts what the batch processor hands it (bounded memory, no I/O)."""

    def __init__(self) -> None:
        self.spans = 0
        self.batches = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        with self._lock:
            self.spans += len(spans)
            self.batches += 1
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class OtelInstruments(Instruments):
    """OpenTelemetry SDK metrics (exposed through the Prometheus exporter) and one span per message."""

    name = "otel"

    def __init__(self, user_labels: bool = False, redis: bool = False) -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.metrics import CallbackOptions, Observation
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry()
        self.reader = PrometheusMetricReader(registry=self.registry)
        view = View(instrument_name="tabletop_handle", aggregation=ExplicitBucketHistogramAggregation(list(BUCKETS_S)))
        lag_view = View(instrument_name="tabletop_event_loop_lag", aggregation=ExplicitBucketHistogramAggregation(list(LAG_BUCKETS_S)))
        self.provider = MeterProvider(metric_readers=[self.reader], views=[view, lag_view])
        m = self.provider.get_meter("tabletop")
        self.connections = m.create_up_down_counter("tabletop_connections", description="WebSocket connections open now")
        self.opened = m.create_counter("tabletop_connections_opened", description="Connections accepted")
        self.closed = m.create_counter("tabletop_connections_closed", description="Connections ended")
        self.messages = m.create_counter("tabletop_messages", description="Messages received")
        self.nbytes = m.create_counter("tabletop_message", unit="By", description="Bytes of messages received")
        self.errors = m.create_counter("tabletop_errors", description="Errors while handling")
        self.handle = m.create_histogram("tabletop_handle", unit="s", description="Time to handle one message")
        self.lag = m.create_histogram("tabletop_event_loop_lag", unit="s", description="How late the event loop ran a 100 ms timer")
        # Attribute dicts built once: the hot path passes the same object each time.
        self._closed = {c: {"code_class": c} for c in ("normal", "abnormal")}
        self._ops = {op: {"op": op} for op in OPS}
        self._kinds = {k: {"kind": k} for k in ERROR_KINDS}
        for attrs in self._closed.values():
            self.closed.add(0, attrs)
        for attrs in self._ops.values():
            self.messages.add(0, attrs)
        for attrs in self._kinds.values():
            self.errors.add(0, attrs)
        self.opened.add(0)
        self.nbytes.add(0)
        self.connections.add(0)
        self._proc = psutil.Process(os.getpid())
        self._res: tuple[int, float, int] = process_resources(self._proc)

        def rss(_: CallbackOptions) -> list[Observation]:
            self._res = process_resources(self._proc)  # read once per collection, first callback
            return [Observation(self._res[0])]

        def cpu(_: CallbackOptions) -> list[Observation]:
            return [Observation(self._res[1])]

        def fds(_: CallbackOptions) -> list[Observation]:
            return [Observation(self._res[2])]

        m.create_observable_gauge("process_resident_memory", [rss], unit="By", description="Resident memory size")
        m.create_observable_counter("process_cpu", [cpu], unit="s", description="User and system CPU time")
        m.create_observable_gauge("process_open_fds", [fds], description="Open file descriptors")
        self._dep_up: dict[str, int] = {}
        if redis:
            self._dep_up["redis"] = 0

            def dep(_: CallbackOptions) -> list[Observation]:
                return [Observation(v, {"dep": d}) for d, v in self._dep_up.items()]

            m.create_observable_gauge("tabletop_dependency_up", [dep], description="1 if the dependency answered")
        self.users: Any = m.create_counter("tabletop_user_messages", description="Messages by user") if user_labels else None
        self.span_exporter = _CountingSpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(BatchSpanProcessor(self.span_exporter))  # type: ignore[arg-type]
        self.tracer = self.tracer_provider.get_tracer("tabletop")

    def conn_opened(self) -> None:
        self.opened.add(1)
        self.connections.add(1)

    def conn_closed(self, abnormal: bool) -> None:
        self.connections.add(-1)
        self.closed.add(1, self._closed["abnormal" if abnormal else "normal"])

    def message(self, op: str, nbytes: int, user: str | None = None) -> None:
        self.messages.add(1, self._ops[op])
        self.nbytes.add(nbytes)
        if self.users is not None and user is not None:
            self.users.add(1, {"user": user})

    def error(self, exc: BaseException, kind: str) -> None:
        self.errors.add(1, self._kinds[kind])

    def handled(self, seconds: float) -> None:
        self.handle.record(seconds)

    def loop_lag(self, seconds: float) -> None:
        self.lag.record(seconds)

    def dependency(self, dep: str, up: bool) -> None:
        self._dep_up[dep] = 1 if up else 0

    def span(self, op: str) -> contextlib.AbstractContextManager[Any]:
        return self.tracer.start_as_current_span("handle", attributes=self._ops[op])

    def metrics_text(self) -> bytes | None:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def close(self) -> None:
        self.tracer_provider.shutdown()  # flushes the batch processor
        self.provider.shutdown()

    def stats(self) -> dict[str, Any]:
        return {"spans_exported": self.span_exporter.spans, "span_batches": self.span_exporter.batches}
