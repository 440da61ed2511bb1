"""The DataDog back end of Spike 10's server: the DogStatsD client over UDP (see ``instruments``)."""

from __future__ import annotations

import os

import psutil

from spikes.s10_monitoring.poc.instruments import ERROR_KINDS, OPS, Instruments, process_resources


class DatadogInstruments(Instruments):
    """DogStatsD over UDP to ``host:port``, dotted names, tags for labels; resources pushed by :meth:`tick`."""

    name = "datadog"

    def __init__(self, host: str, port: int, buffered: bool = True, user_labels: bool = False) -> None:
        from datadog.dogstatsd.base import DogStatsd

        self.buffered = buffered
        self.client = DogStatsd(
            host=host, port=port, disable_buffering=not buffered, disable_telemetry=True, origin_detection_enabled=False
        )
        self.user_labels = user_labels
        self.open = 0
        self._ops = {op: [f"op:{op}"] for op in OPS}
        self._kinds = {k: [f"kind:{k}"] for k in ERROR_KINDS}
        self._closed = {c: [f"code_class:{c}"] for c in ("normal", "abnormal")}
        self._proc = psutil.Process(os.getpid())

    def conn_opened(self) -> None:
        self.open += 1
        self.client.increment("tabletop.connections.opened")
        self.client.gauge("tabletop.connections", self.open)

    def conn_closed(self, abnormal: bool) -> None:
        self.open -= 1
        self.client.increment("tabletop.connections.closed", tags=self._closed["abnormal" if abnormal else "normal"])
        self.client.gauge("tabletop.connections", self.open)

    def message(self, op: str, nbytes: int, user: str | None = None) -> None:
        self.client.increment("tabletop.messages", tags=self._ops[op])
        self.client.increment("tabletop.message_bytes", nbytes)
        if self.user_labels and user is not None:
            self.client.increment("tabletop.user_messages", tags=[f"user:{user}"])

    def error(self, exc: BaseException, kind: str) -> None:
        self.client.increment("tabletop.errors", tags=self._kinds[kind])

    def handled(self, seconds: float) -> None:
        self.client.histogram("tabletop.handle_seconds", seconds)

    def loop_lag(self, seconds: float) -> None:
        self.client.histogram("tabletop.event_loop_lag_seconds", seconds)

    def dependency(self, dep: str, up: bool) -> None:
        self.client.gauge("tabletop.dependency_up", 1 if up else 0, tags=[f"dep:{dep}"])

    def tick(self) -> None:
        rss, cpu, fds = process_resources(self._proc)
        self.client.gauge("process.resident_memory_bytes", rss)
        self.client.gauge("process.cpu_seconds", cpu)
        self.client.gauge("process.open_fds", fds)
        self.client.gauge("tabletop.connections", self.open)

    def close(self) -> None:
        self.client.flush()
        self.client.close_socket()
