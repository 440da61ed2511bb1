"""Fixtures for Spike 5: its POC servers (recommended or weak) on free loopback ports, Redis, and the tools some tests need.

A test that needs chromium, playwright or redis-server skips with the reason
when it is missing, and fails instead when ``CI`` is set: CI installs them,
so there a missing tool is a broken machine, not an optional extra.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from spikes.s05_auth import attacks, scenarios
from tests.utils import require_program

__all__ = ["require"]


def require(tool: str) -> None:
    """Skip (or, under CI, fail) the test when ``tool`` (chromium, redis-server, playwright) is missing."""
    require_program(tool)


@pytest.fixture(scope="session")
def start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., attacks.Target]]:
    """A factory: ``start(option, weak=False, ttl_s=60)`` returns that POC server (and Redis for sessions), started once per worker.

    Servers are shared between tests to keep the suite fast; each attack comes from its own loopback
    address, so one attack's failed authentications never throttle another's.
    """
    stack = contextlib.ExitStack()
    sec = scenarios.Secrets()
    running: dict[tuple[str, bool, float], attacks.Target] = {}

    def run(option: str, weak: bool = False, ttl_s: float = 60) -> attacks.Target:
        key = (option, weak, ttl_s)
        if key not in running:
            if option == "sessions":
                require("redis-server")
            workdir = tmp_path_factory.mktemp(f"s05-{option}-{'weak' if weak else 'rec'}")
            redis = stack.enter_context(scenarios.redis_for(option, workdir))
            running[key] = stack.enter_context(scenarios.poc_server(option, workdir, sec, weak=weak, ttl_s=ttl_s, redis=redis))[1]
        return running[key]

    with stack:
        yield run
