"""python-socketio hardened against hostile input: what every Socket.IO POC server here runs on.

python-socketio and python-engineio, as shipped, answer a packet they cannot decode, an event on a namespace not
connected, or a frame that is no Engine.IO packet with a traceback in the log and nothing on the wire, or drop the
connection without a close frame; on a frame over the size limit aiohttp's close 1009 can be lost to a TCP reset
(found by the hostile-frame battery, :mod:`harness.frames`). :class:`HardenedServer` answers with an ``error`` event
(``{"error": "..."}``) or a connect error (``44``); :func:`harden` installs :class:`StrictWebSocket`, which closes a
non-Engine.IO frame with 1008 and lingers after a close so its frame arrives. Spike 1's and Spike 6's Socket.IO servers
(and any later one) use it, so the fix lives in one place. It imports no other harness module: a POC server stays light.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio
from aiohttp import web
from engineio.async_drivers.aiohttp import WebSocket as _EngineIOWebSocket  # type: ignore[import-untyped]
from socketio import packet as _packet

__all__ = ["BAD_PACKET", "LINGER_S", "LingeringResponse", "StrictWebSocket", "HardenedServer", "harden"]


#: What a packet python-socketio cannot decode raises in its parser or dispatch.
BAD_PACKET = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError)


#: How long a closed connection's socket keeps reading (and discarding) what the peer still sends: see LingeringResponse.
LINGER_S = 2.0


class LingeringResponse(web.WebSocketResponse):
    """aiohttp's WebSocket response, closing the TCP connection after a lingering wait instead of at once.

    On a frame over its size limit aiohttp sends close 1009 and closes the socket while the peer is still sending the
    frame: the unread bytes make the kernel answer with a reset, which can destroy the close frame before the peer (or
    nginx in between) reads it, so the client sees a drop. Here the sending side is shut down after the close frame, and
    the socket is closed when the peer has closed its side or ``LINGER_S`` later, aiohttp discarding what arrives
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
        asyncio.get_running_loop().call_later(LINGER_S, transport.close)

    async def linger(self) -> None:
        """Wait until the peer closed its side, or the linger ran out."""
        transport = self._req.transport if self._req is not None else None
        deadline = asyncio.get_running_loop().time() + LINGER_S
        while self._lingering and transport is not None and not transport.is_closing():
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.05)


class StrictWebSocket(_EngineIOWebSocket):
    """Engine.IO's aiohttp websocket, closing with 1008 on a text frame that is no Engine.IO packet (empty, unknown type)."""

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        """python-engineio's driver, with a :class:`LingeringResponse`."""
        self._sock = LingeringResponse(max_msg_size=self.server.max_http_buffer_size)
        await self._sock.prepare(environ["aiohttp.request"])
        self.environ = environ
        await self.handler(self)
        await self._sock.linger()
        return self._sock

    async def wait(self) -> Any:  # python-engineio's driver interface
        data = await super().wait()
        if isinstance(data, str) and (not data or data[0] not in "0123456"):
            await self._sock.close(code=1008, message=b"not an Engine.IO packet")
            return None  # python-engineio: the client closed
        return data


class HardenedServer(socketio.AsyncServer):
    """python-socketio's server, answering a packet it cannot decode, or an event on a namespace not connected."""

    async def _handle_eio_message(self, eio_sid: str, data: object) -> None:
        try:
            await super()._handle_eio_message(eio_sid, data)
        except BAD_PACKET as exc:
            self._binary_packet.pop(eio_sid, None)
            error = {"error": f"bad Socket.IO packet: {type(exc).__name__}: {str(exc)[:100]}"}
            await self._send_packet(eio_sid, self.packet_class(_packet.EVENT, namespace="/", data=["error", error]))

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None, data: object) -> None:
        if not self.manager.is_connected(self.manager.sid_from_eio_sid(eio_sid, namespace or "/"), namespace or "/"):
            error = {"message": "not connected to this namespace"}
            await self._send_packet(eio_sid, self.packet_class(_packet.CONNECT_ERROR, namespace=namespace, data=error))
            return
        await super()._handle_event(eio_sid, namespace, id, data)


def harden(sio: HardenedServer) -> HardenedServer:
    """Make ``sio``'s Engine.IO websocket transport the strict, lingering one; return it."""
    sio.eio._async = {**sio.eio._async, "websocket": StrictWebSocket}
    return sio
