"""Spike 1's POC servers against the harness's hostile-frame battery (issue 17), with the plan the spike's scenario uses.

The WebSocket servers speak the load protocol (``harness/load/protocol.py``): binary frames are part of it (echoed as
binary) and its message type is ``op``, not ``type`` (a wrong-typed ``op`` is the wrong-field-types case), so those two
cases are left out for them (``frames.protocol_plan``); every other case must get an error message or a close code, no
traceback, and the server must keep serving. Before the battery, unknown ops got silence, a 10,000-deep JSON raised
RecursionError with a traceback (native), a non-string room was accepted, and SvelteKit's server parsed a 10 MB frame
(now 1 MiB at most, as the Python servers).

The Socket.IO server gets every case inside Socket.IO event packets after the Engine.IO and Socket.IO handshakes, plus
raw Engine.IO and Socket.IO packets (``frames.socketio_framing``). As shipped, python-socketio and python-engineio logged
a traceback and answered nothing for a packet they could not decode (not JSON, 10,000 levels deep, a binary frame no event
announced, an unknown packet type), for a join without a string room and for an Engine.IO packet of unknown type;
an unknown event and an event on a namespace never connected got silence; an empty frame dropped the connection without
a close frame. The server now answers with an ``error`` event, a connect error (``44``) or close 1008.

Node's socket.io 4.8, as shipped, failed 9 of the 16: it closed without a status code (1005) on a packet it could not
decode, a binary frame no event announced, unknown Engine.IO and Socket.IO packets, an empty frame and an event on a
namespace never connected, and ignored an unknown event. Its POC now answers as the Python one: its parser hands a
refused packet to the server (an ``error`` event, or a connect error for the namespace), engine.io's parse errors close
with 1008 first, and ``onAny`` answers an unknown event.
"""

from __future__ import annotations

import pytest

from harness import frames
from spikes.s01_websocket_impl import spike
from tests.utils import UNIT

pytestmark = pytest.mark.slow  # real POC servers


@pytest.mark.parametrize("option", ["native", "sveltekit", "socketio", "socketio-node"])
def test_every_hostile_frame_gets_a_clear_answer_and_the_server_keeps_serving(start_server, option):
    server = start_server(option)
    plan = frames.protocol_plan(spike.option(option).client)
    framing = plan.framing or frames.PLAIN
    report = frames.run_battery_sync(
        framing.endpoint(server.url),
        plan.probe,
        base_message=plan.base_message,
        cases=plan.cases,
        framing=plan.framing,
        server_log=server.process.log_since_start,
        timeout=3 * UNIT,
    )
    failed = [(r.case, r.answer_text(), r.failures()) for r in report.failed()]
    assert not failed, failed
    names = [r.case for r in report.results]
    if option.startswith("socketio"):
        assert names == [*frames.CASE_NAMES, "eio-unknown-packet", "eio-empty-packet", "sio-unknown-packet", "sio-unknown-namespace"]
        got = report.by_case()
        assert got["unknown-type"].answer is frames.Answer.ERROR_MESSAGE and '42["error"' in got["unknown-type"].replies[0]
        assert got["sio-unknown-namespace"].replies[0].startswith("44/no-such-namespace,")
        assert got["eio-empty-packet"].close_code == 1008 and got["big-text"].close_code == 1009
    else:
        assert set(names) == set(frames.CASE_NAMES) - set(frames.PROTOCOL_LEFT_OUT)
