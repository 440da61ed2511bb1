"""Spike 7's plugin end to end: a tiny real run through the runner, its gates and its document."""

from __future__ import annotations

import dataclasses

import pytest

from harness.report.render import decide, render_spike
from harness.results import RunResult
from harness.runner import RunPlan, run_spike
from spikes.s07_error_recovery import plugin, spike
from tests.utils import require_program

TINY = {
    "network-reset": {"cuts_s": [1], "connections": 3},
    "server-restart": {"signals": ["SIGKILL"], "connections": 3},
}


def test_the_spike_declares_its_matrix_and_validates():
    spike.validate()
    assert sum(plugin.WEIGHTS.values()) == 100
    assert {o.key for o in spike.options} == {
        "reconnect",
        "queue",
        "reconstruct",
        "queue-reconstruct",
        "checkpoint",
        "fallback",
        "socketio-anchor",
    }
    assert {s.key for s in spike.scenarios} >= {"network-reset", "network-blackhole", "server-restart", "robustness"}
    assert spike.scenario("network-blackhole").params["cuts_s"] == [1, 10, 60]  # 60 s as a blackhole only
    assert 60 not in spike.scenario("network-reset").params["cuts_s"]
    assert spike.scenario("network-reset").resolved_params(True)["cuts_s"] == [1]
    assert spike.default_repeat >= 2
    # Every cell of the full profile is measured at least twice: by repeats, or by runs side by side in one repeat.
    for sc in spike.scenarios:
        if sc.key == "robustness":
            continue  # the hostile-frames battery: an answer per frame, checked once
        repeats = min(spike.default_repeat, sc.max_repeats or spike.default_repeat)
        assert repeats * int(sc.params.get("runs", 1)) >= 2, sc.key
    from spikes.s07_error_recovery import scenarios

    assert set(scenarios.RESUME) == {o.key for o in spike.options}  # every option has its client's resume adapter


@pytest.mark.slow
def test_a_tiny_real_run_gates_and_renders(tmp_path):
    require_program("redis-server")
    tiny = type(spike)()
    tiny.options = tuple(o for o in spike.options if o.key in ("reconnect", "queue-reconstruct"))
    keep = ("network-reset", "server-restart", "robustness")
    tiny.scenarios = tuple(
        dataclasses.replace(s, quick_params={**s.quick_params, **TINY.get(s.key, {})}) for s in spike.scenarios if s.key in keep
    )
    run = run_spike(RunPlan(tiny, quick=True, repeat=1, author="CI"), tmp_path / "out")
    assert [(s.scenario, s.option, s.status) for s in run.scenarios if s.status != "ok"] == []
    for o in run.options:
        assert run.median("robustness", o, "cases_failed") == 0
    _gates_follow_the_account(run)
    text = render_spike(tiny, run, tmp_path / "doc").read_text()
    for title in ("Network interruption, reset: 1 s", "Server restart: SIGKILL", "Matrix cells not run by this build", "python-socketio"):
        assert title in text, title
    assert "Queuing plus reconstruction" in text.split("### Question")[0]  # the answer is on the first screen


def _gates_follow_the_account(run: RunResult) -> None:
    d = decide(spike, run)
    for o in run.options:
        lost = max(s for scen in ("network-reset", "server-restart") for m in run.ok(scen, o).find("lost") for s in m.samples)
        gate = next(g for g in d.gates[o] if g.gate.name == "no message lost")
        assert gate.status == ("fail" if lost > 0 else "pass") and gate.value == lost
    # Queuing plus reconstruction lost nothing and kept the replicas equal in both faults.
    assert "queue-reconstruct" not in d.blocked


def test_the_durable_log_gate_is_not_measured_for_options_that_keep_no_log():
    from harness.decide import NotMeasured
    from harness.results import RunResult
    from spikes.s07_error_recovery import decision

    empty = RunResult.__new__(RunResult)
    empty.scenarios = []  # type: ignore[attr-defined]
    with pytest.raises(NotMeasured):
        decision._stream_missing(empty, "reconnect")
