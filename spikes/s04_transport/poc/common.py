"""What the feed's HTTP servers share: the command line, ``POST /send``, ``/health``, ``/static/``, start-up and shutdown.

Every server prints ``READY port=<n>`` once it listens (the readiness line the
spike's ``PocServer`` declarations wait for, ``log:READY port=``; ``GET /health``
answers 200 too, for ``http:/health``), serves until SIGTERM or SIGINT, then drops
every subscriber (their streams end, long polls answer) and exits 0. Bad input is
answered with ``{"op": "error", "error": ...}`` and logged in one line, never a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from spikes.s04_transport.poc.feed import (
    DEFAULT_HISTORY,
    DEFAULT_MAX_ROOMS,
    DEFAULT_QUEUE_LIMIT,
    Feed,
    ProtocolError,
    ack_message,
    validate_broadcast,
)

__all__ = [
    "FEED_KEY",
    "DEFAULT_KEEPALIVE_S",
    "DEFAULT_HOLD_S",
    "DEFAULT_MAX_BYTES",
    "parser",
    "feed_from",
    "json_response",
    "error_response",
    "base_app",
    "serve_app",
    "run",
    "parse",
    "setup_logging",
    "run_loop",
    "on_signal_stop",
    "TooBig",
    "log",
]

log = logging.getLogger("s04.feed")

FEED_KEY: web.AppKey[Feed] = web.AppKey("feed", Feed)
#: sse-starlette's default ping interval: a comment this often keeps proxies from closing an idle stream.
DEFAULT_KEEPALIVE_S = 15.0
#: How long a long poll is held at most without news: under the 30 s idle timeouts common in proxies and load balancers.
DEFAULT_HOLD_S = 25.0
#: Largest message a publisher may send (a broadcast's JSON); a feed event is a few hundred bytes.
DEFAULT_MAX_BYTES = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store"}


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every feed server takes (each uses the ones of its transport)."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port (the READY line says which)")
    ap.add_argument("--history", type=int, default=DEFAULT_HISTORY, help="broadcasts held per room for resuming (default %(default)s)")
    ap.add_argument("--queue", type=int, default=DEFAULT_QUEUE_LIMIT, help="events a live subscriber may lag before it is dropped")
    ap.add_argument("--max-rooms", type=int, default=DEFAULT_MAX_ROOMS)
    ap.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="largest message accepted (bytes)")
    ap.add_argument("--keepalive-s", type=float, default=DEFAULT_KEEPALIVE_S, help="SSE: a ': ka' comment after this long without an event")
    ap.add_argument(
        "--retry-ms", type=int, default=0, help="SSE: the reconnection delay told to EventSource (0: not sent, the browser's own)"
    )
    ap.add_argument("--hold-s", type=float, default=DEFAULT_HOLD_S, help="long polling: longest hold of a poll without news (seconds)")
    ap.add_argument("--static", type=Path, default=None, help="a directory served at /static/ (the browser test page)")
    ap.add_argument("--log-level", default="INFO")
    return ap


def feed_from(args: argparse.Namespace) -> Feed:
    return Feed(history=args.history, queue_limit=args.queue, max_rooms=args.max_rooms)


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json", headers=_NO_STORE)


def error_response(request: web.Request, reason: str, status: int = 400) -> web.Response:
    """``{"op": "error", "error": reason}`` with ``status``, and one log line saying who got it."""
    log.info("%s %s %s from %s: %s", status, request.method, request.path, request.remote, reason)
    return json_response({"op": "error", "error": reason}, status)


async def _read_json(request: web.Request, max_bytes: int) -> Any:
    """The request body parsed as JSON; :class:`ProtocolError` when it is too big, not UTF-8 or not JSON."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise TooBig(f"body of {request.content_length} bytes is over the limit of {max_bytes}")
    body = bytearray()
    async for chunk in request.content.iter_any():  # a chunked body has no length to check first
        body += chunk
        if len(body) > max_bytes:
            raise TooBig(f"body is over the limit of {max_bytes} bytes")
    try:
        return orjson.loads(body)  # rejects invalid UTF-8 and nesting deeper than 1024
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"body is not JSON ({str(exc)[:80]})") from None


class TooBig(ProtocolError):
    """A body over ``--max-bytes``: answered 413, the status HTTP has for it (a proxy or client may act on it)."""


def _send_handler(max_bytes: int) -> Callable[[web.Request], Any]:
    async def send(request: web.Request) -> web.Response:
        """``POST /send``: one broadcast, numbered and fanned out; answered with its ack."""
        feed = request.app[FEED_KEY]
        try:
            msg = validate_broadcast(await _read_json(request, max_bytes))
            n = feed.publish(msg)
        except ProtocolError as exc:
            return error_response(request, str(exc), 413 if isinstance(exc, TooBig) else 400)
        return json_response(ack_message(msg["c"], msg["seq"], n, feed.epoch))

    return send


async def _health(request: web.Request) -> web.Response:
    feed = request.app[FEED_KEY]
    return json_response(feed.stats())


def base_app(feed: Feed, args: argparse.Namespace) -> web.Application:
    """An aiohttp app with the feed, ``POST /send``, ``GET /health`` and, with ``--static``, ``/static/``."""
    app = web.Application()
    app[FEED_KEY] = feed
    app.router.add_post("/send", _send_handler(args.max_bytes))
    app.router.add_get("/health", _health)
    if args.static is not None:
        app.router.add_static("/static/", args.static, show_index=False)
    return app


async def serve_app(app: web.Application, feed: Feed, host: str, port: int, stop: asyncio.Event) -> None:
    """Listen, print the READY line, serve until ``stop``, then end every stream and shut down."""
    # handler_cancellation: a client that goes away cancels its handler, so a stream's subscriber leaves the room at once.
    runner = web.AppRunner(app, handle_signals=False, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    bound = runner.addresses[0][1]
    log.info("feed epoch %s", feed.epoch)
    print(f"READY port={bound}", flush=True)
    try:
        await stop.wait()
    finally:
        feed.close()
        await runner.cleanup()


def setup_logging(args: argparse.Namespace) -> None:
    """One line per record on stderr, at ``--log-level``; no access log (a line per request would cost more than the feed)."""
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("websockets").setLevel(logging.WARNING)


def run_loop(coro: Coroutine[Any, Any, None]) -> None:
    """Run the server's coroutine on uvloop (installed with the project), or asyncio's loop without it."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - the project installs it
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def run(make: Callable[[Feed, argparse.Namespace], web.Application], args: argparse.Namespace) -> int:
    """Build the app with ``make`` and serve it until SIGTERM or SIGINT."""
    setup_logging(args)

    async def main() -> None:
        stop = asyncio.Event()
        on_signal_stop(stop)
        feed = feed_from(args)
        await serve_app(make(feed, args), feed, args.host, args.port, stop)

    run_loop(main())
    return 0


def parse(ap: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments, checked: a bad value is a usage error (exit 2) before anything listens."""
    args = ap.parse_args(argv)
    if args.keepalive_s <= 0 or args.hold_s < 0 or args.history < 0 or args.queue < 1 or args.max_bytes < 1 or args.retry_ms < 0:
        ap.error("--keepalive-s must be > 0, --hold-s, --history and --retry-ms >= 0, --queue and --max-bytes >= 1")
    if args.static is not None and not args.static.is_dir():
        ap.error(f"--static {args.static}: not a directory")
    return args


def on_signal_stop(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (the server then shuts down in order and exits 0)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
