"""The prometheus_client back end of Spike 10's server: its own registry, exposed on /metrics (see ``instruments``)."""

from __future__ import annotations

from typing import Any

from spikes.s10_monitoring.poc.instruments import BUCKETS_S, ERROR_KINDS, LAG_BUCKETS_S, OPS, Instruments


class PrometheusInstruments(Instruments):
    """prometheus_client, own registry; label children of the bounded labels created up front (at 0)."""

    name = "prometheus"

    def __init__(self, user_labels: bool = False, redis: bool = False) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, disable_created_metrics

        # No ``*_created`` series (process-wide switch): the OTel exporter emits none either, so both
        # back ends expose the same series and the same count of them.
        disable_created_metrics()
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.connections = Gauge("tabletop_connections", "WebSocket connections open now", registry=r)
        self.opened = Counter("tabletop_connections_opened", "Connections accepted", registry=r)
        self.closed = Counter("tabletop_connections_closed", "Connections ended", ["code_class"], registry=r)
        self.messages = Counter("tabletop_messages", "Messages received", ["op"], registry=r)
        self.nbytes = Counter("tabletop_message_bytes", "Bytes of messages received", registry=r)
        self.errors = Counter("tabletop_errors", "Errors while handling", ["kind"], registry=r)
        self.handle = Histogram("tabletop_handle_seconds", "Time to handle one message", buckets=BUCKETS_S, registry=r)
        self.lag = Histogram(
            "tabletop_event_loop_lag_seconds", "How late the event loop ran a 100 ms timer", buckets=LAG_BUCKETS_S, registry=r
        )
        self._closed = {c: self.closed.labels(c) for c in ("normal", "abnormal")}
        self._ops = {op: self.messages.labels(op) for op in OPS}
        self._kinds = {k: self.errors.labels(k) for k in ERROR_KINDS}
        self.dep: Any = None
        if redis:
            self.dep = Gauge("tabletop_dependency_up", "1 if the dependency answered its last check", ["dep"], registry=r)
            self.dep.labels("redis").set(0)
        self.users: Any = None
        if user_labels:
            self.users = Counter("tabletop_user_messages", "Messages by sending user", ["user"], registry=r)

    def conn_opened(self) -> None:
        self.opened.inc()
        self.connections.inc()

    def conn_closed(self, abnormal: bool) -> None:
        self.connections.dec()
        self._closed["abnormal" if abnormal else "normal"].inc()

    def message(self, op: str, nbytes: int, user: str | None = None) -> None:
        self._ops[op].inc()
        self.nbytes.inc(nbytes)
        if self.users is not None and user is not None:
            self.users.labels(user).inc()

    def error(self, exc: BaseException, kind: str) -> None:
        self._kinds[kind].inc()

    def handled(self, seconds: float) -> None:
        self.handle.observe(seconds)

    def loop_lag(self, seconds: float) -> None:
        self.lag.observe(seconds)

    def dependency(self, dep: str, up: bool) -> None:
        if self.dep is not None:
            self.dep.labels(dep).set(1 if up else 0)

    def metrics_text(self) -> bytes | None:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
