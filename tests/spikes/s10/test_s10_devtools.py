"""Spike 10's DevTools integration: custom-track measures read back over CDP, web-vitals, the trace's entries."""

from __future__ import annotations

import json

import pytest

from spikes.s10_monitoring import devtools
from tests.utils import UNIT, require_program


def test_web_vitals_is_pinned_exactly_and_locked():
    pkg = json.loads((devtools.NPM_DIR / "package.json").read_text())
    version = pkg["dependencies"]["web-vitals"]
    assert all(p.isdigit() for p in version.split(".")), version
    assert devtools.web_vitals_version() == version
    assert not (devtools.NPM_DIR / "node_modules").exists()


def test_the_page_marks_round_trips_on_the_tabletop_track():
    js = (devtools.WEB_DIR / "devtools.js").read_text()
    assert 'dataType: "track-entry"' in js and f'const TRACK = "{devtools.TRACK}"' in js
    for name in ("onTTFB", "onFCP", "onLCP", "onCLS", "onINP"):
        assert name in js


def test_percentile():
    assert devtools.percentile([], 0.5) is None
    assert devtools.percentile([3.0], 0.99) == 3.0
    assert devtools.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert devtools.percentile(list(map(float, range(101))), 0.99) == pytest.approx(99.0)


def test_trace_entries_count_the_echo_measures_and_their_track_detail():
    detail = json.dumps({"devtools": {"dataType": "track-entry", "track": "Tabletop"}})
    events = [
        {"cat": "blink.user_timing", "ph": "b", "name": "echo 0", "id2": {"local": "0x1"}, "args": {"detail": detail}},
        {"cat": "blink.user_timing", "ph": "e", "name": "echo 0", "id2": {"local": "0x1"}, "args": {}},
        {"cat": "blink.user_timing", "ph": "b", "name": "echo 1", "args": {"data": {"detail": detail}}},
        {"cat": "blink.user_timing", "ph": "b", "name": "ws connect", "args": {"detail": detail}},
        {"cat": "devtools.timeline", "ph": "X", "name": "RunTask", "args": {}},
    ]
    out = devtools._trace_entries(events)
    assert out["trace_events"] == 5 and out["trace_user_timing_events"] == 4
    assert out["trace_echo_measures"] == 2 and out["trace_echo_measures_with_track_detail"] == 2
    assert devtools._is_track_entry({"devtools": {"dataType": "track-entry", "track": "Tabletop"}})
    assert not devtools._is_track_entry({"devtools": {"dataType": "marker"}})
    assert not devtools._is_track_entry("not json")


@pytest.mark.slow
def test_round_trips_are_read_back_over_cdp_with_web_vitals_and_a_trace(tmp_path):
    require_program("chromium", "playwright", "node", "npm")
    n = 25
    out = devtools.run_devtools({"n": n, "timeout_s": 30 * UNIT}, tmp_path)
    assert out["page_errors"] == [] and out["page_failed"] is None
    assert out["sent"] == out["page_round_trips"] == n
    assert out["measures_read_cdp"] == out["measures_on_track_cdp"] == n
    assert len(out["rtt_ms"]) == n and 0 < out["rtt_p50_ms"] <= out["rtt_p99_ms"] <= out["rtt_max_ms"]
    assert out["sample_measure"]["detail"]["devtools"]["track"] == "Tabletop"
    assert out["performance_metrics"]["JSHeapUsedSize"] > 0
    assert {"TTFB", "FCP"} <= set(out["web_vitals"])
    assert set(out["web_vitals"]) | set(out["web_vitals_not_reported"]) == set(devtools.VITALS)
    assert out["trace_echo_measures"] == n
    assert out["trace_bytes"] > 0
