"""Shared test helpers: one time unit, scaled by SPIKE_TEST_TIME_SCALE on slow machines; missing programs."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["UNIT", "MS", "in_ci", "missing_program", "require_program", "MISSING_MARK", "as_from_a_terminal"]

#: Every timeout in the tests is a multiple of this, in seconds. Set
#: SPIKE_TEST_TIME_SCALE=3 on a slow machine instead of editing timeouts.
UNIT = 1.0 * float(os.environ.get("SPIKE_TEST_TIME_SCALE", "1"))
MS = UNIT / 1000

#: Every skip for a missing program says this; tests/conftest.py turns such skips into failures under CI.
MISSING_MARK = "is not installed"


def in_ci() -> bool:
    """Whether ``CI`` is set (GitHub Actions sets ``CI=true``); ``CI=false`` or ``CI=0`` is not CI."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_program(reason: str) -> NoReturn:
    """Skip the test because a program is missing; under CI, which installs every program, fail it instead."""
    if MISSING_MARK not in reason:
        reason = f"{reason} ({MISSING_MARK} or not usable)"
    if in_ci():
        pytest.fail(f"CI must provide it: {reason}", pytrace=False)
    pytest.skip(reason)


def require_program(*names: str) -> None:
    """Skip (under CI: fail) the test unless every program in ``names`` is here.

    Names are those of ``harness.machine.EXTERNAL_TOOLS`` (redis-server, postgres, node, npm, chromium, nginx),
    plus ``playwright``, the Python package that drives Chromium.
    """
    # The modules that use a program register it (harness.machine.register_tool): import them so a test that has not
    # imported them yet still finds every name.
    import harness.browser  # noqa: F401
    import harness.prometheus  # noqa: F401
    import harness.services  # noqa: F401
    from harness import machine

    for name in names:
        if name == "playwright":
            try:
                import playwright.async_api  # noqa: F401
            except ImportError:
                missing_program(f"playwright (the Python package) {MISSING_MARK}")
        elif machine.find_tool(name) is None:
            missing_program(f"{name} {MISSING_MARK} (install: {machine.EXTERNAL_TOOLS[name].install})")


def as_from_a_terminal() -> None:
    """``preexec_fn`` for a child a test will Ctrl-C: SIGINT back to its default action.

    A shell starts background jobs with SIGINT ignored (``cmd &`` in a script, as a CI
    loop or ``nohup`` does), children inherit that, and Python then never raises
    KeyboardInterrupt: the command under test would not even see the Ctrl-C the test
    sends. A terminal's foreground job has the default action, which is what is tested.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
