"""Fixtures for Spike 6: the programs its deployments need (PostgreSQL, redis-server, nginx).

A test that needs one skips with the reason when it is missing, and fails
instead when ``CI`` is set: CI installs them, so there a missing program is a
broken machine, not an optional extra.
"""

from __future__ import annotations

import os

import pytest

from harness import machine

__all__ = ["require"]


def require(*tools: str) -> None:
    """Skip (or, under CI, fail) the test when one of ``tools`` is not installed."""
    for tool in tools:
        if machine.find_tool(tool) is None:
            hint = machine.EXTERNAL_TOOLS[tool].install
            if os.environ.get("CI"):
                pytest.fail(f"CI must provide {tool} ({hint})")
            pytest.skip(f"{tool} is not installed ({hint})")
