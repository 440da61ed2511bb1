"""What the SSE and long-polling clients share: the process's HTTP session, byte counting, publishing, held messages.

Bytes are counted at the transport: the session's connector makes its
connections with :class:`CountingResponseHandler`, whose transport counts
every byte written and whose ``data_received`` counts every byte read, so
request and response headers, bodies and chunked framing are all counted,
as they are on the wire (TCP and IP headers excluded, as for WebSocket).
Connections are pooled (keep-alive) and shared by the process's clients, so
each connection charges its bytes to its current owner: the client whose
task last wrote a request on it (a context variable each client sets in its
own tasks). HTTP/1.1 without pipelining answers a request before the next
one is written, so a response's bytes always reach the client that asked.
It relies on ``TCPConnector._factory`` (aiohttp 3's protocol factory).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter, deque
from contextvars import ContextVar
from typing import Any, ClassVar

import aiohttp
import orjson
from aiohttp.client_proto import ResponseHandler

from harness.load import protocol
from harness.load.clients import Client, CloseHandler, ConnectError, MessageHandler, describe_error

__all__ = ["FeedClient", "Wire", "CountingResponseHandler", "feed_session", "feed_base", "reason_of", "SESSION_KEY"]

#: Where a generator process keeps its one feed session (in the engine's per-process ``shared``).
SESSION_KEY = "feed_session"
#: What an error body may add to a reason (reasons are counted, so they stay short).
_REASON_TEXT = 120


class Wire:
    """Bytes a client put on and took off the wire."""

    __slots__ = ("bytes_in", "bytes_out")

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0


#: The client whose task is running: a connection written to from this task charges its bytes to it.
_OWNER: ContextVar[Wire | None] = ContextVar("feed_wire_owner", default=None)


class _CountingTransport:
    """A transport that counts what is written through it; everything else goes to the real one."""

    __slots__ = ("_tr", "_proto")

    def __init__(self, tr: asyncio.Transport, proto: CountingResponseHandler) -> None:
        self._tr = tr
        self._proto = proto

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._proto.charge_out(len(data))
        self._tr.write(data)

    def writelines(self, chunks: Any) -> None:
        chunks = list(chunks)
        self._proto.charge_out(sum(len(c) for c in chunks))
        self._tr.writelines(chunks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tr, name)


class CountingResponseHandler(ResponseHandler):
    """aiohttp's client connection protocol, counting bytes both ways for the connection's current owner."""

    owner: Wire | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.transport is not None:
            self.transport = _CountingTransport(self.transport, self)  # type: ignore[assignment]

    def charge_out(self, n: int) -> None:
        """Count ``n`` bytes written; the writing task's client owns the connection from now on."""
        owner = _OWNER.get() or self.owner
        if owner is not None:
            self.owner = owner
            owner.bytes_out += n

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if owner is not None:
            owner.bytes_in += len(data)
        super().data_received(data)


def feed_session(shared: dict[str, Any]) -> aiohttp.ClientSession:
    """The generator process's one feed session (made on first use): an unlimited, counting, keep-alive connector."""
    session = shared.get(SESSION_KEY)
    if session is None or session.closed:
        loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        connector._factory = functools.partial(CountingResponseHandler, loop=loop)  # type: ignore[assignment]  # see the module docstring
        session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))
        shared[SESSION_KEY] = session
    return session


def feed_base(url: str) -> str:
    """The feed's base URL without a trailing slash; ``ValueError`` unless it is http(s)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"a feed URL is the feed's http(s) base, e.g. http://127.0.0.1:8080, not {url!r}")
    return url.split("?", 1)[0].split("#", 1)[0].rstrip("/")


def reason_of(exc: BaseException, timeout: float | None = None) -> str:
    """A short, stable reason for a failed request or stream (aiohttp's own messages carry details that vary)."""
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "stream cut before its end"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.ClientConnectorError) and exc.os_error is not None:
        return describe_error(exc.os_error, timeout)
    return describe_error(exc, timeout)


def http_error(what: str, status: int, body: bytes) -> str:
    """The reason for a non-200 answer: status and the server's ``error`` text."""
    text = ""
    try:
        data = orjson.loads(body)
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            text = data["error"]
    except orjson.JSONDecodeError:
        text = body[:_REASON_TEXT].decode("utf-8", "replace")
    text = text.strip().splitlines()[0] if text.strip() else ""
    return f"{what}: HTTP {status}" + (f": {text[:_REASON_TEXT]}" if text else "")


class FeedClient(Client):
    """One feed client: a receive loop (SSE stream or polls, in the subclass) plus POSTed broadcasts.

    ``room`` and ``after`` (the resume point: a Last-Event-ID or cursor,
    ``E-N`` text, or a plain ``N`` for a server without epochs) may be set
    before ``connect`` (the ``last-event-id`` resume adapter does): then
    ``connect`` opens the receive loop at once and holds what arrives until
    the engine sends its join. ``after`` is passed to the server as given, so
    a bad one earns the server's 400. ``last_id`` is the last resume point
    the server gave (an SSE event's id, a poll's cursor), as a browser keeps
    it: the text to send back.
    """

    #: Broadcast POSTs in flight at once per client; more wait, in order, without slowing the sender. With more than
    #: one, two POSTs may reach the server in the other order, and every member sees a sender's messages reordered
    #: (measured here: 6 reordered in 180 deliveries at 40 msg/s with 6, on a busy 2-core machine); one keeps a
    #: sender's order, as one WebSocket does, and caps a sender at one POST per round trip.
    post_concurrency: ClassVar[int] = 1

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
        self.base = feed_base(url)
        self.room: str | None = None
        self.after: Any = None
        #: Resets received (each also went to ``on_message``), and by reason (``history``, ``future``, ``epoch``).
        self.resets = 0
        self.reset_reasons: Counter[str] = Counter()
        #: The last resume point the server gave (SSE: the last event id; long polling: the cursor); None before any.
        self.last_id: str | None = None
        self.wire = Wire()
        self.timeout = 10.0
        self._held: list[dict[str, Any]] | None = None  # messages received before the engine's join, in order
        self._open_room: str | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._posts: set[asyncio.Task[None]] = set()
        self._queued: deque[dict[str, Any]] = deque()
        self._ended = False  # on_close was called, or close: the receive loop's end is no news
        self._stopped = False  # close was called: nothing more goes to the engine
        self._held_close: str | None = None  # a drop while messages are held: reported once they are handed over

    @property
    def bytes_in(self) -> int:  # type: ignore[override]
        return self.wire.bytes_in

    @property
    def bytes_out(self) -> int:  # type: ignore[override]
        return self.wire.bytes_out

    # -- the engine's interface -------------------------------------------------------------
    async def connect(self, timeout: float) -> None:
        self.timeout = timeout
        feed_session(self.shared)
        if self.room is None:
            return  # the engine's join names the room: the receive loop opens then
        opened = asyncio.get_running_loop().create_future()
        self._held = []
        self._start(self.room, self.after, opened)
        try:
            async with asyncio.timeout(timeout):
                await opened
        except BaseException:
            await self._stop_loop()
            raise

    def send(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == protocol.OP_ECHO:
            # Raised in the open model's scheduler, this fails the generator with this text; a closed loop's task would
            # swallow it, so the drop's reason says it too.
            text = f"the {self.transport!r} client carries broadcasts only (mode='broadcast'): the HTTP feed has no echo"
            self._fail(text)
            raise ValueError(text)
        if self.closed and not (op == protocol.OP_JOIN and self._held is not None):  # a drop held for the join: the join reports it
            return
        if op == protocol.OP_BROADCAST:
            if len(self._posts) < self.post_concurrency:
                self._spawn_post(msg)
            else:
                self._queued.append(msg)
        elif op == protocol.OP_JOIN:
            self._join(msg)
        else:
            raise ValueError(f"the {self.transport!r} client sends join and broadcast, not {op!r}")

    async def close(self, timeout: float) -> None:
        self._ended = self._stopped = True
        self.closed = True
        self._queued.clear()
        tasks = [t for t in (self._loop_task, *self._posts) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=max(timeout, 0.0))

    @classmethod
    async def close_shared(cls, shared: dict[str, Any]) -> None:
        session = shared.pop(SESSION_KEY, None)
        if session is not None and not session.closed:
            await session.close()

    # -- for subclasses ---------------------------------------------------------------------
    async def receive(self, room: str, after: Any, opened: asyncio.Future[None] | None) -> str:
        """The receive loop: deliver events until the server ends it; return why it ended (or raise)."""
        raise NotImplementedError

    def deliver(self, msg: dict[str, Any]) -> None:
        """Hand one received message to the engine (or hold it until the engine's join)."""
        if self._stopped:
            return
        if msg.get("op") == "reset":
            self.resets += 1
            self.reset_reasons[str(msg.get("reason"))] += 1
        if self._held is not None:
            self._held.append(msg)
        else:
            self.on_message(msg)

    @property
    def session(self) -> aiohttp.ClientSession:
        return feed_session(self.shared)

    # -- inside -----------------------------------------------------------------------------
    def _join(self, msg: dict[str, Any]) -> None:
        room = str(msg.get("room"))
        if self._loop_task is not None and self._open_room == room:
            asyncio.get_running_loop().call_soon(self._release_held)  # opened in connect: the join is answered
            return
        if self._loop_task is not None:  # opened for another room: start over
            self._loop_task.cancel()
        self._held = None
        self._start(room, msg.get("after", self.after), None)

    def _release_held(self) -> None:
        held, self._held = self._held, None
        for msg in held or ():
            if self._stopped:
                return
            self.on_message(msg)
        if self._held_close is not None:
            # After the engine's join completes: it marks the connection alive in the step that takes the joined.
            asyncio.get_running_loop().call_soon(self.on_close, self._held_close)

    def _start(self, room: str, after: Any, opened: asyncio.Future[None] | None) -> None:
        self._open_room = room
        self._loop_task = asyncio.get_running_loop().create_task(self._receive_loop(room, after, opened))

    async def _receive_loop(self, room: str, after: Any, opened: asyncio.Future[None] | None) -> None:
        _OWNER.set(self.wire)
        try:
            reason = await self.receive(room, after, opened)
        except asyncio.CancelledError:
            if opened is not None and not opened.done():
                opened.cancel()
            raise
        except ConnectError as exc:
            reason = str(exc)
        except Exception as exc:
            reason = reason_of(exc, self.timeout)
        if opened is not None and not opened.done():
            opened.set_exception(ConnectError(reason))  # a failed connect, not a drop: no on_close
            return
        self._fail(reason)

    def _fail(self, reason: str) -> None:
        """The connection broke: tell the engine once; later sends are dropped."""
        self.closed = True
        if self._ended:
            return
        self._ended = True
        task = self._loop_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
        if self._held is not None:  # opened in connect, the engine's join still to come: no drop it could take yet
            self._held_close = reason
            return
        self.on_close(reason)

    async def _stop_loop(self) -> None:
        task = self._loop_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def _spawn_post(self, msg: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._post(msg))
        self._posts.add(task)
        task.add_done_callback(self._post_done)

    def _post_done(self, task: asyncio.Task[None]) -> None:
        self._posts.discard(task)
        if self._queued and not self._stopped:  # after a drop too: they were handed over, like bytes in a socket buffer
            self._spawn_post(self._queued.popleft())

    async def _post(self, msg: dict[str, Any]) -> None:
        """POST one broadcast; its answer (the ack, or the server's error) goes to ``on_message``."""
        _OWNER.set(self.wire)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout)
        try:
            async with self.session.post(
                f"{self.base}/send", data=orjson.dumps(msg), headers={"Content-Type": "application/json"}, timeout=timeout
            ) as resp:
                body = await resp.read()
                status = resp.status
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # no answer: the message may or may not have reached the server
            self._fail(f"send: {reason_of(exc, self.timeout)}")
            return
        if self._stopped:
            return
        reply: Any = None
        with contextlib.suppress(orjson.JSONDecodeError):
            reply = orjson.loads(body)
        if status == 200 and isinstance(reply, dict) and reply.get("op") == protocol.OP_ACK:
            self.on_message(reply)
        else:  # the server's answer, an error: the engine counts it as unexpected
            self.on_message({"op": "error", "status": status, "error": http_error("send", status, body)})
