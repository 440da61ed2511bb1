"""Fixtures for Spike 1: POC servers on free loopback ports, and the tools some tests need.

A test that needs node, npm or chromium skips with the reason when the
program is missing, and fails instead when ``CI`` is set: CI installs them,
so there a missing tool is a broken machine, not an optional extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.poc import server_process, url_of
from harness.process import ServerProcess
from spikes.s01_websocket_impl import OPTIONS, build
from tests.utils import UNIT, missing_program

__all__ = ["require", "option_of", "RunningServer"]


def option_of(key: str):
    """The spike's :class:`~harness.plugin.Option` called ``key`` (its declared POC server and client)."""
    return next(o for o in OPTIONS if o.key == key)


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
    """A factory: ``start_server(option)`` starts that option's declared POC server (``harness.poc``) on a free port, stopped after the test."""
    started: list[ServerProcess] = []

    def start(option: str) -> RunningServer:
        if option == "sveltekit":
            request.getfixturevalue("sveltekit_dir")  # the build, or the skip
        elif option == "socketio-node":
            require("node")
            require("npm")
        proc, url = server_process(
            option_of(option),
            tmp_path,
            name=f"s01-{option}",
            log_name=f"{option}-{len(started)}.log",
            ready_timeout=20 * UNIT,
            grace=5 * UNIT,
        )
        started.append(proc)
        proc.start()
        return RunningServer(option, proc, url_of(proc, url), build.TRANSPORTS[option])

    yield start
    for proc in started:
        proc.stop()
