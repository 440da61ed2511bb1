"""A lean Socket.IO client: engine.io v4 / Socket.IO v5 text packets over the raw WebSocket client.

python-socketio's AsyncClient costs several times the CPU per echoed event
of the raw WebSocket client (a task per received packet, queues, a write
loop; compare with ``python -m harness.load.selftest --server socketio
--transport socketio`` and ``--transport socketio-raw``), so a generator
built on it can saturate before the server does. This adapter speaks the
same protocol at the raw WebSocket client's cost: it
opens ``/socket.io/?EIO=4&transport=websocket``, waits for the engine.io
open packet (``0{...}``), connects the default namespace (``40`` -> ``40{...}``),
answers pings (``2`` -> ``3``), and sends events as ``42["event",{...}]``.
No acknowledgements, no binary attachments, no namespaces other than ``/``:
the load protocol needs none of them. For connection state recovery
(``harness.load.clients.resume``, ``socketio-recovery``) it keeps the
session's ``pid`` from the server's CONNECT reply and the offset a recovering
server appends to each event (``offset``), and sends ``auth`` (``{"pid",
"offset"}``) in its CONNECT packet when set. Use ``socketio`` (AsyncClient) to
measure what a Python Socket.IO client costs; use this one to load a server.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from harness.load import protocol
from harness.load.clients import CloseHandler, ConnectError, MessageHandler
from harness.load.clients.ws_raw import RawWebSocketClient

__all__ = ["RawSocketIOClient", "engineio_ws_url"]


def engineio_ws_url(url: str) -> str:
    """The engine.io WebSocket URL of a Socket.IO server URL (path defaults to ``/socket.io/``)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = "/" + (parts.path.strip("/") or "socket.io") + "/"
    query = "EIO=4&transport=websocket" + (f"&{parts.query}" if parts.query else "")
    return urlunsplit((scheme, parts.netloc, path, query, ""))


class RawSocketIOClient(RawWebSocketClient):
    """Socket.IO events over the raw WebSocket client, default namespace only."""

    transport = "socketio-raw"

    def __init__(
        self,
        url: str,
        on_message: MessageHandler,
        on_close: CloseHandler,
        *,
        compression: bool = False,
        shared: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(engineio_ws_url(url), on_message, on_close, compression=compression, shared=shared)
        self._ready: asyncio.Future[None] | None = None
        self.auth: dict[str, Any] | None = None  # sent in the CONNECT packet
        self.sid: str | None = None
        self.pid: str | None = None  # the private session id of a server with connection state recovery
        self.offset: str | None = None  # the last event offset such a server sent

    async def connect(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        deadline = loop.time() + timeout
        await super().connect(timeout)
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                await self._ready
        except BaseException:
            if self._tr is not None:
                self._tr.abort()
            raise
        # The engine.io and socket.io handshakes are not message traffic.
        self._parser.wire_bytes = self.bytes_in = self.bytes_out = 0

    def send(self, msg: dict[str, Any]) -> None:
        event, data = protocol.to_sio(msg)
        self._write_text(b"42" + orjson.dumps([event, data]))

    def _on_text(self, payload: bytes) -> None:
        kind = payload[:1]
        if kind == b"4":  # engine.io message carrying a socket.io packet
            sio = payload[1:2]
            if sio == b"2":  # event: 42["name",arg]
                try:
                    event, *args = orjson.loads(payload[2:])
                except (orjson.JSONDecodeError, ValueError, TypeError):
                    self.on_message({"op": None, "raw": payload})
                    return
                if len(args) > 1 and self.pid is not None and isinstance(args[-1], str):
                    self.offset = args[-1]  # connection state recovery: the event's offset comes last
                self.on_message(protocol.from_sio(event, args[0] if args else None))
            elif sio == b"0":  # namespace connected: 40{"sid": ..., "pid": ...}
                self._on_connected(payload[2:])
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)
            elif sio == b"4":  # connect error
                if self._ready is not None and not self._ready.done():
                    self._ready.set_exception(ConnectError(f"socket.io connect refused: {payload[2:200].decode(errors='replace')}"))
            elif sio == b"1":  # the server disconnected us
                self._fail("disconnected by server")
        elif kind == b"2":  # engine.io ping: answer or the server drops us after pingTimeout
            self._write_text(b"3" + payload[1:])
        elif kind == b"0":  # engine.io open: now connect the default namespace
            self._write_text(b"40" + (orjson.dumps(self.auth) if self.auth else b""))
        elif kind == b"1":  # engine.io close
            self._fail("closed by server (engine.io close)")

    def _on_connected(self, body: bytes) -> None:
        try:
            data = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            return
        if isinstance(data, dict):
            sid, pid = data.get("sid"), data.get("pid")
            self.sid = sid if isinstance(sid, str) else None
            self.pid = pid if isinstance(pid, str) else None
