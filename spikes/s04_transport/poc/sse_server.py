"""Spike 4's SSE feed server: aiohttp with aiohttp-sse's ``EventSourceResponse``.

Run: ``python -m spikes.s04_transport.poc.sse_server --host 127.0.0.1 --port N
[--history H] [--keepalive-s K] [--retry-ms R] [--static DIR]``; prints ``READY port=<n>``.

``GET /sse?room=R`` (resume with the ``Last-Event-ID: E-N`` header, or the
``last_event_id=E-N`` query for clients that cannot set headers; a plain ``N``
resumes under the old rules) streams ``text/event-stream`` with ``Cache-Control:
no-store`` and ``X-Accel-Buffering: no`` (nginx would otherwise buffer the
stream). Every id is ``E-N``: the server's epoch, a dash, the number, so an
EventSource sends the epoch back without a line of the page's code. First
``event: joined`` with ``id:`` the point the view starts after (the head for a
new client, the resume point for a resuming one): an EventSource that drops
before any broadcast then resumes from there instead of rejoining at a later
head and missing what came between. A resume point the history cannot honour
(or of another epoch) adds ``event: reset``, and then the id is the reset's
(the head), not the joined's: an EventSource cut between the two resumes from
its old point again and gets the reset again, instead of resuming at the head
without ever being told to reload. Each broadcast is ``id: E-N`` + ``data:
<json>``; ``: ka`` after
``--keepalive-s`` without an event. ``--retry-ms`` tells EventSource its
reconnection delay (``retry:`` with ``joined``; by default none is sent and the
browser's own applies). A subscriber ``--queue`` events behind, or the server
shutting down, gets ``event: dropped`` and the stream ends; the client
reconnects with its Last-Event-ID and loses nothing the history holds.
``POST /send`` publishes (``common.py``).

aiohttp-sse (3.0) gives the headers, the event framing and a send timeout (with
TCP_USER_TIMEOUT) that aborts a stalled client. Two things it does not do our
way are set around it, through its public API: its ``Cache-Control`` is
``no-cache`` (overwritten with ``no-store`` before ``prepare``), and its ping is
a ``: ping`` comment on a fixed period; the keep-alive here is the protocol's
``: ka``, written only when the stream was idle ``--keepalive-s`` (a stream that
carries events needs no comment), so the library's ping is pushed out to a day.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from spikes.s04_transport.poc import common
from spikes.s04_transport.poc.feed import Feed, ProtocolError, error_message, parse_point, point_text, validate_room

__all__ = ["add_routes", "make_app", "main", "SEND_TIMEOUT_S"]

#: A client that accepts no byte of an event for this long is cut off (aiohttp-sse aborts the connection).
SEND_TIMEOUT_S = 10.0
_LIBRARY_PING_S = 86_400.0
_KEEPALIVE = b": ka\n\n"


def _resume_point(request: web.Request) -> tuple[str | None, int] | None:
    raw = request.headers.get("Last-Event-ID")
    if raw is None:
        raw = request.query.get("last_event_id")
    return parse_point(raw or None)  # an empty id is no id: what an EventSource that never got one would mean


def add_routes(app: web.Application, keepalive_s: float, retry_ms: int = 0) -> None:
    """``GET /sse`` on an app made by :func:`common.base_app`; ``retry_ms`` (when > 0) goes out with ``joined`` as ``retry:``."""

    async def sse(request: web.Request) -> web.StreamResponse:
        feed: Feed = request.app[common.FEED_KEY]
        try:
            room = validate_room(request.query.get("room"))
            point = _resume_point(request)
            feed.room(room)  # too many rooms: an HTTP error now, not an empty stream
        except ProtocolError as exc:
            return common.error_response(request, str(exc))
        resp = EventSourceResponse(sep="\n", ping_interval=_LIBRARY_PING_S, send_timeout=SEND_TIMEOUT_S)
        resp.headers["Cache-Control"] = "no-store"
        await resp.prepare(request)
        sub = feed.subscriber()
        their_epoch, after = point if point is not None else (None, None)
        resume = feed.join(sub, room, after, their_epoch)
        epoch = feed.epoch
        reset = resume.reset_msg()
        try:
            async with resp:
                joined_id = None if reset is not None else resume.point()  # with a reset, the reset carries the id
                await resp.send(orjson.dumps(resume.joined()).decode(), id=joined_id, event="joined", retry=retry_ms or None)
                if reset is not None:
                    common.log.info("SSE %s from %s: reset (%s) at %d", room, request.remote, resume.reset, resume.start)
                    await resp.send(orjson.dumps(reset).decode(), id=resume.point(), event="reset")
                for n, text in resume.replay:
                    await resp.send(text, id=point_text(epoch, n))
                while sub.dropped is None:
                    if not sub.queue:
                        try:
                            async with asyncio.timeout(keepalive_s):
                                await sub.wake.wait()
                        except TimeoutError:
                            await resp.write(_KEEPALIVE)
                            continue
                    for n, text in sub.take():
                        await resp.send(text, id=point_text(epoch, n))
                common.log.info("SSE %s from %s dropped: %s", room, request.remote, sub.dropped)
                async with asyncio.timeout(1.0):
                    await resp.send(orjson.dumps(error_message(sub.dropped)).decode(), event="dropped")
        except (ConnectionError, TimeoutError, RuntimeError) as exc:  # the client went, or stalled past the send timeout
            common.log.info("SSE %s from %s ended: %s", room, request.remote, type(exc).__name__)
        finally:
            feed.leave(sub)
        return resp

    app.router.add_get("/sse", sse)


def make_app(feed: Feed, args: argparse.Namespace) -> web.Application:
    app = common.base_app(feed, args)
    add_routes(app, args.keepalive_s, args.retry_ms)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    args = common.parse(common.parser("python -m spikes.s04_transport.poc.sse_server", __doc__.splitlines()[0]), argv)
    return common.run(make_app, args)


if __name__ == "__main__":
    raise SystemExit(main())
