"""Spike 5's POC servers against the harness's hostile-frame battery: every frame gets a clear answer, no traceback.

Each battery connection (and the probe's) is authenticated the option's way, as the spike's robustness scenario does
(``spikes/s05_auth/robustness.py``). Found by the battery's first run (issue 17): a JSON array raised AttributeError in
the connection handler (a traceback, the connection dropped without a close code) on every option; binary frames got
silence.
"""

from __future__ import annotations

import asyncio

import pytest

from harness import frames
from harness.plugin import ScenarioContext
from spikes.s05_auth import robustness, spike
from tests.spikes.s05.conftest import require
from tests.utils import UNIT

pytestmark = pytest.mark.slow  # a real POC server


@pytest.mark.parametrize("option", ["cookie", "jwt-param", "refresh", "sessions"])
def test_every_hostile_frame_gets_a_clear_answer_and_the_server_keeps_serving(start, option):
    if option == "sessions":
        require("redis-server")
    t = start(option)
    logs = sorted(t.access_log.parent.glob("server-*.log"))

    async def go() -> frames.FrameReport:
        target = await robustness.target_for(t, lambda: [p.read_text(errors="replace") for p in logs], timeout=5 * UNIT)
        return await frames.run_battery(
            target.url,
            robustness.PLAN.probe,
            base_message=robustness.PLAN.base_message,
            prelude=target.prelude,
            connect_kwargs=target.connect_kwargs,
            server_log=target.server_log,
            timeout=3 * UNIT,
        )

    report = asyncio.run(go())
    failed = [(r.case, r.answer_text(), r.failures()) for r in report.failed()]
    assert not failed, failed
    assert [r.case for r in report.results] == list(frames.CASE_NAMES) and report.log_checked


@pytest.mark.slow
def test_the_robustness_scenario_runs_the_battery_against_the_recommended_server(tmp_path):
    ctx = ScenarioContext(spike.option("jwt-param"), {"timeout_s": 3 * UNIT}, 0, True, tmp_path, log=lambda s: None)
    out = spike.scenario("robustness").run(ctx)
    stored = out.facts[frames.FACT]
    assert stored["passed"] is True, [r for r in stored["results"] if not r["passed"]]
    assert stored["log_checked"] is True and out.facts["framing"] == "plain"
    assert "Bearer" not in str(stored) and "token=" not in str(stored)  # no credential in what is stored
