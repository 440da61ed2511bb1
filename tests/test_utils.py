"""The suite's own helpers: a missing program skips a test, except under CI, where it fails it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import machine
from tests.utils import UNIT, in_ci, require_program

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("value", "ci"), [("true", True), ("1", True), ("", False), ("false", False), ("0", False)])
def test_ci_is_read_from_the_environment(monkeypatch, value, ci):
    monkeypatch.setenv("CI", value)
    assert in_ci() is ci


def test_a_missing_program_skips_outside_ci_and_fails_in_ci(monkeypatch):
    monkeypatch.setattr(machine, "find_tool", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="nginx is not installed"):
        require_program("nginx")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must provide it: nginx is not installed"):
        require_program("nginx")


def test_a_present_program_lets_the_test_run(monkeypatch):
    monkeypatch.setattr(machine, "find_tool", lambda name: f"/usr/bin/{name}")
    monkeypatch.setenv("CI", "true")
    require_program("redis-server", "nginx")  # returns: nothing to skip or fail


@pytest.mark.slow  # two child pytest sessions
def test_under_ci_any_skip_for_a_missing_program_is_a_failure(tmp_path):
    # A skip site that does not use require_program still cannot keep CI green: the hook in tests/conftest.py sees it.
    (tmp_path / "test_sites.py").write_text(
        "import pytest\n"
        "def test_bypasses_the_helper():\n    pytest.skip('frobnicator is not installed')\n"
        "def test_other_skip():\n    pytest.skip('needs at least 2 CPUs')\n"
    )
    argv = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:randomly", "-p", "no:cacheprovider", "-q", "-rfs"]
    argv += ["--rootdir", str(tmp_path), str(tmp_path / "test_sites.py")]
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS")}
    local = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60 * UNIT)
    assert local.returncode == 0 and "2 skipped" in local.stdout, local.stdout + local.stderr
    ci = subprocess.run(argv, cwd=ROOT, env={**env, "CI": "true"}, capture_output=True, text=True, timeout=60 * UNIT)
    assert ci.returncode == 1 and "1 failed" in ci.stdout and "1 skipped" in ci.stdout, ci.stdout + ci.stderr
    assert "frobnicator is not installed" in ci.stdout
