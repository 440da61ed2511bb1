"""Spike 10's Grafana dashboard as code: a panel per signal, every query valid PromQL, checked against a Prometheus."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from spikes.s10_monitoring import grafana
from tests.utils import UNIT, missing_program, require_program

SIGNAL_METRICS = {
    "Connections": ("tabletop_connections", "tabletop_connections_opened_total", "tabletop_connections_closed_total"),
    "Message flow": ("tabletop_messages_total", "tabletop_message_bytes_total"),
    "Errors": ("tabletop_errors_total",),
    "Handling latency": ("tabletop_handle_seconds_bucket",),
    "Resources": ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"),
}


def test_the_dashboard_has_one_panel_per_signal_with_its_metrics():
    board = grafana.dashboard_json()
    json.dumps(board)  # plain JSON, as Grafana imports it
    assert board["uid"] == grafana.DASHBOARD_UID
    titles = [p["title"] for p in board["panels"]]
    assert titles == list(SIGNAL_METRICS)
    for panel in board["panels"]:
        assert panel["type"] == "timeseries"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        exprs = " ".join(t["expr"] for t in panel["targets"])
        for metric in SIGNAL_METRICS[panel["title"]]:
            assert metric in exprs, (panel["title"], metric)
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    assert [v["type"] for v in board["templating"]["list"]] == ["datasource"]


def test_panel_queries_are_read_back_from_the_json_and_resources_exclude_prometheus_itself():
    queries = grafana.panel_queries()
    assert {q["panel"] for q in queries} == set(SIGNAL_METRICS)
    for q in queries:
        assert "{w}" not in q["expr"] and "$" not in q["expr"]
        if q["panel"] == "Resources":
            assert "and on (job, instance) tabletop_connections" in q["expr"]
    assert all("[30s]" in q["expr"] for q in grafana.panel_queries("30s") if "rate(" in q["expr"])


def test_check_panels_reports_series_and_errors_per_query():
    seen: list[str] = []

    def query(expr: str) -> list[dict[str, object]]:
        seen.append(expr)
        if "errors" in expr:
            return []
        if "histogram_quantile(0.99" in expr:
            raise RuntimeError("bad_data: parse error")
        return [{"metric": {}, "value": [0, "1"]}]

    rows = grafana.check_panels(query)
    assert [r["expr"] for r in rows] == seen == [q["expr"] for q in grafana.panel_queries()]
    by_expr = {r["expr"]: r for r in rows}
    errors = next(r for e, r in by_expr.items() if "tabletop_errors_total" in e)
    assert errors["ok"] is False and errors["series"] == 0 and errors["error"] is None
    p99 = next(r for e, r in by_expr.items() if "histogram_quantile(0.99" in e)
    assert p99["ok"] is False and "parse error" in p99["error"]
    assert sum(r["ok"] for r in rows) == len(rows) - 2


def test_every_panel_query_parses_with_promtool(tmp_path):
    if shutil.which("promtool") is None:
        missing_program("promtool is not installed (install: apt-get install -y prometheus)")
    out = grafana.promtool_check(tmp_path)
    assert out["ok"], out["output"]
    assert out["queries"] == len(grafana.panel_queries())


def test_promtool_rejects_a_bad_query(tmp_path, monkeypatch):
    if shutil.which("promtool") is None:
        missing_program("promtool is not installed (install: apt-get install -y prometheus)")
    bad = (("Broken", "errors", "short", "a broken query", (("x", "sum by (op (rate(tabletop_messages_total[{w}]))"),)),)
    monkeypatch.setattr(grafana, "PANELS", bad)
    out = grafana.promtool_check(tmp_path)
    assert not out["ok"] and out["queries"] == 1


def _traffic(ws_url: str) -> None:
    """A few echoes, one failure, on a connection closed normally: every panel then has a series."""
    from websockets.sync.client import connect

    with connect(ws_url) as ws:
        for seq in range(5):
            ws.send(json.dumps({"op": "echo", "seq": seq, "t": 0, "c": 1, "d": "xx"}))
            ws.recv(timeout=5 * UNIT)
        ws.send(json.dumps({"op": "fail", "kind": "value"}))
        ws.recv(timeout=5 * UNIT)


@pytest.mark.slow
def test_panels_return_series_from_a_real_prometheus_scraping_the_server(tmp_path):
    """The lead's check in small: the real server, a few messages and a failure, scraped by a real Prometheus."""
    from harness.poc import REPO_ROOT
    from harness.process import LogReady, ServerProcess
    from harness.prometheus import PrometheusService

    require_program("prometheus")
    server = ServerProcess(
        "s10-server",
        [sys.executable, "-m", "spikes.s10_monitoring.poc.server", "--host", "{host}", "--port", "{port}", "--instrument", "prometheus"],
        cwd=REPO_ROOT,
        ready=LogReady("READY port="),
        log_path=tmp_path / "server.log",
    )
    with server, PrometheusService({"tabletop": [f"127.0.0.1:{server.port}"]}, scrape_interval=0.5, base_dir=tmp_path) as prom:
        prom.wait_scraped(timeout=20 * UNIT)
        _traffic(f"ws://127.0.0.1:{server.port}/")
        rows = prom.wait_for(
            lambda: (r := grafana.check_panels(prom.query)) and all(x["ok"] for x in r) and r, timeout=15 * UNIT, interval=0.5
        )
    assert len(rows) == len(grafana.panel_queries())
    assert all(r["series"] >= 1 for r in rows), rows
