"""Spike 4's long-polling feed server: aiohttp, a cursor per client, polls held up to ``--hold-s`` (25 s by default).

Run: ``python -m spikes.s04_transport.poc.longpoll_server --host 127.0.0.1 --port N
[--history H] [--hold-s T] [--static DIR]``; prints ``READY port=<n>``.

``GET /poll?room=R`` (no cursor) answers at once ``{"op": "joined", "room": R,
"n": HEAD, "e": E, "events": [], "cursor": "E-HEAD"}``. ``GET
/poll?room=R&cursor=E-N[&hold_s=T]`` answers ``{"events": [...], "cursor":
"E-M"}`` as soon as the room holds a broadcast
after N (every one it holds, in order), or with no events after T seconds (capped
at ``--hold-s``: 25 s stays under the 30 s idle timeouts of common proxies and
load balancers). The client polls again at once with the cursor it got; what
came between two polls is in the history, so nothing is lost while the history
holds it. A cursor the history cannot honour answers at once with the reset as
the poll's one event: ``{"events": [{"op": "reset", "room": R, "n": HEAD, "e":
E, "reason": "history"|"future"|"epoch"}], "cursor": "E-HEAD"}`` (as
``harness/feed`` states the protocol; its client also takes a top-level ``op``,
as in the joining answer). The cursor is ``E-N``, the server's epoch and a
number: a cursor of another epoch (the server restarted) gets the reset with
reason ``epoch``. A plain ``N`` is taken under the old rules, and answered with
an ``E-M`` cursor like any other, so a client that polls with the cursor it got
carries the epoch from its next poll on. There is no per-client state on the
server: the cursor is the client's.
``POST /send`` publishes (``common.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import math
from collections.abc import Sequence

from aiohttp import web

from spikes.s04_transport.poc import common
from spikes.s04_transport.poc.feed import Feed, ProtocolError, Room, parse_point, point_text, validate_room

__all__ = ["add_routes", "make_app", "main", "parse_hold"]

_HEADERS = {"Cache-Control": "no-store"}


def parse_hold(raw: str | None, cap: float) -> float:
    """The hold the client asked for (seconds), at most ``cap``; ``cap`` when it asked none."""
    if raw is None or raw == "":
        return cap
    try:
        hold = float(raw)
    except ValueError:
        raise ProtocolError(f"hold_s must be a number of seconds, not {raw[:40]!r}") from None
    if not math.isfinite(hold) or hold < 0:
        raise ProtocolError("hold_s must be a finite number >= 0")
    return min(hold, cap)


def _events(events: list[tuple[int, str]], epoch: str, cursor: int) -> web.Response:
    # The held texts are JSON already: joined, not parsed and encoded again (an epoch needs no JSON escaping).
    last = point_text(epoch, events[-1][0] if events else cursor)
    body = '{"events":[' + ",".join(text for _, text in events) + '],"cursor":"' + last + '"}'
    return web.Response(text=body, content_type="application/json", headers=_HEADERS)


async def _wait(room: Room, hold: float) -> None:
    """Until the room's next broadcast (or the server's shutdown), at most ``hold`` seconds."""
    changed = room.changed
    room.waiters += 1
    try:
        async with asyncio.timeout(hold):
            await changed.wait()
    except TimeoutError:
        pass
    finally:
        room.waiters -= 1


def add_routes(app: web.Application, hold_cap: float) -> None:
    """``GET /poll`` on an app made by :func:`common.base_app`."""

    async def poll(request: web.Request) -> web.Response:
        feed: Feed = request.app[common.FEED_KEY]
        try:
            name = validate_room(request.query.get("room"))
            point = parse_point(request.query.get("cursor") or None)
            hold = parse_hold(request.query.get("hold_s"), hold_cap)
            room = feed.room(name)
        except ProtocolError as exc:
            return common.error_response(request, str(exc))
        try:
            if point is None:
                joined = room.resume(None).joined()
                return common.json_response({**joined, "events": [], "cursor": point_text(room.epoch, room.head)})
            their_epoch, cursor = point
            resume = room.resume(cursor, their_epoch)
            if not resume.reset and not resume.replay and hold > 0:
                await _wait(room, hold)
                resume = room.resume(cursor, their_epoch)  # more than the history may have come meanwhile
            if resume.reset:
                common.log.info("poll %s from %s: reset (%s) at %d", name, request.remote, resume.reset, resume.start)
                return common.json_response({"events": [resume.reset_msg()], "cursor": resume.point()})
            return _events(resume.replay, room.epoch, cursor)
        finally:
            feed.forget_if_idle(room)

    app.router.add_get("/poll", poll)


def make_app(feed: Feed, args: argparse.Namespace) -> web.Application:
    app = common.base_app(feed, args)
    add_routes(app, args.hold_s)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    args = common.parse(common.parser("python -m spikes.s04_transport.poc.longpoll_server", __doc__.splitlines()[0]), argv)
    return common.run(make_app, args)


if __name__ == "__main__":
    raise SystemExit(main())
