"""Spike 10's overhead measurement: run order, percentages and the summary in plain Python, then a tiny real run."""

from __future__ import annotations

import json

import pytest

from spikes.s10_monitoring import overhead
from tests.utils import UNIT

# -- plain Python ------------------------------------------------------------------------------------------------------


def test_repeats_are_interleaved_not_grouped():
    order = overhead.run_order(["none", "prometheus", "otel"], 2)
    assert [n for _, n in order] == ["none", "prometheus", "otel", "none", "prometheus", "otel"]
    assert [r for r, _ in order] == [0, 0, 0, 1, 1, 1]


def test_percent_against_the_baseline():
    assert overhead.pct_vs(90.0, 100.0) == -10.0
    assert overhead.pct_vs(1.5, 1.0) == 50.0
    assert overhead.pct_vs(None, 1.0) is None
    assert overhead.pct_vs(1.0, 0.0) is None
    assert overhead.pct_vs(1.0, None) is None


def _run(name: str, repeat: int, rate: float, p99: float, bound: bool = False) -> dict:
    load = {"latency_ms": {"p50": p99 / 2, "p99": p99, "p99.9": p99 * 2}, "achieved_rate": 100.0, "lost": 0, "client_bound": False}
    return {
        "instrument": name,
        "repeat": repeat,
        "open": load | {"server_us_per_msg": 10.0},
        "closed": {"received_rate": rate, "client_bound": bound, "server_us_per_msg": 1e6 / rate},
        "server_rss_bytes": 1000,
    }


def test_summary_compares_each_repeat_with_its_own_baseline():
    runs = [
        _run("none", 0, 1000.0, 1.0),
        _run("otel", 0, 500.0, 2.0),
        _run("none", 1, 2000.0, 1.0),
        _run("otel", 1, 1500.0, 1.5, bound=True),
        {"instrument": "otel", "repeat": 2, "error": "RuntimeError: boom"},
    ]
    s = overhead.summarise(runs, ["none", "otel"])
    otel = s["otel"]
    assert otel["throughput_msg_s"] == [500.0, 1500.0]
    assert otel["throughput_vs_none_pct"] == [-50.0, -25.0]
    assert otel["latency_p99_vs_none_pct"] == [100.0, 50.0]
    assert otel["median"]["throughput_msg_s"] == 1000.0
    assert otel["failed_runs"] == ["RuntimeError: boom"]
    assert otel["client_bound"] and "generator" in otel["note"]
    assert s["none"]["throughput_vs_none_pct"] == [0.0, 0.0]
    assert not s["none"]["client_bound"]
    json.dumps(s)


def test_unknown_instrument_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown instruments"):
        overhead.run_overhead({"instruments": ["none", "newrelic"]}, tmp_path)


# -- a real server, tiny load ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_overhead_end_to_end_on_a_tiny_load(tmp_path):
    params = {
        "instruments": ["none", "prometheus"],
        "repeats": 1,
        "connections": 2,
        "open_rate_msg_s": 50.0,
        "open_s": 1.0 * UNIT,
        "closed_s": 1.0 * UNIT,
        "warmup_messages": 10,
        "scrape_interval_s": 0.3,
    }
    res = overhead.run_overhead(params, tmp_path)
    json.dumps(res)
    assert [tuple(o) for o in res["order"]] == [(0, "none"), (0, "prometheus")]
    assert all("error" not in r for r in res["runs"]), res["runs"]
    prom = res["instruments"]["prometheus"]
    assert prom["repeats"] == 1
    assert prom["throughput_msg_s"][0] > 0
    assert prom["latency_p99_ms"][0] is not None
    assert prom["throughput_vs_none_pct"][0] is not None
    run = next(r for r in res["runs"] if r["instrument"] == "prometheus")
    assert run["scrape"]["scrapes"] >= 1 and not run["scrape"]["scrape_errors"]
    assert run["open"]["received"] == run["open"]["sent"] > 0
    assert isinstance(res["client_bound"], bool)
