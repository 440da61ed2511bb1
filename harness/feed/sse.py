"""The SSE feed client: one ``text/event-stream`` per connection, broadcasts POSTed; and a sans-I/O event-stream parser."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from harness.feed.client import FeedClient, http_error
from harness.load.clients import ConnectError

__all__ = ["SSEClient", "SSEParser", "Event", "decode_event"]

#: An event as parsed: (event type, data, id); the type is "message" when the stream named none.
Event = tuple[str, str, str | None]


class SSEParser:
    """Feed it the stream's bytes; get back complete events (the WHATWG event-stream rules, minus ``retry``).

    Lines end with CRLF, LF or CR; a blank line dispatches the event; a line
    starting with ``:`` is a comment (a keep-alive); ``data`` lines join with
    newlines; an event without data is not dispatched.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._type = ""
        self._id: str | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[Event]:
        """The events completed by ``chunk``."""
        buf = self._buf + chunk
        held_cr = False
        if b"\r" in buf:
            held_cr = buf.endswith(b"\r")  # maybe the first half of a CRLF: decided by the next chunk
            if held_cr:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        self._buf = lines.pop() + (b"\r" if held_cr else b"")
        out: list[Event] = []
        for raw in lines:
            if not raw:
                if self._data:
                    out.append((self._type or "message", "\n".join(self._data), self._id))
                self._data, self._type = [], ""
                continue
            line = raw.decode("utf-8", "replace")
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._type = value
            elif name == "id" and "\0" not in value:
                self._id = value
        return out


def decode_event(event: Event) -> dict[str, Any]:
    """The protocol message an event carries (its type as ``op`` when the JSON has none); undecodable data as an ``error``."""
    kind, data, _ = event
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {"op": "error", "error": f"undecodable {kind!r} event"}
    if not isinstance(msg, dict):
        return {"op": "error", "error": f"{kind!r} event is not a JSON object"}
    if "op" not in msg and kind != "message":
        msg["op"] = kind
    return msg


class SSEClient(FeedClient):
    """One activity-feed connection over server-sent events: ``GET /sse?room=R`` for receiving, ``POST /send`` for sending.

    Resumes with a ``Last-Event-ID`` header (the resume point ``after``, the
    server's ``E-N`` text as it was received). ``last_id`` follows the
    stream's event ids as EventSource's ``lastEventId`` does (an event
    without an id keeps the last one).
    Keep-alive comments are read and counted (``keepalives``), nothing else;
    a server that stops sending without closing is not detected (no read
    timeout: the client does not know the server's keep-alive interval).
    """

    transport = "sse"
    _parser: SSEParser | None = None

    @property
    def keepalives(self) -> int:
        """Keep-alive comments received (on the current stream)."""
        return self._parser.comments if self._parser is not None else 0

    async def receive(self, room: str, after: Any, opened: asyncio.Future[None] | None) -> str:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if after is not None:
            headers["Last-Event-ID"] = str(after)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=None)
        async with self.session.get(f"{self.base}/sse", params={"room": room}, headers=headers, timeout=timeout) as resp:
            if resp.status != 200:
                raise ConnectError(http_error("sse", resp.status, await resp.read()))
            if resp.content_type != "text/event-stream":
                raise ConnectError(f"sse: the answer is {resp.content_type}, not text/event-stream")
            parser = self._parser = SSEParser()
            async for chunk in resp.content.iter_any():
                for event in parser.feed(chunk):
                    if event[2] is not None:
                        self.last_id = event[2]
                    self.deliver(decode_event(event))
                    if opened is not None and not opened.done():
                        opened.set_result(None)
        return "sse: the server ended the stream"
