"""An ephemeral Prometheus server owned by the harness: scrape targets and rules from arguments, storage in a temp dir.

The machine's own ``prometheus`` binary (Debian's package) runs as a :class:`~harness.process.ServerProcess` in its own
process group on a free loopback port, with its configuration generated from the arguments (scrape targets, scrape
and rule evaluation intervals, rule files), its TSDB in a fresh temporary directory that :meth:`stop` removes, and
``--web.enable-lifecycle`` so the harness can reload a changed configuration. It is ready when ``/-/ready`` answers
200. Queries, targets and alerts go through the HTTP API (``/api/v1/...``) with the standard library's HTTP client.

The configuration is written as JSON, which is YAML too: no YAML library is needed.

``promtool check rules`` (:func:`promtool_check_rules`) validates a rule file with the ``promtool`` shipped beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

from harness import machine
from harness.plugin import NotRunnable
from harness.process import PORT_RACE_ATTEMPTS, HttpReady, ServerCrashed, ServerProcess, _lost_port_race

__all__ = [
    "PROMETHEUS_INSTALL",
    "PrometheusError",
    "PrometheusService",
    "promtool_check_rules",
    "prometheus_version",
    "require_prometheus",
]

LOOPBACK = "127.0.0.1"
PROMETHEUS_INSTALL = "apt-get install -y prometheus"

PROMETHEUS = machine.register_tool(machine.ExternalTool("prometheus", ("prometheus",), ("--version",), PROMETHEUS_INSTALL))
PROMTOOL = machine.register_tool(machine.ExternalTool("promtool", ("promtool",), ("--version",), PROMETHEUS_INSTALL))

T = TypeVar("T")


class PrometheusError(Exception):
    """The Prometheus API answered with an error (a bad query, a failed reload)."""


def require_prometheus(tool: str = "prometheus") -> str:
    """The path of ``prometheus`` (or ``promtool``), or :class:`NotRunnable` with the install command."""
    path = machine.find_tool(tool)
    if path is None:
        raise NotRunnable(f"{tool} is not installed (install: {PROMETHEUS_INSTALL})")
    return path


def prometheus_version() -> str:
    """The first line of ``prometheus --version`` ("prometheus, version 2.42.0+ds (...)")."""
    proc = subprocess.run([require_prometheus(), "--version"], capture_output=True, text=True, timeout=20)
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0] if lines else ""


def promtool_check_rules(path: str | os.PathLike[str]) -> tuple[bool, str]:
    """``promtool check rules PATH``: whether it passed, and what it printed (stdout and stderr)."""
    proc = subprocess.run([require_prometheus("promtool"), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def _duration(seconds: float) -> str:
    """A Prometheus duration: whole milliseconds (``1500ms``) or seconds (``2s``)."""
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


Targets = Mapping[str, Sequence[str]] | Sequence[str]


def _jobs(targets: Targets) -> dict[str, list[str]]:
    """``{"job": ["127.0.0.1:8000"]}`` from a mapping, or one job ``"target"`` from a list of ``host:port``."""
    if isinstance(targets, Mapping):
        return {str(job): [str(t) for t in addrs] for job, addrs in targets.items()}
    return {"target": [str(t) for t in targets]} if targets else {}


class PrometheusService:
    """An ephemeral ``prometheus`` on a free loopback port, scraping ``targets`` and evaluating ``rule_files``.

    ``targets`` is ``{"job": ["127.0.0.1:PORT", ...]}`` (or a plain list, job ``target``), every job scraping
    ``metrics_path``. ``scrape_interval``/``evaluation_interval`` are in seconds (1 s suits a test run: the defaults
    of a packaged Prometheus are 15 s and 1 m). ``scrape_timeout`` defaults to the scrape interval. Rule files are
    copied into the temp dir so the caller may change or delete theirs.
    """

    name = "prometheus"

    def __init__(
        self,
        targets: Targets = (),
        *,
        scrape_interval: float = 1.0,
        evaluation_interval: float = 1.0,
        scrape_timeout: float | None = None,
        metrics_path: str = "/metrics",
        rule_files: Iterable[str | os.PathLike[str]] = (),
        port: int | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        extra_args: Iterable[str] = (),
        ready_timeout: float = 30.0,
        grace: float = 5.0,
    ):
        self.host = LOOPBACK
        self.requested_port = port or None
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.log_path = Path(log_path) if log_path is not None else None
        self.jobs = _jobs(targets)
        self.scrape_interval = float(scrape_interval)
        self.evaluation_interval = float(evaluation_interval)
        self.scrape_timeout = float(scrape_timeout if scrape_timeout is not None else scrape_interval)
        if self.scrape_timeout > self.scrape_interval:
            raise ValueError("scrape_timeout must not exceed scrape_interval (Prometheus refuses it)")
        self.metrics_path = metrics_path
        self.rule_files = [Path(p) for p in rule_files]
        self.extra_args = list(extra_args)
        self.ready_timeout = ready_timeout
        self.grace = grace
        self.dir: Path | None = None
        self.server: ServerProcess | None = None

    # -- state ------------------------------------------------------------------------------------
    @property
    def port(self) -> int | None:
        return self.server.port if self.server else self.requested_port

    @property
    def pid(self) -> int | None:
        return self.server.pid if self.server else None

    @property
    def alive(self) -> bool:
        return self.server is not None and self.server.alive

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the web UI and the API)."""
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path | None:
        return self.dir / "prometheus.yml" if self.dir else None

    def last_log_lines(self, n: int = 20) -> list[str]:
        return self.server.last_log_lines(n) if self.server else []

    def settings(self) -> dict[str, Any]:
        """What the configuration says about timing, for a report (its timings include these)."""
        return {
            "scrape_interval_s": self.scrape_interval,
            "evaluation_interval_s": self.evaluation_interval,
            "scrape_timeout_s": self.scrape_timeout,
            "jobs": {k: list(v) for k, v in self.jobs.items()},
            "rule_files": [str(p) for p in self.rule_files],
        }

    # -- configuration ---------------------------------------------------------------------------
    def config(self, rule_paths: Sequence[Path] = ()) -> dict[str, Any]:
        """The prometheus.yml content (as data; written as JSON)."""
        return {
            "global": {
                "scrape_interval": _duration(self.scrape_interval),
                "evaluation_interval": _duration(self.evaluation_interval),
                "scrape_timeout": _duration(self.scrape_timeout),
            },
            "rule_files": [str(p) for p in rule_paths],
            "scrape_configs": [
                {"job_name": job, "metrics_path": self.metrics_path, "static_configs": [{"targets": addrs}]}
                for job, addrs in self.jobs.items()
            ],
        }

    def _write_config(self) -> None:
        assert self.dir is not None
        rules_dir = self.dir / "rules"
        rules_dir.mkdir(exist_ok=True)
        paths = []
        for i, src in enumerate(self.rule_files):
            dst = rules_dir / f"{i:02d}-{src.name}"
            shutil.copyfile(src, dst)
            paths.append(dst)
        tmp = self.dir / "prometheus.yml.tmp"
        tmp.write_text(json.dumps(self.config(paths), indent=2), encoding="utf-8")
        tmp.replace(self.dir / "prometheus.yml")

    def _build(self) -> ServerProcess:
        binary = require_prometheus()
        if self.base_dir is not None:
            self.base_dir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="spike-prometheus-", dir=self.base_dir))
        (self.dir / "data").mkdir()
        self._write_config()
        argv = [
            binary,
            f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address={self.host}:{{port}}",
            "--web.enable-lifecycle",
            "--log.level=info",
            *self.extra_args,
        ]
        return ServerProcess(
            "prometheus",
            argv,
            port=self.requested_port,
            host=self.host,
            cwd=self.dir,
            ready=HttpReady("/-/ready"),  # 503 while the TSDB opens, 200 once it serves
            ready_timeout=self.ready_timeout,
            log_path=self.log_path or self.dir / "prometheus.log",
            grace=self.grace,
        )

    # -- lifetime ----------------------------------------------------------------------------------
    def start(self) -> Self:
        """Write the config into a fresh temp dir and start Prometheus; wait until ``/-/ready`` answers 200."""
        if self.alive:
            return self
        for attempt in range(1, PORT_RACE_ATTEMPTS + 1):
            try:
                if self.server is None:
                    self.server = self._build()
                self.server.start()
                self._wait_ready_200()
            except ServerCrashed:
                raced = self.server is not None and _lost_port_race(self.server.log_since_start())
                self._discard()
                if raced and attempt < PORT_RACE_ATTEMPTS and self.requested_port is None:
                    continue
                raise
            except BaseException:
                if self.server is not None:
                    self.server.kill()
                self._discard()
                raise
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_ready_200(self) -> None:
        # HttpReady passes on a 503 ("not ready yet"); wait for the 200 too.
        deadline = time.monotonic() + self.ready_timeout
        while True:
            try:
                status, _ = self._http("GET", "/-/ready", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise PrometheusError(f"prometheus was not ready after {self.ready_timeout:g} s; {self.last_log_lines(10)}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop Prometheus (SIGTERM to its group, SIGKILL after the grace) and remove its temp dir."""
        if self.server is not None:
            self.server.stop(self.grace)
        self._discard()

    def kill(self) -> None:
        """SIGKILL Prometheus's group and remove its temp dir."""
        if self.server is not None:
            self.server.kill()
        self._discard()

    def _discard(self) -> None:
        self.server = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reload(self) -> None:
        """Rewrite the config (targets, rule files may have changed) and ``POST /-/reload``."""
        if self.dir is None:
            raise PrometheusError("prometheus is not started")
        self._write_config()
        status, body = self._http("POST", "/-/reload", timeout=10.0)
        if status != 200:
            raise PrometheusError(f"reload failed ({status}): {body.decode(errors='replace').strip()}")

    def set_targets(self, targets: Targets) -> None:
        """Scrape these targets from now on (a config reload)."""
        self.jobs = _jobs(targets)
        self.reload()

    # -- the HTTP API ------------------------------------------------------------------------------
    def _http(self, method: str, path: str, params: Mapping[str, Any] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
        url = self.url + path
        data = None
        if params:
            encoded = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
            if method == "GET":
                url += "?" + encoded
            else:
                data = encoded.encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def api(self, path: str, params: Mapping[str, Any] | None = None, *, method: str = "GET", timeout: float = 10.0) -> Any:
        """``/api/v1/<path>``'s ``data``, or :class:`PrometheusError` with the API's error text."""
        status, body = self._http(method, "/api/v1/" + path.lstrip("/"), params, timeout)
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise PrometheusError(f"/api/v1/{path} answered {status}: {body[:200]!r}") from e
        if doc.get("status") != "success":
            raise PrometheusError(f"/api/v1/{path}: {doc.get('errorType')}: {doc.get('error')}")
        return doc.get("data")

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query: the result's list of ``{"metric": {...}, "value": [ts, "v"]}`` (a scalar as one item)."""
        data = self.api("query", {"query": promql, "time": at}, method="POST")
        result = data.get("result", [])
        if data.get("resultType") in ("scalar", "string"):
            return [{"metric": {}, "value": result}]
        return list(result)

    def query_value(self, promql: str, default: float | None = None) -> float | None:
        """The first sample's value of an instant query as a float, ``default`` when it is empty."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else default

    def query_range(self, promql: str, start: float, end: float, step: float = 1.0) -> list[dict[str, Any]]:
        """A range query (unix times in seconds): ``[{"metric": {...}, "values": [[ts, "v"], ...]}]``."""
        data = self.api("query_range", {"query": promql, "start": start, "end": end, "step": step}, method="POST")
        return list(data.get("result", []))

    def targets(self) -> list[dict[str, Any]]:
        """The active targets: ``labels``, ``health`` (up/down/unknown), ``lastError``, ``lastScrapeDuration``..."""
        return list(self.api("targets", {"state": "active"}).get("activeTargets", []))

    def alerts(self) -> list[dict[str, Any]]:
        """``/api/v1/alerts``: every pending or firing alert, ``labels``, ``state``, ``activeAt``, ``value``."""
        return list(self.api("alerts").get("alerts", []))

    def firing(self) -> list[dict[str, Any]]:
        """The alerts in state ``firing``."""
        return [a for a in self.alerts() if a.get("state") == "firing"]

    def rules(self) -> list[dict[str, Any]]:
        """``/api/v1/rules``: the rule groups as loaded (``rules`` with their ``health`` and ``lastError``)."""
        return list(self.api("rules").get("groups", []))

    def wait_for(self, predicate: Callable[[], T], timeout: float, interval: float = 0.1) -> T:
        """Call ``predicate`` until it returns something truthy (returned), or :class:`TimeoutError` after ``timeout``.

        A :class:`PrometheusError` or a connection error in the predicate counts as "not yet"."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while True:
            try:
                value = predicate()
                if value:
                    return value
            except (PrometheusError, OSError) as e:
                last = e
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout:g} s" + (f" (last error: {last})" if last else ""))
            time.sleep(interval)

    def wait_scraped(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until every target was scraped at least once (health not ``unknown``); return the targets."""

        def scraped() -> list[dict[str, Any]]:
            ts = self.targets()
            return ts if ts and all(t.get("health") != "unknown" for t in ts) else []

        return self.wait_for(scraped, timeout)

    @staticmethod
    def version() -> str:
        return prometheus_version()

    @staticmethod
    def check_rules(path: str | os.PathLike[str]) -> tuple[bool, str]:
        return promtool_check_rules(path)
