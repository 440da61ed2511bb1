"""Spike 1's reconnect scenario on the harness's faults: each fault reported to the run's observers, stored with its times."""

from __future__ import annotations

import pytest

from harness.load.account import OUTCOMES
from harness.plugin import ScenarioContext
from spikes.s01_websocket_impl import OPTIONS, reconnect, scenarios
from tests.spikes.s01.conftest import require
from tests.utils import UNIT

pytestmark = pytest.mark.slow


def test_reconnect_scenario_reports_each_fault_and_keeps_its_metrics(tmp_path):
    require("playwright")
    require("chromium")
    native = next(o for o in OPTIONS if o.key == "native")
    heard: list[tuple[str, str, dict]] = []
    params = {**scenarios.RECONNECT_PARAMS, **scenarios.RECONNECT_QUICK}
    params["down_ms"] *= UNIT
    ctx = ScenarioContext(native, params, 0, True, tmp_path, log=lambda line: None, on_fault=lambda *a: heard.append(a))
    out = scenarios.run_reconnect(ctx)

    # The runner's observers hear a kill (the restart) and a proxy reset (the drop), in that order, as they begin.
    assert [what for what, _, _ in heard] == ["kill", "proxy-reset"], heard
    assert heard[0][2]["signal"] == "SIGKILL" and heard[1][2]["connections"] >= 1
    # The metrics from before the account (the stored runs still compare), and the account's own, under its words.
    names = sorted({(m.name, m.tags["mode"]) for m in out.measurements})
    kept = ("recovered", "lost", "sent", "recovery_ms")
    assert names == sorted((n, mode) for n in {*kept, *OUTCOMES} for mode in ("restart", "drop"))
    for m in out.measurements:
        if m.name == "recovered":
            assert m.samples == [1], out.facts
    samples = {(m.name, m.tags["mode"]): m.samples for m in out.measurements}
    for mode in ("restart", "drop"):
        r = out.facts[mode]
        assert {n: samples[n, mode] for n in OUTCOMES} == {n: [r[n]] for n in OUTCOMES}, mode
        # The account recomputed from the stored raw records gives the stored figures; `lost` is both kinds of loss.
        assert reconnect.account_of(r["raw"]).total.to_dict() == r["account"]
        assert r["lost"] == r["lost_after_ack"] + r["lost_without_ack"] and r["lost_after_ack"] == 0  # the echo is the ack
        assert r["delivered"] + r["lost"] == r["sent"] == len(r["raw"]["sent"]) and r["unexpected"] == 0
    # Every fault stored, on the monotonic and wall clocks; each mode's on its page's clock too.
    stored = out.facts["faults"]
    assert [f["kind"] for f in stored] == ["kill", "proxy-reset"] and all(f["ended_mono"] is not None for f in stored)
    assert stored[0]["details"]["down_for"] == pytest.approx(params["down_ms"] / 1000)
    for mode in ("restart", "drop"):
        assert out.facts[mode]["fault"]["started_page_ms"] is not None


def test_the_features_reconnect_probe_reports_its_cut_to_the_observers(tmp_path):
    require("playwright")
    require("chromium")
    native = next(o for o in OPTIONS if o.key == "native")
    heard: list[tuple[str, str, dict]] = []
    ctx = ScenarioContext(native, {}, 0, True, tmp_path, log=lambda line: None, on_fault=lambda *a: heard.append(a))
    out = scenarios.run_features(ctx)

    assert out.facts["features"]["reconnect"]["value"] is True, out.facts["features"]["reconnect"]
    assert [what for what, _, _ in heard] == ["proxy-reset"] and heard[0][2]["connections"] >= 1
    assert [f["kind"] for f in out.facts["faults"]] == ["proxy-reset"]
    assert "lost without" in out.facts["features"]["reconnect"]["evidence"]
