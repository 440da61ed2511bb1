"""The tabletop server's Grafana dashboard, as code: grafana-foundation-sdk builders, one panel per signal.

Grafana's own maintained SDK (``grafana_foundation_sdk``) builds the dashboard; :func:`dashboard_json` is
the JSON a Grafana server would import (``POST /api/dashboards/db`` or a provisioning file). No Grafana
server runs here: the dashboard is **not rendered** by Grafana in this spike. What is checked instead is
that every panel's PromQL is valid (:func:`promtool_check`, through ``promtool check rules``) and returns
series from the harness's real Prometheus during a run (:func:`check_panels`, with the lead's
``PrometheusService.query``).

The five signals and their panels (metric names: the spike's server, ``poc/server.py``):

1. lifecycle: connections open now, opened per second, closed per second by ``code_class``;
2. message flow: messages per second by ``op``, bytes per second;
3. errors: errors per second by ``kind``;
4. latency: p50 and p99 of ``tabletop_handle_seconds`` (``histogram_quantile`` over the bucket rates);
5. resources: RSS, CPU (cores) and open fds of the tabletop process only (``and on (job, instance)
   tabletop_connections`` keeps the server's targets and drops Prometheus's own ``process_*`` series).

A counter with labels has no series before its first increment (prometheus_client creates a child on
first use): ``tabletop_errors_total`` and the closes by ``code_class`` return series only once an error
or a close has happened, which a run's load must include for :func:`check_panels` to call them ok.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.builders import prometheus as gprom
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos

from harness.plugin import NotRunnable

__all__ = [
    "DASHBOARD_UID",
    "DASHBOARD_TITLE",
    "PANELS",
    "RATE_WINDOW",
    "dashboard_json",
    "panel_queries",
    "check_panels",
    "promtool_check",
]

DASHBOARD_UID = "tabletop-s10"
DASHBOARD_TITLE = "Tabletop server: the five signals"
#: The window of every ``rate()``: two scrapes at any interval up to 30 s fall in it.
RATE_WINDOW = "1m"
#: Keep only the series of targets that expose the tabletop server's metrics (Prometheus scrapes itself too).
_TABLETOP_ONLY = "and on (job, instance) tabletop_connections"

#: (panel title, signal, unit, description, [(legend, PromQL with {w} for the rate window)]).
PANELS: tuple[tuple[str, str, str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Connections",
        "lifecycle",
        "short",
        "Open WebSocket connections now; opens and closes per second (closes by normal/abnormal close code).",
        (
            ("open", "sum(tabletop_connections)"),
            ("opened/s", "sum(rate(tabletop_connections_opened_total[{w}]))"),
            ("closed/s {{{{code_class}}}}", "sum by (code_class) (rate(tabletop_connections_closed_total[{w}]))"),
        ),
    ),
    (
        "Message flow",
        "flow",
        "reqps",
        "Messages handled per second by op (a bounded label), and bytes received per second.",
        (
            ("{{{{op}}}}", "sum by (op) (rate(tabletop_messages_total[{w}]))"),
            ("bytes/s", "sum(rate(tabletop_message_bytes_total[{w}]))"),
        ),
    ),
    (
        "Errors",
        "errors",
        "reqps",
        "Handler errors per second by kind (a bounded label; anything else is counted as other).",
        (("{{{{kind}}}}", "sum by (kind) (rate(tabletop_errors_total[{w}]))"),),
    ),
    (
        "Handling latency",
        "latency",
        "s",
        "Time to handle one message: p50 and p99 from the histogram's bucket rates (interpolated within a bucket).",
        (
            ("p50", "histogram_quantile(0.5, sum by (le) (rate(tabletop_handle_seconds_bucket[{w}])))"),
            ("p99", "histogram_quantile(0.99, sum by (le) (rate(tabletop_handle_seconds_bucket[{w}])))"),
        ),
    ),
    (
        "Resources",
        "resources",
        "short",
        "The server process: resident memory (bytes), CPU (cores busy), open file descriptors.",
        (
            ("RSS bytes", f"process_resident_memory_bytes {_TABLETOP_ONLY}"),
            ("CPU cores", f"rate(process_cpu_seconds_total[{{w}}]) {_TABLETOP_ONLY}"),
            ("open fds", f"process_open_fds {_TABLETOP_ONLY}"),
        ),
    ),
)

_DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


def _build(rate_window: str) -> Any:
    board = (
        gdash.Dashboard(DASHBOARD_TITLE)
        .uid(DASHBOARD_UID)
        .tags(["realtime-spikes", "s10", "tabletop"])
        .description("Spike 10's dashboard of the tabletop server's five signals, built with grafana-foundation-sdk.")
        .refresh("5s")
        .time("now-15m", "now")
        .timezone("utc")
        .with_variable(gdash.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    for i, (title, signal, unit, description, targets) in enumerate(PANELS):
        panel = (
            timeseries.Panel()
            .title(title)
            .description(f"{signal}: {description}")
            .unit(unit)
            .datasource(_DATASOURCE)
            .grid_pos(GridPos(h=8, w=12, x=12 * (i % 2), y=8 * (i // 2)))
        )
        for j, (legend, expr) in enumerate(targets):
            panel = panel.with_target(
                gprom.Dataquery().expr(expr.format(w=rate_window)).legend_format(legend.format()).ref_id(chr(ord("A") + j)).range()
            )
        board = board.with_panel(panel)
    return board.build()


def dashboard_json(rate_window: str = RATE_WINDOW) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (what a Grafana server imports): five time-series panels."""
    out: dict[str, Any] = json.loads(json.dumps(_build(rate_window), cls=JSONEncoder))
    return out


def panel_queries(rate_window: str = RATE_WINDOW) -> list[dict[str, str]]:
    """Every panel's PromQL, read back from the built dashboard JSON: ``[{"panel", "legend", "expr"}]``."""
    out: list[dict[str, str]] = []
    for panel in dashboard_json(rate_window)["panels"]:
        for target in panel.get("targets", []):
            out.append({"panel": panel["title"], "legend": target.get("legendFormat", ""), "expr": target["expr"]})
    return out


def check_panels(query: Callable[[str], Sequence[Any]], rate_window: str = RATE_WINDOW) -> list[dict[str, Any]]:
    """Run every panel query through ``query`` (a Prometheus instant query returning its result list).

    Returns ``[{"panel", "legend", "expr", "series": int, "ok": bool, "error": str | None}]``: ``ok`` when the
    query returned at least one series; a query the server rejects is ``ok: False`` with its error.
    """
    out: list[dict[str, Any]] = []
    for q in panel_queries(rate_window):
        try:
            result = query(q["expr"])
        except Exception as exc:  # a rejected query is a result of the check, not a crash of it
            out.append({**q, "series": 0, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            continue
        n = len(result)
        out.append({**q, "series": n, "ok": n > 0, "error": None})
    return out


def promtool_check(workdir: Path, rate_window: str = RATE_WINDOW) -> dict[str, Any]:
    """Every panel's PromQL parsed by ``promtool check rules`` (each as a recording rule in a temporary file).

    Returns ``{"ok": bool, "queries": int, "promtool": path, "output": str}``. Raises :class:`NotRunnable`
    without promtool.
    """
    promtool = shutil.which("promtool")
    if promtool is None:
        raise NotRunnable("promtool is not installed (install: apt-get install -y prometheus)")
    queries = panel_queries(rate_window)
    lines = ["groups:", "  - name: grafana_panels", "    rules:"]
    for i, q in enumerate(queries):
        lines += [f"      - record: s10:panel_query:{i}", f"        expr: {json.dumps(q['expr'])}"]
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "grafana_panel_queries.rules.yml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    return {"ok": proc.returncode == 0, "queries": len(queries), "promtool": promtool, "output": (proc.stdout + proc.stderr).strip()}
