"""Spike 6's document from stored runs: what each figure is called, and what a run without the newer measurements shows.

No server runs here: the stored tiny run (taken before the baseline, drain, observer, account, cumulative PostgreSQL CPU
and capacity measurements existed) and copies of it with those measurements added by hand.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from harness.results import RunResult, load
from spikes.s06_scalability import ScalabilitySpike, marginal_cpu_per_message, pg_per_row, saturation, spike, timeline_spread
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


def test_an_older_run_says_what_it_did_not_measure():
    run = load(STORED)
    content = spike.report(run)
    title = "Targets, what was reached, and where it saturated"
    row = _row(content, title, "Few busy connections, fan-out", "lost by the stop")
    assert row[1] == "lost by the stop: after / without acknowledgement (drops not separated)"
    # Before the account the engine's count is shown, never split into the account's words it did not measure.
    assert all(c.endswith("not split: this run predates the account") for c in row[2:])
    anomalies = _row(content, title, "Few busy connections, fan-out", "duplicated / unexpected / reordered")
    assert set(anomalies[2:]) == {"not counted: this run predates the account"}
    assert not any(r[1].startswith("room observer") for r in _rows(content, title))
    pg = _row(content, "CPU, Redis, PostgreSQL and bandwidth", "Few busy connections, fan-out", "PostgreSQL CPU-s")
    assert all(c.endswith("/ not read in this run") for c in pg[2:])
    assert not any(t.title.startswith("Capacity") for t in content.tables)
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
    assert _row(content, cpu, "Many idle connections", "PostgreSQL CPU per row")[col].startswith(f"{0.5 / rows * 1e6:.0f} µs (0.50 CPU-s")
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
    assert _row(content, title, scen, "lost by the stop")[1] == "lost by the stop: after / without acknowledgement"
    assert _row(content, title, scen, "room observer: broadcasts")[col].startswith(f"{sent * 0.6:,.0f} / {sent - 3:,.0f} / {sent:,.0f}")
    assert _row(content, title, scen, "room observer: still lost")[col] == f"3 ({3 / sent:.1%} of its broadcasts)"
    # An option of the same run without the observer's numbers shows them as not measured, and nothing crashes.
    other = 2 + run.options.index("socketio-redis")
    assert _row(content, title, scen, "room observer: still lost")[other] == "not measured"
    reached, verdict = saturation(run.ok("few-busy", "native"), 2)
    assert not reached
    assert "40.0% lost by the stop: not split by acknowledgement" in verdict
    assert f"lacked {3 / sent:.1%} of the broadcasts after a 2 s drain" in verdict
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


def test_loss_is_the_harness_accounts_in_its_own_words():
    data = h.load_json(STORED)
    sent = h.value(data, "few-busy", "native", "sent")
    expected = sent * 5
    account = {
        "delivered": [[expected - 130]],
        "expected": [[expected]],
        "lost_after_ack": [[100]],
        "lost_without_ack": [[30]],
        "duplicated": [[2]],
        "unexpected": [[0]],
        "reordered": [[1]],
        # The engine's own counts disagree on purpose: the document must read the account.
        "received": [[expected]],
        "lost": [[0]],
    }
    _with(data, "few-busy", "native", account)
    run = _run(data)
    content = spike.report(run)
    title = "Targets, what was reached, and where it saturated"
    col = 2 + run.options.index("native")
    scen = "Few busy connections, fan-out"
    assert _row(content, title, scen, "deliveries / expected")[col] == f"{expected - 130:,.0f} / {expected:,.0f}"
    assert _row(content, title, scen, "lost by the stop")[col] == f"100 / 30 ({130 / expected:.2%} of expected)"
    assert _row(content, title, scen, "duplicated / unexpected / reordered")[col] == "2 / 0 / 1"
    reached, verdict = saturation(run.ok("few-busy", "native"), 2)
    assert not reached and "lost by the stop: 100 after acknowledgement, 30 without" in verdict
    # The projection brings the run to its target by the account's delivered / expected.
    costs = ScalabilitySpike.costs(run, "few-busy", "native")
    assert costs.shortfall == pytest.approx(expected / (expected - 130))


def test_postgres_cost_per_row_is_the_cumulative_reading_when_the_run_has_it():
    data = h.load_json(STORED)
    rows = h.value(data, "few-busy", "native", "pg_rows")
    # The sampler saw 0.01 CPU-s over the load; the postmaster's cumulative times, to the servers' stop, 0.9.
    _with(data, "few-busy", "native", {"postgres_cpu_seconds": [[0.01]], "postgres_cpu_total_seconds": [[0.9]]})
    run = _run(data)
    sr = run.ok("few-busy", "native")
    per_row, ok = pg_per_row(sr)
    assert per_row == pytest.approx(0.9 / rows) and ok
    assert ScalabilitySpike.costs(run, "few-busy", "native").pg_cpu_per_row == pytest.approx(0.9 / rows)
    content = spike.report(run)
    cpu = "CPU, Redis, PostgreSQL and bandwidth"
    col = 2 + run.options.index("native")
    scen = "Few busy connections, fan-out"
    assert _row(content, cpu, scen, "PostgreSQL CPU-s")[col] == "0.01 / 0.90"
    assert _row(content, cpu, scen, "PostgreSQL CPU per row")[col] == (
        f"{0.9 / rows * 1e6:.0f} µs (0.90 CPU-s / {rows:,.0f} rows, all backends to the servers' stop)"
    )
    projection = [
        r[col] for r in _rows(content, "Projection to 10k, 100k and 1M connections") if r[0] == scen and r[1] != "first hard limit"
    ]
    assert projection and not any("cores unknown" in c for c in projection)


def _with_capacity(data: dict[str, Any], option: str, repeats: list[dict[str, Any]]) -> None:
    """Add a stored capacity step for ``option``: one dict per repeat (rate, fail, at_least, why, per_s, per_core, steps)."""

    def m(name: str, key: str) -> dict[str, Any]:
        return {
            "name": name,
            "unit": "",
            "tags": {},
            "better": None,
            "repeats": [[r[key]] if r.get(key) is not None else [] for r in repeats],
        }

    data["scenarios"].append(
        {
            "scenario": "capacity",
            "option": option,
            "status": "ok",
            "reason": "",
            "params": dict(sc.CAPACITY),
            "measurements": [
                m("capacity_rate", "rate"),
                m("capacity_fail_rate", "fail"),
                m("capacity_at_least", "at_least"),
                m("capacity_deliveries_per_s", "per_s"),
                m("capacity_deliveries_per_core", "per_core"),
                m("generator_us_per_delivery", "us"),
            ],
            "facts": [{"capacity_why": r["why"], "capacity_at_least": bool(r["at_least"]), "steps": r["steps"]} for r in repeats],
            "durations_s": [30.0] * len(repeats),
        }
    )


def _step(rate: float, passed: bool, p99: float, fraction: float = 1.0, client_bound: bool = False) -> dict[str, Any]:
    return {"rate": rate, "passed": passed, "p99_ms": p99, "delivered_fraction": fraction, "client_bound": client_bound}


def test_the_capacity_table_gives_room_times_rate_per_core_and_marks_the_generators_limit():
    data = h.load_json(STORED)
    n = sc.CAPACITY["connections"]
    steps = [_step(20.0, True, 4.0), _step(63.2, False, 850.0, 0.97), _step(35.6, True, 9.0)]
    _with_capacity(
        data,
        "native",
        [
            {
                "rate": 35.6,
                "fail": 47.4,
                "at_least": 0.0,
                "why": "server",
                "per_s": 88_000.0,
                "per_core": 95_000.0,
                "us": 6.0,
                "steps": steps,
            },
            {
                "rate": 41.1,
                "fail": 47.4,
                "at_least": 0.0,
                "why": "server",
                "per_s": 99_000.0,
                "per_core": 97_000.0,
                "us": 6.0,
                "steps": steps,
            },
        ],
    )
    _with_capacity(
        data,
        "socketio",
        [
            {
                "rate": 20.0,
                "fail": None,
                "at_least": 1.0,
                "why": "generator",
                "per_s": 50_000.0,
                "per_core": 60_000.0,
                "us": 6.0,
                "steps": [],
            },
            {
                "rate": 0.0,
                "fail": 2.0,
                "at_least": 0.0,
                "why": "none passed",
                "per_s": 0.0,
                "per_core": 0.0,
                "us": 6.0,
                "steps": [_step(2.0, False, 300.0)],
            },
        ],
    )
    run = _run(data)
    content = spike.report(run)
    table = next(t for t in content.tables if t.title.startswith("Capacity"))
    rows = {r[0]: r[1:] for r in table.rows}
    native, socketio = run.options.index("native"), run.options.index("socketio")
    assert (
        rows["room size x rate held, per repeat"][native]
        == f"{n} x 35.6 msg/s (failed at 47.4 msg/s); {n} x 41.1 msg/s (failed at 47.4 msg/s)"
    )
    assert rows["room size x rate held, per repeat"][socketio] == (
        f"at least {n} x 20 msg/s (the generator's limit); none: {n} x 2 msg/s already failed"
    )
    assert rows["deliveries/s per server core"][native] == "96,000"
    assert rows["deliveries/s per server core"][socketio] == "at least 30,000"
    assert rows["deliveries/s at the capacity"][native] == "93,500"
    assert rows["the load generator"][native].startswith(
        "6.0 µs of generator CPU per delivery in the busiest step: at that cost one generator core receives ~166,667"
    )
    assert rows["steps of the first repeat (msg/s per connection)"][native].startswith("20: pass (p99 4 ms, 100.00% delivered); 63.2: fail")
    assert rows["room size x rate held, per repeat"][run.options.index("native-redis")] == "not in this run"
    assert any(c.startswith("the capacity of Socket.IO, 1 process is a lower bound") for c in content.caveats)
    assert "p99 <= 100 ms" in table.note and "99.9% of the expected deliveries" in table.note
