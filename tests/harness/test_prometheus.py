"""PrometheusService: a real Prometheus in a temp dir scraping a tiny target, queried and alerting through its API."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import prometheus as promod
from harness.plugin import NotRunnable
from harness.prometheus import PrometheusService, _duration, _jobs, promtool_check_rules
from tests.utils import UNIT, require_program


def test_durations_and_jobs():
    assert _duration(1) == "1s" and _duration(0.5) == "500ms" and _duration(1.25) == "1250ms" and _duration(0) == "1ms"
    assert _jobs(["127.0.0.1:1"]) == {"target": ["127.0.0.1:1"]}
    assert _jobs({"a": ("127.0.0.1:2",)}) == {"a": ["127.0.0.1:2"]}
    assert _jobs([]) == {}


def test_config_from_arguments(tmp_path):
    svc = PrometheusService({"app": ["127.0.0.1:9"]}, scrape_interval=1, evaluation_interval=0.5, metrics_path="/m")
    cfg = svc.config([tmp_path / "r.yml"])
    assert cfg["global"] == {"scrape_interval": "1s", "evaluation_interval": "500ms", "scrape_timeout": "1s"}
    assert cfg["rule_files"] == [str(tmp_path / "r.yml")]
    assert cfg["scrape_configs"] == [{"job_name": "app", "metrics_path": "/m", "static_configs": [{"targets": ["127.0.0.1:9"]}]}]
    with pytest.raises(ValueError):
        PrometheusService(scrape_interval=1, scrape_timeout=2)


def test_missing_binary_is_not_runnable(monkeypatch):
    monkeypatch.setattr(promod.machine, "find_tool", lambda name: None)
    with pytest.raises(NotRunnable, match="apt-get install -y prometheus"):
        PrometheusService().start()
    with pytest.raises(NotRunnable, match="promtool"):
        promtool_check_rules("x.yml")


def test_promtool_tells_good_rules_from_bad(tmp_path):
    require_program("promtool")
    good, bad = tmp_path / "good.yml", tmp_path / "bad.yml"
    good.write_text("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: vector(1) > 0\n")
    bad.write_text("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: rate(x[\n")
    ok, out = promtool_check_rules(good)
    assert ok, out
    ok, out = promtool_check_rules(bad)
    assert not ok and out


class _Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"# TYPE tiny_gauge gauge\ntiny_gauge 42\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tiny_target() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.mark.slow
def test_scrapes_queries_and_alerts(tmp_path: Path, tiny_target: int):
    require_program("prometheus")
    rules = tmp_path / "rules.yml"
    rules.write_text("groups:\n- name: g\n  rules:\n  - alert: TinyHigh\n    expr: tiny_gauge > 40\n    for: 0s\n")
    with PrometheusService({"tiny": [f"127.0.0.1:{tiny_target}"]}, rule_files=[rules], base_dir=tmp_path) as prom:
        assert prom.alive and prom.dir is not None and prom.dir.is_relative_to(tmp_path)
        targets = prom.wait_scraped(20 * UNIT)
        assert targets[0]["health"] == "up" and targets[0]["labels"]["job"] == "tiny"
        assert prom.wait_for(lambda: prom.query_value("tiny_gauge") == 42.0, 10 * UNIT)
        assert prom.query('up{job="tiny"}')[0]["value"][1] == "1"
        assert prom.query("1 + 1")[0]["value"][1] == "2"  # a scalar comes back as one item
        firing = prom.wait_for(prom.firing, 15 * UNIT)
        assert firing[0]["labels"]["alertname"] == "TinyHigh"
        assert prom.rules()[0]["rules"][0]["name"] == "TinyHigh"
        import time

        now = time.time()
        assert prom.query_range("tiny_gauge", now - 5, now, 1)[0]["values"]
        with pytest.raises(promod.PrometheusError):
            prom.query("rate(")
        prom.set_targets({"other": [f"127.0.0.1:{tiny_target}"]})
        assert prom.wait_for(lambda: [t for t in prom.targets() if t["labels"]["job"] == "other"], 20 * UNIT)
        pid, root = prom.pid, prom.dir
    assert not prom.alive and not root.exists()
    assert pid is not None


def test_version_line():
    require_program("prometheus")
    assert PrometheusService.version().startswith("prometheus, version")
