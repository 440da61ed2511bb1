"""Spike 2's relay against the harness's hostile-frame battery (issue 17), through the spike's own robustness scenario.

Found by the battery's first run: every message a core could not read (not JSON, a JSON value of the wrong shape,
10,000 levels deep, an unknown kind, a 10 MB frame, an update pycrdt rejects) raised out of the relay's connection
handler: a traceback in the log and close 1011. The relay now closes such a connection with 1008 and the core's reason.
LWW accepted a write whose field was a number or whose stamp was a string: stored, such a stamp made every later
comparison of that field's stamps raise, so no honest client could write the field again; LWW now refuses both.
"""

from __future__ import annotations

import json

import pytest

from harness import frames
from harness.plugin import ScenarioContext
from spikes.s02_state_sync import lww, spike
from tests.utils import UNIT


@pytest.mark.slow  # a real relay per option
@pytest.mark.parametrize("option", ["ot", "crdt", "lww"])
def test_every_hostile_frame_gets_a_clear_answer_and_the_relay_keeps_serving(option, tmp_path):
    ctx = ScenarioContext(spike.option(option), {"timeout_s": 3 * UNIT}, 0, True, tmp_path, log=lambda s: None)
    out = spike.scenario("robustness").run(ctx)
    stored = out.facts[frames.FACT]
    failed = [(r["case"], r["answer_text"], r["failures"]) for r in stored["results"] if not r["passed"]]
    assert not failed, failed
    assert stored["log_checked"] is True
    got = {r["case"]: r for r in stored["results"]}
    assert {"not-json", "deep-nesting", "big-text", "bad-utf8", "binary", "fragmented", "wrong-field-types"} <= set(got)
    assert got["bad-utf8"]["close_code"] == 1007
    assert got["wrong-field-types"]["close_code"] == 1008 and got["wrong-field-types"]["close_reason"].startswith(f"bad {option} message")
    assert set(got) | set(out.facts.get("left_out", {})) >= set(frames.CASE_NAMES)


def test_an_lww_write_with_a_bad_stamp_or_field_is_refused_and_cannot_lock_the_field():
    server = lww.LWWServer()
    for bad in ([["token/t0", [1, 2], "not-a-stamp"]], [[12345, [1, 2], [1, 0, "x"]]], {"abc": 1}, [["token/t0", [1, 2], [1.5, 0, "x"]]]):
        with pytest.raises(ValueError, match="not an LWW"):
            server.on_message(0, json.dumps(bad).encode(), [0, 1])
    honest = lww.encode([("token/t0", [3, 4], (10, 0, "c001"))])
    assert server.on_message(0, honest, [0, 1]) == [(1, honest)]
    assert server.on_message(1, lww.encode([("token/t0", [5, 6], (11, 0, "c002"))]), [0, 1])  # a later write still wins
