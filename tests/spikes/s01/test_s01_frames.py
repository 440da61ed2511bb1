"""Spike 1's WebSocket POC servers against the harness's hostile-frame battery (issue 17).

Binary frames are part of the protocol (echoed as binary, `harness/load/protocol.py`), and the protocol's
message type is `op`, not `type` (a wrong-typed `op` is the wrong-field-types case), so those two cases are
left out for these servers; every other case must get an error message or a close code, no traceback, and the
server must keep serving. Before the battery, unknown ops got silence, a 10,000-deep JSON raised
RecursionError with a traceback (native), a non-string room was accepted, and SvelteKit's server parsed a
10 MB frame (now 1 MiB at most, as the Python servers).
"""

from __future__ import annotations

import json

import pytest

from harness import frames
from tests.utils import UNIT

pytestmark = pytest.mark.slow  # real POC servers


@pytest.mark.parametrize("option", ["native", "sveltekit"])
def test_every_hostile_frame_gets_a_clear_answer_and_the_server_keeps_serving(start_server, option):
    server = start_server(option)
    cases = [c for c in frames.CASE_NAMES if c not in ("binary", "type-not-string")]
    probe = frames.Probe({"op": "echo", "id": 1, "seq": 1}, expect=lambda f: json.loads(f).get("op") == "echo")
    report = frames.run_battery_sync(
        server.url,
        probe,
        base_message={"op": "join", "room": "table-1"},
        cases=cases,
        server_log=server.process.log_since_start,
        timeout=3 * UNIT,
    )
    failed = [(r.case, r.answer_text(), r.failures()) for r in report.failed()]
    assert not failed, failed
    assert {r.case for r in report.results} == set(cases)
