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

import socketio
from aiohttp import web
from engineio.async_drivers.aiohttp import WebSocket as _EngineIOWebSocket
from socketio import packet as _packet

__all__ = ["sio", "app", "main"]


def loopback_origin(origin: str | None, environ: object = None) -> bool:
    """Allow browser pages served from any loopback port (the test pages live on other ports)."""
    return origin is not None and urlsplit(origin).hostname in ("127.0.0.1", "localhost")


#: What a packet python-socketio cannot decode raises in its parser or dispatch.
_BAD_PACKET = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError)


#: How long a closed connection's socket keeps reading (and discarding) what the peer still sends: see _LingeringResponse.
_LINGER_S = 2.0


class _LingeringResponse(web.WebSocketResponse):
    """aiohttp's WebSocket response, closing the TCP connection after a lingering wait instead of at once.

    On a frame over its size limit aiohttp sends close 1009 and closes the socket while the peer is still sending the
    frame: the unread bytes make the kernel answer with a reset, which can destroy the close frame before the peer (or
    nginx in between) reads it, so the client sees a drop. Here the sending side is shut down after the close frame, and
    the socket is closed when the peer has closed its side or ``_LINGER_S`` later, aiohttp discarding what arrives
    meanwhile (nginx's lingering close); :meth:`linger` holds the handler until then, as aiohttp closes the socket
    when the handler returns.
    """

    _lingering = False

    def _close_transport(self) -> None:
        transport = self._req.transport if self._req is not None else None
        if transport is None or transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._lingering = True
        asyncio.get_running_loop().call_later(_LINGER_S, transport.close)

    async def linger(self) -> None:
        """Wait until the peer closed its side, or the linger ran out."""
        transport = self._req.transport if self._req is not None else None
        deadline = asyncio.get_running_loop().time() + _LINGER_S
        while self._lingering and transport is not None and not transport.is_closing():
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.05)


class _StrictWebSocket(_EngineIOWebSocket):
    """Engine.IO's aiohttp websocket, closing with 1008 on a text frame that is no Engine.IO packet (empty, unknown type)."""

    async def __call__(self, environ: dict) -> web.WebSocketResponse:
        """python-engineio's driver, with a :class:`_LingeringResponse`."""
        self._sock = _LingeringResponse(max_msg_size=self.server.max_http_buffer_size)
        await self._sock.prepare(environ["aiohttp.request"])
        self.environ = environ
        await self.handler(self)
        await self._sock.linger()
        return self._sock

    async def wait(self):  # noqa: ANN201 - python-engineio's driver interface
        data = await super().wait()
        if isinstance(data, str) and (not data or data[0] not in "0123456"):
            await self._sock.close(code=1008, message=b"not an Engine.IO packet")
            return None  # python-engineio: the client closed
        return data


class _Server(socketio.AsyncServer):
    """python-socketio's server, answering a packet it cannot decode, or an event on a namespace not connected."""

    async def _handle_eio_message(self, eio_sid: str, data: object) -> None:
        try:
            await super()._handle_eio_message(eio_sid, data)
        except _BAD_PACKET as exc:
            self._binary_packet.pop(eio_sid, None)
            error = {"error": f"bad Socket.IO packet: {type(exc).__name__}: {str(exc)[:100]}"}
            await self._send_packet(eio_sid, self.packet_class(_packet.EVENT, namespace="/", data=["error", error]))

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None, data: object) -> None:
        if not self.manager.is_connected(self.manager.sid_from_eio_sid(eio_sid, namespace or "/"), namespace or "/"):
            error = {"message": "not connected to this namespace"}
            await self._send_packet(eio_sid, self.packet_class(_packet.CONNECT_ERROR, namespace=namespace, data=error))
            return
        await super()._handle_event(eio_sid, namespace, id, data)


sio = _Server(async_mode="aiohttp", cors_allowed_origins=loopback_origin)
sio.eio._async = {**sio.eio._async, "websocket": _StrictWebSocket}
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
