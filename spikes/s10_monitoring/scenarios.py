"""Spike 10's scenarios: each runs every back end in turn, and stores what the measurement modules return.

A scenario is declared for one option (the ``prometheus`` carrier, as Spike 8's are for ``indexeddb``) and runs
the server once per back end inside it, so the back ends are measured side by side under the same conditions
(the overhead scenario interleaves them in every repeat); measurements are tagged ``instrument`` and the decision
reads each option's own. The work is in ``signals.py``, ``bench.py``, ``overhead.py``, ``storm.py``,
``alerts.py``, ``cardinality.py``, ``poc/dashboard.py``, ``grafana.py``, ``devtools.py`` and ``badinput.py``.
"""

from __future__ import annotations

from typing import Any

from harness.plugin import ScenarioContext, ScenarioOutput

__all__ = [
    "CARRIER",
    "run_signals",
    "run_bench",
    "run_overhead",
    "run_storm",
    "run_alerts",
    "run_cardinality",
    "run_dashboard",
    "run_devtools",
    "run_bad_input",
]

#: The option every scenario is declared for; its measurements cover every back end.
CARRIER = "prometheus"
#: A probe's echo p99 during the storm over this many times its p99 before: the server blocked (the storm's gate).
BLOCKED_RATIO = 10.0


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def run_signals(ctx: ScenarioContext) -> ScenarioOutput:
    """Which of the five signals each back end received after a scripted session."""
    from spikes.s10_monitoring import signals

    out = ScenarioOutput()
    res = signals.run_signals(dict(ctx.params), ctx.workdir)
    for instrument, r in res["instruments"].items():
        for signal, s in r["signals"].items():
            out.add("carried", "flag", [1.0 if s["carried"] else 0.0], "higher", instrument=instrument, signal=signal)
    out.facts.update(res)
    return out


def run_bench(ctx: ScenarioContext) -> ScenarioOutput:
    """Cost per call of each client library operation, on one pinned core."""
    from spikes.s10_monitoring import bench

    out = ScenarioOutput()
    res = bench.run_bench(dict(ctx.params), ctx.workdir)
    for op, e in res["ops"].items():
        if "ns_per_call" in e:
            out.add("ns_per_call", "ns", e["ns_per_call"], op=op, library=e["library"])
    out.facts.update(res)
    return out


def run_overhead(ctx: ScenarioContext) -> ScenarioOutput:
    """Every instrument against none on the same load, interleaved; one value per instrument per repeat."""
    from spikes.s10_monitoring import overhead

    out = ScenarioOutput()
    res = overhead.run_overhead(dict(ctx.params), ctx.workdir)
    names = {
        "throughput_msg_s": ("msg/s", "higher"),
        "closed_server_us_per_msg": ("us", "lower"),
        "latency_p50_ms": ("ms", "lower"),
        "latency_p99_ms": ("ms", "lower"),
        "latency_p99.9_ms": ("ms", "lower"),
        "server_rss_bytes": ("bytes", "lower"),
        "throughput_vs_none_pct": ("%", "higher"),
        "closed_server_us_per_msg_vs_none_pct": ("%", "lower"),
        "latency_p99_vs_none_pct": ("%", "lower"),
    }
    for instrument, row in res["instruments"].items():
        for key, (unit, better) in names.items():
            vals = [v for v in (_num(x) for x in row.get(key) or []) if v is not None]
            if vals:
                out.add(key.replace("p99.9", "p999"), unit, vals, better, instrument=instrument)
        out.add("client_bound", "flag", [1.0 if row.get("client_bound") else 0.0], None, instrument=instrument)
    out.facts.update({k: v for k, v in res.items() if k != "runs"})
    out.facts["runs"] = res.get("runs", [])
    return out


def run_storm(ctx: ScenarioContext) -> ScenarioOutput:
    """An error storm with each back end up, then down: received against raised, the probe, the memory."""
    from spikes.s10_monitoring import storm

    out = ScenarioOutput()
    res = storm.run_storm(dict(ctx.params), ctx.workdir)
    for backend, phases in res["results"].items():
        up = phases.get("up") or {}
        down = phases.get("down") or {}
        if "error" not in up and up.get("sent"):
            out.add("received_share", "share", [float(up["received"]) / float(up["sent"])], "higher", instrument=backend)
        # The gates read both phases: a phase that failed leaves them unmeasured (a gate not measured), never passed.
        both = all(ph and "error" not in ph for ph in (up, down))
        if both:
            unreported = sum(float(ph.get("lost") or 0) for ph in (up, down) if ph.get("silent_loss"))
            out.add("lost_unreported", "events", [unreported], instrument=backend)
        ratios = {}
        for phase, ph in (("up", up), ("down", down)):
            before, during = _num(ph.get("probe_p99_before_ms")), _num(ph.get("probe_p99_during_ms"))
            if "error" not in ph and before and during is not None:
                ratios[phase] = during / before
        if both and len(ratios) == 2:
            out.add("blocked", "flag", [1.0 if max(ratios.values()) > BLOCKED_RATIO else 0.0], instrument=backend)
        if "down" in ratios:
            out.add("down_probe_p99_ratio", "x", [ratios["down"]], instrument=backend)
        if "error" not in down and down:
            if _num(down.get("rss_delta_bytes")) is not None:
                out.add("down_rss_growth_bytes", "bytes", [float(down["rss_delta_bytes"])], instrument=backend)
    out.facts.update(res)
    return out


#: The faults for the alerts scenario: every one for prometheus_client; for OpenTelemetry (the same rules on the same
#: metric names) a clean period and the faults in ``otel_faults``, which show its exposition drives the rules alike.
ALERTS = {
    "faults": ["server-kill", "server-freeze", "redis-kill", "redis-pause-writes", "network-reset", "network-blackhole", "error-burst"],
    "otel_faults": ["server-kill", "error-burst"],
    "clean_s": 15.0,
    "hold_s": 5.0,
    "after_s": 5.0,
    "warmup_s": 5.0,
    "clients": 4,
    "rate": 10.0,
    "scrape_interval_s": 1.0,
    "evaluation_interval_s": 1.0,
}
ALERTS_QUICK = {"faults": ["server-kill", "error-burst"], "otel_faults": [], "clean_s": 3.0, "warmup_s": 3.0, "after_s": 2.0}


def run_alerts(ctx: ScenarioContext) -> ScenarioOutput:
    """Alert rules in a real Prometheus, fired by real faults: seconds to firing, false alarms in a clean run."""
    from spikes.s10_monitoring import alerts

    p = dict(ctx.params)
    out = ScenarioOutput()
    res = alerts.run_alerts({**p, "instruments": ["prometheus"]}, ctx.workdir / "prometheus")
    if p.get("otel_faults") is not None and (p["otel_faults"] or not ctx.quick):
        other = alerts.run_alerts({**p, "faults": p["otel_faults"], "instruments": ["otel"]}, ctx.workdir / "otel")
        res["instruments"].update(other["instruments"])
        res["expected_otel"] = other["expected"]
    for instrument, r in (res.get("instruments") or {}).items():
        if r.get("error"):
            continue
        clean = r.get("clean") or {}
        out.add("false_alarms", "alerts", [float(clean.get("false_alarm_count") or 0)], instrument=instrument)
        for fault in r.get("faults") or []:
            for alert in fault.get("expected") or []:
                fired = (fault.get("fired") or {}).get(alert) or {}
                secs = _num(fired.get("first_firing_s"))
                if secs is not None:
                    out.add("fault_to_firing_s", "s", [secs], instrument=instrument, fault=fault["name"], alert=alert)
            out.add("alerts_missed", "alerts", [float(len(fault.get("missed") or []))], instrument=instrument, fault=fault["name"])
            out.add("alerts_unexpected", "alerts", [float(len(fault.get("unexpected") or []))], instrument=instrument, fault=fault["name"])
    res["rules_text"] = alerts.RULES_FILE.read_text()
    out.facts.update(res)
    return out


CARDINALITY = {"instruments": ["prometheus", "otel"], "users": 10000, "batch": 200, "scrapes": 5, "settle_s": 3.0, "scrape_interval_s": 1.0}
CARDINALITY_QUICK = {"users": 500, "scrapes": 2, "settle_s": 1.0}


def run_cardinality(ctx: ScenarioContext) -> ScenarioOutput:
    """A per-user label at ``users`` users: server memory, /metrics size and scrape time, with and without it."""
    import statistics

    from spikes.s10_monitoring import cardinality

    out = ScenarioOutput()
    res = cardinality.run_cardinality(dict(ctx.params), ctx.workdir)
    for key, r in (res.get("runs") or {}).items():
        instrument, _, variant = key.partition("-")
        after = r.get("metrics_after") or {}
        if after.get("scrape_ms"):
            out.add("scrape_ms", "ms", after["scrape_ms"], instrument=instrument, label=variant)
        if _num(after.get("metrics_bytes")) is not None:
            out.add("metrics_bytes", "bytes", [float(after["metrics_bytes"])], instrument=instrument, label=variant)
        prom = r.get("prometheus") or {}
        if _num(prom.get("scrape_duration_s")) is not None:
            out.add("prometheus_scrape_s", "s", [float(prom["scrape_duration_s"])], instrument=instrument, label=variant)
        if _num(r.get("rss_delta_bytes")) is not None:
            out.add("rss_delta_bytes", "bytes", [float(r["rss_delta_bytes"])], instrument=instrument, label=variant)
        if after.get("scrape_ms"):
            r["scrape_ms_median"] = statistics.median(after["scrape_ms"])
    out.facts.update(res)
    return out


def run_dashboard(ctx: ScenarioContext) -> ScenarioOutput:
    """The custom dashboard live in Chromium (a screenshot), and the Grafana dashboard's queries against Prometheus.

    One server (prometheus_client) carries a little traffic with failing messages while a real Prometheus scrapes it
    and the custom dashboard is captured; then each Grafana panel's query runs against that Prometheus. The
    screenshot is stored in the run (base64 PNG) so the document can show it without the run's working directory.
    """
    import base64

    from harness.prometheus import PrometheusService
    from spikes.s10_monitoring import grafana
    from spikes.s10_monitoring.alerts import start_server
    from spikes.s10_monitoring.poc.dashboard import capture_dashboard

    p = ctx.params
    out = ScenarioOutput()
    server = start_server(ctx.workdir, "prometheus", name="s10-dashboard-server")
    try:
        base = f"127.0.0.1:{server.port}"
        with PrometheusService({"tabletop": [base]}, base_dir=ctx.workdir, log_path=ctx.workdir / "prometheus.log") as prom:
            png = ctx.workdir / "dashboard.png"
            traffic = {
                "ws_url": f"ws://{base}/",
                "rate_per_s": p["rate_per_s"],
                "connections": p["connections"],
                "fail_every": p["fail_every"],
            }
            capture = capture_dashboard(f"http://{base}/metrics", png, p["seconds"], traffic=traffic, workdir=ctx.workdir)
            prom.wait_scraped(timeout=30.0)
            panels = grafana.check_panels(prom.query)
            version = prom.version()
    finally:
        server.stop()
    data = png.read_bytes() if png.exists() else b""
    out.add("dashboard_snapshots", "snapshots", [float(capture.get("snapshots_received") or 0)], "higher")
    out.add("grafana_panels_with_series", "queries", [float(sum(1 for q in panels if q.get("ok")))], "higher")
    out.add("grafana_queries", "queries", [float(len(panels))], None)
    out.facts.update(
        {
            "capture": {k: v for k, v in capture.items() if k not in ("png_path",)},
            "png_base64": base64.b64encode(data).decode() if data else None,
            "grafana": {"panels": panels, "dashboard": grafana.dashboard_json(), "prometheus": version},
        }
    )
    return out


def run_devtools(ctx: ScenarioContext) -> ScenarioOutput:
    """Round trips on a DevTools custom track, read back over the DevTools protocol, with web-vitals."""
    from spikes.s10_monitoring import devtools

    out = ScenarioOutput()
    res = devtools.run_devtools(dict(ctx.params), ctx.workdir)
    out.facts.update(res)
    return out


def run_bad_input(ctx: ScenarioContext) -> ScenarioOutput:
    """Each bad input handled and counted, never a crash."""
    from spikes.s10_monitoring import badinput

    out = ScenarioOutput()
    res = badinput.run_bad_input(dict(ctx.params), ctx.workdir)
    cases = res.get("cases") or []
    out.add("bad_input_handled", "cases", [float(sum(1 for c in cases if c.get("handled")))], "higher")
    out.add("bad_input_cases", "cases", [float(len(cases))], None)
    out.facts.update(res)
    return out
