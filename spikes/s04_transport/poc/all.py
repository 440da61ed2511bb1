"""Spike 4's three transports on one port (one origin): SSE, long polling and WebSocket over aiohttp, one feed.

Run: ``python -m spikes.s04_transport.poc.all --host 127.0.0.1 --port N [--history H]
[--keepalive-s K] [--hold-s T] [--static DIR]``; prints ``READY port=<n>``.

``/sse`` and ``/poll`` are the routes of ``sse_server.py`` and ``longpoll_server.py``
(their ``add_routes``, not copies), ``/send`` and ``/health`` those of ``common.py``,
and ``/ws`` runs ``ws_server.Session`` (the same protocol code) over aiohttp's
WebSocket instead of ``websockets``. One feed behind all three: a broadcast
published on any transport reaches the members on every transport, with the same
numbers, so a browser page and a proxy test need only one origin. The WebSocket
here is aiohttp's, not the ``websockets`` server of ``ws_server.py``: a comparison of
WebSocket costs should use ``ws_server.py``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from aiohttp import WSCloseCode, WSMsgType, web

from spikes.s04_transport.poc import common, longpoll_server, sse_server
from spikes.s04_transport.poc.feed import SHUTDOWN, Feed
from spikes.s04_transport.poc.ws_server import CLOSE_SLOW, Session, pump

__all__ = ["add_ws_route", "make_app", "main"]

_SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("sockets", set)


def add_ws_route(app: web.Application, keepalive_s: float, max_bytes: int) -> None:
    """``GET /ws``: the feed protocol (``ws_server.Session``) over aiohttp's WebSocket; closed 1001 at shutdown."""
    app[_SOCKETS] = set()  # open sockets, closed 1001 at shutdown

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=max_bytes, heartbeat=keepalive_s, compress=False)
        await ws.prepare(request)
        app[_SOCKETS].add(ws)
        closing: set[asyncio.Task[bool]] = set()

        def on_drop(reason: str) -> None:
            common.log.info("ws %s dropped: %s", request.remote, reason)
            code = WSCloseCode.GOING_AWAY if reason == SHUTDOWN else CLOSE_SLOW
            closing.add(asyncio.get_running_loop().create_task(ws.close(code=code, message=reason[:100].encode())))

        session = Session(request.app[common.FEED_KEY], on_drop, request.remote)
        writer = asyncio.create_task(pump(session.sub, ws.send_str))
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break  # an error (too big, invalid UTF-8): aiohttp has sent its close code
                action = session.handle(msg.data)
                if action is not None:
                    writer.cancel()
                    for _, text in session.sub.take():
                        await ws.send_str(text)
                    common.log.info("ws %s closed %d: %s", request.remote, *action)
                    await ws.close(code=action[0], message=action[1].encode())
                    break
        except ConnectionError:
            pass
        finally:
            writer.cancel()
            session.close()
            app[_SOCKETS].discard(ws)
            if closing:
                await asyncio.gather(*closing, return_exceptions=True)
        return ws

    async def close_sockets(app: web.Application) -> None:
        sockets: set[web.WebSocketResponse] = app[_SOCKETS]
        for ws in list(sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    app.router.add_get("/ws", ws_handler)
    app.on_shutdown.append(close_sockets)


def make_app(feed: Feed, args: argparse.Namespace) -> web.Application:
    app = common.base_app(feed, args)
    sse_server.add_routes(app, args.keepalive_s, args.retry_ms)
    longpoll_server.add_routes(app, args.hold_s)
    add_ws_route(app, args.keepalive_s, args.max_bytes)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    args = common.parse(common.parser("python -m spikes.s04_transport.poc.all", __doc__.splitlines()[0]), argv)
    return common.run(make_app, args)


if __name__ == "__main__":
    raise SystemExit(main())
