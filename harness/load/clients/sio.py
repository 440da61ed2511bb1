"""Socket.IO through python-socketio's AsyncClient, websocket transport only.

Bytes are counted where the engine.io client meets aiohttp: a
``ClientWebSocketResponse`` subclass (aiohttp's ``ws_response_class`` hook)
adds the size of every text frame it sends or receives, engine.io and
socket.io packet text plus WebSocket framing (masked out, unmasked in).
The client is told not to negotiate permessage-deflate (aiohttp offers it
by default), so frame sizes are the wire sizes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import socketio

from harness.load import protocol
from harness.load.clients import CloseHandler, ConnectError, MessageHandler, WireCountedClient

__all__ = ["SocketIOClient", "CountingWSResponse", "split_url"]


class CountingWSResponse(aiohttp.ClientWebSocketResponse):
    """An aiohttp client WebSocket that counts frame bytes both ways."""

    wire_in = 0
    wire_out = 0

    async def send_str(self, data: str, compress: int | None = None) -> None:
        self.wire_out += protocol.ws_frame_size(len(data.encode()), masked=True)
        await super().send_str(data, compress)

    async def send_bytes(self, data: bytes, compress: int | None = None) -> None:
        self.wire_out += protocol.ws_frame_size(len(data), masked=True)
        await super().send_bytes(data, compress)

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:
        msg = await super().receive(timeout)
        if msg.type is aiohttp.WSMsgType.TEXT:
            self.wire_in += protocol.ws_frame_size(len(msg.data.encode()), masked=False)
        elif msg.type is aiohttp.WSMsgType.BINARY:
            self.wire_in += protocol.ws_frame_size(len(msg.data), masked=False)
        return msg


def split_url(url: str) -> tuple[str, str]:
    """The server URL (http/https) and the engine.io path of a Socket.IO URL (default ``socket.io``)."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path.strip("/") or "socket.io"
    return urlunsplit((scheme, parts.netloc, "", parts.query, "")), path


class SocketIOClient(WireCountedClient):
    """One Socket.IO connection (default namespace) sharing the process's aiohttp session."""

    transport = "socketio"

    def __init__(
        self,
        url: str,
        on_message: MessageHandler,
        on_close: CloseHandler,
        *,
        compression: bool = False,
        shared: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(url, on_message, on_close, compression=compression, shared=shared)
        self._server_url, self._path = split_url(url)
        self._sio: socketio.AsyncClient | None = None
        self._ws: CountingWSResponse | None = None
        self._base_in = self._base_out = 0
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._closing = False

    def _session(self) -> aiohttp.ClientSession:
        session = self.shared.get("aiohttp_session")
        if session is None or session.closed:
            # One session per generator process: a session per connection costs a connector and a DNS cache each.
            connector = aiohttp.TCPConnector(limit=0, force_close=True)
            session = aiohttp.ClientSession(connector=connector, ws_response_class=CountingWSResponse)
            self.shared["aiohttp_session"] = session
        return session

    async def connect(self, timeout: float) -> None:
        sio = socketio.AsyncClient(
            reconnection=False,
            handle_sigint=False,
            http_session=self._session(),
            request_timeout=timeout,
            websocket_extra_options={"compress": 0, "autoping": True},
        )
        for event in protocol.SIO_SERVER_EVENTS:
            sio.on(event, self._handler(event))
        sio.on("disconnect", self._on_disconnect)
        self._sio = sio
        try:
            async with asyncio.timeout(timeout):
                await sio.connect(self._server_url, transports=["websocket"], socketio_path=self._path, wait_timeout=timeout)
        except socketio.exceptions.ConnectionError as exc:
            with contextlib.suppress(Exception):
                await sio.disconnect()
            raise ConnectError(f"socket.io: {exc}") from exc
        except BaseException:
            with contextlib.suppress(Exception):
                await sio.disconnect()
            raise
        ws = sio.eio.ws
        if isinstance(ws, CountingWSResponse):
            self._ws = ws
            self._base_in, self._base_out = ws.wire_in, ws.wire_out
        self._writer_task = asyncio.create_task(self._writer())

    def send(self, msg: dict[str, Any]) -> None:
        if self._sio is not None and not self.closed:
            self._queue.put_nowait(protocol.to_sio(msg))

    async def close(self, timeout: float) -> None:
        self._closing = True
        if self._writer_task is not None:
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer_task
        if self._sio is not None:
            try:
                async with asyncio.timeout(timeout):
                    await self._sio.disconnect()
            except Exception:  # the engine.io client cleans up its tasks on its own
                if self._ws is not None:
                    with contextlib.suppress(Exception):
                        self._ws._response.close()  # noqa: SLF001 - abort the socket under a stuck close
        self.closed = True

    @classmethod
    async def close_shared(cls, shared: dict[str, Any]) -> None:
        session = shared.pop("aiohttp_session", None)
        if session is not None and not session.closed:
            await session.close()

    def _handler(self, event: str) -> Callable[..., None]:
        on_message = self.on_message

        def handle(data: Any = None) -> None:
            on_message(protocol.from_sio(event, data))

        return handle

    def _on_disconnect(self, reason: Any = None) -> None:
        self.closed = True
        if not self._closing:
            self.on_close(f"disconnected: {reason}" if reason else "disconnected")

    async def _writer(self) -> None:
        sio = self._sio
        assert sio is not None
        queue = self._queue
        while True:
            event, data = await queue.get()
            try:
                await sio.emit(event, data)
            except socketio.exceptions.BadNamespaceError:  # disconnected: later sends are dropped too
                self.closed = True
                return
