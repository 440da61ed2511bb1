"""The hostile-frame battery (``harness/frames.py``) against each option's whole deployment.

The servers persist to PostgreSQL and, scaled out, sit behind nginx with Redis: the battery reaches them as a
client would, through the option's :class:`~spikes.s06_scalability.deploy.Deployment` (nginx's URL when there
is one), and reads every server process's log for tracebacks. What it sends is the load protocol's battery
(:func:`harness.frames.protocol_plan`: plain frames for the native servers, Socket.IO event packets for the
Socket.IO ones).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from harness import frames
from harness.plugin import ScenarioContext
from spikes.s06_scalability.deploy import Deployment

__all__ = ["start"]


@contextlib.contextmanager
def start(ctx: ScenarioContext) -> Iterator[frames.BatteryTarget]:
    """The option's stack (PostgreSQL, Redis and nginx as it needs), stopped after the battery."""
    with Deployment(ctx.option.key, ctx.workdir, log=ctx.log) as dep:
        yield frames.BatteryTarget(dep.url, server_log=lambda: [s.log_since_start() for s in dep.servers])
