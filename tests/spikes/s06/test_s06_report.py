"""Spike 6's document from stored runs: what each figure is called, and what a run without the newer measurements shows.

No server runs here: the stored tiny run (taken before the baseline, drain and observer measurements existed) and
copies of it with those measurements added by hand.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from harness.results import RunResult, load
from spikes.s06_scalability import marginal_cpu_per_message, pg_per_row, saturation, spike, timeline_spread
from spikes.s06_scalability import scenarios as sc
from tests.spikes import handcheck as h

STORED = Path(__file__).parent / "data" / "tiny-run.json"


def _rows(content: Any, title: str) -> list[list[str]]:
    return next(t for t in content.tables if t.title == title).rows


def _row(content: Any, title: str, scenario: str, label: str) -> list[str]:
    return next(r for r in _rows(content, title) if r[0] == scenario and r[1].startswith(label))


def _with(data: dict[str, Any], scenario: str, option: str, values: dict[str, list[list[float]]]) -> None:
    """Set (or add) measurements of one stored step: name -> repeats."""
    sr = next(s for s in data["scenarios"] if s["scenario"] == scenario and s["option"] == option)
    for name, repeats in values.items():
        for m in sr["measurements"]:
            if m["name"] == name:
                m["repeats"] = repeats
                break
        else:
            sr["measurements"].append({"name": name, "unit": "", "tags": {}, "better": None, "repeats": repeats})


def _run(data: dict[str, Any]) -> RunResult:
    return RunResult.from_dict(copy.deepcopy(data))


def test_an_older_run_says_what_it_did_not_measure_and_never_calls_undelivered_lost():
    run = load(STORED)
    content = spike.report(run)
    text = "\n".join(" | ".join(r) for t in content.tables for r in t.rows) + "\n".join(t.note for t in content.tables)
    assert "messages lost" not in text and "% lost" not in text
    row = _row(content, "Targets, what was reached, and where it saturated", "Few busy connections, fan-out", "undelivered")
    assert row[1] == "undelivered when the run stopped (drops not separated)"
    assert not any(r[1].startswith("room observer") for r in _rows(content, "Targets, what was reached, and where it saturated"))
    cpu = "CPU, Redis, PostgreSQL and bandwidth"
    base = _row(content, cpu, "Many idle connections", "server processes with no client connected")
    assert set(base[2:]) == {"not measured in this run"}
    marginal = _row(content, cpu, "Many idle connections", "server CPU per message in, above the baseline")
    assert all(c.startswith("not measured (no baseline in this run") for c in marginal[2:])
    assert all(marginal_cpu_per_message(run.ok("many-idle", o)) is None for o in run.options)


def test_postgres_cost_per_row_below_the_samplers_resolution_is_not_given_as_a_number():
    data = h.load_json(STORED)
    _with(data, "few-busy", "native", {"postgres_cpu_seconds": [[0.03]]})
    _with(data, "many-idle", "native", {"postgres_cpu_seconds": [[0.5]]})
    run = _run(data)
    assert sc.PG_CPU_RESOLUTION_S == 0.1
    per_row, ok = pg_per_row(run.ok("few-busy", "native"))
    assert per_row == pytest.approx(0.03 / run.ok("few-busy", "native").median("pg_rows")) and not ok
    content = spike.report(run)
    cpu = "CPU, Redis, PostgreSQL and bandwidth"
    col = 2 + run.options.index("native")
    assert _row(content, cpu, "Few busy connections, fan-out", "PostgreSQL CPU per row")[col].startswith(
        "below measurement resolution (0.03 CPU-s"
    )
    rows = run.ok("many-idle", "native").median("pg_rows")
    assert _row(content, cpu, "Many idle connections", "PostgreSQL CPU per row")[col] == f"{0.5 / rows * 1e6:.0f} µs"
    projection = _rows(content, "Projection to 10k, 100k and 1M connections")
    few = [r[col] for r in projection if r[0] == "Few busy connections, fan-out" and r[1] != "first hard limit"]
    assert few and all("cores unknown (per-row cost below measurement resolution)" in c for c in few)
    idle = [r[col] for r in projection if r[0] == "Many idle connections" and r[1] != "first hard limit"]
    assert not any("below measurement resolution" in c for c in idle)


def test_baseline_and_marginal_cpu_per_message_come_from_the_stored_numbers():
    data = h.load_json(STORED)
    run0 = load(STORED)
    sr0 = run0.ok("many-idle", "native")
    busy, wall, msgs = sr0.median("server_cpu_seconds"), sr0.median("load_wall_s"), sr0.median("messages_in")
    idle = busy / wall / 4  # a quarter of the loaded CPU was there with nobody connected
    _with(data, "many-idle", "native", {"server_idle_cpu_cores": [[idle]], "server_idle_window_s": [[1.0]]})
    _with(data, "burst", "native", {"server_idle_cpu_cores": [[busy * 10]], "server_idle_window_s": [[1.0]]})
    run = _run(data)
    expected = (busy - idle * wall) / msgs
    assert marginal_cpu_per_message(run.ok("many-idle", "native")) == pytest.approx(expected)
    content = spike.report(run)
    cpu = "CPU, Redis, PostgreSQL and bandwidth"
    col = 2 + run.options.index("native")
    assert _row(content, cpu, "Many idle connections", "server CPU per message in, above the baseline")[col] == f"{expected * 1e6:.0f} µs"
    assert _row(content, cpu, "Many idle connections", "server processes with no client connected")[col] == f"{idle:.3f} (over 1 s)"
    # A baseline above the loaded CPU is noise, not a negative cost.
    assert _row(content, cpu, "Connection burst", "server CPU per message in, above the baseline")[col] == "none above the baseline's noise"


def test_the_room_observer_separates_backlog_from_drops():
    data = h.load_json(STORED)
    sr = next(s for s in data["scenarios"] if s["scenario"] == "few-busy" and s["option"] == "native")
    sent = h.value(data, "few-busy", "native", "sent")
    members = 5
    received = sent * members * 0.6
    values = {
        "received": [[received]],
        "lost": [[sent * members - received]],
        "drain_s": [[2.0]],
        "grace_s": [[0.5]],
        "observer_expected": [[sent]],
        "observer_received_at_stop": [[sent * 0.6]],
        "observer_received_after_drain": [[sent - 3]],
        "observer_undelivered_after_drain": [[3]],
        "observer_drain_used_s": [[2.0]],
    }
    _with(data, "few-busy", "native", values)
    assert sr["params"]["connections"] == members
    run = _run(data)
    content = spike.report(run)
    title = "Targets, what was reached, and where it saturated"
    col = 2 + run.options.index("native")
    scen = "Few busy connections, fan-out"
    assert _row(content, title, scen, "undelivered")[1] == "undelivered when the run stopped"
    assert _row(content, title, scen, "room observer: broadcasts")[col].startswith(f"{sent * 0.6:,.0f} / {sent - 3:,.0f} / {sent:,.0f}")
    assert _row(content, title, scen, "room observer: never")[col] == f"3 ({3 / sent:.1%} of its broadcasts)"
    # An option of the same run without the observer's numbers shows them as not measured, and nothing crashes.
    other = 2 + run.options.index("socketio-redis")
    assert _row(content, title, scen, "room observer: never")[other] == "not measured"
    reached, verdict = saturation(run.ok("few-busy", "native"), 2)
    assert not reached
    assert "40.0% undelivered when the run stopped" in verdict and f"lacked {3 / sent:.1%} of the broadcasts after a 2 s drain" in verdict
    note = next(t.note for t in content.tables if t.title == title)
    assert "0.5 s after its send schedule ended" in note and "up to 2 s" in note


def test_canary_caption_counts_the_probes_left_at_the_stop_and_those_answered_in_the_drain():
    data = h.load_json(STORED)
    _with(
        data,
        "few-busy",
        "native",
        {
            "canary_sent": [[40.0]],
            "canary_unanswered_at_stop": [[12.0]],
            "canary_answered_in_drain": [[12.0]],
            "canary_lost": [[0.0]],
            "drain_s": [[2.0]],
            "timeline_canary_latency_ms": [[5.0, 1000.0, 2400.0]],
            "timeline_canary_t_s": [[0.2, 0.4, 0.6]],
        },
    )
    content = spike.report(_run(data))
    chart = next(c for c in content.charts if c.slug == "few-busy-latency")
    assert (
        "Native WebSocket, 1 process: 12 of 40 probes unanswered when the run stopped; 12 of them answered within a 2 s drain"
        in chart.caption
    )
    assert "latency reached 2,400 ms" in chart.caption and "~12 probes in flight" in chart.caption
    # Old runs: no drain measured, and every probe answered in the stored tiny run.
    old = next(c for c in spike.report(load(STORED)).charts if c.slug == "few-busy-latency")
    assert "Every probe was answered." in old.caption


def test_every_chart_has_a_spread_aligned_with_its_points():
    run = load(STORED)
    for chart in spike.report(run).charts:
        assert set(chart.spread) == set(chart.series), chart.slug
        for name, points in chart.series.items():
            assert len(chart.spread[name]) == len(points), (chart.slug, name)
        assert not chart.has_spread  # one repeat: no whiskers, and the document says so


def test_timeline_spread_is_the_range_over_repeats_at_each_sample_time():
    data = h.load_json(STORED)
    sr = next(s for s in data["scenarios"] if s["scenario"] == "few-busy" and s["option"] == "native")
    ts = next(m for m in sr["measurements"] if m["name"] == "timeline_t_s")["repeats"][0]
    rss = next(m for m in sr["measurements"] if m["name"] == "timeline_server_rss_bytes")["repeats"][0]
    # A second repeat, one sample shorter, every value 1 MiB higher.
    _with(data, "few-busy", "native", {"timeline_t_s": [ts, ts[:-1]], "timeline_server_rss_bytes": [rss, [v + 2**20 for v in rss[:-1]]]})
    run = _run(data)
    spread = timeline_spread(run.ok("few-busy", "native"), "timeline_t_s", "timeline_server_rss_bytes", 1 / 2**20)
    assert len(spread) == len(ts)
    assert spread[0] == pytest.approx((rss[0] / 2**20, rss[0] / 2**20 + 1))
    assert spread[-1] is None  # only the first repeat has the last sample time
    chart = next(c for c in spike.report(run).charts if c.slug == "few-busy-memory")
    assert chart.has_spread and "whiskers at up to" in chart.caption
