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
import time
from collections import deque
from typing import Any, cast
from urllib.parse import urlsplit

import orjson

from harness.load import protocol
from harness.load.clients import Client, CloseHandler, ConnectError, MessageHandler
from harness.load.histogram import LatencyRecorder

try:  # the C masking routine websockets ships; the fallback is the same function in Python
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

__all__ = [
    "RawWebSocketClient",
    "build_frame",
    "FrameParser",
    "handshake_request",
    "accept_key",
    "EchoTemplate",
    "EchoPipeline",
    "PipelineTally",
    "ECHO_KEY",
]

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
        self._pipe: EchoPipeline | None = None

    @classmethod
    def supports_echo_pipeline(cls) -> bool:
        """Whether ``start_echo_pipeline`` speaks this adapter's protocol: not in a subclass that re-encodes messages."""
        return cls.send is RawWebSocketClient.send and cls._on_text is RawWebSocketClient._on_text

    def start_echo_pipeline(
        self,
        conn_id: int,
        d: str,
        window: int,
        end_ns: int,
        latency: LatencyRecorder,
        service: LatencyRecorder,
        lag: LatencyRecorder,
        tally: PipelineTally | None = None,
    ) -> EchoPipeline:
        """Run closed-loop echo on this open connection with ``window`` requests outstanding until ``end_ns``.

        ``window`` 0: no closed loop; send with the pipeline's ``send_scheduled``.
        """
        if not self.supports_echo_pipeline():
            raise TypeError(f"the {self.transport!r} adapter re-encodes messages: no echo pipeline")
        pipe = EchoPipeline(self, EchoTemplate(conn_id, d), window, end_ns, latency, service, lag, tally)
        self._pipe = pipe
        pipe.start(time.time_ns())
        return pipe

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
        tr = self._tr
        if self._open and tr is not None:  # open implies a transport; the check is for the type checker
            frame = build_frame(protocol.encode_ws(msg))
            self.bytes_out += len(frame)
            tr.write(frame)

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
        except TimeoutError:
            tr.abort()
        except asyncio.CancelledError:
            tr.abort()
            raise
        self.closed = True

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tr = self._tr = cast(asyncio.Transport, transport)  # create_connection gives a stream transport
        tr.write(handshake_request(self._host, self._port, self._resource, self._key))

    def data_received(self, data: bytes) -> None:
        if not self._open:
            data = self._read_handshake(data)
            if not data:
                return
        pipe = self._pipe
        parser = self._parser
        if pipe is not None:
            now = time.time_ns()
            if not parser._buf and parser._frag_op is None:  # noqa: SLF001 - between frames: try the bulk path
                if pipe.feed(data, now):
                    self.bytes_in = parser.wire_bytes + pipe.bytes_in
                    return
                data = pipe.take_partial() + data
        try:
            frames = parser.feed(data)
        except Exception as exc:  # a malformed stream ends the connection, not the generator
            self._fail(f"protocol error: {exc}")
            return
        self.bytes_in = parser.wire_bytes + (pipe.bytes_in if pipe is not None else 0)
        on_text = self._on_text
        for opcode, payload in frames:
            if opcode == OP_TEXT or opcode == OP_BINARY:
                if pipe is None or opcode != OP_TEXT or not pipe.match(payload, now):
                    on_text(payload)
            elif opcode == OP_PING:
                if not self._closing and self._tr is not None:
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
            self._handshake.set_exception(
                ConnectError("connection closed during handshake" if exc is None else f"connection lost during handshake: {exc}")
            )
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
        tr = self._tr
        if self._open and tr is not None:
            frame = build_frame(payload)
            self.bytes_out += len(frame)
            tr.write(frame)

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
        tr = self._tr
        assert tr is not None  # a frame arrived, so the connection was made
        if not self._closing:
            # The server started the closing handshake: answer it, then report the close.
            self._closing = True
            self._open = False
            frame = build_frame(payload[:2], OP_CLOSE)
            self.bytes_out += len(frame)
            tr.write(frame)
            self.on_close(f"closed by server (code {code})")
        tr.close()

    def _fail(self, reason: str) -> None:
        if not self._closing:
            self._closing = True
            self._open = False
            self.on_close(reason)
        if self._tr is not None:
            self._tr.abort()


# -- pipelined echo: frames built and checked in bulk ---------------------------------------

#: The masking key of pipelined echo frames. RFC 6455 asks for an unpredictable key so a
#: browser's frames cannot poison an intermediary's cache; a measurement connection on
#: loopback has no intermediary, and a fixed key lets a batch be masked in one call. The
#: server unmasks every byte either way, so its work is the same.
ECHO_KEY = b"\x9e\x37\x79\xb9"
_ECHO_TAIL = b'%10d,"t":%19d'


class EchoTemplate:
    """The echo requests of one connection, built and masked a batch at a time.

    Every request of a connection has the same length: ``seq`` and ``t`` are
    fixed-width JSON numbers (padded with spaces, which JSON allows), ``c``
    and ``d`` never change, and a few spaces before the closing brace make
    the whole frame a multiple of 4 bytes long. With a fixed masking key every
    frame's payload then starts at the same phase of the key, so a batch is
    one ``%``-format per message, one join, and one ``apply_mask`` over the
    whole batch: the header bytes are stored pre-masked, so masking the batch
    restores them. The server echoes each payload unchanged in an unmasked
    frame, so the replies to a batch are known byte for byte when it is sent.
    """

    __slots__ = ("conn_id", "payload_len", "frame_len", "reply_len", "_fmt", "_head", "_reply_head", "_key")

    def __init__(self, conn_id: int, d: str, key: bytes = ECHO_KEY) -> None:
        if len(key) != 4:
            raise ValueError("a masking key has 4 bytes")
        head = b'{"op":"echo","c":%d,"d":%s,"seq":' % (conn_id, orjson.dumps(d))
        base = len(head) + len(_ECHO_TAIL % (0, 0)) + 1
        for pad in range(8):  # up to 7: across a length-field boundary the header grows by 2 or 6 bytes
            length = base + pad
            hl = protocol.ws_frame_header_size(length, masked=True)
            if (hl + length) % 4 == 0:
                break
        else:  # pragma: no cover - some pad below 8 always works
            raise AssertionError("no padding aligns the frame")
        self.conn_id = conn_id
        self.payload_len = length
        self.frame_len = hl + length
        self._fmt = head.replace(b"%", b"%%") + _ECHO_TAIL + b" " * pad + b"}"
        header = build_frame(b"", OP_TEXT, mask=False)[:1] + _length_bytes(length, True) + key
        # The keystream over a batch: frame offset j is masked with key[(j - hl) % 4].
        self._key = bytes(key[(j - hl) % 4] for j in range(4))
        self._head = bytes(b ^ self._key[j % 4] for j, b in enumerate(header))
        self._reply_head = build_frame(b"", OP_TEXT, mask=False)[:1] + _length_bytes(length, False)
        self.reply_len = len(self._reply_head) + length

    def batch(self, seq0: int, count: int, t_ns: int) -> tuple[bytes, bytes]:
        """Requests ``seq0 .. seq0+count-1``, all intended at ``t_ns``: the masked frames to send, and the replies expected."""
        fmt = self._fmt
        return self._pack([fmt % (s, t_ns) for s in range(seq0, seq0 + count)])

    def batch_of(self, requests: list[tuple[int, int]]) -> tuple[bytes, bytes]:
        """Requests given as ``(seq, intended ns)`` pairs: the masked frames to send, and the replies expected."""
        fmt = self._fmt
        return self._pack([fmt % st for st in requests])

    def _pack(self, payloads: list[bytes]) -> tuple[bytes, bytes]:
        head = self._head
        rhead = self._reply_head
        return apply_mask(head + head.join(payloads), self._key), rhead + rhead.join(payloads)


def _length_bytes(n: int, masked: bool) -> bytes:
    m = 0x80 if masked else 0
    if n < 126:
        return bytes((m | n,))
    if n < 65536:
        return struct.pack("!BH", m | 126, n)
    return struct.pack("!BQ", m | 127, n)


class PipelineTally:
    """Requests sent and replies received, summed over the pipelines of one generator process."""

    __slots__ = ("sent", "received")

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0


class EchoPipeline:
    """Echo on one raw connection with frames built and replies checked in bulk.

    Closed loop (``window`` >= 1): ``window`` requests outstanding, driven by arrivals.
    Open model (``window`` 0): the caller sends with ``send_scheduled``, every
    request due on this connection in one go; replies are checked the same way.

    Each data chunk that completes ``k`` replies frees ``k`` slots, and the
    ``k`` next requests go out at once, in one write, intended at the moment
    the chunk arrived. A chunk is checked against the expected replies with
    one comparison (they are in order on one TCP connection and byte for
    byte what was sent), and latencies are recorded per batch: every request
    of a batch has the same intended and actual send time, and every reply
    of one chunk the same arrival time, so a count per (batch, chunk) pair is
    exactly the latency of each message. Anything else (a control frame, a
    server that re-encodes the JSON) goes frame by frame through the generic
    parser, where a reply still counts when its ``c``, ``seq`` and ``t`` are
    the ones expected next.
    """

    __slots__ = (
        "client",
        "template",
        "window",
        "end_ns",
        "latency",
        "service",
        "lag",
        "tally",
        "sent",
        "received",
        "skipped",
        "_late",
        "bytes_in",
        "_expect",
        "_off",
        "_in_frame",
        "_batches",
    )

    def __init__(
        self,
        client: RawWebSocketClient,
        template: EchoTemplate,
        window: int,
        end_ns: int,
        latency: LatencyRecorder,
        service: LatencyRecorder,
        lag: LatencyRecorder,
        tally: PipelineTally | None = None,
    ) -> None:
        if window < 0:
            raise ValueError("window must be >= 0 (0: the caller schedules the sends)")
        self.client = client
        self.template = template
        self.window = window
        self.end_ns = end_ns
        self.latency = latency
        self.service = service
        self.lag = lag
        self.tally = tally if tally is not None else PipelineTally()
        self.sent = 0
        self.received = 0
        self.skipped = 0  # replies that never came: a later one arrived first (lost, or out of order; stays outstanding)
        self._late: dict[int, tuple[int, int]] = {}  # skipped seq -> (intended ns, sent ns): a reply arriving late still counts
        self.bytes_in = 0  # matched in bulk (the generic parser counts the rest)
        self._expect = bytearray()  # replies not yet received, from offset _off
        self._off = 0
        self._in_frame = 0  # bytes of a reply received so far at _off
        self._batches: deque[list[int]] = deque()  # [intended ns, sent ns, replies still due]

    @property
    def outstanding(self) -> int:
        """Requests sent and not answered (yet)."""
        return self.sent - self.received

    def start(self, t_ns: int) -> None:
        """Fill the window: ``window`` requests intended at ``t_ns``."""
        if self.window and t_ns < self.end_ns:
            self._send(self.window, t_ns)

    def send_scheduled(self, requests: list[tuple[int, int]]) -> int:
        """Send the requests ``(seq, intended ns)`` (the next ``seq`` numbers, in order) in one write; return how many went."""
        client = self.client
        tr = client._tr
        if not client._open or tr is None or not requests:
            return 0
        if requests[0][0] != self.sent:
            raise ValueError(f"request {requests[0][0]} sent out of turn: {self.sent} is next")
        frames, replies = self.template.batch_of(requests)
        sent_ns = time.time_ns()
        tr.write(frames)
        client.bytes_out += len(frames)
        self._expect += replies
        batches = self._batches
        lag = self.lag.record
        for _, t in requests:
            batches.append([t, sent_ns, 1])
            lag((sent_ns - t) // 1000)
        n = len(requests)
        self.sent += n
        self.tally.sent += n
        return n

    def _send(self, count: int, t_ns: int) -> None:
        client = self.client
        tr = client._tr
        if not client._open or tr is None:
            return
        frames, replies = self.template.batch(self.sent, count, t_ns)
        sent_ns = time.time_ns()
        tr.write(frames)
        client.bytes_out += len(frames)
        self._expect += replies
        self._batches.append([t_ns, sent_ns, count])
        self.sent += count
        self.tally.sent += count
        self.lag.record((sent_ns - t_ns) // 1000, count)

    def _consume(self, count: int, now: int) -> None:
        """``count`` replies arrived at ``now``: record them against their batches, refill the window."""
        batches = self._batches
        latency = self.latency.record
        service = self.service.record
        left = count
        while left:
            b = batches[0]
            m = b[2] if b[2] <= left else left
            latency((now - b[0]) // 1000, m)
            service((now - b[1]) // 1000, m)
            b[2] -= m
            left -= m
            if not b[2]:
                batches.popleft()
        self.received += count
        self.tally.received += count
        if self.window and now < self.end_ns:
            self._send(count, now)

    def feed(self, data: bytes, now: int) -> bool:
        """Take ``data`` if it is exactly the next expected reply bytes; False (nothing taken) otherwise."""
        off = self._off
        n = len(data)
        if self._expect[off : off + n] != data:
            return False
        self._off = off = off + n
        self.bytes_in += n
        count, self._in_frame = divmod(self._in_frame + n, self.template.reply_len)
        if off > 65536:  # drop what was received, keeping the reply in progress
            cut = off - self._in_frame
            del self._expect[:cut]
            self._off -= cut
        if count:
            self._consume(count, now)
        return True

    def take_partial(self) -> bytes:
        """Give back the bytes of a reply received in part, for the generic parser to finish."""
        k = self._in_frame
        if not k:
            return b""
        self._off -= k
        self.bytes_in -= k
        self._in_frame = 0
        return bytes(self._expect[self._off : self._off + k])

    def match(self, payload: bytes, now: int) -> bool:
        """Whether a text message parsed frame by frame is an expected reply (then it counts).

        The next one expected, or a later one: then the replies before it never came (a server that lost them) and
        are skipped, left outstanding (lost), instead of every later reply being taken for a stranger.
        """
        if not self._batches and not self._late:
            return False
        tpl = self.template
        start = self._off + tpl.reply_len - tpl.payload_len
        if self._batches and self._expect[start : start + tpl.payload_len] == payload:
            return self._take(0, now)
        try:  # re-encoded by the server, or a later reply than the next
            msg = protocol.decode_ws(payload)
        except ValueError:
            return False
        seq = msg.get("seq")
        if msg.get("op") != protocol.OP_ECHO or msg.get("c") != tpl.conn_id or not isinstance(seq, int):
            return False
        late = self._late.pop(seq, None)
        if late is not None:  # a reply overtaken by a later one (reordered), arriving after all
            if msg.get("t") != late[0]:
                self._late[seq] = late
                return False
            self.skipped -= 1
            self.latency.record((now - late[0]) // 1000)
            self.service.record((now - late[1]) // 1000)
            self.received += 1
            self.tally.received += 1
            return True
        ahead = seq - (self._next_seq())
        if not 0 <= ahead < self.sent - self._next_seq():
            return False
        at = start + ahead * tpl.reply_len
        if self._expect[at : at + tpl.payload_len] != payload and msg.get("t") != self._intended(ahead):
            return False
        return self._take(ahead, now)

    def _next_seq(self) -> int:
        """The ``seq`` of the next reply expected in order: every one before it came or was skipped."""
        return self.received + self.skipped  # a late reply moves one from skipped to received: the sum stays

    def _intended(self, ahead: int) -> int | None:
        """The intended send time of the reply ``ahead`` places after the next one."""
        for b in self._batches:
            if ahead < b[2]:
                return b[0]
            ahead -= b[2]
        return None

    def _take(self, skip: int, now: int) -> bool:
        """Skip ``skip`` replies that never came (lost: outstanding for ever), then count the one that did."""
        tpl = self.template
        if skip:
            batches = self._batches
            seq = self._next_seq()
            left = skip
            while left:
                b = batches[0]
                m = min(b[2], left)
                for k in range(m):
                    self._late[seq + k] = (b[0], b[1])
                seq += m
                b[2] -= m
                left -= m
                if not b[2]:
                    batches.popleft()
            self.skipped += skip
            self._off += skip * tpl.reply_len
        self._off += tpl.reply_len
        self._consume(1, now)
        return True
