"""Spike 10's plugin: monitoring and observability of the tabletop server, with real back ends started here.

The plugin object ``spike`` declares the four back ends compared for the server's signals (one instrumentation
each in ``poc/instruments.py``, on the Python ``websockets`` server of Spike 1's tie), the scenarios
(``scenarios.py``) and how the stored results become the document: which back end to adopt for each of the
seed's five signals, the overhead table, completeness under an error storm, alert timings, the label budget,
the metrics to export, the dashboard (a screenshot of the custom one; the Grafana one's queries checked
against the run's Prometheus) and the DevTools integration.

The custom dashboard and the DevTools integration are measured, not scored: they show signals a back end
carries (the dashboard reads the server's ``/metrics``; DevTools measure the client), so overhead and
completeness do not apply to them, and the decision layer would drop every criterion they cannot have.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import harness.browser  # noqa: F401 - registers chromium, which scenarios require
import harness.prometheus  # noqa: F401 - registers prometheus and promtool, which scenarios require
from harness.plugin import Chart, Finding, Option, ReportContent, Scenario, Spike, Table
from harness.results import RunResult
from harness.stats import fmt_num
from spikes.s10_monitoring import scenarios as _sc
from spikes.s10_monitoring.decision import CRITERIA, GATES
from spikes.s10_monitoring.poc.launch import declared

__all__ = ["MonitoringSpike", "spike", "WEIGHTS", "SIGNAL_TITLES"]

#: Overhead is the seed's Performance; Completeness and the back end down its reliability; Alerting (measured only
#: where Prometheus runs, so left out by the decision layer's rule); the harness's Complexity.
WEIGHTS = {"Overhead": 30, "Completeness": 20, "Back end down": 15, "Alerting": 15, "Complexity": 20}

SIGNAL_TITLES = {
    "lifecycle": "Connection lifecycle",
    "flow": "Message flow",
    "errors": "Error rates",
    "latency": "Latency distribution",
    "resources": "Resource usage",
}

#: The server and the interface every back end implements: the same for every option.
_SERVER = ("poc/server.py", "poc/instruments.py", "poc/launch.py")

OPTIONS = (
    Option(
        "prometheus",
        "Prometheus (prometheus_client)",
        "counters, a gauge and a histogram in the server's own registry, exposed on /metrics; a real Prometheus scrapes it",
        (*_SERVER, "poc/inst_prometheus.py", "rules.yml"),
        ("prometheus_client",),
        ("prometheus",),
        server=declared("prometheus"),
    ),
    Option(
        "otel",
        "OpenTelemetry SDK (Prometheus exporter)",
        "the OTel metrics SDK exported through its Prometheus exporter to the same Prometheus, and one span per message handled",
        (*_SERVER, "poc/inst_otel.py", "rules.yml"),
        ("opentelemetry-sdk", "opentelemetry-exporter-prometheus"),
        ("prometheus",),
        server=declared("otel"),
    ),
    Option(
        "datadog",
        "DataDog (DogStatsD client)",
        "the `datadog` package's DogStatsD client over UDP to a local listener the harness runs (the agent and the SaaS cannot run here)",
        (*_SERVER, "poc/inst_datadog.py"),
        ("datadog",),
        server=declared("datadog"),
    ),
    Option(
        "sentry",
        "Sentry (sentry-sdk, errors)",
        "sentry-sdk's capture_exception to a local ingest endpoint the harness runs (Sentry's service cannot run here)",
        (*_SERVER, "poc/inst_sentry.py"),
        ("sentry-sdk",),
        server=declared("sentry"),
    ),
)

_ONCE = (
    "Declared for the Prometheus option, it runs the server once per back end in turn (each with its back end live: a "
    "scrape of /metrics, the DogStatsD listener or the Sentry ingest); the values are tagged by back end."
)


def _params(module: str) -> tuple[dict[str, Any], dict[str, Any]]:
    import importlib

    mod = importlib.import_module(f"spikes.s10_monitoring.{module}")
    full = dict(getattr(mod, "DEFAULT_PARAMS", {}))
    quick = dict(getattr(mod, "QUICK_PARAMS", {}))
    return full, {k: v for k, v in quick.items() if full.get(k) != v}


SCENARIOS = (
    Scenario(
        "signals",
        "The five signals, seen at each back end",
        "A scripted session (connections opened, echo messages, a join and a broadcast, failing messages that raise in the "
        "handler, one clean close and one dropped connection) against the server with each back end; a signal counts as carried "
        "when the back end received it with the values the session implies. " + _ONCE,
        _sc.run_signals,
        *_params("signals"),
        options=(_sc.CARRIER,),
        max_repeats=1,
    ),
    Scenario(
        "bench",
        "Cost per call of each client library",
        "Each operation (counter, labelled counter, pre-bound child, histogram, OTel add with and without attributes, a span, a "
        "DogStatsD packet buffered and not, a captured exception) timed in its own child process pinned to one core: `repeats` "
        "loops of `calls` calls (`slow_calls` for spans and DogStatsD, `sentry_calls` for Sentry) after a warm-up; the empty "
        "call is the baseline inside every figure.",
        _sc.run_bench,
        *_params("bench"),
        options=(_sc.CARRIER,),
        max_repeats=1,
    ),
    Scenario(
        "overhead",
        "Cost on the real server",
        "The server pinned to one core and the load engine on the other, with each back end and with none, interleaved in every "
        "repeat (none, prometheus, otel, datadog, sentry): an open-model load of `open_rate_msg_s` echo messages/s over "
        "`connections` connections for `open_s` s (latency from the intended send time, HDR histogram), then a closed loop of "
        "`window` outstanding messages per connection for `closed_s` s (throughput, and the server's CPU per message from its "
        "process times). Each figure is also given against the uninstrumented server of the same repeat. " + _ONCE,
        _sc.run_overhead,
        *_params("overhead"),
        options=(_sc.CARRIER,),
    ),
    Scenario(
        "storm",
        "Completeness under an error storm, and the back end down",
        "`errors` failing messages in `storm_s` s on one connection while a probe connection times an echo every "
        "`probe_interval_s` s: what each back end received against what the server raised (after a `drain_s` s drain and the "
        "server's flush at a graceful stop), and whether a loss was reported anywhere (sentry-sdk's client reports, the "
        "server's log). Then the same storm with the back end stopped (the ingest or listener down; for Prometheus and "
        "OpenTelemetry nothing scraping): the probe's p99 during against before (does the server block?), its memory, "
        "and what arrives once the back end is back. " + _ONCE,
        _sc.run_storm,
        *_params("storm"),
        options=(_sc.CARRIER,),
        max_repeats=1,
    ),
    Scenario(
        "alerts",
        "Alerts fired by real faults",
        "redis-server, the server with `--redis`, and a real Prometheus scraping it every `scrape_interval_s` s and evaluating "
        "`rules.yml` (checked with promtool) every `evaluation_interval_s` s; a few clients send a steady trickle through the "
        "harness's fault proxy. A clean period first (every alert that fires is a false alarm), then the harness's faults one at "
        "a time with recovery between them: the time from each fault to each expected alert firing in Prometheus's alerts API, "
        "and alerts that fired though not expected. The timings include the scrape interval, the rules' windows, the evaluation "
        "interval and each rule's `for:` (listed below).",
        _sc.run_alerts,
        _sc.ALERTS,
        _sc.ALERTS_QUICK,
        options=(_sc.CARRIER,),
        requires=("prometheus", "promtool", "redis-server"),
        max_repeats=1,
    ),
    Scenario(
        "cardinality",
        "A per-user label",
        "`users` users each send a message over their own WebSocket connection, to the server with a per-user label on a message "
        "counter and without it (prometheus_client and OpenTelemetry): the server's memory, the size of /metrics and the time to "
        "scrape it, and what a real Prometheus says of the scrape (its duration, samples and series).",
        _sc.run_cardinality,
        _sc.CARDINALITY,
        _sc.CARDINALITY_QUICK,
        options=(_sc.CARRIER,),
        requires=("prometheus",),
        max_repeats=1,
    ),
    Scenario(
        "dashboard",
        "The custom dashboard and the Grafana dashboard as code",
        "The custom dashboard (a page beside the server, live charts of the five signals over SSE from its /metrics) opened in "
        "Chromium while the server carries load, and captured as a screenshot; the Grafana dashboard built with Grafana's "
        "foundation SDK, each panel's query run against the run's Prometheus (no Grafana server runs here: the JSON is not "
        "rendered).",
        _sc.run_dashboard,
        {"seconds": 10.0, "rate_per_s": 50.0, "connections": 4, "fail_every": 20},
        {"seconds": 5.0},
        options=(_sc.CARRIER,),
        requires=("chromium", "prometheus"),
        max_repeats=1,
    ),
    Scenario(
        "devtools",
        "Browser DevTools integration",
        "A client page sends echo messages over a WebSocket and marks each round trip with performance.measure on a DevTools "
        "custom track; the harness reads the measures back over the DevTools protocol (and in a trace), with web-vitals "
        "(pinned by an npm lock), in Chromium.",
        _sc.run_devtools,
        *_params("devtools"),
        options=(_sc.CARRIER,),
        requires=("chromium", "node", "npm"),
        max_repeats=1,
    ),
    Scenario(
        "bad-input",
        "Bad input",
        "A label value with a newline and one of 10 KB, a metric name registered twice, malformed DogStatsD datagrams, an "
        "oversized Sentry event: each handled and counted, and the next good input still works.",
        _sc.run_bad_input,
        *_params("badinput"),
        options=(_sc.CARRIER,),
        max_repeats=1,
    ),
)


def _carrier(run: RunResult, scenario: str) -> Any:
    return run.ok(scenario, _sc.CARRIER)


def _fact(sr: Any) -> dict[str, Any]:
    return sr.fact if sr is not None else {}


def _name_difference(sr: Any) -> str:
    """How the OpenTelemetry server's metric names differed from prometheus_client's, from the signals scenario."""
    inst = _fact(sr).get("instruments") or {}
    prom = {f["name"] for f in (inst.get("prometheus") or {}).get("families") or []}
    otel = {f["name"] for f in (inst.get("otel") or {}).get("families") or []}
    if not prom or not otel:
        return "The OpenTelemetry server's names were not read in this run."
    only_prom, only_otel = sorted(prom - otel), sorted(otel - prom)
    if not only_prom and not only_otel:
        return "The OpenTelemetry server exposed the same names."
    return (
        "The OpenTelemetry server exposed the same tabletop names; it lacked "
        + (", ".join(f"`{n}`" for n in only_prom) or "nothing")
        + " and added "
        + (", ".join(f"`{n}`" for n in only_otel) or "nothing")
        + " (and `otel_scope_*` labels on every series)."
    )


class MonitoringSpike(Spike):
    """Prometheus vs OpenTelemetry vs DataDog (DogStatsD) vs Sentry for the tabletop server's signals."""

    number = 10
    slug = "monitoring"
    title = "Monitoring and Observability"
    priority = "nice"
    planned_hours = 3
    question = (
        "How should the tabletop's real-time server be monitored (connection lifecycle, message flow, error rates, latency "
        "distribution, resource usage): with Prometheus, OpenTelemetry, DataDog or Sentry, a custom dashboard, the browser's "
        "DevTools; what does each cost the server, what does it lose, and which alerts fire on real faults?"
    )
    options = OPTIONS
    scenarios = SCENARIOS
    weights = WEIGHTS
    criteria = CRITERIA
    gates = GATES
    default_repeat = 3
    quick_repeat = 1
    package_dir = Path(__file__).parent

    def report(self, run: RunResult) -> ReportContent:
        content = ReportContent()
        titles = {o.key: o.title for o in self.options}
        self._per_signal(run, titles, content)
        self._overhead(run, titles, content)
        self._bench(run, content)
        self._storm(run, titles, content)
        self._alerts(run, titles, content)
        self._cardinality(run, titles, content)
        self._metrics_to_export(run, content)
        self._dashboard(run, content)
        self._devtools(run, content)
        self._bad_input(run, content)
        return content

    # -- alerts ------------------------------------------------------------------------------------------------------

    def _alerts(self, run: RunResult, titles: dict[str, str], content: ReportContent) -> None:
        sr = _carrier(run, "alerts")
        if sr is None:
            return
        rows = []
        for instrument, r in (sr.fact.get("instruments") or {}).items():
            if r.get("error"):
                rows.append([titles.get(instrument, instrument), "-", "-", f"failed: {str(r['error'])[:200]}", "", ""])
                continue
            clean = r.get("clean") or {}
            rows.append(
                [
                    titles.get(instrument, instrument),
                    f"clean run ({fmt_num(clean.get('duration_s') or 0)} s)",
                    "none",
                    "-",
                    f"{fmt_num(clean.get('false_alarm_count') or 0)} false alarms",
                    ", ".join(clean.get("pending_seen") or []) or "-",
                ]
            )
            for f in r.get("faults") or []:
                fired = f.get("fired") or {}
                shown = "; ".join(
                    f"{a} {fmt_num(float((fired.get(a) or {})['first_firing_s']), 's')}"
                    if (fired.get(a) or {}).get("first_firing_s") is not None
                    else f"{a} **missed**"
                    for a in f.get("expected") or []
                )
                rows.append(
                    [
                        titles.get(instrument, instrument),
                        f["name"],
                        ", ".join(f.get("expected") or []) or "none",
                        shown or "-",
                        ", ".join(f.get("unexpected") or []) or "none",
                        ", ".join(f.get("pending_only") or []) or "-",
                    ]
                )
        if "otel" not in (sr.fact.get("instruments") or {}):  # the quick profile's otel_faults is empty: said, not dropped
            rows.append([titles.get("otel", "otel"), "-", "-", "not run: this run's `otel_faults` parameter is empty", "", ""])
        settings: dict[str, Any] = (
            next((r.get("settings") for r in (sr.fact.get("instruments") or {}).values() if r.get("settings")), {}) or {}
        )
        check = sr.fact.get("promtool_check") or {}
        content.tables.append(
            Table(
                "Alerts fired by real faults (seconds from the fault's start to firing in Prometheus)",
                ["Back end", "Fault", "Expected alerts", "Fired after", "Fired though not expected", "Pending only"],
                rows,
                f"Prometheus {sr.fact.get('prometheus_version', '')}, scrape every {settings.get('scrape_interval_s', '')} s, rules "
                f"evaluated every {settings.get('evaluation_interval_s', '')} s; each timing includes the scrape interval, the "
                "rule's window and its `for:` (the rules, shrunk for a test run, are below). `promtool check rules`: "
                f"{'passed' if check.get('ok') else 'failed'}. Alerting runs where Prometheus runs: DataDog's monitors and Sentry's "
                "alert rules need their services, which cannot run here (not measured).",
            )
        )
        text = sr.fact.get("rules_text")
        if text:
            content.notes.append("The alert rules as run (`rules.yml`):\n\n```yaml\n" + text.strip() + "\n```")

    # -- cardinality ---------------------------------------------------------------------------------------------------

    def _cardinality(self, run: RunResult, titles: dict[str, str], content: ReportContent) -> None:
        sr = _carrier(run, "cardinality")
        if sr is None:
            return
        runs = sr.fact.get("runs") or {}
        users = sr.fact.get("users")
        rows = []
        for r in runs.values():
            after = r.get("metrics_after") or {}
            prom = r.get("prometheus") or {}
            ms = after.get("scrape_ms") or []
            rows.append(
                [
                    titles.get(r.get("instrument", ""), r.get("instrument", "")),
                    "per-user label" if r.get("user_labels") else "no user label",
                    fmt_num(after.get("user_series") or 0),
                    fmt_num(after.get("sample_lines") or 0),
                    fmt_num((after.get("metrics_bytes") or 0) / 1024, "KiB"),
                    fmt_num(statistics.median(ms), "ms") if ms else "n/a",
                    fmt_num((prom.get("scrape_duration_s") or 0) * 1000, "ms") if prom.get("scrape_duration_s") is not None else "n/a",
                    fmt_num((r.get("rss_delta_bytes") or 0) / 1024 / 1024, "MiB") if r.get("rss_delta_bytes") is not None else "n/a",
                ]
            )
        budget = []
        for inst in ("prometheus", "otel"):
            a, b = runs.get(f"{inst}-users") or {}, runs.get(f"{inst}-nolabel") or {}
            ma, mb = (a.get("metrics_after") or {}), (b.get("metrics_after") or {})
            n = ma.get("user_series") or 0
            if not n or not ma.get("scrape_ms") or not mb.get("scrape_ms"):
                continue
            base = statistics.median(mb["scrape_ms"])
            per = (statistics.median(ma["scrape_ms"]) - base) / n
            mem = ((a.get("rss_delta_bytes") or 0) - (b.get("rss_delta_bytes") or 0)) / n
            at_100 = (100.0 - base) / per if per > 0 else None
            memory = (
                f"{fmt_num(mem)} bytes of server memory"
                if mem > 0
                else "no server memory separable from the connections' own churn (the two runs' RSS growth differ by less)"
            )
            capped = (
                f" (it kept {fmt_num(n)} series for {fmt_num(users or 0)} users: the SDK's cardinality limit folds every further "
                "attribute set into one overflow series, `otel_metric_overflow`, so per-user counts are silently merged)"
                if users and n < users
                else ""
            )
            budget.append(
                f"{titles.get(inst, inst)}{capped}: each labelled series added {fmt_num(per * 1000)} us to a scrape of /metrics and "
                f"{memory} (the difference between the two runs over {fmt_num(n)} series); at that rate a scrape reaches 100 ms at "
                f"about {fmt_num(at_100) if at_100 else 'n/a'} series per server process (a linear projection from one measured "
                "point, not measured there)"
            )
        content.tables.append(
            Table(
                f"A per-user label at {fmt_num(users or 0)} users",
                [
                    "Back end",
                    "Variant",
                    "User series",
                    "Samples per scrape",
                    "/metrics size",
                    "GET /metrics (median)",
                    "Prometheus scrape duration",
                    "Server RSS growth",
                ],
                rows,
                "Each user is one WebSocket connection sending one message; RSS growth includes those connections' own churn, which "
                "varies from run to run by more than a label's series cost here, so memory per series is not separable. Label budget: "
                + ("; ".join(budget) if budget else "not derivable from this run")
                + ". Keep user and room ids out of labels (put them in logs, traces or Sentry tags); export per-server totals.",
            )
        )

    # -- the metrics to export ---------------------------------------------------------------------------------------

    def _metrics_to_export(self, run: RunResult, content: ReportContent) -> None:
        sr = _carrier(run, "signals")
        fams = ((_fact(sr).get("instruments") or {}).get("prometheus") or {}).get("families") or []
        if not fams:
            return
        signal_of = {
            "tabletop_connections": "lifecycle",
            "tabletop_connections_opened": "lifecycle",
            "tabletop_connections_closed": "lifecycle",
            "tabletop_messages": "flow",
            "tabletop_message_bytes": "flow",
            "tabletop_errors": "errors",
            "tabletop_handle_seconds": "latency",
            "tabletop_event_loop_lag_seconds": "latency",
            "tabletop_dependency_up": "errors",
        }
        rows = []
        for f in fams:
            name = f["name"]
            signal = signal_of.get(name) or ("resources" if name.startswith("process_") else "")
            if not signal:
                continue
            shown = name + ("_total" if f["type"] == "counter" else "")
            rows.append([f"`{shown}`", f["type"], ", ".join(f"`{x}`" for x in f["labels"]) or "-", SIGNAL_TITLES[signal], f["help"]])
        content.tables.append(
            Table(
                "The metrics to export (as the server exposed them in this run)",
                ["Name", "Type", "Labels", "Signal", "Why (the metric's help text)"],
                rows,
                "Read from the prometheus_client server's /metrics after the scripted session. "
                + _name_difference(sr)
                + " Every label has a bounded set of values (op: 5, kind: 5, code_class: 2): a per-user or per-room label is what "
                "the cardinality table prices.",
            )
        )

    # -- dashboard, DevTools, bad input ------------------------------------------------------------------------------

    def _dashboard(self, run: RunResult, content: ReportContent) -> None:
        sr = _carrier(run, "dashboard")
        if sr is None:
            return
        cap = sr.fact.get("capture") or {}
        content.charts.append(
            Chart(
                "dashboard",
                "The custom dashboard, live from /metrics (a screenshot taken during the run)",
                "image",
                "",
                {"png_base64": [sr.fact.get("png_base64")]},
                caption=(
                    f"Chromium {cap.get('chromium_version', '')} headless, {cap.get('png_width')}x{cap.get('png_height')}; "
                    f"{cap.get('snapshots_received')} live snapshots over SSE in {fmt_num(cap.get('data_span_s') or 0)} s; "
                    f"rendering: {cap.get('rendering', 'unknown')}."
                ),
            )
        )
        graf = sr.fact.get("grafana") or {}
        rows = [
            [
                q.get("panel", ""),
                q.get("legend", ""),
                f"`{q.get('expr', '')}`",
                fmt_num(q.get("series") or 0),
                "yes" if q.get("ok") else f"**no** {q.get('error') or ''}",
            ]
            for q in graf.get("panels") or []
        ]
        content.tables.append(
            Table(
                "The Grafana dashboard as code: every panel's query against this run's Prometheus",
                ["Panel", "Series", "Query", "Series returned", "Returns data"],
                rows,
                f"Built with grafana-foundation-sdk; queried in Prometheus {graf.get('prometheus', '')} while the server carried "
                "traffic. No Grafana server runs here: the JSON was not rendered by Grafana.",
            )
        )

    def _devtools(self, run: RunResult, content: ReportContent) -> None:
        sr = _carrier(run, "devtools")
        if sr is None:
            return
        f = sr.fact
        vitals = f.get("web_vitals") or {}
        rows = [
            ["round trips sent by the page", fmt_num(f.get("sent") or 0)],
            [
                "measures read back over the DevTools protocol",
                f"{fmt_num(f.get('measures_read_cdp') or 0)} ({fmt_num(f.get('measures_on_track_cdp') or 0)} on the custom track)",
            ],
            [
                "round trip p50 / p99 / max (from the measures)",
                f"{fmt_num(f.get('rtt_p50_ms'), 'ms')} / {fmt_num(f.get('rtt_p99_ms'), 'ms')} / {fmt_num(f.get('rtt_max_ms'), 'ms')}"
                if f.get("rtt_p50_ms") is not None
                else "n/a",
            ],
            [
                "custom-track entries in a DevTools trace",
                fmt_num(f.get("trace_echo_measures_with_track_detail") or 0)
                + f" of {fmt_num(f.get('trace_echo_measures') or 0)} measures traced",
            ],
        ]
        for name, v in vitals.items():
            unit = "" if name == "CLS" else "ms"
            value = v.get("value")
            shown = fmt_num(float(value), unit) if isinstance(value, (int, float)) else "n/a"
            rows.append([f"web-vitals {name}", f"{shown} ({v.get('rating', '')})"])
        if f.get("web_vitals_not_reported"):
            rows.append(["web-vitals not reported", ", ".join(f["web_vitals_not_reported"])])
        content.tables.append(
            Table(
                f"Browser DevTools integration (Chromium {f.get('chromium_version', '')}, web-vitals {f.get('web_vitals_version', '')})",
                ["What", "Measured"],
                rows,
                "performance.measure entries with detail.devtools draw on a 'Tabletop' track of the Performance panel; the harness read "
                "them through a DevTools protocol session, as an automated check or a CI job would.",
            )
        )

    def _bad_input(self, run: RunResult, content: ReportContent) -> None:
        sr = _carrier(run, "bad-input")
        if sr is None:
            return
        rows = [
            [c.get("case", ""), c.get("library", ""), "yes" if c.get("handled") else "**no**", str(c.get("outcome", ""))[:300]]
            for c in sr.fact.get("cases") or []
        ]
        content.tables.append(
            Table("Bad input: each case handled and counted", ["Case", "Library or receiver", "Handled", "What happened"], rows)
        )

    # -- which back end for which signal ---------------------------------------------------------------------------

    def _per_signal(self, run: RunResult, titles: dict[str, str], content: ReportContent) -> None:
        sr = _carrier(run, "signals")
        if sr is None:
            return
        from harness.decide import evaluate

        decision = evaluate(self, run)
        totals = decision.totals
        gate_ok = {o: o in decision.eligible for o in decision.options}
        inst = sr.fact.get("instruments") or {}
        rows = []
        for signal, title in SIGNAL_TITLES.items():
            carriers = [o for o in titles if ((inst.get(o) or {}).get("signals") or {}).get(signal, {}).get("carried")]
            eligible = [o for o in carriers if gate_ok.get(o, True)]
            ranked = sorted(eligible, key=lambda o: -(totals.get(o) or 0.0))
            tied = [o for o in ranked if o in decision.tied_with] if ranked and ranked[0] in decision.tied_with else []
            if len(tied) > 1:
                pick = "tie within noise: " + " / ".join(titles[o] for o in tied)
            else:
                pick = titles[ranked[0]] if ranked else "none measured"
            evidence = "; ".join(f"{titles[o]}: {inst[o]['signals'][signal]['evidence']}" for o in carriers)
            rows.append([title, ", ".join(titles[o] for o in carriers) or "none", pick, evidence])
        content.tables.append(
            Table(
                "Which back end for each signal (measured)",
                [
                    "Signal",
                    "Carried by (seen at the back end)",
                    "Adopt (best total among those that carry it and pass the gates)",
                    "Evidence",
                ],
                rows,
                "A back end carries a signal when the back end itself received it, with the values a scripted session implies.",
            )
        )

    # -- overhead ----------------------------------------------------------------------------------------------------

    def _overhead(self, run: RunResult, titles: dict[str, str], content: ReportContent) -> None:
        sr = _carrier(run, "overhead")
        if sr is None:
            return

        def vals(name: str, inst: str) -> list[float]:
            return [v for m in sr.find(name) if m.tags.get("instrument") == inst for v in m.samples]

        def cell(name: str, inst: str, unit: str = "", signed: bool = False) -> str:
            v = vals(name, inst)
            if not v:
                return "n/a"
            med = statistics.median(v)
            shown = f"{med:+.1f}%" if signed else fmt_num(med, unit)
            return shown + (f" ({fmt_num(min(v))}-{fmt_num(max(v))})" if len(v) > 1 and not signed else "")

        rows = []
        for inst in ("none", *titles):
            bound = any(v > 0 for v in vals("client_bound", inst))
            rows.append(
                [
                    "no instrumentation" if inst == "none" else titles[inst],
                    cell("throughput_msg_s", inst, "msg/s") + (" (generator-bound)" if bound else ""),
                    "-" if inst == "none" else cell("throughput_vs_none_pct", inst, signed=True),
                    cell("closed_server_us_per_msg", inst, "us"),
                    "-" if inst == "none" else cell("closed_server_us_per_msg_vs_none_pct", inst, signed=True),
                    cell("latency_p50_ms", inst, "ms"),
                    cell("latency_p99_ms", inst, "ms"),
                    "-" if inst == "none" else cell("latency_p99_vs_none_pct", inst, signed=True),
                ]
            )
        content.tables.append(
            Table(
                "Overhead on the real server (median over repeats, range in brackets)",
                [
                    "Back end",
                    "Closed-loop throughput",
                    "vs none",
                    "Server CPU per message",
                    "vs none",
                    "Open-model p50",
                    "Open-model p99",
                    "p99 vs none",
                ],
                rows,
                "Each repeat ran every back end once, in the same order, so drift on the machine reaches them alike; 'vs none' is "
                "against the uninstrumented server of the same repeat, median over the repeats. A throughput marked generator-bound "
                "is the load generator's limit, not the server's: the server's CPU per message is the figure to read there. The load "
                "is echo messages without errors: Sentry's figure is the cost of having its SDK installed, which does nothing per "
                "message (its cost per error is in the storm table); OpenTelemetry's includes one span per message, which "
                "prometheus_client does not trace (a span alone costs the most of any call in the cost-per-call table).",
            )
        )
        series: dict[str, list[Any]] = {"p99 vs none": [], "server CPU per message vs none": []}
        for inst in titles:
            p99 = vals("latency_p99_vs_none_pct", inst)
            cpu = vals("closed_server_us_per_msg_vs_none_pct", inst)
            series["p99 vs none"].append(statistics.median(p99) if p99 else None)
            series["server CPU per message vs none"].append(statistics.median(cpu) if cpu else None)
        content.charts.append(
            Chart(
                "overhead",
                "Cost of each back end on the server, against none",
                "bar",
                "% change",
                series,
                categories=[titles[i] for i in titles],
                caption="Medians over the repeats of the same-repeat comparison with the uninstrumented server.",
                spread={
                    name: [(min(v), max(v)) if len(v := vals(key, inst)) > 1 else None for inst in titles]
                    for name, key in (
                        ("p99 vs none", "latency_p99_vs_none_pct"),
                        ("server CPU per message vs none", "closed_server_us_per_msg_vs_none_pct"),
                    )
                },
            )
        )

    # -- cost per call -------------------------------------------------------------------------------------------------

    def _bench(self, run: RunResult, content: ReportContent) -> None:
        sr = _carrier(run, "bench")
        if sr is None:
            return
        ops = sr.fact.get("ops") or {}
        rows = []
        for op, e in ops.items():
            if "error" in e:
                rows.append([op, e.get("library", ""), e.get("what", ""), f"failed: {str(e['error'])[:200]}", "", ""])
                continue
            rows.append(
                [
                    op,
                    e["library"],
                    e["what"],
                    fmt_num(e["median_ns"], "ns"),
                    f"{fmt_num(e['min_ns'])}-{fmt_num(e['max_ns'])}",
                    fmt_num(e.get("median_net_ns", e["median_ns"]), "ns"),
                ]
            )
        versions = sr.fact.get("versions") or {}
        content.tables.append(
            Table(
                f"Cost per call on one pinned core (core {sr.fact.get('core')})",
                ["Operation", "Library", "What is called", "Median per call", "Range over repeats", "Minus the empty call"],
                rows,
                "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ". Published anchors to compare with (not "
                "measured here): the Prometheus Go client adds to a counter in about 7 ns and OpenTelemetry Go in about 72 ns "
                "(opentelemetry-go#5542).",
            )
        )

    # -- storm -----------------------------------------------------------------------------------------------------------

    def _storm(self, run: RunResult, titles: dict[str, str], content: ReportContent) -> None:
        sr = _carrier(run, "storm")
        if sr is None:
            return
        rows = []
        for backend, phases in (sr.fact.get("results") or {}).items():
            for phase, r in phases.items():
                if "error" in r:
                    rows.append([titles.get(backend, backend), phase, f"failed: {str(r['error'])[:200]}", "", "", "", "", ""])
                    continue
                reported = "yes" if r.get("loss_reported") else ("nothing lost" if not r.get("lost") else "**no**")
                rows.append(
                    [
                        titles.get(backend, backend),
                        "back end up" if phase == "up" else "back end down",
                        f"{fmt_num(r.get('received') or 0)} / {fmt_num(r.get('sent') or 0)}",
                        f"{fmt_num(r.get('lost') or 0)} ({fmt_num(r.get('lost_pct') or 0)}%)",
                        reported,
                        f"{fmt_num(r.get('probe_p99_before_ms'), 'ms') if r.get('probe_p99_before_ms') is not None else 'n/a'} -> "
                        f"{fmt_num(r.get('probe_p99_during_ms'), 'ms') if r.get('probe_p99_during_ms') is not None else 'n/a'}",
                        fmt_num((r.get("rss_delta_bytes") or 0) / 1024 / 1024, "MiB"),
                        fmt_num((r.get("received") or 0) - (r.get("received_while_down") or 0)) if phase == "down" else "-",
                    ]
                )
        p = sr.params if hasattr(sr, "params") else {}
        content.tables.append(
            Table(
                "Error storm: received against raised, with the back end up and down",
                [
                    "Back end",
                    "Phase",
                    "Received / raised",
                    "Lost",
                    "Loss reported",
                    "Probe echo p99 before -> during",
                    "Server RSS growth",
                    "Arrived once the back end was back",
                ],
                rows,
                f"{p.get('errors', '')} errors in {p.get('storm_s', '')} s. For Prometheus and OpenTelemetry 'received' is the "
                "error counter read from /metrics after the storm (a pull back end down means nothing scraped during it; the "
                "counter still holds the count).",
            )
        )
        for backend, phases in (sr.fact.get("results") or {}).items():
            up = phases.get("up") or {}
            if up.get("lost"):
                content.findings.append(
                    Finding(
                        backend,
                        False,
                        f"lost {fmt_num(up['lost'])} of {fmt_num(up.get('sent') or 0)} error events in a {p.get('storm_s', '')} s storm "
                        f"with its back end up ({'reported' if up.get('loss_reported') else 'not reported anywhere'})",
                    )
                )


spike = MonitoringSpike()
