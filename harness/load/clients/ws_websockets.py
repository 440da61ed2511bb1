"""Native WebSocket through the ``websockets`` asyncio client: the reference adapter, and the one with compression.

Slower per message than the raw client (a reader task, a writer task and a
queue per connection), but it is the library most Python servers and
clients use, so it serves to cross-check the raw client's counts, and it can
negotiate permessage-deflate when a scenario asks for compression. Bytes are
counted on the wire (what the connection hands to and gets from the
transport), so they stay exact with compression on.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from harness.load import protocol
from harness.load.clients import CloseHandler, ConnectError, MessageHandler, WireCountedClient

__all__ = ["WebsocketsClient", "CountingClientConnection"]


class CountingClientConnection(ClientConnection):
    """A ``websockets`` connection that counts the bytes it writes and reads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wire_in = 0
        self.wire_out = 0
        data_to_send = self.protocol.data_to_send

        def counted() -> list[bytes]:
            out = data_to_send()
            self.wire_out += sum(len(d) for d in out)
            return out

        # Every write goes through the sans-I/O protocol's data_to_send(), so
        # wrapping it counts exactly what reaches the transport.
        self.protocol.data_to_send = counted  # type: ignore[method-assign]

    def data_received(self, data: bytes) -> None:
        self.wire_in += len(data)
        super().data_received(data)


class WebsocketsClient(WireCountedClient):
    """One ``websockets`` connection with a reader task and a writer queue."""

    transport = "ws-websockets"
    supports_compression = True

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
        self.url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        self._ws: CountingClientConnection | None = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._base_in = self._base_out = 0
        self._closing = False

    async def connect(self, timeout: float) -> None:
        try:
            ws = await connect(
                self.url,
                compression="deflate" if self.compression else None,
                open_timeout=timeout,
                ping_interval=None,  # keepalive pings would add traffic and can fail a loaded run
                max_size=None,
                proxy=None,  # loopback load must never go through an HTTP proxy from the environment
                create_connection=CountingClientConnection,
            )
        except InvalidStatus as exc:
            raise ConnectError(f"handshake: HTTP {exc.response.status_code}") from exc
        assert isinstance(ws, CountingClientConnection)  # create_connection= above
        self._ws = ws
        # Bytes of the handshake are not message traffic.
        self._base_in, self._base_out = ws.wire_in, ws.wire_out
        self._tasks = [asyncio.create_task(self._reader()), asyncio.create_task(self._writer())]

    def send(self, msg: dict[str, Any]) -> None:
        if self._ws is not None and not self.closed:
            self._queue.put_nowait(protocol.encode_ws(msg))

    async def close(self, timeout: float) -> None:
        self._closing = True
        if self._ws is not None:
            try:
                async with asyncio.timeout(timeout):
                    await self._ws.close()
            except Exception:  # a close that fails or times out still ends the connection
                self._ws.transport.abort()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.closed = True

    async def _reader(self) -> None:
        assert self._ws is not None
        reason = "connection lost"
        try:
            async for raw in self._ws:
                try:
                    msg = protocol.decode_ws(raw)
                except ValueError:
                    msg = {"op": None, "raw": raw}
                self.on_message(msg)
            rcvd = self._ws.close_code
            reason = f"closed by server (code {rcvd})"
        except ConnectionClosed as exc:
            reason = f"connection lost: {exc}"
        self.closed = True
        if not self._closing:
            self.on_close(reason)

    async def _writer(self) -> None:
        assert self._ws is not None
        ws = self._ws
        queue = self._queue
        try:
            while True:
                data = await queue.get()
                # Text frame: send() of a str would encode again; websockets sends bytes as binary unless told.
                await ws.send(data, text=True)
        except ConnectionClosed:
            self.closed = True
