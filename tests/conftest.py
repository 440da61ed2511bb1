"""Make the repository importable when pytest runs from a source checkout; under CI a missing program fails.

CI installs every external program (``.ci/run``), so there a test that would skip because one is missing
is a broken machine, not an optional extra. Tests ask through ``tests.utils.require_program`` (which fails
by itself under CI); the hook below also turns any other skip whose reason says a program "is not
installed" into a failure, so a skip site that bypasses the helper cannot keep CI green.

Budgets do not apply in tests (``SPIKE_NO_BUDGET=1``, see ``harness/budget.py``): a test checks
behaviour, not speed, and a quick run on a loaded machine may take longer than its budget and exit 6.
The variable is set in the environment, so ``spike`` subprocesses a test starts inherit it; a test
about budgets patches ``harness.budget.budget_minutes`` itself (or removes the variable).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.budget import NO_BUDGET_ENV  # noqa: E402
from tests.utils import MISSING_MARK, in_ci  # noqa: E402


@pytest.fixture(autouse=True)
def no_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs made by tests are never over budget, in this process and in the ``spike`` processes tests start."""
    monkeypatch.setenv(NO_BUDGET_ENV, "1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if MISSING_MARK in reason:
            report.outcome = "failed"
            report.longrepr = f"CI must provide every program, but this test skipped: {reason}"
