"""Hostile WebSocket frames: one battery to run against any WebSocket server URL.

Each case opens a fresh connection, sends one hostile message (not JSON, a JSON
array, a number, ``null``, JSON nested 10,000 deep, a 10 MB text frame, invalid
UTF-8 in a text frame, an unexpected binary frame, a fragmented message, an
unknown message type, wrong field types) and records how the server answered:

- an **error message** (a frame the ``is_error`` predicate accepts; by default
  any frame whose text contains "error"), or a **reply** that is not an error;
- a **close** frame, with its code (1003, 1007, 1008, 1009, 1011, ...) and reason;
- a **drop**: the connection ended without a close frame;
- **silence**: nothing within the timeout, the connection still open.

Then, with the hostile connection still open, a second, fresh connection must
get an answer to the caller's probe (a :class:`Probe`, or any async function of
the URL returning whether the server answered): that is "still serving". A
case passes when the server answered clearly (an error message or a close
code, never a drop without a close frame, a non-error reply or silence), kept
serving, and, when the caller gives ``server_log``, wrote no ``Traceback`` to
its log while the case ran. Once a probe fails the server is taken as down and
the remaining cases are recorded as not run (``stop_when_down=False`` runs them
anyway).

Every frame is sent by the ``websockets`` client, which masks as a client
must: invalid UTF-8 goes out as a text frame through ``send(bytes, text=True)``
(which does not validate), and the fragmented message as a text frame followed
by continuation frames through ``send(iterable)`` (three parts, then the empty
final frame websockets ends an iterated message with). Compression is off, so
the frames are on the wire as built.

Socket.IO servers are not supported: their frames are Engine.IO packets, so
these cases would test the Engine.IO parser, not the application. ``prelude``
(run on each hostile connection before the case's frame) can perform a
handshake or a log-in for servers that want one first.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State

__all__ = [
    "Answer",
    "HostileCase",
    "Probe",
    "ProbeFn",
    "CaseResult",
    "FrameReport",
    "TABLE_HEADER",
    "CASE_NAMES",
    "hostile_cases",
    "wrong_type",
    "default_is_error",
    "run_battery",
    "run_battery_sync",
]

Data = str | bytes
#: An async function of the server's URL that returns whether the server answered (see :class:`Probe`).
ProbeFn = Callable[[str], Awaitable[bool]]
Prelude = Callable[[ClientConnection], Awaitable[None]]

MIB = 1024 * 1024
#: At most this many frames of an answer are kept, each cut to ``_KEEP_CHARS`` characters.
_KEEP_FRAMES = 5
_KEEP_CHARS = 200
_TRACEBACK = "Traceback"

TABLE_HEADER = ("case", "answer", "still serving", "result")


class Answer(StrEnum):
    """How the server answered one hostile frame."""

    ERROR_MESSAGE = "error message"
    CLOSE = "close"
    REPLY = "reply"  # a frame, but not an error message
    DROP = "drop"  # the connection ended without a close frame
    SILENCE = "silence"
    NO_CONNECTION = "no connection"  # the case could not even connect
    NOT_RUN = "not run"


@dataclass(frozen=True)
class HostileCase:
    """One hostile message: a text frame, a text frame of raw bytes, a binary frame, or text fragments."""

    name: str
    description: str
    kind: Literal["text", "text-bytes", "binary", "fragments"]
    payload: str | bytes | tuple[str, ...]

    def size(self) -> int:
        """Bytes of payload sent."""
        if isinstance(self.payload, tuple):
            return sum(len(p.encode()) for p in self.payload)
        return len(self.payload.encode()) if isinstance(self.payload, str) else len(self.payload)


def wrong_type(value: object) -> object:
    """A JSON value of another type than ``value``: a string for a number or a bool, a number for a string, ..."""
    if isinstance(value, bool):
        return "true"
    if isinstance(value, int | float):
        return "not-a-number"
    if isinstance(value, str):
        return 12345
    if isinstance(value, list):
        return {"not": "a list"}
    if isinstance(value, dict):
        return [1, 2, 3]
    return {"unexpected": True}  # null, or anything else


def hostile_cases(base_message: Mapping[str, Any] | None = None, *, big_bytes: int = 10 * MIB, depth: int = 10_000) -> list[HostileCase]:
    """The battery, in order; ``base_message`` is a valid message of the server (a JSON object with ``type``).

    The wrong-types cases are built from it: ``type-not-string`` replaces its ``type`` with a number,
    ``wrong-field-types`` (only when it has fields besides ``type``) keeps the type and gives every other
    field a value of another type. The big frame is the base message padded to ``big_bytes``.
    """
    base: dict[str, Any] = dict(base_message) if base_message is not None else {"type": "ping"}
    nested = '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)
    head = json.dumps({**base, "padding": ""})[:-2]  # ends with the padding's opening quote
    big = head + "a" * max(0, big_bytes - len(head) - 2) + '"}'
    unknown = json.dumps({"type": "no-such-type"})
    third = max(1, len(unknown) // 3)
    cases = [
        HostileCase("not-json", "a text frame that is not JSON", "text", "this is not JSON {"),
        HostileCase("json-array", "a JSON array, not an object", "text", "[1,2,3]"),
        HostileCase("number", "a JSON number", "text", "42"),
        HostileCase("null", "JSON null", "text", "null"),
        HostileCase("deep-nesting", f"JSON objects nested {depth:,} levels deep", "text", nested),
        HostileCase("big-text", f"a {big_bytes / MIB:g} MiB text frame (the base message, padded)", "text", big),
        HostileCase("bad-utf8", "invalid UTF-8 in a text frame", "text-bytes", b'{"type":"\xff\xfe\xc3\x28"}'),
        HostileCase("binary", "an unexpected binary frame", "binary", bytes(range(256))),
        HostileCase(
            "fragmented",
            "an unknown-type message split over a text frame and continuation frames",
            "fragments",
            (unknown[:third], unknown[third : 2 * third], unknown[2 * third :]),
        ),
        HostileCase("unknown-type", 'an unknown message type {"type":"no-such-type"}', "text", unknown),
        HostileCase("type-not-string", "the base message with a number as its type", "text", json.dumps({**base, "type": 12345})),
    ]
    others = {k: wrong_type(v) for k, v in base.items() if k != "type"}
    if others:
        cases.append(
            HostileCase(
                "wrong-field-types", "the base message with every field but type of another type", "text", json.dumps({**base, **others})
            )
        )
    return cases


#: The names of the cases, in the order they run (``wrong-field-types`` only with a base message that has fields).
CASE_NAMES = tuple(c.name for c in hostile_cases({"type": "t", "x": 1}))


def default_is_error(frame: Data) -> bool:
    """Whether an answer frame is an error message: its text mentions "error" (``{"type": "error", ...}``, ``{"error": ...}``)."""
    text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
    return "error" in text.lower()


@dataclass(frozen=True)
class Probe:
    """A valid message and a predicate on its reply: the server still serves when a fresh connection gets such a reply.

    A mapping is sent as JSON. ``expect`` sees every frame until one satisfies it (or the timeout);
    by default any frame does.
    """

    message: Data | Mapping[str, Any]
    expect: Callable[[Data], bool] = field(default=lambda _frame: True)

    def encoded(self) -> Data:
        return json.dumps(self.message) if isinstance(self.message, Mapping) else self.message


def _keep(frame: Data) -> str:
    text = repr(frame) if isinstance(frame, bytes) else frame
    return text if len(text) <= _KEEP_CHARS else f"{text[:_KEEP_CHARS]}... ({len(text):,} characters)"


def _close_name(code: int) -> str:
    try:
        return CloseCode(code).name.lower().replace("_", " ")
    except ValueError:
        return "application" if 4000 <= code <= 4999 else "unknown"


@dataclass(frozen=True)
class CaseResult:
    """What one case got: the answer, whether the connection closed, whether the server still served, its log."""

    case: str
    description: str
    answer: Answer
    closed: bool = False
    close_code: int | None = None
    close_reason: str = ""
    replies: tuple[str, ...] = ()
    still_serving: bool | None = None  # None: not checked (the case did not run)
    probe_detail: str = ""
    traceback: str = ""  # the server log from its first "Traceback", cut short; "" when none or no log
    detail: str = ""  # what else happened (a send that failed, why the case did not run)
    seconds: float = 0.0

    @property
    def answered_clearly(self) -> bool:
        return self.answer in (Answer.ERROR_MESSAGE, Answer.CLOSE)

    @property
    def passed(self) -> bool:
        return self.answered_clearly and self.still_serving is True and not self.traceback

    def failures(self) -> list[str]:
        """Why the case failed, one phrase each; empty when it passed."""
        out = []
        if self.answer is Answer.NOT_RUN:
            return [f"not run: {self.detail}" if self.detail else "not run"]
        if not self.answered_clearly:
            out.append(f"no clear answer ({self.answer_text()})")
        if self.still_serving is not True:
            out.append(f"server no longer serving ({self.probe_detail})" if self.probe_detail else "server no longer serving")
        if self.traceback:
            out.append("a traceback in the server log")
        return out

    def answer_text(self) -> str:
        """The answer in a few words, for a document."""
        close = f"close {self.close_code} ({_close_name(self.close_code)})" if self.close_code is not None else ""
        match self.answer:
            case Answer.ERROR_MESSAGE:
                then = f", then {close}" if close else (", then dropped without a close frame" if self.closed else "")
                return f"error message{then}"
            case Answer.CLOSE:
                return close
            case Answer.REPLY:
                return "a reply that is not an error" + (", then closed" if self.closed else "")
            case Answer.DROP:
                return "dropped without a close frame"
            case Answer.SILENCE:
                return "silence"
            case Answer.NO_CONNECTION:
                return f"no connection ({self.detail})" if self.detail else "no connection"
            case _:
                return "not run"

    def row(self) -> tuple[str, str, str, str]:
        serving = {True: "yes", False: "no", None: "-"}[self.still_serving]
        result = "pass" if self.passed else ("not run" if self.answer is Answer.NOT_RUN else "FAIL")
        return (self.case, self.answer_text(), serving, result)

    def to_dict(self) -> dict[str, object]:
        return {
            "case": self.case,
            "description": self.description,
            "answer": self.answer.value,
            "answer_text": self.answer_text(),
            "closed": self.closed,
            "close_code": self.close_code,
            "close_reason": self.close_reason,
            "replies": list(self.replies),
            "still_serving": self.still_serving,
            "probe_detail": self.probe_detail,
            "traceback": self.traceback,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
            "passed": self.passed,
            "failures": self.failures(),
        }


@dataclass(frozen=True)
class FrameReport:
    """The battery's results against one server, in case order."""

    url: str
    results: tuple[CaseResult, ...]
    timeout_s: float
    log_checked: bool

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    def by_case(self) -> dict[str, CaseResult]:
        return {r.case: r for r in self.results}

    def table(self) -> list[tuple[str, str, str, str]]:
        """Rows for a document: case, answer, still serving (yes/no/-), pass/FAIL/not run (see ``TABLE_HEADER``)."""
        return [r.row() for r in self.results]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in self.table()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "url": self.url,
            "timeout_s": self.timeout_s,
            "log_checked": self.log_checked,
            "passed": self.passed,
            "results": [r.to_dict() for r in self.results],
        }


async def _send(ws: ClientConnection, case: HostileCase) -> None:
    payload = case.payload
    if case.kind == "fragments":
        assert isinstance(payload, tuple)
        await ws.send(list(payload))
    elif case.kind == "text-bytes":
        assert isinstance(payload, bytes)
        await ws.send(payload, text=True)  # websockets does not validate: the frame goes out as built
    elif case.kind == "binary":
        assert isinstance(payload, bytes)
        await ws.send(payload, text=False)
    else:
        assert isinstance(payload, str)
        await ws.send(payload)


async def _collect(ws: ClientConnection, timeout: float, grace: float) -> tuple[list[Data], bool]:
    """Frames received within ``timeout`` (then ``grace`` after each); and whether the connection ended."""
    frames: list[Data] = []
    wait = timeout
    try:
        while len(frames) < _KEEP_FRAMES:
            async with asyncio.timeout(wait):
                frames.append(await ws.recv())
            wait = grace  # after an answer, a short wait for a close that follows it
    except TimeoutError:
        return frames, False
    except ConnectionClosed:
        return frames, True
    return frames, False


def _connect(url: str, timeout: float, connect_kwargs: Mapping[str, Any]) -> connect:
    options: dict[str, Any] = {
        "open_timeout": timeout,
        "close_timeout": timeout,
        "ping_interval": None,
        "compression": None,
        "max_size": None,
        "proxy": None,
        **connect_kwargs,
    }
    return connect(url, **options)


async def _probe_with(
    url: str, probe: Probe, timeout: float, prelude: Prelude | None, connect_kwargs: Mapping[str, Any]
) -> tuple[bool, str]:
    try:
        async with asyncio.timeout(timeout * 2), _connect(url, timeout, connect_kwargs) as ws:
            if prelude is not None:
                await prelude(ws)
            await ws.send(probe.encoded())
            async with asyncio.timeout(timeout):
                while True:
                    frame = await ws.recv()
                    if probe.expect(frame):
                        return True, "the probe got its reply"
    except TimeoutError:
        return False, f"no probe reply within {timeout:g} s"
    except ConnectionClosed as exc:
        return False, f"the probe's connection closed ({exc})"
    except Exception as exc:  # refused, reset, a rejected handshake: all mean not serving
        return False, f"the probe could not connect ({type(exc).__name__}: {exc})"


def _traceback_in(text: str, keep_lines: int = 20) -> str:
    at = text.find(_TRACEBACK)
    if at < 0:
        return ""
    return "\n".join(text[at:].splitlines()[:keep_lines])


def _since(before: str, after: str) -> str:
    """The part of a growing log written between two reads (all of ``after`` if it did not grow from ``before``)."""
    return after[len(before) :] if after.startswith(before) else after


async def _run_case(
    url: str,
    case: HostileCase,
    *,
    timeout: float,
    grace: float,
    is_error: Callable[[Data], bool],
    probe: Callable[[], Awaitable[tuple[bool, str]]],
    server_log: Callable[[], str] | None,
    prelude: Prelude | None,
    connect_kwargs: Mapping[str, Any],
) -> CaseResult:
    started = time.monotonic()
    log_before = server_log() if server_log is not None else ""
    frames: list[Data] = []
    closed = False
    detail = ""
    code: int | None = None
    reason = ""
    answer = Answer.NO_CONNECTION
    serving: bool | None = None
    probe_detail = ""
    try:
        async with _connect(url, timeout, connect_kwargs) as ws:
            if prelude is not None:
                await prelude(ws)
            try:
                # A server that stops reading a big frame blocks the send: bounded, and the answer still collected.
                send_timeout = timeout + case.size() / (10 * MIB) * timeout
                async with asyncio.timeout(send_timeout):
                    await _send(ws, case)
            except TimeoutError:
                detail = f"the frame was not all sent within {send_timeout:g} s"
            except ConnectionClosed:
                detail = "the connection closed while the frame was being sent"
            except OSError as exc:
                detail = f"sending failed ({type(exc).__name__}: {exc})"
            frames, closed = await _collect(ws, timeout, grace)
            close_rcvd = ws.protocol.close_rcvd
            closed = closed or close_rcvd is not None or ws.protocol.state in (State.CLOSING, State.CLOSED)
            if close_rcvd is not None:
                code, reason = close_rcvd.code, close_rcvd.reason
            if any(is_error(f) for f in frames):
                answer = Answer.ERROR_MESSAGE
            elif close_rcvd is not None:
                answer = Answer.CLOSE
            elif frames:
                answer = Answer.REPLY
            elif closed:
                answer = Answer.DROP
            else:
                answer = Answer.SILENCE
                detail = detail or f"nothing within {timeout:g} s"
            # Still serving, asked while the hostile connection is still open (a server stuck on it shows here).
            serving, probe_detail = await probe()
    except Exception as exc:  # refused, reset, a rejected handshake, a failing prelude; or closing failed after the probe
        if answer is Answer.NO_CONNECTION:
            detail = f"{type(exc).__name__}: {exc}"
    if serving is None:
        serving, probe_detail = await probe()
    traceback = ""
    if server_log is not None:
        traceback = _traceback_in(_since(log_before, server_log()))
    return CaseResult(
        case=case.name,
        description=case.description,
        answer=answer,
        closed=closed,
        close_code=code,
        close_reason=reason,
        replies=tuple(_keep(f) for f in frames),
        still_serving=serving,
        probe_detail=probe_detail,
        traceback=traceback,
        detail=detail,
        seconds=time.monotonic() - started,
    )


async def run_battery(
    url: str,
    probe: Probe | ProbeFn,
    *,
    base_message: Mapping[str, Any] | None = None,
    cases: Sequence[HostileCase] | Iterable[str] | None = None,
    server_log: Callable[[], str] | None = None,
    is_error: Callable[[Data], bool] = default_is_error,
    timeout: float = 2.0,
    grace: float | None = None,
    prelude: Prelude | None = None,
    connect_kwargs: Mapping[str, Any] | None = None,
    stop_when_down: bool = True,
) -> FrameReport:
    """Run the hostile-frame battery against the WebSocket server at ``url``.

    ``probe``: a :class:`Probe` (a valid message and a predicate on its reply), or an async function of the
    URL returning whether the server answered; it runs on a fresh connection after every case.
    ``base_message``: a valid-looking message of this server, from which the wrong-types cases are built.
    ``cases``: the cases to run, as :class:`HostileCase` objects or names from :data:`CASE_NAMES`
    (default: all of :func:`hostile_cases`).
    ``server_log``: returns the server's log so far (a growing text, such as ``ServerProcess.log_since_start``);
    the part written while a case ran must not contain "Traceback".
    ``timeout``: seconds to wait for an answer, to connect, and for the probe's reply; ``grace`` (default a
    quarter of it) is the wait for more after each frame received (a close that follows an error message).
    ``prelude`` runs on each hostile connection (and a :class:`Probe`'s) before its frame: a hello, a log-in.
    ``connect_kwargs`` go to ``websockets.asyncio.client.connect`` (headers, subprotocols, origin).
    """
    kwargs: Mapping[str, Any] = connect_kwargs or {}
    grace_s = timeout / 4 if grace is None else grace
    battery = hostile_cases(base_message)
    chosen: list[HostileCase]
    if cases is None:
        chosen = battery
    else:
        wanted = list(cases)
        by_name = {c.name: c for c in battery}
        chosen = []
        for c in wanted:
            if isinstance(c, HostileCase):
                chosen.append(c)
            elif c in by_name:
                chosen.append(by_name[c])
            else:
                raise ValueError(f"unknown hostile-frame case {c!r}; the cases are: {', '.join(by_name)}")

    async def ask() -> tuple[bool, str]:
        if isinstance(probe, Probe):
            return await _probe_with(url, probe, timeout, prelude, kwargs)
        try:
            async with asyncio.timeout(timeout * 2):
                ok = await probe(url)
        except TimeoutError:
            return False, f"no probe answer within {timeout * 2:g} s"
        except Exception as exc:
            return False, f"the probe failed ({type(exc).__name__}: {exc})"
        return ok, "the probe got its reply" if ok else "the probe got no valid reply"

    results: list[CaseResult] = []
    down_after = ""
    for case in chosen:
        if down_after:
            results.append(CaseResult(case.name, case.description, Answer.NOT_RUN, detail=f"the server stopped serving after {down_after}"))
            continue
        result = await _run_case(
            url,
            case,
            timeout=timeout,
            grace=grace_s,
            is_error=is_error,
            probe=ask,
            server_log=server_log,
            prelude=prelude,
            connect_kwargs=kwargs,
        )
        results.append(result)
        if stop_when_down and not result.still_serving:
            down_after = case.name
    return FrameReport(url=url, results=tuple(results), timeout_s=timeout, log_checked=server_log is not None)


def run_battery_sync(url: str, probe: Probe | ProbeFn, **kwargs: Any) -> FrameReport:
    """:func:`run_battery` from synchronous code (its own event loop)."""
    return asyncio.run(run_battery(url, probe, **kwargs))
