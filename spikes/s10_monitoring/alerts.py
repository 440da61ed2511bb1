"""Do the alert rules fire on real faults, how fast, and never on a clean run? (Spike 10, "alerting").

Real pieces only: a redis-server (:class:`harness.services.RedisService`), the instrumented tabletop server
(``poc/server.py --instrument NAME --redis ...``), a real Prometheus (:class:`harness.prometheus.PrometheusService`)
scraping the server every second and evaluating ``rules.yml`` every second, a few real WebSocket clients sending a
steady trickle (echo, broadcast) through a :class:`harness.faults.FaultProxy` in front of the server, so rates are
non-zero and the network between clients and server can be cut while Prometheus still reaches the server directly
(as a monitoring network would).

:func:`run_alerts` then runs:

1. a clean period: every alert that reaches ``firing`` is a false alarm (pending ones are listed too);
2. faults, one at a time, each held ``hold_s`` seconds, with recovery (no alert pending or firing) waited for between
   them: the server SIGKILLed then restarted (:func:`harness.faults.kill_and_restart`), the server frozen
   (:func:`harness.faults.freeze`), Redis killed (:func:`harness.faults.crash_redis`), Redis writes paused
   (:func:`harness.faults.pause_redis` ``WRITE``: a slow dependency behind the broadcast path's writer queue),
   the clients' network cut by the proxy (``Reset``: RSTs; ``Blackhole``: half-open, silent), and an error
   burst (``fail`` ops). For each: the fault as logged (:class:`harness.faults.FaultLog`), the first time each alert
   was seen ``firing`` in ``/api/v1/alerts`` (polled every ``poll_s``) as seconds from the fault's start, the
   expected alerts that never fired, and the alerts that fired though not expected;
3. the bad inputs: a target where nothing listens (``up`` 0 from the start) and the server stopped for good: the
   seconds until ``up`` reads 0, and Prometheus's scrape error text.

Timings include the scrape interval, the rule's window, the evaluation interval and the rule's ``for:``; the result
carries all of them (``settings``, ``rules``) so the document can say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.faults import Blackhole, Fault, FaultLog, FaultProxy, Reset, crash_redis, freeze, kill_and_restart, pause_redis
from harness.plugin import NotRunnable
from harness.poc import REPO_ROOT
from harness.process import ServerProcess, free_port
from harness.prometheus import PrometheusService, prometheus_version, promtool_check_rules, require_prometheus
from harness.services import RedisService, ServiceUnavailable
from spikes.s10_monitoring.poc import launch

__all__ = ["RULES_FILE", "JOB", "SteadyClients", "start_server", "run_alerts", "alert_names"]

RULES_FILE = Path(__file__).resolve().parent / "rules.yml"
#: The scrape job's name; the rules select ``up{job="tabletop"}``.
JOB = "tabletop"

#: ``tabletop_handle_seconds`` times the handler only (receive to reply written), not the wait in the socket or the
#: event loop: a frozen server (SIGSTOP) handles nothing while frozen and its backlog fast after, so no fault here is
#: expected to fire ``TabletopP99Latency``; the results show whether it did (``unexpected``).
#: Which alerts each fault should fire. Others that fire are reported as unexpected (which may be right: a killed
#: server also drops its connections).
EXPECTED: dict[str, list[str]] = {
    "server-kill": ["TabletopTargetDown"],
    # Frozen (SIGSTOP), the server answers no scrape; thawed, its loop-lag probe reports the stall it slept through.
    "server-freeze": ["TabletopTargetDown", "TabletopEventLoopLag"],
    "redis-kill": ["TabletopDependencyDown"],
    # The server appends broadcasts to Redis from a writer task behind a queue, not in the handler: paused writes do
    # not slow the handled messages (no p99 expected); a full queue counts errors of kind "redis".
    "redis-pause-writes": [],
    "network-reset": ["TabletopConnectionsDropped", "TabletopAbnormalCloses"],
    "network-blackhole": ["TabletopConnectionsDropped"],
    "error-burst": ["TabletopErrorRate"],
}
DEFAULT_FAULTS = tuple(EXPECTED)


def start_server(
    workdir: Path,
    instrument: str,
    *,
    redis_port: int | None = None,
    user_labels: bool = False,
    extra: list[str] | None = None,
    name: str | None = None,
) -> ServerProcess:
    """The tabletop server as its own process group on a free port (kept across restarts), ready."""
    flags = ["--redis", f"127.0.0.1:{redis_port}"] if redis_port is not None else []
    if user_labels:
        flags.append("--user-labels")
    label = name or f"s10-server-{instrument}"
    return launch.server_process(instrument, workdir, extra=[*flags, *(extra or [])], name=label, log_name=f"{label}.log").start()


class SteadyClients:
    """``n`` real WebSocket clients in a thread of their own, each sending ``rate`` msg/s to ``url`` until stopped.

    Each joins room ``room``, then sends echoes with a broadcast every ``broadcast_every``-th message (the
    broadcast path appends to Redis). ``fail_fraction`` (settable at run time) replaces that share of messages by
    ``{"op": "fail", "kind": "value"}``. A dropped connection is retried every ``retry_s`` (counted)."""

    def __init__(self, url: str, n: int = 4, rate: float = 10.0, *, room: str = "alerts", broadcast_every: int = 4, retry_s: float = 0.3):
        self.url, self.n, self.rate, self.room = url, n, rate, room
        self.broadcast_every = max(1, broadcast_every)
        self.retry_s = retry_s
        self.fail_fraction = 0.0
        self.sent = self.received = self.fails_sent = self.connects = self.drops = 0
        self.errors: dict[str, int] = {}
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._rng = random.Random(10)

    def start(self, connected_timeout: float = 10.0) -> SteadyClients:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="s10-steady-clients", daemon=True)
        self._thread.start()
        self._started.wait(5.0)
        deadline = time.monotonic() + connected_timeout
        while self.connects < self.n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10.0)

    def __enter__(self) -> SteadyClients:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        return {
            "clients": self.n,
            "rate_per_client": self.rate,
            "sent": self.sent,
            "received": self.received,
            "fails_sent": self.fails_sent,
            "connects": self.connects,
            "drops": self.drops,
            "errors": dict(self.errors),
        }

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        tasks = [asyncio.create_task(self._client(c)) for c in range(self.n)]
        await self._stop.wait()
        await asyncio.wait(tasks, timeout=5.0)
        for t in tasks:
            t.cancel()

    async def _client(self, c: int) -> None:
        import websockets

        assert self._stop is not None
        seq = 0
        while not self._stop.is_set():
            try:
                async with websockets.connect(self.url, open_timeout=3, close_timeout=1, max_size=None) as ws:
                    self.connects += 1
                    await ws.send(json.dumps({"op": "join", "room": self.room}))
                    reader = asyncio.create_task(self._read(ws))
                    try:
                        while not self._stop.is_set():
                            if self._rng.random() < self.fail_fraction:
                                msg: dict[str, Any] = {"op": "fail", "kind": "value"}
                                self.fails_sent += 1
                            elif seq % self.broadcast_every == self.broadcast_every - 1:
                                msg = {"op": "broadcast", "room": self.room, "seq": seq, "t": time.time_ns(), "c": c, "d": "x" * 16}
                            else:
                                msg = {"op": "echo", "seq": seq, "t": time.time_ns(), "c": c, "d": "x" * 16}
                            await ws.send(json.dumps(msg))
                            self.sent += 1
                            seq += 1
                            if reader.done():
                                break
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(self._stop.wait(), 1.0 / self.rate)
                    finally:
                        reader.cancel()
                if self._stop.is_set():
                    return
                self.drops += 1
            except Exception as e:  # any failure of a client is counted and retried: the load must go on
                name = type(e).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
                self.drops += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.retry_s)

    async def _read(self, ws: Any) -> None:
        with contextlib.suppress(Exception):
            async for _ in ws:
                self.received += 1


def alert_names(alerts: list[dict[str, Any]], state: str | None = None) -> set[str]:
    """The ``alertname`` labels of ``alerts`` (in ``state`` only, when given)."""
    return {a["labels"]["alertname"] for a in alerts if state is None or a.get("state") == state}


def _rules_loaded(prom: PrometheusService) -> list[dict[str, Any]]:
    out = []
    for group in prom.rules():
        for r in group.get("rules", []):
            if r.get("type") == "alerting":
                out.append({"name": r["name"], "query": r["query"], "for_s": r.get("duration"), "health": r.get("health")})
    return out


class _Watcher:
    """Polls ``/api/v1/alerts``: the first wall time each alert was seen pending and firing."""

    def __init__(self, prom: PrometheusService, poll_s: float):
        self.prom, self.poll_s = prom, poll_s
        self.first_firing: dict[str, float] = {}
        self.first_pending: dict[str, float] = {}
        self.active_at: dict[str, str] = {}
        self.polls = 0
        self.poll_errors = 0

    def poll(self) -> list[dict[str, Any]]:
        try:
            alerts = self.prom.alerts()
        except Exception:  # an API hiccup is one missed poll, counted
            self.poll_errors += 1
            return []
        now = time.time()
        self.polls += 1
        for a in alerts:
            name = a["labels"]["alertname"]
            self.active_at.setdefault(name, a.get("activeAt", ""))
            self.first_pending.setdefault(name, now)
            if a.get("state") == "firing":
                self.first_firing.setdefault(name, now)
        return alerts

    def watch(self, seconds: float, until: Callable[[], bool] | None = None) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.poll()
            if until is not None and until():
                return
            time.sleep(self.poll_s)


def _wait_quiet(prom: PrometheusService, timeout: float, poll_s: float) -> dict[str, Any]:
    """Wait until no alert is pending or firing; how long it took and what was still active at the timeout."""
    t0 = time.monotonic()
    active: set[str] = set()
    while time.monotonic() - t0 < timeout:
        try:
            active = alert_names(prom.alerts())
        except Exception:
            active = {"(api error)"}
        if not active:
            return {"quiet": True, "waited_s": round(time.monotonic() - t0, 3), "still_active": []}
        time.sleep(poll_s)
    return {"quiet": False, "waited_s": round(time.monotonic() - t0, 3), "still_active": sorted(active)}


@contextlib.contextmanager
def _in_background(fn: Callable[[], Any]) -> Iterator[threading.Thread]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:  # reported after the join
            errors.append(e)

    t = threading.Thread(target=run, name="s10-fault", daemon=True)
    t.start()
    try:
        yield t
    finally:
        t.join(120.0)
    if errors:
        raise errors[0]


def _inject(
    name: str,
    *,
    hold_s: float,
    server: ServerProcess,
    redis: RedisService,
    proxy: FaultProxy,
    clients: SteadyClients,
    log: FaultLog,
) -> Callable[[], Any]:
    """The blocking call that injects fault ``name`` for ``hold_s`` seconds and recovers from it."""
    if name == "server-kill":
        return lambda: kill_and_restart(server, down_for=hold_s, log=log)
    if name == "server-freeze":
        return lambda: freeze(server, hold_s, log=log)
    if name == "redis-kill":
        return lambda: crash_redis(redis, down_for=hold_s, log=log)
    if name == "redis-pause-writes":
        return lambda: pause_redis(redis, hold_s, mode="WRITE", log=log)
    if name in ("network-reset", "network-blackhole"):
        mode = Reset() if name == "network-reset" else Blackhole()
        return lambda: proxy.cut(hold_s, mode).result(hold_s + 30)
    if name == "error-burst":

        def burst() -> None:
            with log.record("error-burst", "clients", fail_fraction=0.5, clients=clients.n, rate=clients.rate):
                clients.fail_fraction = 0.5
                try:
                    time.sleep(hold_s)
                finally:
                    clients.fail_fraction = 0.0

        return burst
    raise ValueError(f"unknown fault {name!r}; known: {', '.join(EXPECTED)}")


def _fault_result(name: str, fault: Fault | None, watcher: _Watcher, t_start_wall: float) -> dict[str, Any]:
    expected = EXPECTED[name]
    start = fault.started_wall if fault is not None else t_start_wall
    fired = {
        alert: {
            "first_firing_s": round(t - start, 3),
            "first_pending_s": round(watcher.first_pending.get(alert, t) - start, 3),
            "active_at": watcher.active_at.get(alert),
        }
        for alert, t in sorted(watcher.first_firing.items())
    }
    return {
        "name": name,
        "fault": fault.to_dict() if fault is not None else None,
        "expected": expected,
        "fired": fired,
        "missed": [a for a in expected if a not in watcher.first_firing],
        "unexpected": sorted(set(watcher.first_firing) - set(expected)),
        "pending_only": sorted(set(watcher.first_pending) - set(watcher.first_firing)),
        "polls": watcher.polls,
        "poll_errors": watcher.poll_errors,
    }


def _target_of(prom: PrometheusService, job: str) -> dict[str, Any] | None:
    return next((t for t in prom.targets() if t.get("labels", {}).get("job") == job), None)


def _gone_target(prom: PrometheusService, job: str, timeout: float) -> dict[str, Any]:
    """``up`` and the scrape error of ``job`` once Prometheus has scraped it and failed."""
    t0 = time.monotonic()
    try:
        target = prom.wait_for(lambda: (t := _target_of(prom, job)) is not None and t.get("health") == "down" and t, timeout)
    except TimeoutError:
        target = _target_of(prom, job)
    up = prom.query_value(f'up{{job="{job}"}}')
    return {
        "job": job,
        "seconds_to_down": round(time.monotonic() - t0, 3),
        "health": target.get("health") if target else None,
        "up": up,
        "last_error": target.get("lastError") if target else None,
        "scrape_url": target.get("scrapeUrl") if target else None,
    }


def _one_instrument(instrument: str, params: dict[str, Any], workdir: Path) -> dict[str, Any]:
    hold_s = float(params.get("hold_s", 8.0))
    after_s = float(params.get("after_s", 3.0))
    clean_s = float(params.get("clean_s", 30.0))
    poll_s = float(params.get("poll_s", 0.1))
    quiet_timeout_s = float(params.get("quiet_timeout_s", 30.0))
    faults = list(params.get("faults", DEFAULT_FAULTS))
    interval = float(params.get("scrape_interval_s", 1.0))
    wd = workdir / f"alerts-{instrument}"
    wd.mkdir(parents=True, exist_ok=True)
    log = FaultLog()
    out: dict[str, Any] = {"instrument": instrument, "faults": [], "hold_s": hold_s, "after_s": after_s, "poll_s": poll_s}
    try:
        redis = RedisService(base_dir=wd).start()
    except ServiceUnavailable as e:
        raise NotRunnable(str(e)) from e
    server: ServerProcess | None = None
    try:
        server = start_server(wd, instrument, redis_port=redis.port)
        assert server.port is not None
        gone_port = free_port()
        prom = PrometheusService(
            {JOB: [f"127.0.0.1:{server.port}"], "gone": [f"127.0.0.1:{gone_port}"]},
            scrape_interval=interval,
            evaluation_interval=float(params.get("evaluation_interval_s", 1.0)),
            rule_files=[RULES_FILE],
            base_dir=wd,
        )
        with prom, FaultProxy(server.port, log=log, name="clients -> server") as proxy:
            out["settings"] = prom.settings()
            out["rules"] = _rules_loaded(prom)
            clients = SteadyClients(f"ws://127.0.0.1:{proxy.port}/", n=int(params.get("clients", 4)), rate=float(params.get("rate", 10.0)))
            with clients:
                prom.wait_for(lambda: prom.query_value(f'up{{job="{JOB}"}}') == 1.0, 30.0)
                # Let the rules' windows fill with normal traffic before anything is judged.
                time.sleep(float(params.get("warmup_s", 6.0)))
                out["warmup_quiet"] = _wait_quiet(prom, quiet_timeout_s, poll_s)
                clean = _Watcher(prom, poll_s)
                clean.watch(clean_s)
                out["clean"] = {
                    "duration_s": clean_s,
                    "false_alarms": sorted(clean.first_firing),
                    "false_alarm_count": len(clean.first_firing),
                    "pending_seen": sorted(clean.first_pending),
                    "polls": clean.polls,
                }
                for name in faults:
                    quiet = _wait_quiet(prom, quiet_timeout_s, poll_s)
                    before = len(log)
                    watcher = _Watcher(prom, poll_s)
                    t_wall = time.time()
                    with _in_background(
                        _inject(name, hold_s=hold_s, server=server, redis=redis, proxy=proxy, clients=clients, log=log)
                    ) as t:
                        watcher.watch(hold_s + 60.0, until=lambda: not t.is_alive())
                    watcher.watch(after_s)
                    new = log.faults[before:]
                    result = _fault_result(name, new[0] if new else None, watcher, t_wall)
                    result["quiet_before"] = quiet
                    result["load_so_far"] = clients.stats()
                    out["faults"].append(result)
                out["load"] = clients.stats()
            # The bad input: a target that never answered, and the server gone for good.
            out["gone_target"] = _gone_target(prom, "gone", 10.0)
            server.stop()
            stopped_wall = time.time()
            gone = _gone_target(prom, JOB, 15.0)
            gone["stopped_to_down_s"] = round(time.time() - stopped_wall, 3)
            out["server_gone"] = gone
            out["fault_log"] = log.to_list()
            out["prometheus_log_tail"] = prom.last_log_lines(5)
    finally:
        try:
            if server is not None:
                server.stop()
        finally:
            redis.stop()
    return out


def run_alerts(params: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Clean period, faults and bad input against real Prometheus alerting, for each of ``params["instruments"]``.

    Params: ``instruments`` (["prometheus"]; "otel" too), ``faults`` (names of :data:`EXPECTED`), ``hold_s`` (how long
    each fault lasts), ``after_s`` (watching after it ends), ``clean_s``, ``warmup_s``, ``clients``, ``rate``
    (msg/s per client), ``poll_s``, ``quiet_timeout_s``, ``scrape_interval_s``, ``evaluation_interval_s``.
    """
    require_prometheus()
    workdir = Path(workdir)
    ok, text = promtool_check_rules(RULES_FILE)
    result: dict[str, Any] = {
        "prometheus_version": prometheus_version(),
        "rules_file": str(RULES_FILE.relative_to(REPO_ROOT)),
        "promtool_check": {"ok": ok, "output": text},
        "expected": {k: v for k, v in EXPECTED.items() if k in params.get("faults", DEFAULT_FAULTS)},
        "instruments": {},
    }
    for instrument in params.get("instruments", ["prometheus"]):
        result["instruments"][instrument] = _one_instrument(str(instrument), params, workdir)
    return result
