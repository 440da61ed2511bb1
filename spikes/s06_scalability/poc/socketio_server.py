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
from engineio.async_drivers.aiohttp import WebSocket as _EngineIOWebSocket
from persist import ChatStore
from socketio import packet as _packet

__all__ = ["build", "main"]


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


def _room(data: object) -> str | None:
    room = data.get("room") if isinstance(data, dict) else None
    return room if isinstance(room, str) and room else None


def build(store: ChatStore | None, redis_url: str | None) -> tuple[socketio.AsyncServer, web.Application]:
    """The Socket.IO server and its aiohttp app."""
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = _Server(async_mode="aiohttp", client_manager=manager, transports=["websocket"])
    sio.eio._async = {**sio.eio._async, "websocket": _StrictWebSocket}
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
