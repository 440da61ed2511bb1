"""Spike 6's deployments against the harness's hostile-frame battery (issue 17), through the spike's own robustness scenario.

Each option's whole stack runs (PostgreSQL; Redis and nginx in front of two processes for the scaled-out options), and
the battery reaches it as a client does. Found by the battery's first run: the native server answered an unknown op with
silence and joined a number as a room (or, with Redis, broke on subscribing to it: a close 1007); the Socket.IO server,
python-socketio and python-engineio as shipped, logged a traceback and answered nothing for a packet it could not decode,
an unknown event, a join or broadcast without a string room, a binary frame no event announced and an unknown
Socket.IO packet type, ignored an event on a namespace never connected, and dropped the connection without a close frame
on an empty frame.
"""

from __future__ import annotations

import pytest

from harness import frames
from harness.plugin import ScenarioContext
from spikes.s06_scalability import deploy, spike
from tests.spikes.s06.conftest import require
from tests.utils import UNIT

pytestmark = pytest.mark.slow  # whole deployments


@pytest.mark.parametrize("option", [o.key for o in spike.options])  # the Node options: test_s06_node.py
def test_every_hostile_frame_gets_a_clear_answer_and_every_deployment_keeps_serving(option, tmp_path):
    require(*deploy.SETUPS[option].tools)
    scenario = spike.scenario("robustness")
    ctx = ScenarioContext(spike.option(option), {"timeout_s": 3 * UNIT}, 0, True, tmp_path, log=lambda s: None)
    out = scenario.run(ctx)
    stored = out.facts[frames.FACT]
    failed = [(r["case"], r["answer_text"], r["failures"]) for r in stored["results"] if not r["passed"]]
    assert not failed, failed
    assert stored["log_checked"] is True
    names = [r["case"] for r in stored["results"]]
    if option.startswith("socketio"):
        assert out.facts["framing"] == "socketio" and "sio-unknown-namespace" in names and "binary" in names
    else:
        assert out.facts["framing"] == "plain" and "binary" not in names and set(out.facts["left_out"]) == {"binary", "type-not-string"}
    assert out.measurements and all(m.samples == [1.0] for m in out.measurements if m.name == "case_passed")
