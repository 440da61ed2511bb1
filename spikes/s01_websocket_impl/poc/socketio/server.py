"""Socket.IO POC server: echo and room broadcast with python-socketio on aiohttp.

Run: ``python server.py --host 127.0.0.1 --port 8000`` (port 0: the kernel picks one).
Clients emit ``echo``, ``join`` and ``broadcast`` with one dict; the server
emits ``echo``, ``joined`` and ``broadcast`` back (``harness/load/protocol.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from urllib.parse import urlsplit

import socketio
from aiohttp import web

__all__ = ["sio", "app", "main"]


def loopback_origin(origin: str | None, environ: object = None) -> bool:
    """Allow browser pages served from any loopback port (the test pages live on other ports)."""
    return origin is not None and urlsplit(origin).hostname in ("127.0.0.1", "localhost")


sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=loopback_origin)
app = web.Application()
sio.attach(app)


async def health(request: web.Request) -> web.Response:
    """Answer plain ``GET /health``."""
    return web.Response(text="ok\n")


app.router.add_get("/health", health)


@sio.event
async def echo(sid: str, data: object) -> object:
    """Send ``data`` back; returning it also answers a client that asked for an acknowledgement."""
    await sio.emit("echo", data, to=sid)
    return data


@sio.event
async def join(sid: str, data: dict) -> None:
    """Put the sender in ``data["room"]``; Socket.IO forgets rooms on disconnect by itself."""
    await sio.enter_room(sid, data["room"])
    await sio.emit("joined", {"room": data["room"]}, to=sid)


@sio.event
async def broadcast(sid: str, data: dict) -> None:
    """Deliver ``data`` to every member of its room, the sender included."""
    await sio.emit("broadcast", data, room=data["room"])


async def main(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    # A pending long-poll GET only returns after the ping interval (25 s): do not wait that long to exit.
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"READY port={runner.addresses[0][1]}", flush=True)
    await stop.wait()
    await sio.shutdown()  # disconnect the clients properly before the sockets go
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # uvloop is optional: the stdlib loop works, only slower
        asyncio.run(main(args.host, args.port))
    else:
        uvloop.run(main(args.host, args.port))
