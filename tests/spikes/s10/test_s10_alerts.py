"""Spike 10 alerting: rules.yml passes promtool, names what alerts.py expects, and one real fault fires its alert."""

from __future__ import annotations

import importlib.util
import re

import pytest

from harness.faults import Fault
from spikes.s10_monitoring import alerts
from spikes.s10_monitoring.alerts import EXPECTED, RULES_FILE, _fault_result, _Watcher, alert_names, run_alerts
from tests.utils import UNIT, require_program


def _server_missing() -> bool:
    return importlib.util.find_spec("spikes.s10_monitoring.poc.server") is None


def test_rules_pass_promtool():
    require_program("promtool")
    from harness.prometheus import promtool_check_rules

    ok, out = promtool_check_rules(RULES_FILE)
    assert ok, out
    assert "SUCCESS" in out


def test_every_expected_alert_is_a_rule():
    names = set(re.findall(r"^\s*- alert: (\w+)", RULES_FILE.read_text(), re.M))
    assert {a for v in EXPECTED.values() for a in v} <= names
    assert len(names) >= 5
    text = RULES_FILE.read_text()
    for metric in ("tabletop_connections", "tabletop_errors_total", "tabletop_handle_seconds_bucket", "tabletop_dependency_up", "up{"):
        assert metric in text


def test_alert_names_and_fault_result():
    raw = [
        {"labels": {"alertname": "A"}, "state": "firing"},
        {"labels": {"alertname": "B"}, "state": "pending"},
    ]
    assert alert_names(raw) == {"A", "B"} and alert_names(raw, "firing") == {"A"}
    w = _Watcher(prom=None, poll_s=0.1)
    fault = Fault("redis-kill", "redis", started_mono=0.0, started_wall=100.0)
    w.first_pending = {"TabletopDependencyDown": 101.0, "TabletopErrorRate": 102.0, "TabletopP99Latency": 103.0}
    w.first_firing = {"TabletopDependencyDown": 102.5, "TabletopErrorRate": 104.0}
    r = _fault_result("redis-kill", fault, w, 99.0)
    assert r["fired"]["TabletopDependencyDown"]["first_firing_s"] == 2.5
    assert r["fired"]["TabletopDependencyDown"]["first_pending_s"] == 1.0
    assert r["missed"] == [] and r["unexpected"] == ["TabletopErrorRate"] and r["pending_only"] == ["TabletopP99Latency"]
    r = _fault_result("error-burst", None, _Watcher(prom=None, poll_s=0.1), 99.0)
    assert r["missed"] == ["TabletopErrorRate"] and r["fault"] is None


def test_unknown_fault_is_refused():
    with pytest.raises(ValueError, match="unknown fault"):
        alerts._inject("meteor", hold_s=1, server=None, redis=None, proxy=None, clients=None, log=None)


@pytest.mark.slow
def test_redis_kill_fires_dependency_down(tmp_path):
    require_program("prometheus", "redis-server")
    if _server_missing():
        pytest.skip("the s10 server (poc/server.py) is not written yet")
    params = {
        "instruments": ["prometheus"],
        "faults": ["redis-kill"],
        "clean_s": 1 * UNIT,
        "warmup_s": 1 * UNIT,
        "hold_s": 5 * UNIT,
        "after_s": 0,
        "clients": 2,
        "quiet_timeout_s": 10 * UNIT,
    }
    out = run_alerts(params, tmp_path)
    assert out["promtool_check"]["ok"]
    run = out["instruments"]["prometheus"]
    fault = run["faults"][0]
    assert fault["fault"]["kind"] == "redis-kill"
    assert "TabletopDependencyDown" in fault["fired"], fault
    assert fault["fired"]["TabletopDependencyDown"]["first_firing_s"] > 0
    assert {r["name"] for r in run["rules"]} >= {"TabletopDependencyDown", "TabletopTargetDown"}
    assert run["gone_target"]["up"] == 0.0 and run["gone_target"]["last_error"]
    assert run["server_gone"]["up"] == 0.0 and run["server_gone"]["last_error"]
    assert run["load"]["sent"] > 0
