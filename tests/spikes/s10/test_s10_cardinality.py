"""Spike 10 cardinality: a per-user label grows /metrics by one series per user; tiny N against the real server."""

from __future__ import annotations

import importlib.util

import pytest

from spikes.s10_monitoring.cardinality import USER_METRIC, run_cardinality
from tests.utils import require_program


@pytest.mark.slow
def test_user_label_adds_a_series_per_user(tmp_path):
    require_program("prometheus")
    if importlib.util.find_spec("spikes.s10_monitoring.poc.server") is None:
        pytest.skip("the s10 server (poc/server.py) is not written yet")
    out = run_cardinality({"instruments": ["prometheus"], "users": 30, "batch": 10, "scrapes": 2, "settle_s": 0}, tmp_path)
    labelled, plain = out["runs"]["prometheus-users"], out["runs"]["prometheus-nolabel"]
    assert labelled["sent"]["ok"] == 30 and plain["sent"]["ok"] == 30
    assert labelled["metrics_after"]["user_series"] == 30, USER_METRIC
    assert plain["metrics_after"]["user_series"] == 0
    assert labelled["metrics_after"]["metrics_bytes"] > plain["metrics_after"]["metrics_bytes"]
    assert labelled["prometheus"]["scrape_samples_scraped"] >= labelled["metrics_after"]["sample_lines"]
    assert labelled["rss_after_bytes"] and len(labelled["metrics_after"]["scrape_ms"]) == 2
