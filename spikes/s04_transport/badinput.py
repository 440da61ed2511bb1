"""Bad input to Spike 4's feed servers: resume points the protocol refuses or cannot honour, and hostile publish bodies.

The issue's bar: a ``Last-Event-ID``, cursor or ``after`` that is malformed, in the
future, older than the history kept (or, with the epoch, of another server's
numbering) gets a clear answer, a full-reload event or an error status, never a
crash or a silent gap. :func:`run_bad_input` starts the option's declared server with
a small history (``history``, 5 by default), publishes a dozen events, then sends
each case the option's way (SSE: the ``Last-Event-ID`` header; long polling: the
``cursor``; WebSocket: a ``join`` with ``after``, and ``epoch``) and records what came
back: the status and body, or the events or messages and the close code. After an
answer that let the client in (a ``joined``, a ``reset``) it publishes one more event
and records whether that same connection got it ("then live"). For SSE and long
polling the hostile ``POST /send`` bodies follow (WebSocket publishes over its
socket: the hostile frame battery, ``robustness.py``, covers it).

Each case is then judged on three things, the same for every transport:

- **clear**: the answer is one the case allows (an error status or message, a close
  code, a ``reset``); a 5xx, a close 1011, a dropped connection, silence until the
  timeout, or a client let in without a ``reset`` where history was lost (a silent
  gap) is not. ``as_specified`` says further whether it is the protocol's own answer
  (400, close 1008, the ``reset`` reason).
- **still serving**: a fresh client subscribes and gets the next published event.
- **traceback**: the server's log gained a ``Traceback`` while the case ran.

:func:`table` turns a stored run back into the document's table, from the stored facts only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from harness.plugin import ScenarioContext, ScenarioOutput, Table
from harness.poc import poc_server, resolve
from harness.process import ServerProcess
from harness.results import RunResult

__all__ = [
    "SCENARIO",
    "TRANSPORTS",
    "DEFAULT_HISTORY",
    "DEFAULT_TIMEOUT_S",
    "ResumeCase",
    "RESUME_CASES",
    "send_cases",
    "run_bad_input",
    "table",
]

#: The scenario's key in the plugin (``table`` reads it back from a stored run).
SCENARIO = "bad-input"
#: The transport each option speaks, by option key.
TRANSPORTS = {"sse": "sse", "longpoll": "poll", "ws": "ws"}
#: Broadcasts the server holds per room during the cases: small, so "older than the history" is a dozen events away.
DEFAULT_HISTORY = 5
#: The longest wait for any one answer (a parameter, ``timeout_s``): past it the case is "silence".
DEFAULT_TIMEOUT_S = 3.0
#: Events published before the first case: more than the history, so its oldest are gone.
PUBLISHED_FIRST = 12
ROOM = "bad-input"
#: A resume point far past the head (the server restarted and numbers again from 1).
FUTURE = 1_000_000
_KEEP = 200  # characters of an answer's body kept in the facts

# The kinds of answer a case may get.
ERROR = "error"  # an HTTP 4xx with {"op": "error"}, or a WebSocket {"op": "error"} message
CLOSE = "close"  # a WebSocket close with a code, no error message before it
RESET = "reset"  # let in with a reset (reload in full), then the stream goes on
JOINED = "joined"  # let in with no reset (joined, or a poll's events): a resume honoured, or a silent gap
SERVER_ERROR = "server error"  # a 5xx, or a close 1011
SILENCE = "silence"  # nothing within the timeout
DROP = "drop"  # the connection ended with no answer
OTHER = "other"  # an answer the protocol has no place for


@dataclass(frozen=True)
class ResumeCase:
    """One resume point, as an HTTP client sends it (``text``) and as a WebSocket join carries it (``join``, JSON fields).

    ``{e}`` stands for the server's epoch and ``{other}`` for another one. ``accept`` are the kinds of answer
    that are clear for it (``http_accept`` instead on SSE and long polling when it differs); ``reason`` is the
    ``reset`` reason the protocol gives. ``epoch`` cases need a server that numbers in epochs.
    """

    name: str
    text: str
    join: str
    accept: tuple[str, ...]
    reason: str | None = None
    epoch: bool = False
    http_accept: tuple[str, ...] | None = None

    def accepted(self, transport: str) -> tuple[str, ...]:
        if transport == "ws":
            return self.accept
        return self.http_accept if self.http_accept is not None else tuple(k for k in self.accept if k != CLOSE)

    def expected(self, transport: str) -> str:
        """The protocol's own answer, in words."""
        if self.reason is not None:
            return f"reset ({self.reason}), then live"
        if transport == "ws":
            return "error, close 1008"
        if self.http_accept is not None and JOINED in self.http_accept:
            return "joined as a new client (an empty id is no id)"
        return "400 error"


_MALFORMED = (ERROR, CLOSE)
_DIGITS = "9" * 400

#: Every resume-point case, in the order they run (and rows of the table).
RESUME_CASES = (
    ResumeCase('resume "abc"', "abc", '"after":"abc"', _MALFORMED),
    ResumeCase('resume "-1"', "-1", '"after":-1', _MALFORMED),
    ResumeCase('resume "1.5"', "1.5", '"after":1.5', _MALFORMED),
    # EventSource sends no Last-Event-ID until it got an id, and an empty one means none: a new client.
    ResumeCase('resume "" (empty)', "", '"after":""', _MALFORMED, http_accept=(ERROR, JOINED)),
    ResumeCase("resume of 400 digits", _DIGITS, '"after":' + _DIGITS, _MALFORMED),
    ResumeCase('resume with a bad epoch ("bad.epoch-3")', "bad.epoch-3", '"after":3,"epoch":"bad.epoch"', _MALFORMED),
    ResumeCase(f"resume in the future (E-{FUTURE})", f"{{e}}-{FUTURE}", f'"after":{FUTURE},"epoch":"{{e}}"', (RESET,), "future", True),
    ResumeCase("resume older than the history (E-1)", "{e}-1", '"after":1,"epoch":"{e}"', (RESET,), "history", True),
    ResumeCase("resume of another epoch (other-3)", "{other}-3", '"after":3,"epoch":"{other}"', (RESET,), "epoch", True),
    ResumeCase(f"resume in the future, no epoch ({FUTURE})", str(FUTURE), f'"after":{FUTURE}', (RESET,), "future"),
    ResumeCase("resume older than the history, no epoch (1)", "1", '"after":1', (RESET,), "history"),
)


def _broadcast(seq: int, d: str) -> dict[str, Any]:
    return {"op": "broadcast", "room": ROOM, "seq": seq, "t": time.time_ns(), "c": 1, "d": d}


def send_cases() -> list[tuple[str, bytes, int]]:
    """The hostile ``POST /send`` bodies: ``(name, body, the status the protocol answers)``."""
    good = _broadcast(1, "x")
    return [
        ("POST /send: not JSON", b"this is not JSON {", 400),
        ("POST /send: JSON array", b"[1,2,3]", 400),
        ("POST /send: null", b"null", 400),
        ("POST /send: a number", b"42", 400),
        ("POST /send: 10 MB", orjson.dumps({**good, "d": "x" * (10 * 1024 * 1024)}), 413),
        ("POST /send: invalid UTF-8", b'{"op":"broadcast","room":"\xff\xfe\xc3\x28"}', 400),
        ("POST /send: wrong field types", orjson.dumps({"op": "broadcast", "room": ROOM, "seq": "1", "t": "x", "c": None, "d": 5}), 400),
        ("POST /send: unknown op", orjson.dumps({**good, "op": "no-such-op"}), 400),
        ("POST /send: missing room", orjson.dumps({k: v for k, v in good.items() if k != "room"}), 400),
    ]


@dataclass
class _Answer:
    """What one case got back."""

    kind: str
    status: int | None = None
    error: str = ""
    reason: str = ""
    close_code: int | None = None
    then_live: bool | None = None
    replayed: int = 0
    body: str = ""
    seen: list[str] = field(default_factory=list)  # the events or messages, by op, in order

    def facts(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "status": self.status,
            "error": self.error[:_KEEP],
            "reason": self.reason,
            "close_code": self.close_code,
            "then_live": self.then_live,
            "replayed": self.replayed,
            "body": self.body[:_KEEP],
            "seen": self.seen[:10],
        }


def _loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


async def _http_answer(resp: aiohttp.ClientResponse) -> _Answer:
    """A non-200 answer (or a 200 that is not the protocol's): its kind, status and error."""
    raw = await resp.read()
    body = raw.decode("utf-8", "replace")
    msg = _loads(raw)
    if resp.status >= 500:
        return _Answer(SERVER_ERROR, resp.status, body=body)
    if 400 <= resp.status < 500 and isinstance(msg, dict) and msg.get("op") == "error":
        return _Answer(ERROR, resp.status, error=str(msg.get("error", "")), body=body)
    return _Answer(OTHER, resp.status, body=body)


class _SseReader:
    """Events of one ``text/event-stream`` response, comments skipped."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self) -> dict[str, str] | None:
        """The next event (``event``, ``id``, ``data``), or ``None`` when the stream ended."""
        fields: dict[str, str] = {}
        while True:
            line = await self.resp.content.readline()
            if not line:
                return None
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if not text:
                if "data" in fields:
                    fields.setdefault("event", "message")
                    return fields
                fields = {}
            elif not text.startswith(":"):
                name, _, value = text.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value


class _Client:
    """The option's transport, as a client of the feed: publish, resume from a point, subscribe afresh."""

    def __init__(self, transport: str, url: str, session: aiohttp.ClientSession, timeout: float) -> None:
        self.transport, self.url, self.session, self.timeout = transport, url.rstrip("/"), session, timeout
        self.seq = 0
        self.epoch: str | None = None
        self._pub: ClientConnection | None = None

    def _ws(self) -> Any:
        return connect(self.url, open_timeout=self.timeout, close_timeout=1.0, compression=None, ping_interval=None, proxy=None)

    async def _recv(self, ws: ClientConnection) -> Any:
        async with asyncio.timeout(self.timeout):
            return _loads(await ws.recv())

    async def publish(self) -> str:
        """Publish one broadcast; its ``d`` (a marker the receivers look for). Raises when the server does not ack it."""
        self.seq += 1
        d = f"bad-input-{self.seq}"
        msg = _broadcast(self.seq, d)
        if self.transport == "ws":
            if self._pub is None:
                self._pub = await self._ws()
            try:
                await self._pub.send(orjson.dumps(msg).decode())
                while True:
                    ack = await self._recv(self._pub)
                    if isinstance(ack, dict) and ack.get("op") == "ack" and ack.get("seq") == self.seq:
                        break
            except BaseException:
                await self._pub.close()
                self._pub = None
                raise
        else:
            async with asyncio.timeout(self.timeout), self.session.post(f"{self.url}/send", json=msg) as resp:
                ack = _loads(await resp.read())
                if resp.status != 200 or not isinstance(ack, dict):
                    raise ConnectionError(f"publish answered {resp.status}: {ack}")
        self.epoch = ack.get("e", self.epoch)
        return d

    async def close(self) -> None:
        if self._pub is not None:
            await self._pub.close()

    # -- resuming ------------------------------------------------------------------------------

    async def resume(self, point: str, join: str) -> _Answer:
        """What resuming from ``point`` (HTTP) or with the join fields ``join`` (WebSocket) gets, then whether the stream goes on."""
        try:
            if self.transport == "sse":
                return await self._sse_resume(point)
            if self.transport == "poll":
                return await self._poll_resume(point)
            return await self._ws_resume(join)
        except TimeoutError:
            return _Answer(SILENCE)
        except (aiohttp.ClientError, OSError, WebSocketException) as exc:
            return _Answer(DROP, body=f"{type(exc).__name__}: {exc}")

    async def _live(self, events: AsyncIterator[tuple[str, dict[str, Any]]], answer: _Answer) -> None:
        """Publish one event and read ``events`` until it arrives, noting a reset and the replayed broadcasts before it."""
        answer.then_live = False
        marker = await self.publish()
        async with asyncio.timeout(self.timeout):
            async for op, msg in events:
                answer.seen.append(op)
                if op == RESET:
                    answer.kind, answer.reason = RESET, str(msg.get("reason", ""))
                elif op == "broadcast" and msg.get("d") == marker:
                    answer.then_live = True
                    return
                elif op == "broadcast":
                    answer.replayed += 1
                elif op in ("dropped", ERROR):
                    return

    async def _sse_resume(self, point: str) -> _Answer:
        url = f"{self.url}/sse?room={ROOM}"
        async with asyncio.timeout(self.timeout):
            resp = await self.session.get(url, headers={"Last-Event-ID": point})
        try:
            if resp.status != 200:
                async with asyncio.timeout(self.timeout):
                    return await _http_answer(resp)
            reader = _SseReader(resp)
            async with asyncio.timeout(self.timeout):
                first = await reader.next()
            if first is None:
                return _Answer(DROP, 200, body="the stream ended before any event")
            if first["event"] != "joined":
                return _Answer(OTHER, 200, body=f"event {first['event']}: {first['data']}")
            answer = _Answer(JOINED, 200, body=first["data"], seen=["joined"])

            async def events() -> AsyncIterator[tuple[str, dict[str, Any]]]:
                while (e := await reader.next()) is not None:
                    msg = _loads(e["data"]) or {}
                    yield (e["event"] if e["event"] != "message" else str(msg.get("op", "message"))), msg

            with contextlib.suppress(TimeoutError):
                await self._live(events(), answer)
            return answer
        finally:
            resp.close()  # a dropped connection: the server's stream ends

    async def _poll(self, **query: str) -> tuple[int, Any]:
        async with asyncio.timeout(self.timeout), self.session.get(f"{self.url}/poll", params={"room": ROOM, **query}) as resp:
            return resp.status, _loads(await resp.read())

    async def _poll_resume(self, point: str) -> _Answer:
        async with (
            asyncio.timeout(self.timeout),
            self.session.get(f"{self.url}/poll", params={"room": ROOM, "cursor": point, "hold_s": "0"}) as resp,
        ):
            if resp.status != 200:
                return await _http_answer(resp)
            raw = await resp.read()
        body = _loads(raw)
        if not isinstance(body, dict) or "cursor" not in body:
            return _Answer(OTHER, 200, body=raw.decode("utf-8", "replace"))
        events = [e for e in body.get("events") or [] if isinstance(e, dict)]
        answer = _Answer(JOINED, 200, body=raw.decode("utf-8", "replace"))
        if body.get("op") == "joined":
            answer.seen.append("joined")
        for e in events:
            answer.seen.append(str(e.get("op")))
            if e.get("op") == RESET:
                answer.kind, answer.reason = RESET, str(e.get("reason", ""))
            else:
                answer.replayed += 1
        marker = await self.publish()
        status, nxt = await self._poll(cursor=str(body["cursor"]), hold_s="0")
        got = [e.get("d") for e in (nxt or {}).get("events", []) if isinstance(e, dict)] if status == 200 else []
        answer.then_live = marker in got
        return answer

    async def _ws_resume(self, join: str) -> _Answer:
        async with self._ws() as ws:
            await ws.send('{"op":"join","room":"' + ROOM + '",' + join + "}")
            try:
                first = await self._recv(ws)
            except ConnectionClosed:
                code = ws.close_code
                return _Answer(SERVER_ERROR if code == 1011 else CLOSE if code not in (None, 1005, 1006) else DROP, close_code=code)
            if not isinstance(first, dict):
                return _Answer(OTHER, body=str(first))
            op = first.get("op")
            if op == ERROR:
                answer = _Answer(ERROR, error=str(first.get("error", "")), body=orjson.dumps(first).decode(), seen=[ERROR])
                # Closed after the error, or still open? An echo tells at once, without waiting out a timeout.
                try:
                    await ws.send('{"op":"echo","seq":1,"t":0,"c":1,"d":"still open?"}')
                    while True:
                        msg = await self._recv(ws)
                        if isinstance(msg, dict) and msg.get("op") == "echo":
                            break
                except ConnectionClosed:
                    answer.close_code = ws.close_code
                    if ws.close_code == 1011:
                        answer.kind = SERVER_ERROR
                return answer
            if op != "joined":
                return _Answer(OTHER, body=orjson.dumps(first).decode())
            answer = _Answer(JOINED, body=orjson.dumps(first).decode(), seen=["joined"])

            async def messages() -> AsyncIterator[tuple[str, dict[str, Any]]]:
                with contextlib.suppress(ConnectionClosed):
                    while True:
                        msg = _loads(await ws.recv())
                        if isinstance(msg, dict):
                            yield str(msg.get("op")), msg

            with contextlib.suppress(TimeoutError):
                await self._live(messages(), answer)
            return answer

    # -- a hostile body ------------------------------------------------------------------------

    async def send_raw(self, body: bytes) -> _Answer:
        """``POST /send`` with ``body``, on its own connection (as an attacker's would be)."""
        try:
            async with (
                aiohttp.ClientSession() as hostile,
                asyncio.timeout(self.timeout),
                hostile.post(f"{self.url}/send", data=body, headers={"Content-Type": "application/json"}) as resp,
            ):
                return await _http_answer(resp)
        except TimeoutError:
            return _Answer(SILENCE)
        except (aiohttp.ClientError, OSError) as exc:
            return _Answer(DROP, body=f"{type(exc).__name__}: {exc}")

    # -- a second client -----------------------------------------------------------------------

    async def fresh_gets_next(self) -> bool:
        """Whether a new subscriber (no resume point) gets the next event published."""
        try:
            if self.transport == "sse":
                async with asyncio.timeout(self.timeout):
                    resp = await self.session.get(f"{self.url}/sse?room={ROOM}")
                try:
                    reader = _SseReader(resp)
                    async with asyncio.timeout(self.timeout):
                        first = await reader.next()
                    if resp.status != 200 or first is None or first["event"] != "joined":
                        return False
                    marker = await self.publish()
                    async with asyncio.timeout(self.timeout):
                        while (e := await reader.next()) is not None:
                            if (_loads(e["data"]) or {}).get("d") == marker:
                                return True
                    return False
                finally:
                    resp.close()
            if self.transport == "poll":
                status, joined = await self._poll()
                if status != 200 or not isinstance(joined, dict) or "cursor" not in joined:
                    return False
                marker = await self.publish()
                status, answer = await self._poll(cursor=str(joined["cursor"]), hold_s="0")
                return status == 200 and marker in [e.get("d") for e in answer.get("events", []) if isinstance(e, dict)]
            async with self._ws() as ws:
                await ws.send('{"op":"join","room":"' + ROOM + '"}')
                first = await self._recv(ws)
                if not isinstance(first, dict) or first.get("op") != "joined":
                    return False
                marker = await self.publish()
                while True:
                    msg = await self._recv(ws)
                    if isinstance(msg, dict) and msg.get("d") == marker:
                        return True
        except (TimeoutError, aiohttp.ClientError, OSError, WebSocketException, ValueError):
            return False


def _another_epoch(epoch: str) -> str:
    return "0badcafe" if epoch != "0badcafe" else "0badbeef"


def _tracebacks(server: ServerProcess) -> int:
    return server.log_since_start().count("Traceback")


async def _run_cases(
    transport: str, url: str, server: ServerProcess, timeout: float, advance: Callable[[float], None]
) -> tuple[list[dict[str, Any]], str | None]:
    """Every case against the started server, in order; the case facts and the server's epoch."""
    out: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        client = _Client(transport, url, session, timeout)
        try:
            for _ in range(PUBLISHED_FIRST):
                await client.publish()
            epoch = client.epoch
            resume = [c for c in RESUME_CASES if epoch is not None or not c.epoch]
            sends = send_cases() if transport != "ws" else []
            total = len(resume) + len(sends)

            async def judge(
                name: str, group: str, sent: str, expected: str, accept: Sequence[str], run: Awaitable[_Answer]
            ) -> dict[str, Any]:
                before = _tracebacks(server)
                t0 = time.perf_counter()
                answer = await run
                seconds = time.perf_counter() - t0
                serving = await client.fresh_gets_next()
                fact = {"case": name, "group": group, "sent": sent[:80], "expected": expected, **answer.facts()}
                fact |= {
                    "clear": answer.kind in accept,
                    "still_serving": serving,
                    "traceback": _tracebacks(server) > before,
                    "seconds": round(seconds, 4),
                }
                advance(len(out) / max(total, 1))
                return fact

            for case in resume:
                subs = {"{e}": epoch or "", "{other}": _another_epoch(epoch or "")}
                point, join = case.text, case.join
                for k, v in subs.items():
                    point, join = point.replace(k, v), join.replace(k, v)
                sent = ("join " + join) if transport == "ws" else f"{'Last-Event-ID' if transport == 'sse' else 'cursor'}: {point}"
                fact = await judge(
                    case.name, "resume", sent, case.expected(transport), case.accepted(transport), client.resume(point, join)
                )
                fact["as_specified"] = _as_specified(case, transport, fact)
                out.append(fact)
            for name, body, status in sends:
                sent = f"{len(body):,} bytes" if len(body) > 80 else body.decode("utf-8", "replace")
                fact = await judge(name, "send", sent, f"{status} error", (ERROR,), client.send_raw(body))
                fact["as_specified"] = fact["kind"] == ERROR and fact["status"] == status
                out.append(fact)
        finally:
            await client.close()
    return out, epoch


def _as_specified(case: ResumeCase, transport: str, fact: Mapping[str, Any]) -> bool:
    """Whether the answer is the protocol's own (not only a clear one)."""
    if case.reason is not None:
        return fact["kind"] == RESET and fact["reason"] == case.reason and fact["then_live"] is True
    if transport == "ws":
        return bool(fact["kind"] == ERROR and fact["close_code"] == 1008)
    if case.http_accept is not None and JOINED in case.http_accept:
        return bool(fact["kind"] == JOINED and fact["then_live"] is True and fact["replayed"] == 0)
    return bool(fact["kind"] == ERROR and fact["status"] == 400)


def run_bad_input(ctx: ScenarioContext) -> ScenarioOutput:
    """Every bad-input case against the option's server (started with a small history); one fact per case.

    Parameters: ``history`` (broadcasts held, default :data:`DEFAULT_HISTORY`) and ``timeout_s``
    (the longest wait for an answer, default :data:`DEFAULT_TIMEOUT_S`).
    """
    key = ctx.option.key
    if key not in TRANSPORTS:
        raise ValueError(f"bad-input knows the options {', '.join(TRANSPORTS)}, not {key!r}")
    transport = TRANSPORTS[key]
    history = int(ctx.params.get("history", DEFAULT_HISTORY))
    timeout = float(ctx.params.get("timeout_s", DEFAULT_TIMEOUT_S))
    declared = resolve(ctx.option)
    # The option's own command, with a small history (argparse takes the last --history given).
    spec = dataclasses.replace(declared, argv=(*declared.argv, "--history", str(history)))
    with poc_server(ctx.option, ctx.workdir, spec=spec, name=f"{ctx.option.title} (bad input)", log_name="bad-input-server.log") as (
        server,
        url,
    ):
        cases, epoch = asyncio.run(_run_cases(transport, url, server, timeout, ctx.advance))
    tracebacks = _tracebacks(server)
    unclear = [c["case"] for c in cases if not c["clear"]]
    not_serving = [c["case"] for c in cases if not c["still_serving"]]
    ctx.log(
        f"bad input, {key}: {len(cases) - len(unclear)} of {len(cases)} answered clearly, "
        f"{len(not_serving)} left the server not serving, {tracebacks} tracebacks in its log"
    )
    out = ScenarioOutput()
    out.add("bad_input_cases", "cases", [len(cases)], better=None)
    out.add("bad_input_unclear", "cases", [len(unclear)])
    out.add("bad_input_not_serving", "cases", [len(not_serving)])
    out.add("bad_input_off_spec", "cases", [sum(1 for c in cases if not c["as_specified"])])
    out.add("bad_input_tracebacks", "tracebacks", [tracebacks])
    out.facts.update(
        {
            "cases": cases,
            "transport": transport,
            "history": history,
            "published_first": PUBLISHED_FIRST,
            "epoch": epoch,
            "exit_code": server.returncode,
        }
    )
    return out


# -- the document's table ----------------------------------------------------------------------------

#: Error texts of the feed, shortened to a few words for a table cell (first match wins).
_GISTS = (
    (re.compile(r"resume point"), "bad resume point"),
    (re.compile(r"^epoch must"), "bad epoch"),
    (re.compile(r"not JSON"), "not JSON"),
    (re.compile(r"expected a JSON object"), "not a JSON object"),
    (re.compile(r"over the limit"), "too big"),
    (re.compile(r"unknown op"), "unknown op"),
    (re.compile(r"^(\w+) must be"), r"bad \1"),
)


def _gist(error: str) -> str:
    for pattern, words in _GISTS:
        m = pattern.search(error)
        if m:
            return m.expand(words)
    return error[:40] + ("..." if len(error) > 40 else "")


def _cell(c: Mapping[str, Any]) -> str:
    """One case's answer in a few words, flagged where it falls short."""
    kind, code = c.get("kind"), c.get("close_code")
    live = {True: ", then live", False: ", **no live event after**", None: ""}[c.get("then_live")]
    if kind == ERROR:
        text = f"{c['status']} error: {_gist(c.get('error', ''))}" if c.get("status") else f"error: {_gist(c.get('error', ''))}"
        if c.get("group") == "resume" and not c.get("status"):
            text += f", close {code}" if code is not None else ", stays open"
    elif kind == CLOSE:
        text = f"close {code}"
    elif kind == RESET:
        text = f"reset ({c.get('reason')})" + live
    elif kind == JOINED:
        replay = f", {c['replayed']} replayed" if c.get("replayed") else ""
        # Let in with no reset: a new client where the case allows it (an empty id), else a silent gap.
        text = ("joined as a new client" if c.get("clear") else "joined, no reset") + replay + live
    elif kind == SERVER_ERROR:
        text = f"{c['status']} server error" if c.get("status") else f"close {code}"
    elif kind == SILENCE:
        text = "no answer (hang)"
    elif kind == DROP:
        text = "dropped, no answer"
    else:
        text = f"unexpected: {str(c.get('body', ''))[:40]}"
    if not c.get("clear"):
        text = f"**unclear**: {text}"
    elif not c.get("as_specified", True):
        text += f" (protocol: {c.get('expected')})"
    if not c.get("still_serving"):
        text += "; **not serving after**"
    if c.get("traceback"):
        text += "; **traceback in log**"
    return text


def table(run: RunResult, titles: Mapping[str, str] | None = None) -> Table | None:
    """The bad-input table of a stored run: a row per case, a column per option; ``None`` when the scenario is not in it."""
    opts = [o for o in run.options if run.result(SCENARIO, o) is not None]
    if not opts:
        return None
    names = titles or {}
    stored: dict[str, dict[str, Any] | None] = {}
    for o in opts:
        sr = run.ok(SCENARIO, o)
        stored[o] = sr.fact if sr is not None else None
    cases: list[str] = []
    for facts in stored.values():
        for c in (facts or {}).get("cases", []):
            if c["case"] not in cases:
                cases.append(c["case"])
    rows = []
    for case in cases:
        row = [case]
        for o in opts:
            facts = stored[o]
            if facts is None:
                sr = run.result(SCENARIO, o)
                row.append(sr.status.replace("_", " ") if sr is not None else "not in this run")
                continue
            c = next((x for x in facts.get("cases", []) if x["case"] == case), None)
            if c is None:
                publishes = case.startswith("POST /send") and facts.get("transport") == "ws"
                row.append("n/a (publishes on its socket)" if publishes else "not run")
            else:
                row.append(_cell(c))
        rows.append(row)
    totals = ["**clear answers**"]
    for o in opts:
        facts = stored[o]
        got = (facts or {}).get("cases", [])
        totals.append(f"{sum(1 for c in got if c.get('clear'))} of {len(got)}" if facts is not None else "-")
    rows.append(totals)
    histories = sorted({str(f.get("history")) for f in stored.values() if f is not None})
    first = sorted({str(f.get("published_first")) for f in stored.values() if f is not None})
    note = (
        f"Each option's server held {' or '.join(histories)} broadcasts per room, {' or '.join(first)} published before the cases. "
        "SSE resumes with the Last-Event-ID header, long polling with the cursor, WebSocket with a join's `after` (and `epoch`); "
        "E is the server's epoch. A clear answer is an error status or message, a close code or a reset; never a 5xx, silence, a "
        'dropped connection or a client let in past lost history without a reset. "then live": the same connection got the next '
        "event published. After every case a fresh client subscribed and had to get the next event (else **not serving after**), "
        "and the server's log was scanned for a traceback. Where the answer is clear but not the protocol's own, the protocol's "
        "is in parentheses. WebSocket publishes on its socket, not by POST: its hostile messages are in the hostile frames table."
    )
    return Table("Bad input: resume points and publish bodies", ["Case", *(names.get(o, o) for o in opts)], rows, note)
