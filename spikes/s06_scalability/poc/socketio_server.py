"""Spike 6 Socket.IO POC server: Spike 1's python-socketio server, plus the Redis manager and PostgreSQL persistence.

Run: ``python socketio_server.py --port 8000 --pg DSN [--redis URL] [--server-id N]``.
Clients emit ``echo``, ``join`` and ``broadcast`` (``harness/load/protocol.py``);
every ``echo`` and ``broadcast`` is a chat message and is persisted
(``persist.py``). With ``--redis`` the server uses python-socketio's
``AsyncRedisManager``: each emit is handled in this process and PUBLISHed on
one Redis channel, and every other process delivers it to its own members.
The load reaches it over the websocket transport only (no long polling), so
several processes behind a load balancer need no sticky sessions.
Anything else gets an ``error`` event, as in Spike 1's server: an unknown
event, a message that is not an object with a string room, a packet
python-socketio cannot decode; an event on a namespace not connected gets a
connect error (``44``), a frame that is no Engine.IO packet a close 1008
(found by the hostile-frame battery, ``harness/frames.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal

import socketio
from aiohttp import web
from persist import ChatStore

from harness.sio_server import HardenedServer, harden

__all__ = ["build", "main"]


def _room(data: object) -> str | None:
    room = data.get("room") if isinstance(data, dict) else None
    return room if isinstance(room, str) and room else None


def build(store: ChatStore | None, redis_url: str | None) -> tuple[socketio.AsyncServer, web.Application]:
    """The Socket.IO server and its aiohttp app."""
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = harden(HardenedServer(async_mode="aiohttp", client_manager=manager, transports=["websocket"]))
    app = web.Application()
    sio.attach(app)

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app.router.add_get("/health", health)

    async def error(sid: str, text: str) -> None:
        await sio.emit("error", {"error": text}, to=sid)

    @sio.event
    async def echo(sid: str, data: object = None, *_: object) -> None:
        if not isinstance(data, dict):
            await error(sid, "echo expects an object")
            return
        if store is not None:
            store.add("echo", data)
        await sio.emit("echo", data, to=sid)

    @sio.event
    async def join(sid: str, data: object = None, *_: object) -> None:
        room = _room(data)
        if room is None:
            await error(sid, 'join expects {"room": <a string>}')
            return
        await sio.enter_room(sid, room)
        await sio.emit("joined", {"room": room}, to=sid)

    @sio.event
    async def broadcast(sid: str, data: object = None, *_: object) -> None:
        room = _room(data)
        if room is None:
            await error(sid, 'broadcast expects {"room": <a string>, ...}')
            return
        if store is not None:
            store.add(room, data)
        await sio.emit("broadcast", data, room=room)

    @sio.on("*")
    async def unknown(event: object, sid: str, *_: object) -> None:
        await error(sid, f"unknown event {str(event)[:50]!r}")

    return sio, app


async def main(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT; then disconnect clients, write the buffered rows, and exit."""
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    store = ChatStore(args.pg, args.server_id) if args.pg else None
    if store is not None:
        await store.start()
    sio, app = build(store, args.redis or None)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port, backlog=4096).start()
    print(f"READY port={runner.addresses[0][1]}", flush=True)
    await stop.wait()
    await sio.shutdown()
    await runner.cleanup()
    if store is not None:
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--pg", default="", help="PostgreSQL DSN; empty: persist nothing")
    parser.add_argument("--redis", default="", help="Redis URL for python-socketio's AsyncRedisManager; empty: one process")
    parser.add_argument("--server-id", type=int, default=0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(args))
    else:
        uvloop.run(main(args))
