"""Spike 10's error storm: the counting helpers in plain Python, then tiny storms against sentry and prometheus."""

from __future__ import annotations

import json

import pytest

from spikes.s10_monitoring import storm
from tests.utils import UNIT

EXPO = """# HELP tabletop_errors_total Errors while handling
# TYPE tabletop_errors_total counter
tabletop_errors_total{kind="value"} 12.0
tabletop_errors_total{kind="other"} 3.0
tabletop_errors_created{kind="value"} 1.7e9
tabletop_messages_total{op="fail"} 15.0
"""


def test_errors_are_summed_over_kinds_and_nothing_else():
    assert storm.errors_in_exposition(EXPO) == 15.0
    assert storm.errors_in_exposition("") == 0.0


def test_loss_and_percentiles():
    assert storm.loss(100, 82) == {"lost": 18, "lost_pct": 18.0}
    assert storm.loss(100, 120) == {"lost": 0, "lost_pct": 0.0}
    assert storm.loss(10, None) == {"lost": None, "lost_pct": None}
    assert storm.percentile([], 99) is None
    assert storm.percentile(list(range(1, 101)), 99) == 99
    assert storm.percentile([5.0], 50) == 5.0
    s = storm.summarise_rtts([1.0, 2.0, 3.0], timeouts=1)
    assert s["count"] == 3 and s["timeouts"] == 1 and s["max_ms"] == 3.0


def test_the_stopped_line_is_parsed():
    log = "READY port=1\nSTOPPED instrument=sentry captured=1000 redis_errors=0\n"
    assert storm.parse_stopped(log) == {"instrument": "sentry", "captured": "1000", "redis_errors": "0"}
    assert storm.parse_stopped("READY port=1\n") == {}


def test_unknown_backend_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown back ends"):
        storm.run_storm({"backends": ["rollbar"]}, tmp_path)


# -- real server, tiny storms --------------------------------------------------------------------------------------------


def _tiny(backend: str) -> dict:
    return {
        "backends": [backend],
        "errors": 30,
        "storm_s": 0.3 * UNIT,
        "baseline_s": 0.3 * UNIT,
        "drain_s": 2.0 * UNIT,
        "probe_interval_s": 0.02,
    }


@pytest.mark.slow
def test_tiny_storm_against_prometheus(tmp_path):
    res = storm.run_storm(_tiny("prometheus"), tmp_path)
    json.dumps(res)
    up, down = res["results"]["prometheus"]["up"], res["results"]["prometheus"]["down"]
    for r in (up, down):
        assert "error" not in r, r
        assert r["sent"] == 30
        assert r["received"] == 30 and r["lost"] == 0
        assert r["probe"]["before"]["count"] > 0
        assert r["rss_before_bytes"] > 0


@pytest.mark.slow
def test_tiny_storm_against_sentry(tmp_path):
    res = storm.run_storm(_tiny("sentry"), tmp_path)
    json.dumps(res)
    up, down = res["results"]["sentry"]["up"], res["results"]["sentry"]["down"]
    assert "error" not in up, up
    assert "error" not in down, down
    assert up["sent"] == 30 and up["captured"] == 30
    assert up["received"] == 30  # 30 is well under the transport queue's 100
    assert down["sent"] == 30
    assert down["received_while_down"] == 0
    assert down["received"] is not None and down["received"] <= 30
    assert isinstance(down["loss_reported"], bool) and isinstance(down["silent_loss"], bool)
