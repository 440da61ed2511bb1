"""The hostile-frame battery (``harness/frames.py``) against each option's recommended server, authenticated.

A hostile frame from an anonymous client only tests the upgrade check, so each battery connection (and the
probe's) presents a valid credential the option's way (``attacks.presentation``: a subprotocol, a cookie, or
an ``auth`` first message) with the page's own Origin, and waits for the welcome before its frame. The
messages are the POC's ``{"type": "act", "seq": n, "data": {...}}``; the probe is an ``act``, answered with an
``ack`` or a ``reject`` (a sequence number already used).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

from harness import frames
from harness.plugin import ScenarioContext
from spikes.s05_auth import attacks, scenarios

__all__ = ["PLAN", "start", "target_for"]


def _answered(frame: frames.Data) -> bool:
    try:
        msg = json.loads(frame)
    except ValueError:
        return False
    return isinstance(msg, dict) and msg.get("type") in ("ack", "reject")


PLAN = frames.BatteryPlan(
    frames.Probe({"type": "act", "seq": 10**9}, expect=_answered),
    base_message={"type": "act", "seq": 1, "data": {"move": "token-7", "x": 3, "y": 4}},
)


async def target_for(t: attacks.Target, server_log: Any = None, timeout: float = 5.0) -> frames.BatteryTarget:
    """How the battery reaches ``t``: logged in as alice, presenting the credential as the option's client does."""
    login = await attacks.login(t, "alice", attacks.SOURCE["victim"])
    pres = attacks.presentation(t, login.credential)
    headers = {"Origin": t.own_origin}
    kwargs: dict[str, Any] = {"additional_headers": headers}
    if "cookie" in pres:
        headers["Cookie"] = pres["cookie"]
    if "protocols" in pres:
        kwargs["subprotocols"] = list(pres["protocols"])
    first = pres.get("first")
    query = f"?token={pres['query_token']}" if "query_token" in pres else ""

    async def prelude(ws: Any) -> None:
        if first is not None:
            await ws.send(json.dumps(first))
        welcome = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if welcome.get("type") != "welcome":
            raise ConnectionError(f"no welcome: {welcome}")

    return frames.BatteryTarget(f"ws://127.0.0.1:{t.port}/ws{query}", server_log, kwargs, prelude)


@contextlib.contextmanager
def start(ctx: ScenarioContext) -> Iterator[frames.BatteryTarget]:
    """The option's recommended server (and Redis for sessions), tokens valid for an hour; the battery's way in."""
    sec = scenarios.Secrets()
    with (
        scenarios.redis_for(ctx.option.key, ctx.workdir) as redis,
        scenarios.poc_server(ctx.option.key, ctx.workdir, sec, ttl_s=3600, redis=redis, name="-frames") as (server, t),
    ):
        yield asyncio.run(target_for(t, server.log_since_start))
