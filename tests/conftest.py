"""Make the repository importable when pytest runs from a source checkout; under CI a missing program fails.

CI installs every external program (``.ci/run``), so there a test that would skip because one is missing
is a broken machine, not an optional extra. Tests ask through ``tests.utils.require_program`` (which fails
by itself under CI); the hook below also turns any other skip whose reason says a program "is not
installed" into a failure, so a skip site that bypasses the helper cannot keep CI green.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.utils import MISSING_MARK, in_ci  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if MISSING_MARK in reason:
            report.outcome = "failed"
            report.longrepr = f"CI must provide every program, but this test skipped: {reason}"
