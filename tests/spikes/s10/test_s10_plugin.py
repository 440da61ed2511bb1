"""Spike 10's plugin end to end: a tiny real run through the runner, the gates recomputed, the document rendered.

The scenarios the decision reads (signals, overhead, storm) and the dashboard (for its screenshot in the document) at
a smoke-test size, against the real server with each back end live. The values the gates read are checked against
the stored facts: Sentry's capture on the event loop's thread and DogStatsD over UDP with its listener down are
what the storm measures, whatever they turn out to be here.
"""

from __future__ import annotations

import dataclasses

import pytest

from harness.report.render import decide, render_spike
from harness.results import load
from harness.runner import RunPlan, run_spike
from spikes.s10_monitoring import MonitoringSpike, spike
from spikes.s10_monitoring.decision import silent_losses
from tests.utils import require_program

pytestmark = pytest.mark.slow

TINY = {
    "signals": {"settle_s": 1.5},
    "overhead": {"repeats": 1, "open_s": 0.5, "closed_s": 0.5, "warmup_messages": 20, "open_rate_msg_s": 200.0, "connections": 4},
    "storm": {"errors": 60, "storm_s": 0.5, "drain_s": 1.0, "baseline_s": 0.3},
    "dashboard": {"seconds": 2.0},
}


class TinySpike(MonitoringSpike):
    scenarios = tuple(dataclasses.replace(sc, quick_params={**sc.quick_params, **TINY[sc.key]}) for sc in spike.scenarios if sc.key in TINY)


def test_tiny_run_is_stored_gated_and_rendered(tmp_path):
    require_program("chromium", "playwright", "prometheus")
    tiny = TinySpike()
    run = run_spike(RunPlan(tiny, quick=True), tmp_path)
    assert [(s.scenario, s.option, s.status, s.reason) for s in run.scenarios if s.status != "ok"] == []
    stored = load(run.path)

    carried = {(m.tags["instrument"], m.tags["signal"]): m.median for m in stored.ok("signals", "prometheus").find("carried")}
    assert all(carried[("prometheus", s)] == 1.0 for s in ("lifecycle", "flow", "errors", "latency", "resources"))
    assert carried[("sentry", "errors")] == 1.0 and carried[("sentry", "flow")] == 0.0  # errors only, by construction

    facts = stored.ok("storm", "prometheus").fact["results"]
    d = decide(tiny, stored)
    for option in ("prometheus", "otel", "datadog", "sentry"):
        gate = {g.gate.name: g for g in d.gates[option]}["loses no error event silently under an error storm"]
        assert gate.value == silent_losses(stored, option)
        expected = sum(float(ph.get("lost") or 0) for ph in facts[option].values() if ph.get("silent_loss"))
        assert gate.value == expected
    # A pull back end's counter holds every error raised: nothing to lose, down or not.
    assert all(ph["lost"] == 0 for ph in facts["prometheus"].values())

    doc = render_spike(tiny, stored, tmp_path).read_text()
    for title in (
        "Which back end for each signal (measured)",
        "Overhead on the real server",
        "Error storm: received against raised",
        "The metrics to export",
        "The Grafana dashboard as code",
    ):
        assert title in doc, title
    assert (tmp_path / "charts" / "spike-10-dashboard.png").read_bytes().startswith(b"\x89PNG")
