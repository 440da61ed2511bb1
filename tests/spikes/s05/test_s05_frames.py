"""Spike 5's POC server against the harness's hostile-frame battery: every frame gets a clear answer, no traceback.

Found by the battery's first run (issue 17): a JSON array raised AttributeError in the connection handler
(a traceback, the connection dropped without a close code) on every option; binary frames got silence.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from harness import frames
from spikes.s05_auth import attacks
from spikes.s05_auth.core import COOKIE_NAME
from tests.utils import UNIT

pytestmark = pytest.mark.slow  # a real POC server


@pytest.mark.parametrize("option", ["cookie", "jwt-param"])
def test_every_hostile_frame_gets_a_clear_answer_and_the_server_keeps_serving(start, option):
    t = start(option)

    async def go() -> frames.FrameReport:
        async def connect_kwargs() -> dict:
            fresh = await attacks.login(t, "alice", attacks.SOURCE["victim"])
            headers = {"Origin": t.own_origin}
            if option == "cookie":
                headers["Cookie"] = f"{COOKIE_NAME}={fresh.credential}"
                return {"additional_headers": headers}
            return {"additional_headers": headers, "subprotocols": [attacks.SUBPROTOCOL, fresh.credential]}

        kwargs = await connect_kwargs()

        async def prelude(ws) -> None:  # the welcome comes first
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 5 * UNIT))
            assert welcome["type"] == "welcome"

        probe = frames.Probe({"type": "act", "seq": 10**9}, expect=lambda f: json.loads(f).get("type") in ("ack", "reject"))
        log_path = t.access_log.parent
        logs = sorted(log_path.glob("*.log"))
        return await frames.run_battery(
            f"ws://127.0.0.1:{t.port}/ws",
            probe,
            base_message={"type": "act", "seq": 1, "data": {"move": "token-7", "x": 3, "y": 4}},
            prelude=prelude,
            connect_kwargs=kwargs,
            server_log=(lambda: "".join(p.read_text(errors="replace") for p in logs)) if logs else None,
            timeout=3 * UNIT,
        )

    report = asyncio.run(go())
    failed = [(r.case, r.answer_text(), r.failures()) for r in report.failed()]
    assert not failed, failed
