"""A lean WebSocket client on a bare asyncio protocol: the generator's default for native WebSocket.

It does what a load generator needs and nothing else: the RFC 6455 opening
handshake, masked text frames out, unmasked frames in (fragmented messages,
ping, pong and close handled), byte counts read straight off the wire. It
skips what costs a general-purpose client time per message (a receive
queue, a task per connection, flow-control awaits), so one generator core
drives about twice the messages it does with the ``websockets`` client
(``python -m harness.load.selftest --transport ws-websockets`` compares).
It offers no extensions, so permessage-deflate is always off.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import ssl
import struct
from typing import Any
from urllib.parse import urlsplit

from harness.load import protocol
from harness.load.clients import Client, ConnectError

try:  # the C masking routine websockets ships; the fallback is the same function in Python
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

__all__ = ["RawWebSocketClient", "build_frame", "FrameParser", "handshake_request", "accept_key"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_MAX_HANDSHAKE = 64 * 1024


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer to ``key``."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def handshake_request(host: str, port: int, resource: str, key: str) -> bytes:
    """The HTTP/1.1 upgrade request of the opening handshake (no extensions offered)."""
    return (
        f"GET {resource} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def build_frame(payload: bytes, opcode: int = OP_TEXT, mask: bool = True) -> bytes:
    """One final frame; clients mask (RFC 6455 5.3), servers do not."""
    n = len(payload)
    b0 = 0x80 | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        header = bytes((b0, mbit | n))
    elif n < 65536:
        header = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        header = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return header + payload
    # The RFC wants an unpredictable key so proxies cannot be poisoned; on a
    # measurement connection a fast PRNG is enough and keeps os.urandom's
    # system call out of the per-message cost.
    key = random.getrandbits(32).to_bytes(4, "big")
    return header + key + apply_mask(payload, key)


class FrameParser:
    """Sans-I/O frame reader: feed bytes, get ``(opcode, payload)`` of complete messages and control frames."""

    __slots__ = ("_buf", "_frag_op", "_frags", "wire_bytes")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._frag_op: int | None = None
        self._frags: list[bytes] = []
        self.wire_bytes = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Parse what ``data`` completes; keep the rest for the next call."""
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            hdr = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                hdr = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                hdr = 10
            masked = b1 & 0x80
            if masked:
                hdr += 4
            end = pos + hdr + length
            if end > n:
                break
            payload = bytes(buf[pos + hdr : end])
            if masked:  # servers must not mask, but tolerate it
                payload = apply_mask(payload, bytes(buf[pos + hdr - 4 : pos + hdr]))
            self.wire_bytes += hdr + length
            pos = end
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if opcode >= 0x8:  # control frames are never fragmented
                out.append((opcode, payload))
            elif opcode == OP_CONT:
                self._frags.append(payload)
                if fin and self._frag_op is not None:
                    out.append((self._frag_op, b"".join(self._frags)))
                    self._frag_op, self._frags = None, []
            elif fin:
                out.append((opcode, payload))
            else:
                self._frag_op, self._frags = opcode, [payload]
        if pos:
            del buf[:pos]
        return out


class RawWebSocketClient(Client, asyncio.Protocol):
    """A WebSocket connection driven from ``data_received``; messages reach ``on_message`` without a queue."""

    transport = "ws"

    def __init__(self, url: str, on_message, on_close, *, compression: bool = False, shared: dict[str, Any] | None = None) -> None:
        super().__init__(url, on_message, on_close, compression=compression, shared=shared)
        parts = urlsplit(url.replace("http://", "ws://", 1).replace("https://", "wss://", 1))
        self._secure = parts.scheme == "wss"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._secure else 80)
        self._resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._tr: asyncio.Transport | None = None
        self._parser = FrameParser()
        self._head = bytearray()
        self._open = False
        self._handshake: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] | None = None
        self._closing = False
        self._key = ""

    # -- Client interface -----------------------------------------------------------
    async def connect(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._handshake = loop.create_future()
        self._lost = loop.create_future()
        self._key = base64.b64encode(os.urandom(16)).decode()
        ctx = ssl.create_default_context() if self._secure else None
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: self, self._host, self._port, ssl=ctx)
                await self._handshake
        except BaseException:
            if self._tr is not None:
                self._tr.abort()
            raise

    def send(self, msg: dict[str, Any]) -> None:
        if self._open:
            frame = build_frame(protocol.encode_ws(msg))
            self.bytes_out += len(frame)
            self._tr.write(frame)

    async def close(self, timeout: float) -> None:
        tr = self._tr
        if tr is None or self._lost is None or self._lost.done():
            self.closed = True
            return
        self._closing = True
        if self._open:
            self._open = False
            frame = build_frame(struct.pack("!H", 1000), OP_CLOSE)
            self.bytes_out += len(frame)
            tr.write(frame)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._lost)  # the server answers close, then closes TCP
        except (TimeoutError, asyncio.TimeoutError):
            tr.abort()
        except asyncio.CancelledError:
            tr.abort()
            raise
        self.closed = True

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._tr = transport  # type: ignore[assignment]
        transport.write(handshake_request(self._host, self._port, self._resource, self._key))  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self._open:
            data = self._read_handshake(data)
            if not data:
                return
        try:
            frames = self._parser.feed(data)
        except Exception as exc:  # a malformed stream ends the connection, not the generator
            self._fail(f"protocol error: {exc}")
            return
        self.bytes_in = self._parser.wire_bytes
        on_text = self._on_text
        for opcode, payload in frames:
            if opcode == OP_TEXT or opcode == OP_BINARY:
                on_text(payload)
            elif opcode == OP_PING:
                if not self._closing:
                    frame = build_frame(payload, OP_PONG)
                    self.bytes_out += len(frame)
                    self._tr.write(frame)
            elif opcode == OP_CLOSE:
                self._on_close_frame(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        was_open = self._open
        self._open = False
        self.closed = True
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(ConnectError("connection closed during handshake" if exc is None else f"connection lost during handshake: {exc}"))
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        if was_open and not self._closing:
            self.on_close("connection lost" if exc is None else f"connection lost: {type(exc).__name__}")

    # -- internals ------------------------------------------------------------------
    def _on_text(self, payload: bytes) -> None:
        """One complete data message: a protocol object for ``on_message``."""
        try:
            msg = protocol.decode_ws(payload)
        except ValueError:
            msg = {"op": None, "raw": payload}
        self.on_message(msg)

    def _write_text(self, payload: bytes) -> None:
        """Send one text frame (if open), counting its bytes."""
        if self._open:
            frame = build_frame(payload)
            self.bytes_out += len(frame)
            self._tr.write(frame)

    def _read_handshake(self, data: bytes) -> bytes:
        """Collect the HTTP response; on 101 with the right accept key, open and return the bytes after it."""
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _MAX_HANDSHAKE:
                self._fail_handshake("handshake: response headers too large")
            return b""
        head = bytes(self._head[:end]).decode("latin-1")
        rest = bytes(self._head[end + 4 :])
        self._head = bytearray()
        lines = head.split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            self._fail_handshake(f"handshake: HTTP {status[1] if len(status) > 1 else '?'}")
            return b""
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if headers.get("sec-websocket-accept") != accept_key(self._key):
            self._fail_handshake("handshake: bad Sec-WebSocket-Accept")
            return b""
        if headers.get("sec-websocket-extensions"):
            self._fail_handshake("handshake: server imposed an extension that was not offered")
            return b""
        self._open = True
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_result(None)
        return rest

    def _fail_handshake(self, reason: str) -> None:
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(ConnectError(reason))
        if self._tr is not None:
            self._tr.abort()

    def _on_close_frame(self, payload: bytes) -> None:
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        if not self._closing:
            # The server started the closing handshake: answer it, then report the close.
            self._closing = True
            self._open = False
            frame = build_frame(payload[:2], OP_CLOSE)
            self.bytes_out += len(frame)
            self._tr.write(frame)
            self.on_close(f"closed by server (code {code})")
        self._tr.close()

    def _fail(self, reason: str) -> None:
        if not self._closing:
            self._closing = True
            self._open = False
            self.on_close(reason)
        if self._tr is not None:
            self._tr.abort()
