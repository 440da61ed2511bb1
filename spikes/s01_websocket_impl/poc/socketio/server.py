"""Socket.IO POC server: echo and room broadcast with python-socketio on aiohttp.

Run: ``python server.py --host 127.0.0.1 --port 8000`` (port 0: the kernel picks one).
Clients emit ``echo``, ``join`` and ``broadcast`` with one dict; the server
emits ``echo``, ``joined`` and ``broadcast`` back (``harness/load/protocol.py``).
Anything else gets an ``error`` event (``{"error": "..."}``): an unknown event,
a ``join`` or ``broadcast`` without a string room, a packet python-socketio
cannot decode; an event on a namespace the client did not connect gets a
connect error (``44``), and a frame that is no Engine.IO packet closes the
connection with 1008. Unguarded, python-socketio and python-engineio logged a
traceback for each and answered nothing, or dropped the connection without a
close frame (the hostile-frame battery, ``harness/frames.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from urllib.parse import urlsplit

from aiohttp import web

from harness.sio_server import HardenedServer, harden

__all__ = ["sio", "app", "main"]


def loopback_origin(origin: str | None, environ: object = None) -> bool:
    """Allow browser pages served from any loopback port (the test pages live on other ports)."""
    return origin is not None and urlsplit(origin).hostname in ("127.0.0.1", "localhost")


sio = harden(HardenedServer(async_mode="aiohttp", cors_allowed_origins=loopback_origin))
app = web.Application()
sio.attach(app)


async def health(request: web.Request) -> web.Response:
    """Answer plain ``GET /health``."""
    return web.Response(text="ok\n")


app.router.add_get("/health", health)


def _room(data: object) -> str | None:
    room = data.get("room") if isinstance(data, dict) else None
    return room if isinstance(room, str) and room else None


async def _error(sid: str, text: str) -> None:
    await sio.emit("error", {"error": text}, to=sid)


@sio.event
async def echo(sid: str, data: object = None, *_: object) -> object:
    """Send ``data`` back; returning it also answers a client that asked for an acknowledgement."""
    await sio.emit("echo", data, to=sid)
    return data


@sio.event
async def join(sid: str, data: object = None, *_: object) -> None:
    """Put the sender in ``data["room"]``; Socket.IO forgets rooms on disconnect by itself."""
    room = _room(data)
    if room is None:
        await _error(sid, 'join expects {"room": <a string>}')
        return
    await sio.enter_room(sid, room)
    await sio.emit("joined", {"room": room}, to=sid)


@sio.event
async def broadcast(sid: str, data: object = None, *_: object) -> None:
    """Deliver ``data`` to every member of its room, the sender included."""
    room = _room(data)
    if room is None:
        await _error(sid, 'broadcast expects {"room": <a string>, ...}')
        return
    await sio.emit("broadcast", data, room=room)


@sio.on("*")
async def unknown(event: object, sid: str, *_: object) -> None:
    """Any other event: an error event back."""
    await _error(sid, f"unknown event {str(event)[:50]!r}")


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
