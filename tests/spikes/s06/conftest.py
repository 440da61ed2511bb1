"""Fixtures for Spike 6: the programs its deployments need (PostgreSQL, redis-server, nginx).

A test that needs one skips with the reason when it is missing, and fails
instead when ``CI`` is set: CI installs them, so there a missing program is a
broken machine, not an optional extra.
"""

from __future__ import annotations

from tests.utils import require_program

__all__ = ["require"]


def require(*tools: str) -> None:
    """Skip (or, under CI, fail) the test when one of ``tools`` is not installed."""
    require_program(*tools)
