"""Locust users for the realtime-spikes wire protocol: native WebSocket or Socket.IO, open model, exact HDR tails.

Self-contained (it needs only ``locust``, ``websocket-client`` and
``hdrhistogram``), so the same file runs on every machine of a distributed
test. Locust patches the standard library with gevent before it imports this
file, which makes websocket-client's blocking sockets cooperative.

What the users send is a message plan, ``--harness-plan JSON`` (see
``MessagePlan`` in ``harness/load/locust/__init__.py``); a spike's own
parameters are ``--spike-params JSON`` (or ``@FILE``, read by the master), a
JSON object of named scalars. Both go on the master's command line only:
Locust hands them to the workers when the test starts. Each user sees the
parameters as ``self.params``, and every string in the plan's messages may
refer to one as ``$name`` (``string.Template``).

Each user connects (timed, fired as a ``WS connect`` request), sends the
plan's setup messages (waiting for each one's reply op, if it names one),
then sends the plan's message ``rate`` times per second on a fixed schedule
(open model: a late send keeps its intended time) stamped with the intended
send time in nanoseconds. Every reply op of the plan it receives is fired as
a Locust request whose response time runs from that intended time
(coordinated omission corrected), and recorded in a per-worker HDR histogram
(microseconds). Workers send their histogram and counts to the
master with each stats report, and a final report when the test stops, so
the master's merged histogram holds every sample and its tails are exact.
Run the master with ``--harness-run-time SECONDS`` rather than ``-t``: it
stops the workers and waits for their final reports before it quits. With
``--harness-summary FILE`` the master (and ``--harness-worker-summary DIR``
each worker) writes the totals, and the spike parameters the users saw, as JSON.

The latency of a message sent by one connection and received by another
compares the clocks of different machines: across machines it is only as
good as their clock sync (NTP: a millisecond or so).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from string import Template
from typing import Any

import gevent
import websocket
from hdrh.histogram import HdrHistogram
from locust import User, constant, events, task

HDR_MAX_US = 60_000_000
_state: dict[str, Any] = {
    "hdr": HdrHistogram(1, HDR_MAX_US, 3),
    "sent": 0,
    "received": 0,
    "connected": 0,
    "connect_failed": 0,
    "users": set(),
}
_master: dict[str, Any] = {"hdr": HdrHistogram(1, HDR_MAX_US, 3), "workers": {}}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--harness-plan", default="", help="the message plan as JSON (transport, rate, send, setup, reply_ops, ...)")
    parser.add_argument("--spike-params", default="{}", help="the spike's own parameters: a JSON object, or @FILE holding one")
    parser.add_argument(
        "--harness-run-time",
        type=float,
        default=0.0,
        help="master: stop after this many seconds, wait for every worker's final report, then quit (use instead of -t, "
        "whose quit leaves workers half a second to report)",
    )
    parser.add_argument("--harness-summary", default="", help="master: write the merged totals and percentiles to this JSON file")
    parser.add_argument("--harness-worker-summary", default="", help="worker: write its own totals to a JSON file in this directory")


@events.init.add_listener
def _init(environment: Any, **kw: Any) -> None:
    # A worker's options are replaced by the master's when the test starts: keep this one from its own command line.
    opts = environment.parsed_options
    _state["worker_summary"] = getattr(opts, "harness_worker_summary", "") if opts is not None else ""
    # @FILE is read where the command line was given (the master), so the workers receive the JSON itself.
    raw = getattr(opts, "spike_params", "") if opts is not None else ""
    if raw.startswith("@"):
        opts.spike_params = Path(raw[1:]).read_text(encoding="utf-8")


_PARSED: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}


def plan_and_params(opts: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The message plan and the spike's parameters from the (master's) options, parsed once."""
    key = (getattr(opts, "harness_plan", "") or "", getattr(opts, "spike_params", "") or "{}")
    if key not in _PARSED:
        plan = dict(json.loads(key[0])) if key[0] else {}
        plan.setdefault("transport", "ws")
        plan.setdefault("rate", 1.0)
        plan.setdefault("send", {"op": "echo"})
        plan.setdefault("payload_bytes", 64)
        plan.setdefault("setup", [])
        plan["reply_ops"] = list(plan.get("reply_ops") or [plan["send"]["op"]])
        params = json.loads(key[1])
        if not isinstance(params, dict):
            raise ValueError(f"--spike-params must be a JSON object, not {key[1]!r:.60}")
        _PARSED[key] = (plan, params)
    return _PARSED[key]


def fill(value: Any, params: dict[str, Any]) -> Any:
    """``value`` with every ``$name`` in its strings replaced by the spike parameter ``name``."""
    if isinstance(value, str):
        return Template(value).substitute(params)
    if isinstance(value, dict):
        return {k: fill(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, params) for v in value]
    return value


def _ws_url(host: str, transport: str) -> str:
    url = host.rstrip("/")
    if url.startswith("http"):
        url = "ws" + url[4:]
    if transport == "socketio":
        return url + "/socket.io/?EIO=4&transport=websocket"
    return url + "/"


class PlanUser(User):
    """One connection sending the plan's message on a fixed schedule."""

    wait_time = constant(0)
    abstract = False

    def on_start(self) -> None:
        plan, params = plan_and_params(self.environment.parsed_options)
        self.params = params
        self.transport = plan["transport"]
        self.rate = float(plan["rate"])
        self.message = fill(plan["send"], params)
        self.setup = [(fill(m, params), r) for m, r in plan["setup"]]
        self.reply_ops = set(plan["reply_ops"])
        self.payload = "x" * int(plan["payload_bytes"])
        self.id = random.getrandbits(48)
        self.seq = 0
        self.ws: websocket.WebSocket | None = None
        self.awaiting = ""
        self.arrived = gevent.event.Event()
        _state["params"] = params
        t0 = time.perf_counter()
        try:
            self.ws = websocket.create_connection(_ws_url(self.environment.host, self.transport), timeout=30, enable_multithread=True)
            if self.transport == "socketio":
                opened = self.ws.recv()  # engine.io open packet: 0{"sid":...}
                if not str(opened).startswith("0"):
                    raise ConnectionError(f"expected an engine.io open packet, got {opened!r:.60}")
                self.ws.send("40")
                ack = self.ws.recv()
                if not str(ack).startswith("40"):
                    raise ConnectionError(f"expected a Socket.IO connect ack, got {ack!r:.60}")
            self.ws.settimeout(None)
        except Exception as exc:
            _state["connect_failed"] += 1
            events.request.fire(
                request_type="WS",
                name="connect",
                response_time=(time.perf_counter() - t0) * 1000,
                response_length=0,
                exception=exc,
                context={},
            )
            self.ws = None
            self.stop(force=False)
            return
        _state["connected"] += 1
        _state["users"].add(self)
        events.request.fire(
            request_type="WS",
            name="connect",
            response_time=(time.perf_counter() - t0) * 1000,
            response_length=0,
            exception=None,
            context={},
        )
        self.receiver = gevent.spawn(self._receive)
        for msg, reply in self.setup:
            self.awaiting = reply
            self.arrived.clear()
            self._send(dict(msg))
            if reply:
                self.arrived.wait(30)
        self.awaiting = ""
        self.next_ns = time.time_ns() + int(random.random() * 1e9 / self.rate) if self.rate > 0 else 0

    def _send(self, msg: dict[str, Any]) -> None:
        if self.transport == "socketio":
            op = msg.pop("op")
            text = "42" + json.dumps([op, msg], separators=(",", ":"))
        else:
            text = json.dumps(msg, separators=(",", ":"))
        if self.ws is None:  # closed while this greenlet slept: a failed send, not a silent drop
            raise ConnectionError("not connected")
        self.ws.send(text)

    def _receive(self) -> None:
        ws = self.ws
        while ws is not None and ws.connected:
            try:
                text = ws.recv()
            except Exception:
                return
            if not text:
                return
            if isinstance(text, bytes):  # a binary frame: the protocol is text, decode it the same way
                text = text.decode("utf-8", errors="replace")
            now = time.time_ns()
            if self.transport == "socketio":
                if text == "2":  # engine.io ping
                    ws.send("3")
                    continue
                if not text.startswith("42"):
                    continue
                event, data = json.loads(text[2:])
                msg = dict(data, op=event)
            else:
                msg = json.loads(text)
            op = msg.get("op")
            if self.awaiting and op == self.awaiting:
                self.arrived.set()
                continue
            if op not in self.reply_ops or "t" not in msg:
                continue
            latency_us = max(1, (now - int(msg["t"])) // 1000)
            _state["hdr"].record_value(min(latency_us, HDR_MAX_US))
            _state["received"] += 1
            events.request.fire(
                request_type="WS", name=op, response_time=latency_us / 1000, response_length=len(text), exception=None, context={}
            )

    @task
    def send_on_schedule(self) -> None:
        if self.ws is None or self.rate <= 0:
            gevent.sleep(1)
            return
        delay = (self.next_ns - time.time_ns()) / 1e9
        if delay > 0:
            gevent.sleep(delay)
        msg = dict(self.message, seq=self.seq, t=self.next_ns, c=self.id, d=self.payload)
        try:
            self._send(msg)
        except Exception as exc:
            events.request.fire(request_type="WS", name="send", response_time=0, response_length=0, exception=exc, context={})
            self.ws = None
            return
        _state["sent"] += 1
        self.seq += 1
        self.next_ns += int(1e9 / self.rate)

    def on_stop(self) -> None:
        self._close()

    def _close(self) -> None:
        ws, self.ws = getattr(self, "ws", None), None
        if ws is not None:
            try:
                ws.close(timeout=1)
            except Exception:
                pass
        _state["users"].discard(self)


def _snapshot(reset: bool) -> dict[str, Any]:
    hdr = _state["hdr"]
    out = {
        "hdr": hdr.encode().decode() if hdr.get_total_count() else "",
        "sent": _state["sent"],
        "received": _state["received"],
        "connected": _state["connected"],
        "connect_failed": _state["connect_failed"],
    }
    if reset:
        hdr.reset()
        for k in ("sent", "received", "connected", "connect_failed"):
            _state[k] = 0
    return out


@events.report_to_master.add_listener
def _report(client_id: str, data: dict[str, Any]) -> None:
    """Worker: ship what was measured since the last report (the histogram and counts are then reset)."""
    data["harness"] = _snapshot(reset=True)
    totals = _state.setdefault("totals", {"sent": 0, "received": 0, "connected": 0, "connect_failed": 0, "hdr_count": 0})
    for k in ("sent", "received", "connected", "connect_failed"):
        totals[k] += data["harness"][k]
    if data["harness"]["hdr"]:
        totals["hdr_count"] += HdrHistogram.decode(data["harness"]["hdr"]).get_total_count()


@events.worker_report.add_listener
def _merge(client_id: str, data: dict[str, Any]) -> None:
    """Master: add a worker's report to the merged histogram and its per-worker totals."""
    part = data.get("harness")
    if not part:
        return
    w = _master["workers"].setdefault(client_id, {"sent": 0, "received": 0, "connected": 0, "connect_failed": 0, "hdr_count": 0})
    for k in ("sent", "received", "connected", "connect_failed"):
        w[k] += part[k]
    if part["hdr"]:
        h = HdrHistogram.decode(part["hdr"])
        w["hdr_count"] += h.get_total_count()
        _master["hdr"].add(h)


@events.test_start.add_listener
def _started(environment: Any, **kw: Any) -> None:
    runner = environment.runner
    run_time = getattr(environment.parsed_options, "harness_run_time", 0.0)
    if type(runner).__name__ in ("MasterRunner", "LocalRunner") and run_time > 0:

        def finish() -> None:
            gevent.sleep(run_time)
            runner.stop()  # a master waits here until every worker has stopped, so their final reports are in
            gevent.sleep(1.0)  # workers go back to listening (they wait stop_timeout after a stop) and then hear the quit
            runner.quit()

        gevent.spawn(finish)


@events.test_stop.add_listener
def _stopped(environment: Any, **kw: Any) -> None:
    runner = environment.runner
    kind = type(runner).__name__
    if kind == "WorkerRunner":
        for user in list(_state["users"]):
            user._close()
        gevent.sleep(0.2)
        runner._send_stats()  # the final report goes before "client_stopped": the master has every sample before its test_stop
        directory = _state.get("worker_summary")
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
            totals = dict(_state.get("totals", {}), params=_state.get("params", {}))
            (Path(directory) / f"worker-{os.getpid()}.json").write_text(json.dumps(totals))
    elif kind in ("MasterRunner", "LocalRunner"):
        if kind == "LocalRunner":
            _merge("local", {"harness": _snapshot(reset=True)})
        path = environment.parsed_options.harness_summary
        if path:
            _write_summary(environment, path)


def _write_summary(environment: Any, path: str) -> None:
    h = _master["hdr"]
    stats = environment.stats
    requests = {f"{e.method} {e.name}": e.num_requests for e in stats.entries.values()}
    failures = {f"{e.method} {e.name}": e.num_failures for e in stats.entries.values()}
    total = h.get_total_count()
    summary = {
        "workers": _master["workers"],
        "sent": sum(w["sent"] for w in _master["workers"].values()),
        "received": sum(w["received"] for w in _master["workers"].values()),
        "hdr_count": total,
        "params": plan_and_params(environment.parsed_options)[1],
        "latency_ms": {
            p: (h.get_value_at_percentile(q) / 1000 if total else None)
            for p, q in (("p50", 50), ("p99", 99), ("p99.9", 99.9), ("max", 100))
        },
        "requests": requests,
        "failures": failures,
        "hdr": h.encode().decode() if total else "",
    }
    Path(path).write_text(json.dumps(summary, indent=2))
