"""Fixtures for Spike 6: the programs its deployments need (PostgreSQL, redis-server, nginx).

A test that needs one skips with the reason when it is missing, and fails
instead when ``CI`` is set: CI installs them, so there a missing program is a
broken machine, not an optional extra.
"""

from __future__ import annotations

import asyncio
from typing import Any

from harness.load.clients import get_client_class
from tests.utils import UNIT, require_program

__all__ = ["require"]


def require(*tools: str) -> None:
    """Skip (or, under CI, fail) the test when one of ``tools`` is not installed."""
    require_program(*tools)


async def open_client(url: str, transport: str = "ws") -> tuple[Any, asyncio.Queue]:
    """One load-engine client of ``transport``, connected; what it receives lands in the returned queue."""
    inbox: asyncio.Queue = asyncio.Queue()
    client = get_client_class(transport)(url, inbox.put_nowait, lambda reason: None, shared={})
    await client.connect(10 * UNIT)
    return client, inbox


async def next_op(inbox: asyncio.Queue, op: str) -> dict:
    """The next message of ``op`` in ``inbox`` (others are passed over), within 10 time units."""
    while True:
        msg = await asyncio.wait_for(inbox.get(), 10 * UNIT)
        if msg.get("op") == op:
            return msg
