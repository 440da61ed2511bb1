"""Helpers for Spike 4's tests: its feed servers as real subprocesses on free ports, and minimal clients of each transport.

The clients here are plain aiohttp and websockets, written against the protocol
text (docs in ``spikes/s04_transport/poc/``), not the harness's feed clients: a
test of a server must not pass because a client shares its mistakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from harness.load.protocol import broadcast_message
from harness.poc import REPO_ROOT
from harness.process import LogReady, ServerProcess
from tests.utils import UNIT

__all__ = ["feed_server", "running", "SseStream", "post", "event", "no_traceback", "poll"]


def feed_server(kind: str, tmp_path: Path, *extra: str) -> ServerProcess:
    """One POC server (not started) on a free loopback port; its log in ``tmp_path``."""
    argv = [sys.executable, "-m", f"spikes.s04_transport.poc.{kind}", "--host", "{host}", "--port", "{port}", *extra]
    return ServerProcess(
        f"s04 {kind}", argv, cwd=REPO_ROOT, ready=LogReady(r"READY port=\d+"), ready_timeout=30 * UNIT, log_path=tmp_path / f"{kind}.log"
    )


def no_traceback(server: ServerProcess) -> None:
    text = server.log_path.read_text(errors="replace")
    assert "Traceback" not in text, text[text.find("Traceback") :][:3000]


@contextlib.contextmanager
def running(kind: str, tmp_path: Path, *extra: str) -> Iterator[ServerProcess]:
    """The server, started; stopped after (exit code 0 on SIGTERM), its log free of tracebacks."""
    server = feed_server(kind, tmp_path, *extra)
    with server:
        yield server
    assert server.returncode == 0, server.last_log_lines(20)
    no_traceback(server)


def event(room: str, i: int, client: int = 1) -> dict[str, Any]:
    """The broadcast numbered ``i`` by its publisher (``seq`` = ``i``, ``d`` = ``"e<i>"``)."""
    return broadcast_message(room, i, 1_700_000_000_000_000_000 + i, client, f"e{i}")


async def post(session: aiohttp.ClientSession, base: str, body: Any, *, raw: bytes | None = None) -> tuple[int, Any]:
    """``POST /send`` with ``body`` as JSON (or ``raw`` bytes as they are); the status and the parsed answer."""
    data = raw if raw is not None else orjson.dumps(body)
    async with session.post(f"{base}/send", data=data, headers={"Content-Type": "application/json"}) as resp:
        text = await resp.read()
        return resp.status, orjson.loads(text) if text else None


async def poll(session: aiohttp.ClientSession, base: str, **query: Any) -> tuple[int, Any]:
    async with session.get(f"{base}/poll", params={k: str(v) for k, v in query.items()}) as resp:
        return resp.status, orjson.loads(await resp.read())


class SseStream:
    """One ``GET /sse`` stream read event by event (``{"event", "id", "data"}``, comments counted apart)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> None:
        self.session, self.url, self.headers = session, url, headers or {}
        self.resp: aiohttp.ClientResponse | None = None
        self.comments: list[str] = []

    async def __aenter__(self) -> SseStream:
        self.resp = await self.session.get(self.url, headers=self.headers, timeout=aiohttp.ClientTimeout(total=None, sock_read=None))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.resp is not None
        self.resp.close()  # a dropped connection, not a polite end

    async def next(self, timeout: float = 10 * UNIT) -> dict[str, Any]:
        """The next event (comments are kept in ``comments``); raises ``EOFError`` when the stream ended."""
        assert self.resp is not None
        fields: dict[str, Any] = {}
        async with asyncio.timeout(timeout):
            while True:
                line = await self.resp.content.readline()
                if not line:
                    raise EOFError("the stream ended")
                text = line.decode().rstrip("\r\n")
                if text == "":
                    if "data" in fields:
                        fields.setdefault("event", "message")
                        fields["json"] = orjson.loads(fields["data"])
                        return fields
                    continue
                if text.startswith(":"):
                    self.comments.append(text)
                    continue
                name, _, value = text.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
