"""Spike 4's measured browser matrix: the page's raw records scored in plain Python, then the page in each real engine.

The engine tests run the page against a minimal feed server of the test's own (:class:`FeedFixture`: the
HTTP feed protocol of the spike's brief, all three transports on one port, ``web/`` at ``/static/``), not
against the spike's POC servers: they check the page and browsers.py, which take any server's base URL. The
fixture also records the ``Last-Event-ID`` headers it receives, so the page's inference can be checked, and the
cursors and WebSocket joins, so that the page is seen to send the fixture's epoch back on every transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import WSMsgType, web

from harness import browser
from spikes.s04_transport import browsers
from spikes.s04_transport.browsers import PageSettings, build_steps, probe_cell, transport_cell
from tests.utils import UNIT, missing_program, require_program

# -- the fixture feed server -----------------------------------------------------------------------------------


@dataclass
class _Room:
    head: int = 0
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))
    queues: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class FeedFixture:
    """The feed protocol, minimally, on 127.0.0.1:0 in a thread of its own: /send, /sse, /poll, /ws and /static/."""

    FIELDS = {"room": str, "seq": int, "t": int, "c": int, "d": str}
    POINT = re.compile(r"(?:([0-9A-Za-z_]{1,32})-)?([0-9]+)")

    def __init__(self, static: Path, keepalive_s: float = 15.0, hold_cap_s: float = 25.0):
        self.static = static
        self.keepalive_s = keepalive_s
        self.hold_cap_s = hold_cap_s
        self.rooms: dict[str, _Room] = {}
        self.last_event_ids: list[tuple[str, str | None]] = []  # (room, Last-Event-ID header) per /sse request
        self.polls: list[tuple[str, str | None]] = []  # (room, cursor) per /poll request
        self.ws_joins: list[dict[str, Any]] = []  # every WebSocket join, as received
        self.epoch = secrets.token_hex(4)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def room(self, name: str) -> _Room:
        return self.rooms.setdefault(name, _Room())

    def publish(self, msg: dict[str, Any]) -> dict[str, Any]:
        room = self.room(msg["room"])
        room.head += 1
        out = {**msg, "n": room.head, "e": self.epoch}
        room.history.append(out)
        for q in room.queues:
            q.put_nowait(out)
        room.changed.set()
        room.changed = asyncio.Event()
        return out

    def resume(self, name: str, after: int, epoch: str | None = None) -> list[dict[str, Any]]:
        """Joined, then what is held after ``after``, or a reset when the history (or the epoch) cannot honour it."""
        room = self.room(name)
        joined = {"op": "joined", "room": name, "n": room.head, "e": self.epoch}
        oldest = room.history[0]["n"] if room.history else room.head + 1
        reset = {"op": "reset", "room": name, "n": room.head, "e": self.epoch}
        if epoch is not None and epoch != self.epoch:
            return [joined, {**reset, "reason": "epoch"}]
        if after > room.head:
            return [joined, {**reset, "reason": "future"}]
        if after < oldest - 1:
            return [joined, {**reset, "reason": "history"}]
        return [joined, *(m for m in room.history if m["n"] > after)]

    def _point(self, value: str | None) -> tuple[str | None, int] | None:
        if value is None:
            return None
        m = self.POINT.fullmatch(value)
        if m is None:
            raise ValueError(f"not E-N or a non-negative integer: {value!r}")
        return m.group(1), int(m.group(2))

    def _text(self, n: int) -> str:
        return f"{self.epoch}-{n}"

    def _bad(self, msg: Any) -> str | None:
        if not isinstance(msg, dict) or msg.get("op") != "broadcast":
            return "expected a broadcast object"
        for k, typ in self.FIELDS.items():
            if not isinstance(msg.get(k), typ) or isinstance(msg.get(k), bool):
                return f"field {k} must be {typ.__name__}"
        return None

    async def send(self, request: web.Request) -> web.Response:
        try:
            msg = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            msg = None
        if err := self._bad(msg):
            return web.json_response({"op": "error", "error": err}, status=400)
        out = self.publish(msg)
        return web.json_response({"op": "ack", "c": msg["c"], "seq": msg["seq"], "n": out["n"]})

    async def sse(self, request: web.Request) -> web.StreamResponse:
        name = request.query.get("room", "")
        header = request.headers.get("Last-Event-ID")
        self.last_event_ids.append((name, header))
        try:
            point = self._point(header if header is not None else request.query.get("last_event_id"))
        except ValueError as exc:
            return web.json_response({"op": "error", "error": str(exc)}, status=400)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        try:
            await resp.prepare(request)
        except ConnectionResetError:  # a queued stream the page closed before the server answered it
            return resp
        room = self.room(name)
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        room.queues.add(q)
        first = self.resume(name, room.head, None) if point is None else self.resume(name, point[1], point[0])
        try:
            for m in first:
                await resp.write(self._event(m))
            while True:
                try:
                    m = await asyncio.wait_for(q.get(), self.keepalive_s)
                except TimeoutError:
                    await resp.write(b": ka\n\n")
                    continue
                await resp.write(self._event(m))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            room.queues.discard(q)
        return resp

    def _event(self, m: dict[str, Any]) -> bytes:
        data = orjson.dumps(m)
        if m["op"] == "broadcast":
            return b"id: %s\ndata: %s\n\n" % (self._text(m["n"]).encode(), data)
        if m["op"] == "reset":
            return b"event: reset\nid: %s\ndata: %s\n\n" % (self._text(m["n"]).encode(), data)
        return b"event: %s\ndata: %s\n\n" % (m["op"].encode(), data)

    async def poll(self, request: web.Request) -> web.Response:
        name = request.query.get("room", "")
        room = self.room(name)
        self.polls.append((name, request.query.get("cursor")))
        try:
            point = self._point(request.query.get("cursor"))
        except ValueError as exc:
            return web.json_response({"op": "error", "error": str(exc)}, status=400)
        if point is None:
            joined = {"op": "joined", "room": name, "n": room.head, "e": self.epoch}
            return web.json_response({**joined, "events": [], "cursor": self._text(room.head)})
        cursor = point[1]
        first = self.resume(name, cursor, point[0])
        if first[1:] and first[1]["op"] == "reset":
            return web.json_response({"events": [first[1]], "cursor": self._text(room.head)})
        hold = min(float(request.query.get("hold_s", "20")), self.hold_cap_s)
        if room.head <= cursor:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(room.changed.wait(), hold)
        events = [m for m in room.history if m["n"] > cursor]
        return web.json_response({"events": events, "cursor": self._text(room.head)})

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        queues: list[tuple[_Room, asyncio.Queue[dict[str, Any]]]] = []
        out: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def writer() -> None:
            while True:
                await sock.send_str(orjson.dumps(await out.get()).decode())

        task = asyncio.create_task(writer())
        try:
            async for frame in sock:
                if frame.type != WSMsgType.TEXT:
                    break
                msg = orjson.loads(frame.data)
                if msg.get("op") == "join":
                    self.ws_joins.append(msg)
                    room = self.room(str(msg.get("room")))
                    after = msg.get("after")
                    epoch = msg.get("epoch") if isinstance(after, int) else None
                    for m in self.resume(str(msg.get("room")), room.head if not isinstance(after, int) else after, epoch):
                        out.put_nowait(m)
                    room.queues.add(out)
                    queues.append((room, out))
                elif not self._bad(msg):
                    self.publish(msg)
        finally:
            task.cancel()
            for room, q in queues:
                room.queues.discard(q)
        return sock

    # -- lifetime --
    def __enter__(self) -> FeedFixture:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/send", self.send)
            app.router.add_get("/sse", self.sse)
            app.router.add_get("/poll", self.poll)
            app.router.add_get("/ws", self.ws)
            app.router.add_static("/static/", self.static)
            self._runner = web.AppRunner(app, shutdown_timeout=0.5)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            # Streams still open (a browser that has not let go yet) end here, not in a closed loop's garbage.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="s04-feed-fixture", daemon=True)
        self._thread.start()
        assert ready.wait(10 * UNIT)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10 * UNIT)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def feed() -> Iterator[FeedFixture]:
    with FeedFixture(browsers.WEB_DIR) as server:
        yield server


# -- scoring, without a browser ----------------------------------------------------------------------------------


def _raw(transport: str = "sse", **over: Any) -> dict[str, Any]:
    """A clean run: 15 broadcasts (5 before the cut, 5 during, 5 after), each once; drop at 100, back at 3100."""
    acks = [{"seq": s, "n": s + 1, "phase": ("before", "gap", "after")[s // 5]} for s in range(15)]
    raw = {
        "transport": transport,
        "opened": True,
        "t_open": 12.0,
        "acks": acks,
        "arrivals": [{"seq": s, "n": s + 1, "t": 50.0 + s} for s in range(15)],
        "ups": [10.0, 3100.0],
        "drops": [{"t": 100.0}],
        "cut": {"t_req": 90.0, "t_done": 95.0, "info": {"connections": 2}},
        "resets": [],
        "errors": [],
        "timeouts": [],
        "page_reopens": 0,
    }
    raw.update(over)
    return raw


def test_a_clean_resume_scores_no_loss_no_duplicate_and_the_gap():
    cell = transport_cell(_raw())
    assert cell["opened"] and cell["drop_seen"] and cell["server_close_survived"] and cell["resumed_without_loss"]
    assert (cell["lost"], cell["duplicated"], cell["events_received"]) == (0, 0, 15)
    assert cell["reconnect_gap_ms"] == 3000.0 and cell["cut_to_resume_ms"] == 3005.0
    assert cell["last_event_id_sent"] is True and cell["resume_by"].startswith("browser")
    assert cell["cut_connections"] == 2


def test_lost_and_duplicated_broadcasts_are_counted_by_n():
    arrivals = [{"seq": s, "n": s + 1, "t": 1.0} for s in range(15) if s not in (6, 7)] + [{"seq": 2, "n": 3, "t": 2.0}]
    cell = transport_cell(_raw(arrivals=arrivals))
    assert (cell["lost"], cell["lost_n"], cell["duplicated"]) == (2, [7, 8], 1)
    assert not cell["resumed_without_loss"]
    # the gap's broadcasts missing after the browser's own reconnect: it did not name the last id
    assert cell["last_event_id_sent"] is False


def test_a_publish_retried_under_two_numbers_is_not_a_delivery_duplicate():
    raw = _raw()
    raw["acks"].append({"seq": 14, "n": 16, "phase": "after"})
    raw["arrivals"].append({"seq": 14, "n": 16, "t": 9.0})
    cell = transport_cell(raw)
    assert (cell["duplicated"], cell["publisher_retries"], cell["lost"]) == (0, 1, 0)


def test_a_drop_never_seen_still_survives_when_everything_arrives():
    cell = transport_cell(_raw("poll", drops=[], ups=[10.0]))
    assert cell["drop_seen"] is False and cell["server_close_survived"] is True and cell["resumed_without_loss"]
    assert cell["reconnect_gap_ms"] is None and cell["last_event_id_sent"] is None


def test_a_transport_that_never_came_back_did_not_survive():
    after_missing = [a for a in _raw()["arrivals"] if a["seq"] < 5]
    cell = transport_cell(_raw(ups=[10.0], arrivals=after_missing, timeouts=["resume", "after"]))
    assert cell["server_close_survived"] is False and cell["resumed_without_loss"] is False and cell["lost"] == 10


def test_a_step_that_timed_out_is_scored_from_its_partial_record():
    cell = transport_cell({"error": "the step's own deadline passed", "partial": _raw(timeouts=["resume"])})
    assert cell["error"] and cell["opened"] and cell["resumed_without_loss"] is False
    assert transport_cell({"error": "no result within 1 ms"}) == {"opened": False, "error": "no result within 1 ms"}


def test_the_probe_counts_streams_and_a_stalled_fetch():
    raw = {"count": 8, "opened": 6, "joined": 6, "fetch_ok": False, "fetch_error": "AbortError", "protocols": {"page": "http/1.1"}}
    p = probe_cell(raw)
    assert (p["measured"], p["opened"], p["fetch_stalled"], p["protocol"]) == (True, 6, True, "http/1.1")
    assert probe_cell({"error": "no result"}) == {"measured": False, "reason": "no result"}


def test_steps_cover_each_given_transport_then_the_probes():
    s = PageSettings()
    steps = build_steps({"ws": "http://x:1/", "sse": "http://x:2"}, ctl="http://c:3", token="k", settings=s, probe_base="http://x:2")
    assert [(st["kind"], st.get("transport") or st.get("probe")) for st in steps] == [
        ("transport", "sse"),
        ("transport", "ws"),
        ("probe", "http1"),
    ]
    assert steps[1]["base"] == "http://x:1" and len({st["room"] for st in steps}) == 3
    assert PageSettings().scaled(2).resume_ms == 2 * s.resume_ms and PageSettings().scaled(2).batch == s.batch


def test_h2_is_reported_not_measured_where_the_engine_cannot_trust_the_front():
    assert browsers.h2_unsupported_reason("chromium") is None
    for engine in ("firefox", "webkit"):
        assert "not measured" in browsers.h2_unsupported_reason(engine)


def test_a_feed_base_must_be_plain_http_with_a_port():
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        browsers.run_engine("chromium", {"sse": "https://127.0.0.1:1"})
    with pytest.raises(ValueError, match="unknown transports"):
        browsers.run_engine("chromium", {"carrier-pigeon": "http://127.0.0.1:1"})


# -- the page in each engine ----------------------------------------------------------------------------------


def _need(engine: str) -> None:
    if browser.find_engine(engine) is None or (browser.ENGINES[engine].needs_display and browser.shutil.which("Xvfb") is None):
        missing_program(f"{browser.ENGINES[engine].title} is not installed ({browser.ENGINES[engine].install})")


@pytest.mark.slow
@pytest.mark.parametrize("engine", browsers.ENGINE_NAMES)
def test_each_engine_opens_every_transport_survives_the_cut_and_resumes_without_loss(engine, feed, tmp_path):
    _need(engine)
    feeds = {t: feed.base for t in browsers.TRANSPORTS}
    row = browsers.run_engine(engine, feeds, settings=PageSettings().scaled(UNIT), workdir=tmp_path)
    assert row["status"] == "measured" and row["version"]
    for t in browsers.TRANSPORTS:
        cell = row["transports"][t]
        assert cell["opened"], (t, cell)
        assert cell["cut"] and cell["cut_connections"], (t, cell)
        assert cell["server_close_survived"] and cell["resumed_without_loss"], (t, cell)
        assert (cell["lost"], cell["duplicated"]) == (0, 0), (t, cell)
    sse = row["transports"]["sse"]
    assert sse["drop_seen"] and sse["reconnect_gap_ms"] is not None
    # The inference agrees with the wire: the reconnect carried the id of the last broadcast the page saw.
    assert sse["last_event_id_sent"] is True
    sent = [h for room, h in feed.last_event_ids if room.startswith("s04-sse-") and h is not None]
    assert sent == [sse["last_event_id_at_drop"]] and sent[0].startswith(f"{feed.epoch}-")
    # The epoch went back on the other two transports too: every cursor but the joining poll's, the WebSocket rejoins.
    cursors = [c for room, c in feed.polls if room.startswith("s04-poll-") and c is not None]
    assert cursors and all(c.startswith(f"{feed.epoch}-") for c in cursors), cursors
    rejoins = [j for j in feed.ws_joins if str(j.get("room")).startswith("s04-ws-") and "after" in j]
    assert rejoins and all(j.get("epoch") == feed.epoch for j in rejoins), rejoins
    # Six connections per origin over HTTP/1.1: the 7th and 8th streams and one more fetch wait.
    probe = row["per_origin"]["http1"]
    assert (probe["measured"], probe["opened"], probe["fetch_stalled"]) == (True, 6, True), probe
    assert row["per_origin"]["h2"]["measured"] is False and "not measured" in row["per_origin"]["h2"]["reason"]


@pytest.mark.slow
def test_over_http2_all_eight_streams_and_the_fetch_share_one_connection_in_chromium(feed, tmp_path):
    _need("chromium")
    import spikes.s04_transport.proxies  # noqa: F401 - registers openssl with the harness's table of programs

    require_program("nginx", "openssl")
    with browsers.nginx_h2_front(feed.base, tmp_path / "h2") as h2:
        row = browsers.run_engine(
            "chromium", {"sse": feed.base}, h2_base=h2, settings=PageSettings().scaled(UNIT), workdir=tmp_path / "page"
        )
    h2_probe, h1_probe = row["per_origin"]["h2"], row["per_origin"]["http1"]
    assert (h2_probe["measured"], h2_probe["opened"], h2_probe["fetch_stalled"], h2_probe["protocol"]) == (True, 8, False, "h2"), h2_probe
    assert (h1_probe["opened"], h1_probe["fetch_stalled"]) == (6, True), h1_probe
    assert set(row["transports"]) == {"sse"}
