"""Fixtures for Spike 1: POC servers on free loopback ports, and the tools some tests need.

A test that needs node, npm or chromium skips with the reason when the
program is missing, and fails instead when ``CI`` is set: CI installs them,
so there a missing tool is a broken machine, not an optional extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.process import LogReady, ServerProcess
from spikes.s01_websocket_impl import build
from tests.utils import UNIT, missing_program

__all__ = ["require", "RunningServer"]


def require(tool: str) -> None:
    """Skip (or, under CI, fail) the test when ``tool`` (node, npm, chromium, playwright) is missing."""
    try:
        if tool == "chromium":
            build.find_chromium()
        elif tool == "playwright":
            try:
                import playwright.async_api  # noqa: F401
            except ImportError as exc:
                raise build.ToolMissing("playwright", "(the Python package) is not installed") from exc
        else:
            build.require_tool(tool)
    except build.ToolMissing as exc:
        missing_program(str(exc))


class RunningServer:
    """A POC server started for one test: its process, its client URL and transport."""

    def __init__(self, option: str, process: ServerProcess, url: str, transport: str):
        self.option, self.process, self.url, self.transport = option, process, url, transport

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:N`` of the same server (the page, the health check)."""
        return self.process.url


@pytest.fixture(scope="session")
def sveltekit_dir() -> Path:
    """The built SvelteKit app (``npm ci`` and ``vite build`` cached by source hash, shared by all workers)."""
    require("node")
    require("npm")
    return build.ensure_sveltekit_build()


@pytest.fixture(scope="session")
def node_tools() -> Path:
    """``node/`` with its dependencies installed."""
    require("node")
    require("npm")
    return build.ensure_node_tools()


@pytest.fixture
def start_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], RunningServer]]:
    """A factory: ``start_server(option)`` starts that option's POC server on a free port, stopped after the test."""
    started: list[ServerProcess] = []

    def start(option: str) -> RunningServer:
        if option == "sveltekit":
            request.getfixturevalue("sveltekit_dir")  # the build, or the skip
        cmd = build.server_command(option)
        proc = ServerProcess(
            f"s01-{option}",
            cmd["argv"],
            cwd=cmd["cwd"],
            env=cmd["env"],
            ready=LogReady(cmd["ready"]),
            ready_timeout=20 * UNIT,
            log_path=tmp_path / f"{option}-{len(started)}.log",
            grace=5 * UNIT,
        )
        started.append(proc)
        proc.start()
        return RunningServer(option, proc, cmd["url"].replace("{port}", str(proc.port)), cmd["transport"])

    yield start
    for proc in started:
        proc.stop()
