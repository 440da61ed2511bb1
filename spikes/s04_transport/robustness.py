"""The hostile-frame battery (``harness/frames.py``) against Spike 4's WebSocket feed server.

The WebSocket server speaks the load engine's protocol (``harness/load/protocol.py``), so the battery is the
protocol's (:func:`harness.frames.protocol_plan`): plain frames, a ``join`` as the base message, an ``echo`` as
the probe of a second connection. The server is the option's declared one, started as every scenario starts
it, its log read for tracebacks. SSE and long polling carry no client frames (a client's only input is a URL,
a header and a ``POST /send`` body): the battery does not apply to them, and their hostile input is the
bad-input scenario's (``badinput.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from harness import frames
from harness.plugin import ScenarioContext
from harness.poc import poc_server

__all__ = ["OPTIONS", "PLAN", "SCENARIO", "start"]

#: The options with a WebSocket: the battery's only targets.
OPTIONS = ("ws",)

#: The load protocol's battery for a plain WebSocket client (binary frames are echoed by the protocol: left out).
PLAN = frames.protocol_plan("ws")


@contextlib.contextmanager
def start(ctx: ScenarioContext) -> Iterator[frames.BatteryTarget]:
    """The option's declared server on a free port, stopped after the battery; its log checked for tracebacks."""
    with poc_server(ctx.option, ctx.workdir, name=f"{ctx.option.title} (hostile frames)", log_name="frames-server.log") as (server, url):
        yield frames.BatteryTarget(url, server.log_since_start)


#: The scenario, limited to the WebSocket option.
SCENARIO = frames.robustness_scenario(plan=PLAN, start=start, options=OPTIONS)
