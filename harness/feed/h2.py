"""The feed's clients over HTTP/2 (``sse-h2``, ``longpoll-h2``): many streams on few connections, on the ``h2`` library.

aiohttp speaks only HTTP/1.1 and has no HTTP/2 server, so HTTP/2 is measured
through a front that terminates it (nginx's ``listen ssl http2``) in front
of the HTTP/1.1 feed server. These clients are the HTTP/1.1 ones
(:class:`harness.feed.sse.SSEClient`, :class:`harness.feed.longpoll.LongPollClient`:
their join, resume, held messages, SSE parser and poll answers) with each
request a stream of an HTTP/2 connection made here: an asyncio protocol
around ``h2``'s sans-I/O state machine. ALPN offers ``h2`` alone, so a
front that cannot speak it fails the connect instead of quietly measuring
HTTP/1.1; an ``http://`` URL speaks h2 with prior knowledge (h2c).

Why not httpx (with h2): its pool makes a request over a connection's
stream limit wait for a free stream instead of opening another connection
(an SSE stream never ends, so the 101st waits for ever), and its HTTP/2
connection is read by whichever of its streams' tasks holds a read lock: a
stream whose event has arrived can wait behind another stream's task that
took the lock and blocks reading the socket, until the next bytes come. With
100 SSE clients at 10 broadcasts/s through nginx that showed as 14 events
never delivered and a p99 of 116 ms against 19 ms over HTTP/1.1, at 180 us
of generator CPU per delivered event; 100 long-pollers reached a p50 of 2 s.
Here the connection's protocol reads every byte as it comes and hands each
stream its data in the same call, with no task switch per event: the SSE
parser runs inside ``data_received``.

Cost on the generator side (measured on a busy 2-core VM, one generator
process, 100 clients, 10 and 100 broadcasts/s, through nginx both ways):
about 50 to 80 us of CPU per delivered SSE event over HTTP/2 against 36 to
55 us over HTTP/1.1 (h2's pure-Python frame parsing and flow control), and
about 300 us per delivered long-poll event against 165 to 180 us (each
poll a stream: HPACK both ways, two futures). Fine for thousands of
events per second per process; past that, add processes.

Connections: a browser multiplexes every stream of an origin on one
connection; a generator process does the same for the clients it runs, up
to a limit. Each client holds at most two streams at once (its stream or
poll, and one POST: ``post_concurrency`` is 1) and nginx allows 128 per
connection (``http2_max_concurrent_streams``), so a process shares one
connection among :attr:`H2Pool.clients_per_connection` (50;
``FEED_H2_CLIENTS_PER_CONNECTION`` changes it) clients and opens another for
the next 50. Server-side "memory per connection" over HTTP/2 is therefore
per 50 clients' connection plus per stream, not a browser's one connection
per user. A connection that breaks fails its streams; the next request on
its slot opens a new one. nginx ends a connection after
``keepalive_requests`` (1000) requests with a GOAWAY, every few seconds for
busy long-pollers: as a browser does, the streams the GOAWAY covers finish
on the old connection (h2 itself would refuse their frames: see
:class:`_H2State`), the ones it refuses go again on a new connection
(``retried``), and new ones open there.

TLS: the front's certificate is a throwaway self-signed one. The CA (or the
certificate itself) to trust is taken from the URL's ``ca`` query parameter
(``https://127.0.0.1:8443?ca=/tmp/x/cert.pem``; the feed's base drops the
query) or the ``FEED_H2_CA`` environment variable; without either, a
loopback host is not verified (this machine's own throwaway front: nothing
to authenticate) and any other host is verified against the system's CAs.

Bytes on the wire are HTTP/2 frames: each connection's decrypted byte
stream is cut into frames (9-byte header: length, type, stream) and each
frame is charged to the client whose stream it belongs to, so a client's
bytes are its requests' and responses' HPACK-compressed headers, DATA,
WINDOW_UPDATE and RST_STREAM frames and frame headers. Frames on stream 0
(SETTINGS, PING, connection WINDOW_UPDATE, GOAWAY), the 24-byte client
preface and frames after a stream's end go to the client that opened the
connection. The sum over a process's clients is every frame byte both ways;
TLS record overhead (about 22 to 29 bytes per record with TLS 1.3 AES-GCM)
and the handshake are not counted, as the HTTP/1.1 clients count no TCP or
IP headers: the two are comparable as HTTP bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import ssl
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import orjson

from harness.feed.client import FeedClient, Wire, http_error
from harness.feed.longpoll import LongPollClient
from harness.feed.sse import SSEClient, SSEParser, decode_event
from harness.load import protocol
from harness.load.clients import ConnectError, describe_error

__all__ = [
    "SSEH2Client",
    "LongPollH2Client",
    "H2Pool",
    "H2Connection",
    "H2Stream",
    "FrameTally",
    "CA_ENV",
    "PER_CONNECTION_ENV",
    "POOL_KEY",
    "h2_pool",
    "tls_context",
]

#: Where a generator process keeps its pool of HTTP/2 connections (in the engine's per-process ``shared``).
POOL_KEY = "feed_h2_pool"
#: The environment variable naming a CA (or the self-signed certificate) to trust; the URL's ``ca`` query wins.
CA_ENV = "FEED_H2_CA"
#: The environment variable that changes :attr:`H2Pool.clients_per_connection` (generator processes inherit it).
PER_CONNECTION_ENV = "FEED_H2_CLIENTS_PER_CONNECTION"

_FRAME_HEADER = 9
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS = 0x0, 0x1
_END_STREAM = 0x1
#: Times a request goes out when GOAWAYs keep refusing it (each on a new connection).
_ATTEMPTS = 3
#: The receive window a connection opens with (16 MiB): a slow reader is never stalled by flow control first.
_WINDOW = 1 << 24


def tls_context(url: str) -> ssl.SSLContext:
    """The TLS context for a feed URL, offering only ``h2``: trust its ``ca`` query or ``FEED_H2_CA``; else skip the check on loopback only."""
    parts = urlsplit(url)
    given = parse_qs(parts.query).get("ca")
    ca = given[0] if given else os.environ.get(CA_ENV)
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
    elif _loopback(parts.hostname or ""):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(["h2"])
    return ctx


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- bytes ---------------------------------------------------------------------------------------------------------


class FrameTally:
    """Cuts one direction of a connection into HTTP/2 frames and charges each to its stream's client (``owners``)."""

    __slots__ = ("_owners", "_opener", "_outgoing", "_head", "_left", "_wire", "_preface")

    def __init__(self, owners: dict[int, Wire], opener: Wire, outgoing: bool) -> None:
        self._owners = owners
        self._opener = opener
        self._outgoing = outgoing
        self._head = b""  # a frame header cut by the end of a chunk
        self._left = 0  # payload bytes of the current frame still to come
        self._wire = opener
        self._preface = len(_PREFACE) if outgoing else 0

    def _charge(self, wire: Wire, n: int) -> None:
        if self._outgoing:
            wire.bytes_out += n
        else:
            wire.bytes_in += n

    def feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        if self._preface:
            take = min(self._preface, n)
            self._charge(self._opener, take)
            self._preface -= take
            i = take
        while i < n:
            if self._left:
                take = min(self._left, n - i)
                self._charge(self._wire, take)
                self._left -= take
                i += take
                continue
            take = min(_FRAME_HEADER - len(self._head), n - i)
            self._head += data[i : i + take]
            i += take
            if len(self._head) < _FRAME_HEADER:
                return
            head, self._head = self._head, b""
            stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            wire = self._owners.get(stream, self._opener) if stream else self._opener
            if not self._outgoing and head[3] in (_DATA, _HEADERS) and head[4] & _END_STREAM:
                self._owners.pop(stream, None)  # the response is complete: stream ids are never reused
            self._wire = wire
            self._charge(wire, _FRAME_HEADER)
            self._left = int.from_bytes(head[0:3], "big")


# -- the connection --------------------------------------------------------------------------------------------------


class _H2State(h2.connection.H2Connection):
    """h2's connection state, except that a GOAWAY lets the streams it covers finish (RFC 9113, 6.8).

    h2 closes its whole state machine on a GOAWAY and refuses every frame after it, even the DATA of a stream
    the server said it will complete; nginx sends one after ``keepalive_requests`` (1000) requests on a
    connection and keeps serving the streams already open. The connection is marked draining instead (no new
    streams on it; see :class:`H2Connection`).
    """

    def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[h2.events.Event]]:
        frames, events = super()._receive_goaway_frame(frame)
        self.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        return frames, events


class H2Stream:
    """One request's answer: its status and headers, its body (to ``on_data`` once set, buffered until then), its end."""

    __slots__ = ("id", "status", "headers", "answered", "ended", "chunks", "on_data", "error", "unprocessed")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.id = 0
        self.status = 0
        self.headers: dict[str, str] = {}
        self.answered: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[None] = loop.create_future()
        self.chunks: list[bytes] = []
        self.on_data: Callable[[bytes], None] | None = None
        self.error: str | None = None
        #: The server said (GOAWAY) it never processed this request: it may go again on another connection.
        self.unprocessed = False

    def stream_to(self, on_data: Callable[[bytes], None]) -> None:
        """From now on hand every chunk of the body to ``on_data`` (the chunks buffered so far first)."""
        chunks, self.chunks = self.chunks, []
        self.on_data = on_data
        for chunk in chunks:
            on_data(chunk)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def fail(self, reason: str) -> None:
        self.error = reason
        for fut in (self.answered, self.ended):
            if not fut.done():
                fut.set_exception(ConnectError(reason))
                fut.exception()  # retrieved: a stream nobody awaits any more logs nothing


class H2Connection(asyncio.Protocol):
    """One HTTP/2 connection: ``h2``'s state machine, fed in ``data_received``, each stream's events dispatched at once."""

    def __init__(self, authority: str, scheme: str, opener: Wire) -> None:
        self.authority = authority
        self.scheme = scheme
        self.h2 = _H2State(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.streams: dict[int, H2Stream] = {}
        self.owners: dict[int, Wire] = {}
        self.tally_in = FrameTally(self.owners, opener, outgoing=False)
        self.tally_out = FrameTally(self.owners, opener, outgoing=True)
        self.transport: asyncio.Transport | None = None
        self.broken: str | None = None
        #: A GOAWAY came: the streams it covers finish, no new one opens here.
        self.draining = False
        self._blocked: list[tuple[int, bytes]] = []  # request bodies waiting for flow-control window

    # -- asyncio ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's SSL transport is no asyncio.Transport subclass
        self.h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW,
            },
        )
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(_WINDOW - 65535)
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.tally_in.feed(data)
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._break(f"HTTP/2 protocol error: {type(exc).__name__}")
            return
        for ev in events:
            if isinstance(ev, h2.events.DataReceived):
                stream = self.streams.get(ev.stream_id)
                if ev.flow_controlled_length:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if stream is not None and ev.data:
                    if stream.on_data is None:
                        stream.chunks.append(ev.data)
                        continue
                    try:
                        stream.on_data(ev.data)
                    except Exception as exc:  # the client's own failure ends its stream, not the connection's others
                        self.streams.pop(ev.stream_id, None)
                        stream.fail(f"client: {describe_error(exc)}")
            elif isinstance(ev, h2.events.ResponseReceived):
                stream = self.streams.get(ev.stream_id)
                if stream is not None:
                    for name, value in ev.headers or ():
                        if name == b":status":
                            stream.status = int(value)
                        else:
                            stream.headers[bytes(name).decode("latin-1")] = bytes(value).decode("latin-1")
                    if not stream.answered.done():
                        stream.answered.set_result(None)
            elif isinstance(ev, h2.events.StreamEnded):
                stream = self.streams.pop(ev.stream_id, None)
                if stream is not None and not stream.ended.done():
                    stream.ended.set_result(None)
                if self.draining and not self.streams:
                    self.close()
                    return
            elif isinstance(ev, h2.events.StreamReset):
                stream = self.streams.pop(ev.stream_id, None)
                if stream is not None:
                    stream.fail(f"stream reset (error code {int(ev.error_code or 0)})")
            elif isinstance(ev, h2.events.ConnectionTerminated):
                if not self._goaway(ev):
                    return
            elif isinstance(ev, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)) and self._blocked:
                self._send_blocked()
        self._flush()

    def _goaway(self, ev: h2.events.ConnectionTerminated) -> bool:
        """A GOAWAY: fail the streams it does not cover (unprocessed: they may go again), drain the rest; False once closed."""
        if ev.error_code not in (None, h2.errors.ErrorCodes.NO_ERROR):
            self._break(f"server disconnected (GOAWAY {int(ev.error_code)})")
            return False
        self.draining = True
        last = ev.last_stream_id if ev.last_stream_id is not None else 0
        for sid in [sid for sid in self.streams if sid > last]:
            stream = self.streams.pop(sid)
            stream.unprocessed = True
            stream.fail("refused by GOAWAY")
        if not self.streams:
            self.close()
            return False
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._break("server disconnected" if exc is None else describe_error(exc))

    # -- requests -------------------------------------------------------------------------------
    def request(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes, owner: Wire) -> H2Stream:
        """Open a stream for one request (its body sent now, or when the window allows); the answer comes to the stream."""
        stream = H2Stream(asyncio.get_running_loop())
        if self.broken is not None:
            stream.fail(self.broken)
            return stream
        sid = stream.id = self.h2.get_next_available_stream_id()
        self.streams[sid] = stream
        self.owners[sid] = owner
        pseudo = [(":method", method), (":scheme", self.scheme), (":authority", self.authority), (":path", path)]
        if body:
            headers = [*headers, ("content-length", str(len(body)))]
        self.h2.send_headers(sid, pseudo + headers, end_stream=not body)
        if body:
            self._blocked.append((sid, body))
            self._send_blocked()
        self._flush()
        return stream

    @property
    def usable(self) -> bool:
        """Whether a new stream may open here."""
        return self.broken is None and not self.draining

    def cancel(self, stream: H2Stream) -> None:
        """Give up a stream (an SSE stream closed by its client): RST_STREAM if it is still open."""
        if self.streams.pop(stream.id, None) is None or self.broken is not None:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.reset_stream(stream.id, h2.errors.ErrorCodes.CANCEL)
        self._flush()

    def close(self) -> None:
        if self.transport is not None and self.broken is None:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.close_connection()
            self._flush()
            self.transport.close()
        self._break("closed")

    # -- inside ---------------------------------------------------------------------------------
    def _send_blocked(self) -> None:
        waiting, self._blocked = self._blocked, []
        for sid, body in waiting:
            try:
                size = min(len(body), self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            except h2.exceptions.ProtocolError:
                continue  # the stream is gone (reset)
            if size < len(body) or size == 0:
                if size:
                    self.h2.send_data(sid, body[:size])
                self._blocked.append((sid, body[size:]))
            else:
                self.h2.send_data(sid, body, end_stream=True)

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.tally_out.feed(data)
            self.transport.write(data)

    def _break(self, reason: str) -> None:
        if self.broken is not None:
            return
        self.broken = reason
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream.fail(reason)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class H2Pool:
    """A generator process's HTTP/2 connections to one feed: one per ``clients_per_connection`` clients.

    A client leases a slot when it connects and gives it back when it
    closes or drops; a lease goes to the first slot with room, so
    connections fill up before another is opened. A slot's connection is
    opened by its first request and opened again after it broke.
    """

    #: Clients sharing one connection: each holds at most two streams, under nginx's 128 per connection.
    clients_per_connection: ClassVar[int] = 50

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.tls else 80)
        default = (self.tls and self.port == 443) or (not self.tls and self.port == 80)
        self.authority = parts.netloc.rsplit("@", 1)[-1] if not default else self.host
        self.ssl = tls_context(url) if self.tls else None
        self.per_connection = int(os.environ.get(PER_CONNECTION_ENV) or self.clients_per_connection)
        self.slots: list[asyncio.Future[H2Connection] | None] = []
        self.leases: list[int] = []
        #: Connections opened (reopened ones included).
        self.opened = 0

    def lease(self) -> int:
        """A slot with room for one more client (a new one when all are full)."""
        for i, used in enumerate(self.leases):
            if used < self.per_connection:
                self.leases[i] += 1
                return i
        self.slots.append(None)
        self.leases.append(1)
        return len(self.leases) - 1

    def release(self, slot: int) -> None:
        if 0 <= slot < len(self.leases):
            self.leases[slot] -= 1

    async def connection(self, slot: int, timeout: float, opener: Wire) -> H2Connection:
        """The slot's open connection, opened now (by ``opener``'s request) if it has none or it broke."""
        fut = self.slots[slot]
        if fut is not None and fut.done() and (fut.cancelled() or fut.exception() is not None or not fut.result().usable):
            fut = None  # a draining connection finishes its streams by itself
        if fut is None:
            fut = self.slots[slot] = asyncio.get_running_loop().create_task(self._open(timeout, opener))
        return await asyncio.shield(fut)

    async def _open(self, timeout: float, opener: Wire) -> H2Connection:
        loop = asyncio.get_running_loop()
        scheme = "https" if self.tls else "http"
        try:
            async with asyncio.timeout(timeout):
                transport, conn = await loop.create_connection(
                    lambda: H2Connection(self.authority, scheme, opener),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl is not None else None,
                )
        except ssl.SSLError as exc:  # an OSError whose errno says nothing: its reason does (CERTIFICATE_VERIFY_FAILED)
            raise ConnectError(f"TLS: {exc.reason or type(exc).__name__}") from None
        except (OSError, TimeoutError) as exc:
            raise ConnectError(describe_error(exc, timeout)) from None
        self.opened += 1
        if self.ssl is not None:
            sslobj = transport.get_extra_info("ssl_object")
            alpn = sslobj.selected_alpn_protocol() if sslobj is not None else None
            if alpn != "h2":
                transport.abort()
                raise ConnectError(f"the front did not negotiate h2 (ALPN {alpn!r})")
        return conn

    async def aclose(self) -> None:
        slots, self.slots, self.leases = self.slots, [], []
        for fut in slots:
            if fut is None:
                continue
            if not fut.done():
                fut.cancel()
                continue
            if not fut.cancelled() and fut.exception() is None:
                fut.result().close()


def h2_pool(shared: dict[str, Any], url: str) -> H2Pool:
    """The generator process's pool (made on first use)."""
    pool = shared.get(POOL_KEY)
    if pool is None:
        pool = shared[POOL_KEY] = H2Pool(url)
    assert isinstance(pool, H2Pool)
    return pool


# -- the clients ---------------------------------------------------------------------------------------------------------


class _H2Feed(FeedClient):
    """What both HTTP/2 clients change: each request a stream of the pool's connection; publishing."""

    _slot: int | None = None
    #: Requests sent again on a new connection because a GOAWAY said the server never processed them.
    retried = 0

    def _path(self, route: str, params: dict[str, str] | None = None) -> str:
        path = urlsplit(self.base).path + route
        return f"{path}?{urlencode(params)}" if params else path

    async def request(
        self, method: str, route: str, params: dict[str, str] | None = None, headers: list[tuple[str, str]] | None = None, body: bytes = b""
    ) -> tuple[H2Stream, H2Connection]:
        """Open one request's stream and wait for its answer's headers (again on a new connection if a GOAWAY refused it)."""
        pool = h2_pool(self.shared, self.url)
        if self._slot is None:
            self._slot = pool.lease()
        for attempt in range(_ATTEMPTS):
            conn = await pool.connection(self._slot, self.timeout, self.wire)
            stream = conn.request(method, self._path(route, params), headers or [], body, self.wire)
            try:
                await stream.answered
            except asyncio.CancelledError:
                conn.cancel(stream)
                raise
            except ConnectError:
                if stream.unprocessed and attempt + 1 < _ATTEMPTS:
                    self.retried += 1
                    continue  # as a browser does: the server never saw it
                raise
            return stream, conn
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def connect(self, timeout: float) -> None:
        if self._slot is None:
            self._slot = h2_pool(self.shared, self.url).lease()
        await super().connect(timeout)

    def _give_back(self) -> None:
        slot, self._slot = self._slot, None
        pool = self.shared.get(POOL_KEY)
        if slot is not None and isinstance(pool, H2Pool):
            pool.release(slot)

    def _fail(self, reason: str) -> None:
        super()._fail(reason)
        self._give_back()

    async def close(self, timeout: float) -> None:
        await super().close(timeout)
        self._give_back()

    @classmethod
    async def close_shared(cls, shared: dict[str, Any]) -> None:
        await super().close_shared(shared)  # the HTTP/1.1 session FeedClient.connect made (never used here)
        pool = shared.pop(POOL_KEY, None)
        if isinstance(pool, H2Pool):
            await pool.aclose()

    async def _post(self, msg: dict[str, Any]) -> None:
        """POST one broadcast as a stream; its answer goes to ``on_message``, as the HTTP/1.1 client's does."""
        try:
            stream, conn = await self.request("POST", "/send", headers=[("content-type", "application/json")], body=orjson.dumps(msg))
            try:
                await stream.ended
            finally:
                conn.cancel(stream)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # no answer: the message may or may not have reached the server
            self._fail(f"send: {describe_error(exc, self.timeout)}")
            return
        if self._stopped:
            return
        body, status = stream.body, stream.status
        reply: Any = None
        with contextlib.suppress(orjson.JSONDecodeError):
            reply = orjson.loads(body)
        if status == 200 and isinstance(reply, dict) and reply.get("op") == protocol.OP_ACK:
            self.on_message(reply)
        else:  # the server's answer, an error: the engine counts it as unexpected
            self.on_message({"op": "error", "status": status, "error": http_error("send", status, body)})


class SSEH2Client(_H2Feed, SSEClient):
    """The SSE client over HTTP/2: a stream per client on a shared connection, parsed as it arrives by the HTTP/1.1 client's parser.

    Bytes are HTTP/2 frame bytes, TLS excluded (see the module).
    """

    transport = "sse-h2"

    async def receive(self, room: str, after: Any, opened: asyncio.Future[None] | None) -> str:
        headers = [("accept", "text/event-stream"), ("cache-control", "no-store")]
        if after is not None:
            headers.append(("last-event-id", str(after)))
        stream, conn = await self.request("GET", "/sse", {"room": room}, headers)
        try:
            if stream.status != 200:
                await stream.ended
                raise ConnectError(http_error("sse", stream.status, stream.body))
            ctype = stream.headers.get("content-type", "").split(";", 1)[0].strip()
            if ctype != "text/event-stream":
                raise ConnectError(f"sse: the answer is {ctype}, not text/event-stream")
            parser = self._parser = SSEParser()

            def on_data(chunk: bytes) -> None:
                for event in parser.feed(chunk):
                    self.deliver(decode_event(event))
                    if opened is not None and not opened.done():
                        opened.set_result(None)

            stream.stream_to(on_data)
            await stream.ended
        finally:
            conn.cancel(stream)
        return "sse: the server ended the stream"


class LongPollH2Client(_H2Feed, LongPollClient):
    """The long-polling client over HTTP/2: each poll a stream on a shared connection; the HTTP/1.1 client's answers.

    Bytes are HTTP/2 frame bytes, TLS excluded (see the module).
    """

    transport = "longpoll-h2"

    async def _get(self, params: dict[str, str]) -> dict[str, Any]:
        async with asyncio.timeout(self.hold_s + self.slack_s):
            stream, conn = await self.request("GET", "/poll", params)
            try:
                await stream.ended
            finally:
                conn.cancel(stream)  # a poll cut short (timeout, close): RST_STREAM; an answered one: nothing
        body = stream.body
        if stream.status != 200:
            raise ConnectError(http_error("poll", stream.status, body))
        self.polls += 1
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ConnectError("poll: the answer is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("events", []), list):
            raise ConnectError("poll: the answer is not {'events': [...], 'cursor': N}")
        return data
