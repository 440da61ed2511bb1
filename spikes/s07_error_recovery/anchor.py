"""Spike 7's off-the-shelf anchor: Node socket.io 4.8 with connection state recovery and the Redis Streams adapter.

What a team would take off the shelf instead of building a recovery strategy: ``anchor/server.js`` (socket.io with
``connectionStateRecovery`` and ``@socket.io/redis-streams-adapter`` on the ``redis`` client, installed from the
committed ``anchor/package-lock.json`` by :func:`harness.npm.ensure_installed` into the cache, never into the tree).
The load engine's clients resume with the harness's ``socketio-recovery`` adapter (:data:`RESUME`; it needs the
``socketio-raw`` client, which keeps the session's ``pid`` and the last event offset and sends them on reconnect).

- :func:`server`: the option's ``Option.server`` factory (``node server.js --port {port} --redis {redis}
  --stream-max-len {log_len} --ping-interval {ping} --ping-timeout {ping_timeout}`` and the recovery window below,
  run in the install directory from a copy of ``server.js`` named by its hash, so its imports resolve to the locked
  packages); raises :class:`NotRunnable` with the install command when ``node`` or ``npm`` is missing.
- :func:`ask_stats`: the server's own counts (sockets restored by recovery, broadcasts received), over HTTP.
- :class:`SioWatcher`: the scenarios' watcher for this option (``scenarios.Watcher``'s interface): one more room
  member through the fault proxy, python-socketio's ``AsyncClient`` in a thread of its own, reconnecting, resuming
  its socket.io session as the load engine's clients do (python-socketio has no recovery of its own: the watcher
  sends ``pid`` and ``offset`` itself) and rejoining. It keeps no replica (``room = None``): the anchor keeps no room
  state to compare with.
- :data:`OPTION`: the declaration for the plugin.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from harness.npm import ensure_installed, locked_versions, require_program
from harness.plugin import Option
from harness.poc import PocServer

__all__ = [
    "ANCHOR_DIR",
    "NPM_NAME",
    "KEY",
    "RESUME",
    "CLIENT",
    "MAX_DISCONNECTION_MS",
    "ROOM",
    "server",
    "versions",
    "ask_stats",
    "SioWatcher",
    "OPTION",
]

#: The npm package of the anchor server (package.json, package-lock.json, server.js).
ANCHOR_DIR = Path(__file__).resolve().parent / "anchor"
#: Its name in the harness's npm cache.
NPM_NAME = "s07-socketio-anchor"
KEY = "socketio-anchor"
#: The load engine's resume adapter for the anchor (``harness.load.clients.resume``).
RESUME = "socketio-recovery"
#: The load engine's client adapter: ``socketio-recovery`` resumes ``socketio-raw`` clients only (the ``socketio``
#: adapter, python-socketio's AsyncClient, cannot send ``pid`` and ``offset``); both speak the same events.
CLIENT = "socketio-raw"
#: How long socket.io keeps a dropped session for recovery: 2 minutes, so the 60 s blackhole can recover.
MAX_DISCONNECTION_MS = 120_000
#: The room the scenarios use (``scenarios.ROOM``).
ROOM = "table-1"
#: The npm packages the lock pins at the top level, for the description and the document.
PACKAGES = ("socket.io", "@socket.io/redis-streams-adapter", "redis")


def versions() -> dict[str, str]:
    """The versions ``anchor/package-lock.json`` pins for socket.io, the adapter and the redis client."""
    return locked_versions(ANCHOR_DIR, PACKAGES)


def server() -> PocServer:
    """The anchor's :class:`PocServer`: install its npm packages (``npm ci`` from the lock, cached), then ``node server.js``.

    Placeholders the caller fills: ``{redis}`` (the Redis URL), ``{log_len}`` (the stream's length, trimmed with
    ``~``: socket.io can replay only what the stream still holds), ``{ping}`` and ``{ping_timeout}`` (the heartbeat
    in seconds, the values the Python POC gets: socket.io's pingInterval and pingTimeout). Raises
    :class:`harness.plugin.NotRunnable` with the install command when ``node`` (20 or newer) or ``npm`` is missing;
    an ``npm ci`` that fails raises :class:`harness.npm.NpmError` (a broken lock or no registry is a failure, not a
    missing program).
    """
    node = require_program("node")
    require_program("npm")
    work = ensure_installed(ANCHOR_DIR, NPM_NAME)
    return PocServer(
        argv=(
            node,
            _placed_script(work),
            "--host",
            "{host}",
            "--port",
            "{port}",
            "--redis",
            "{redis}",
            "--ping-interval",
            "{ping}",
            "--ping-timeout",
            "{ping_timeout}",
            "--max-disconnection",
            str(MAX_DISCONNECTION_MS),
            "--stream-max-len",
            "{log_len}",
        ),
        url="http://{host}:{port}",
        ready=r"log:READY port=\d+",
        env={"NODE_ENV": "production"},
        cwd=str(work),
    )


def _placed_script(work: Path) -> str:
    """``server.js`` copied next to the installed ``node_modules`` (Node resolves an ES module's imports from its own
    directory), under a name holding its content hash: an edited server is never run from a stale copy, and concurrent
    callers write the same file (atomically, by rename)."""
    text = (ANCHOR_DIR / "server.js").read_bytes()
    target = work / f"server-{hashlib.sha256(text).hexdigest()[:16]}.js"
    if not target.is_file():
        tmp = work / f".{target.name}.{os.getpid()}.tmp"
        tmp.write_bytes(text)
        os.replace(tmp, target)
    return target.name


def ask_stats(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """The running server's own counts (``GET /stats`` on its direct URL, not through the proxy), since this process
    started: ``connections``, ``recovered`` (sockets socket.io restored from a session), ``broadcasts`` (received from
    members and sent on to the room) and ``redis_errors`` (times the Redis connection went away). No ``hash``: the
    anchor keeps no room state, so the scenarios' replica comparison does not apply."""
    base = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1).rstrip("/")
    with urllib.request.urlopen(f"{base}/stats", timeout=timeout) as resp:
        data = json.loads(resp.read())
    if not isinstance(data, dict):
        raise ValueError(f"{base}/stats answered {data!r}, not an object")
    return data


class SioWatcher:
    """One more member of the room through the proxy, on python-socketio's ``AsyncClient``: notes drops, joins, deliveries.

    ``scenarios.Watcher``'s interface. python-socketio reconnects by itself (backoff from 0.1 s doubling to 1 s, with
    its own jitter) and this watcher rejoins the room on every connect. A drop is noticed when the client's
    ``disconnect`` handler runs: at once for a reset or a close, after the heartbeat (the server's ping interval plus
    timeout without a ping) for a blackhole.

    It resumes as the option's clients do (``socketio-recovery``): python-socketio has no connection state recovery of
    its own, so the watcher keeps the session's ``pid`` from the server's CONNECT reply and the offset that comes last
    with every event, and sends both as the CONNECT packet's ``auth`` when it reconnects; a restored session answers
    with the same ``pid`` (counted in ``recovered``) and the server replays what the watcher missed, which lands in
    ``deliveries`` when it arrives. ``numbered`` is accepted and ignored: socket.io numbers nothing else to resume from.
    """

    room = None  # no replica: the anchor keeps no room state, so replicas are "not compared"

    def __init__(self, url: str, numbered: bool) -> None:
        self.url = url
        self.numbered = numbered
        self.closes: list[float] = []  # time.time() of each drop it noticed
        self.joins: list[float] = []  # time.time() of each join answered
        self.deliveries: list[float] = []  # time.time() of each broadcast received
        self.errors: list[str] = []
        self.snapshots = 0
        self.recovered = 0  # reconnects that socket.io answered with the old session (same pid)
        self.joined = threading.Event()
        self.pid: str | None = None  # the session to resume, from the server's CONNECT reply
        self.offset: str | None = None  # the last event offset received
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="s07-sio-watcher", daemon=True)

    def start(self) -> SioWatcher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        loop, done = self._loop, self._done
        if loop is not None and done is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                loop.call_soon_threadsafe(done.set)
        self._thread.join(timeout)

    async def _run(self) -> None:
        import socketio

        self._loop = asyncio.get_running_loop()
        self._done = done = asyncio.Event()
        if self._stop.is_set():
            return
        watcher = self

        class RecoveringClient(socketio.AsyncClient):  # type: ignore[misc]
            async def _handle_connect(self, namespace: str | None, data: Any) -> None:
                pid = data.get("pid") if isinstance(data, dict) else None
                if isinstance(pid, str):
                    if pid == watcher.pid:
                        watcher.recovered += 1
                    watcher.pid = pid
                await super()._handle_connect(namespace, data)

        def auth() -> dict[str, str] | None:  # python-socketio calls it before each CONNECT packet, reconnects included
            if watcher.pid is None or watcher.offset is None:
                return None
            return {"pid": watcher.pid, "offset": watcher.offset}

        def took(offset: tuple[Any, ...]) -> None:
            if offset and isinstance(offset[-1], str):
                self.offset = offset[-1]

        sio = RecoveringClient(
            reconnection=True,
            reconnection_attempts=0,  # no limit: until stopped
            reconnection_delay=0.1,
            reconnection_delay_max=1.0,
            handle_sigint=False,
        )

        async def join() -> None:
            try:
                await sio.emit("join", {"room": ROOM})
            except Exception as exc:  # the connection dropped again before the join left
                self.errors.append(f"join: {type(exc).__name__}: {exc}")

        @sio.event
        async def connect() -> None:
            # emit from a task: python-socketio's connect handler runs before its connect() has returned
            asyncio.get_running_loop().create_task(join())

        @sio.event
        async def disconnect(reason: Any = None) -> None:
            if self._stop.is_set():  # our own disconnect at the end: no drop
                return
            self.closes.append(time.time())
            self.errors.append(f"disconnected: {reason}" if reason else "disconnected")

        @sio.event
        async def connect_error(data: Any = None) -> None:
            self.errors.append(f"connect error: {data}")

        # A recovering server appends each event's offset as one more argument (``*offset``): the place to resume from.
        @sio.on("joined")
        async def joined(data: Any = None, *offset: Any) -> None:
            took(offset)
            self.joins.append(time.time())
            self.joined.set()

        @sio.on("broadcast")
        async def broadcast(data: Any = None, *offset: Any) -> None:
            took(offset)
            self.deliveries.append(time.time())

        @sio.on("error")
        async def error(data: Any = None, *offset: Any) -> None:
            took(offset)
            self.errors.append(str(data.get("error") if isinstance(data, dict) else data))

        def failed(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                self.errors.append(f"connect: {type(exc).__name__}: {exc}")

        # retry: the first connect retries with the same backoff as a reconnect; a task, so stop() ends it even then
        connecting = asyncio.create_task(sio.connect(self.url, auth=auth, transports=["websocket"], wait_timeout=5, retry=True))
        connecting.add_done_callback(failed)
        try:
            await done.wait()
        finally:
            if not connecting.done():
                connecting.cancel()
                with contextlib.suppress(BaseException):
                    await connecting
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await sio.disconnect()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await sio.shutdown()


def _description() -> str:
    try:
        v = versions()
    except (OSError, KeyError, ValueError):
        v = {}

    def ver(name: str) -> str:
        return v.get(name, "?")

    return (
        f"Node socket.io {ver('socket.io')} with connection state recovery (maxDisconnectionDuration "
        f"{MAX_DISCONNECTION_MS // 1000} s, skipMiddlewares) and @socket.io/redis-streams-adapter {ver('@socket.io/redis-streams-adapter')} "
        f"on the redis client {ver('redis')}, from a committed package-lock.json: every packet the server sends is an entry of a Redis "
        "stream with its offset, a dropped session is kept in Redis, and a client that reconnects with its session id and last offset "
        "(harness resume adapter `socketio-recovery`) gets its rooms back and every packet it missed; the server itself keeps no room state"
    )


OPTION = Option(
    KEY,
    "Node socket.io 4.8 with connection state recovery (anchor)",
    _description(),
    ("anchor/server.js",),  # the server a team would write; anchor.py is the harness's glue (the watcher, the install)
    PACKAGES,
    requires=("node", "npm", "redis-server"),
    server=server,
    client=CLIENT,
)
