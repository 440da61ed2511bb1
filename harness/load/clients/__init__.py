"""Client adapters, one per transport, behind one small interface, found by transport name.

An adapter is one connection: ``connect``, a non-blocking ``send`` of a
protocol message (a dict with ``op``), a receive loop that hands every
decoded message to ``on_message``, ``close``, and the bytes it put on and
took off the wire after the handshake, framing included. ``send`` never
waits for the server: an open-model generator must not slow down because
the server does, so a slow server grows the write buffer instead.

Adapters are registered by name as ``"module:Class"`` strings and imported
on first use, so a generator that speaks WebSocket never imports Socket.IO.
SSE and long polling plug in the same way (``register("sse", ...)``).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from typing import Any, ClassVar

__all__ = ["Client", "ConnectError", "WireCountedClient", "register", "adapter_path", "get_client_class", "transports", "describe_error"]

MessageHandler = Callable[[dict[str, Any]], None]
CloseHandler = Callable[[str], None]


class ConnectError(Exception):
    """A connection could not be established; the message is the reason, short and stable."""


class Client:
    """One connection of one transport; subclasses implement the I/O."""

    #: The transport name this adapter is registered under.
    transport: ClassVar[str] = ""
    #: Whether the adapter can negotiate permessage-deflate.
    supports_compression: ClassVar[bool] = False
    #: Bytes sent and received after the handshake, WebSocket framing and control frames included.
    bytes_in: int = 0
    bytes_out: int = 0

    def __init__(
        self,
        url: str,
        on_message: MessageHandler,
        on_close: CloseHandler,
        *,
        compression: bool = False,
        shared: dict[str, Any] | None = None,
    ) -> None:
        if compression and not self.supports_compression:
            raise ValueError(f"the {self.transport!r} client does not do permessage-deflate; use 'ws-websockets' for compression")
        self.url = url
        self.on_message = on_message
        self.on_close = on_close
        self.compression = compression
        # Per-process resources adapters may share between connections (an HTTP session).
        self.shared = shared if shared is not None else {}
        self.closed = False

    async def connect(self, timeout: float) -> None:
        """Open the connection and finish the handshake; raise ``ConnectError`` with a reason."""
        raise NotImplementedError

    def send(self, msg: dict[str, Any]) -> None:
        """Queue one protocol message for sending without waiting; drop it silently when closed."""
        raise NotImplementedError

    async def close(self, timeout: float) -> None:
        """Close politely, or abort after ``timeout`` seconds; never raises."""
        raise NotImplementedError

    @classmethod
    async def close_shared(cls, shared: dict[str, Any]) -> None:
        """Release per-process resources created by this adapter (after every connection closed)."""


class WireCountedClient(Client):
    """A client on a library connection (``self._ws``) that counts its own wire bytes as ``wire_in``/``wire_out``.

    Counting starts at the base values taken once the handshake is done.
    """

    _ws: Any = None
    _base_in = 0
    _base_out = 0

    @property
    def bytes_in(self) -> int:  # type: ignore[override]
        return self._ws.wire_in - self._base_in if self._ws else 0

    @property
    def bytes_out(self) -> int:  # type: ignore[override]
        return self._ws.wire_out - self._base_out if self._ws else 0


_REGISTRY: dict[str, str | type[Client]] = {
    "ws": "harness.load.clients.ws_raw:RawWebSocketClient",
    "ws-websockets": "harness.load.clients.ws_websockets:WebsocketsClient",
    "socketio": "harness.load.clients.sio:SocketIOClient",
    "socketio-raw": "harness.load.clients.sio_raw:RawSocketIOClient",
}


def register(transport: str, adapter: str | type[Client]) -> None:
    """Register an adapter class (or ``"module:Class"`` to import lazily) for a transport name.

    Generator processes are spawned fresh; ``run_load`` hands them the
    adapter's import path, so the class must be importable by module path
    (defined at a module's top level, not inside a function).
    """
    _REGISTRY[transport] = adapter


def adapter_path(transport: str) -> str:
    """The ``"module:Class"`` import path of a transport's adapter (for spawned processes)."""
    entry = _REGISTRY.get(transport)
    if entry is None:
        raise ValueError(f"unknown transport {transport!r}; known: {', '.join(transports())}")
    return entry if isinstance(entry, str) else f"{entry.__module__}:{entry.__qualname__}"


def transports() -> list[str]:
    """The registered transport names."""
    return sorted(_REGISTRY)


def get_client_class(transport: str) -> type[Client]:
    """The adapter class of ``transport``; ``ValueError`` for an unknown name."""
    try:
        entry = _REGISTRY[transport]
    except KeyError:
        raise ValueError(f"unknown transport {transport!r}; known: {', '.join(transports())}") from None
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        entry = getattr(importlib.import_module(module), name)
        _REGISTRY[transport] = entry
    return entry


def describe_error(exc: BaseException, timeout: float | None = None) -> str:
    """A short reason for a failure, stable across connections so reasons can be counted."""
    if isinstance(exc, ConnectError):
        return str(exc)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return f"timeout after {timeout:g} s" if timeout is not None else "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.errno is not None:
        import errno as _errno
        import os

        return f"{_errno.errorcode.get(exc.errno, exc.errno)}: {os.strerror(exc.errno)}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
