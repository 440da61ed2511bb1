"""The feature probes, run against real servers, give each option's known answer with evidence."""

from __future__ import annotations

import asyncio

import pytest

from spikes.s01_websocket_impl import build, features
from tests.spikes.s01.conftest import require

pytestmark = pytest.mark.slow

#: What each library does, from its documentation and source; the probes must find the same.
EXPECTED = {
    "native": {"rooms": True, "binary": True, "fallback": False, "backpressure": True},
    "socketio": {"rooms": True, "acknowledgements": True, "binary": True, "fallback": True, "backpressure": False},
    "socketio-node": {"rooms": True, "acknowledgements": True, "binary": True, "fallback": True, "backpressure": False},
    "sveltekit": {"rooms": True, "binary": True, "fallback": False, "backpressure": False},
}
#: Plain WebSocket has no acknowledgement to probe: the cell must say it is a protocol fact, not pass for a probe.
NOT_PROBED = {"native": ("acknowledgements",), "sveltekit": ("acknowledgements",), "socketio": (), "socketio-node": ()}


@pytest.mark.parametrize("option", build.OPTIONS)
def test_feature_probes_find_what_each_library_does(start_server, option):
    server = start_server(option)
    found = asyncio.run(features.probe_all(option, server.url, reconnect=False))
    for key in NOT_PROBED[option]:
        assert found.pop(key)["evidence"].startswith("protocol fact, not probed"), key
    assert {key: f["value"] for key, f in found.items()} == EXPECTED[option], found
    for key, feature in found.items():
        assert feature["evidence"] and "probe failed" not in feature["evidence"], (key, feature)
    assert server.process.alive  # no probe, not even the flood, took the server down


def test_backpressure_evidence_says_how_far_the_sender_got(start_server):
    server = start_server("native")
    feature = asyncio.run(features.probe_backpressure(server.url, "ws", total=32 * 2**20))
    assert feature["value"] is True
    assert "MB of echo requests before its sends blocked" in feature["evidence"]


@pytest.mark.parametrize("option", build.OPTIONS)
def test_reconnect_probe_sees_each_browser_client_come_back(start_server, option):
    require("playwright")
    require("chromium")
    if build.BROWSER_CLIENT[option] == "socketio":
        require("node")
    server = start_server(option)
    feature = asyncio.run(features.probe_reconnect(option, server.url))
    assert feature["value"] is True, feature
    assert "echoed again" in feature["evidence"]
