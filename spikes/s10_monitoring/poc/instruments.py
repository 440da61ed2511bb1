"""One instrumentation interface for the tabletop server, five back ends.

The server calls the same methods whatever the back end: :meth:`Instruments.conn_opened`,
:meth:`~Instruments.conn_closed`, :meth:`~Instruments.message`, :meth:`~Instruments.error`,
:meth:`~Instruments.handled`, :meth:`~Instruments.span` (a context manager around the handling
of one message), :meth:`~Instruments.dependency` (a dependency's health), :meth:`~Instruments.tick`
(once a second: resource gauges, where the back end pushes them), :meth:`~Instruments.metrics_text`
(the Prometheus text exposition, or ``None`` when the back end has no pull endpoint) and
:meth:`~Instruments.close` (flush what is buffered).

Back ends (:func:`make`), each in a module of its own (``inst_prometheus.py``, ``inst_otel.py``,
``inst_datadog.py``, ``inst_sentry.py``) so that each option's own code is what the complexity criterion counts:

- ``none``: every method does nothing (the baseline).
- ``prometheus``: prometheus_client in its own :class:`CollectorRegistry`, with a ``ProcessCollector``
  for the three ``process_*`` resource series.
- ``otel``: the OpenTelemetry SDK: a ``MeterProvider`` read by opentelemetry-exporter-prometheus
  (its ``PrometheusMetricReader`` into an own registry), resources as observable instruments;
  plus a ``TracerProvider`` with one span per message handled, batched (``BatchSpanProcessor``) to an
  exporter that only counts spans, so memory stays bounded and nothing leaves the process.
  Instrument names and units are chosen so the exporter's names equal the prometheus back end's
  (``tabletop_handle`` in ``s`` -> ``tabletop_handle_seconds``; ``tabletop_message`` in ``By`` ->
  ``tabletop_message_bytes_total``; a counter gets ``_total``).
- ``datadog``: ``datadog.DogStatsd`` over UDP, BUFFERED by default (``disable_buffering=False``: the
  client packs metrics into datagrams of up to 1432 bytes and a background thread flushes every
  0.3 s), because an unbuffered client does one ``sendto`` system call per metric, i.e. three or four
  per message handled, on the event loop's thread; ``buffered=False`` gives the library's default.
  The client's own telemetry metrics are disabled so a sink counts only the server's metrics.
- ``sentry``: ``sentry_sdk.init(dsn)``; errors through ``capture_exception``; nothing else (no traces,
  no metrics endpoint).
"""

from __future__ import annotations

import contextlib
from typing import Any

import psutil

__all__ = [
    "OPS",
    "ERROR_KINDS",
    "BUCKETS_S",
    "BACKENDS",
    "Instruments",
    "NoInstruments",
    "bound_op",
    "process_resources",
    "bound_kind",
    "code_class",
    "make",
]

#: The ``op`` label's values: anything else is counted as ``other`` (a bounded label).
OPS = ("echo", "join", "broadcast", "fail", "other")
#: The ``kind`` label's values of ``tabletop_errors_total``.
ERROR_KINDS = ("value", "timeout", "decode", "redis", "other")
#: Buckets of ``tabletop_handle_seconds``: 0.1 ms to 1 s.
BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: Buckets of ``tabletop_event_loop_lag_seconds``: 1 ms to 10 s (a stalled loop, a frozen process).
LAG_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BACKENDS = ("none", "prometheus", "otel", "datadog", "sentry")
#: WebSocket close codes counted as a normal close (1000 normal, 1001 going away).
NORMAL_CODES = frozenset({1000, 1001})


def bound_op(op: object) -> str:
    """The ``op`` label value for a message's op: one of :data:`OPS`."""
    return op if isinstance(op, str) and op in OPS else "other"


def bound_kind(kind: object) -> str:
    """The ``kind`` label value for an error kind: one of :data:`ERROR_KINDS`."""
    return kind if isinstance(kind, str) and kind in ERROR_KINDS else "other"


def code_class(code: int | None) -> str:
    """``normal`` for a close code 1000/1001, ``abnormal`` otherwise (1006: no close frame)."""
    return "normal" if code in NORMAL_CODES else "abnormal"


class Instruments:
    """The interface; this base class is the ``none`` back end (every call does nothing)."""

    name = "none"

    def conn_opened(self) -> None:
        """A WebSocket connection was accepted."""

    def conn_closed(self, abnormal: bool) -> None:
        """A connection ended (``abnormal``: not a 1000/1001 close)."""

    def message(self, op: str, nbytes: int, user: str | None = None) -> None:
        """A message of ``op`` (already bounded) and ``nbytes`` arrived (``user``: with --user-labels)."""

    def error(self, exc: BaseException, kind: str) -> None:
        """An error of ``kind`` (already bounded) happened; ``exc`` is the real exception."""

    def handled(self, seconds: float) -> None:
        """One message took ``seconds`` to handle."""

    def dependency(self, dep: str, up: bool) -> None:
        """The health of a dependency (``redis``) after a check."""

    def loop_lag(self, seconds: float) -> None:
        """How late the event loop ran a timer (``tabletop_handle_seconds`` times one handler only: a stalled loop, where
        every message waits, shows here and not there)."""

    def span(self, op: str) -> contextlib.AbstractContextManager[Any]:
        """A context around the handling of one message (a trace span in the otel back end; else a no-op)."""
        return _NULL

    def tick(self) -> None:
        """Called once a second: push resource gauges (datadog); the pull back ends read them at scrape."""

    def metrics_text(self) -> bytes | None:
        """The Prometheus text exposition, or ``None`` (no pull endpoint: /metrics answers 404)."""
        return None

    def close(self) -> None:
        """Flush and release (called once, at stop)."""

    def stats(self) -> dict[str, Any]:
        """What the back end itself counted (spans exported...), for the stop log line."""
        return {}


NoInstruments = Instruments
#: One reusable no-op context for the back ends without spans.
_NULL = contextlib.nullcontext()


def process_resources(proc: psutil.Process) -> tuple[int, float, int]:
    """Resident memory bytes, CPU seconds (user + system), open file descriptors of ``proc``."""
    with proc.oneshot():
        rss = proc.memory_info().rss
        t = proc.cpu_times()
        fds = proc.num_fds()
    return rss, t.user + t.system, fds


def make(
    name: str,
    *,
    dogstatsd: str | None = None,
    sentry_dsn: str | None = None,
    user_labels: bool = False,
    redis: bool = False,
    buffered: bool = True,
) -> Instruments:
    """The back end ``name`` (one of :data:`BACKENDS`); ``ValueError`` when its target is missing."""
    if name == "none":
        return Instruments()
    if name == "prometheus":
        from spikes.s10_monitoring.poc.inst_prometheus import PrometheusInstruments

        return PrometheusInstruments(user_labels=user_labels, redis=redis)
    if name == "otel":
        from spikes.s10_monitoring.poc.inst_otel import OtelInstruments

        return OtelInstruments(user_labels=user_labels, redis=redis)
    if name == "datadog":
        if not dogstatsd:
            raise ValueError("--instrument datadog needs --dogstatsd HOST:PORT")
        host, _, port = dogstatsd.rpartition(":")
        from spikes.s10_monitoring.poc.inst_datadog import DatadogInstruments

        return DatadogInstruments(host or "127.0.0.1", int(port), buffered=buffered, user_labels=user_labels)
    if name == "sentry":
        if not sentry_dsn:
            raise ValueError("--instrument sentry needs --sentry-dsn DSN")
        from spikes.s10_monitoring.poc.inst_sentry import SentryInstruments

        return SentryInstruments(sentry_dsn)
    raise ValueError(f"unknown instrument {name!r}; one of {', '.join(BACKENDS)}")
