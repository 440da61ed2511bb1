"""Hostile WebSocket frames: one battery to run against any WebSocket server URL.

Each case opens a fresh connection, sends one hostile message (not JSON, a JSON
array, a number, ``null``, JSON nested 10,000 deep, a 10 MB text frame, invalid
UTF-8 in a text frame, an unexpected binary frame, a fragmented message, an
unknown message type, wrong field types) and records how the server answered:

- an **error message** (a frame the ``is_error`` predicate accepts; by default
  any frame whose text contains "error"), or a **reply** that is not an error;
- a **close** frame, with its code (1003, 1007, 1008, 1009, 1011, ...) and reason (a close frame without a
  status code, which websockets reads as 1005, is not a clear answer: it says nothing of why);
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

``prelude`` (run on each hostile connection, and the probe's, before the
case's frame) can perform a handshake or a log-in for servers that want one
first. A :class:`Framing` goes further, for servers whose application messages
travel inside another protocol's packets: it adds its handshake to the prelude,
wraps each case's payload the way that protocol carries a message (the same
cases, not a copy of the battery), adds hostile packets of the protocol itself,
and says which frames are its error answers and which are only its heartbeat.
:func:`socketio_framing` is Socket.IO's over the Engine.IO websocket transport:
the Engine.IO open packet is read, ``40`` connects to the namespace, and each
case goes out as an event packet (``42["<type>", <fields>]``: a JSON value case
becomes the event's data, a text that is not JSON follows ``42`` as it is);
raw Engine.IO and Socket.IO packets of unknown types, an empty packet and an
event on a namespace never connected are added. Its answers are an ``error``
event, a disconnect (``41``), a connect error (``44``), an Engine.IO close
(``1``) or a close code.

For a spike, :func:`robustness_scenario` makes the battery a plugin scenario
(start the option's server, run the battery, store each case's result), and
:func:`robustness_table` and :func:`robustness_findings` turn a stored run back
into the document's table and its Bad findings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State

if TYPE_CHECKING:
    from harness.plugin import Finding, Scenario, ScenarioContext, ScenarioOutput, Table
    from harness.results import RunResult

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
    "Framing",
    "PLAIN",
    "socketio_framing",
    "socketio_url",
    "BatteryPlan",
    "BatteryTarget",
    "robustness_scenario",
    "robustness_output",
    "robustness_table",
    "robustness_findings",
    "FACT",
    "Data",
    "Prelude",
    "protocol_plan",
    "PROTOCOL_LEFT_OUT",
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

    def encoded(self, framing: Framing | None = None) -> Data:
        """The message as sent: a mapping as JSON, or as the framing encodes a message (a Socket.IO event)."""
        if not isinstance(self.message, Mapping):
            return self.message
        return framing.encode(self.message) if framing is not None else json.dumps(self.message)


# -- framings: the battery inside another protocol's packets ---------------------------------


def _same(case: HostileCase, base: Mapping[str, Any]) -> HostileCase:
    return case


@dataclass(frozen=True)
class Framing:
    """How a server carries its application messages, so the battery's cases go where the application reads them.

    ``prelude`` runs on every connection (hostile and probe) before the caller's own prelude: the protocol's
    handshake. ``wrap`` turns each battery case into the protocol's packet carrying it; ``extra_cases`` are
    hostile packets of the protocol itself (given the base message). ``encode`` turns a ``{"type": ..., ...}``
    message (a :class:`Probe`'s) into the protocol's packet. ``is_error`` tells an error answer of the protocol;
    ``is_noise`` frames (a heartbeat) are no answer at all. ``endpoint`` turns the server's URL into the URL of
    the protocol's WebSocket endpoint.
    """

    name: str
    prelude: Prelude | None = None
    wrap: Callable[[HostileCase, Mapping[str, Any]], HostileCase] = _same
    extra_cases: Callable[[Mapping[str, Any]], list[HostileCase]] = field(default=lambda base: [])
    encode: Callable[[Mapping[str, Any]], str] = json.dumps
    is_error: Callable[[Data], bool] = default_is_error
    is_noise: Callable[[Data], bool] = field(default=lambda frame: False)
    endpoint: Callable[[str], str] = field(default=lambda url: url)

    def cases(self, base_message: Mapping[str, Any] | None = None, **kwargs: Any) -> list[HostileCase]:
        """The battery's cases wrapped in this framing, then the framing's own hostile packets."""
        base: Mapping[str, Any] = base_message if base_message is not None else {"type": "ping"}
        return [self.wrap(c, base) for c in hostile_cases(base_message, **kwargs)] + self.extra_cases(base)


#: Plain WebSocket messages: every case as it is.
PLAIN = Framing("plain")

#: Engine.IO packet types (protocol 4) and Socket.IO packet types, as the first characters of a text frame.
_EIO_OPEN, _EIO_CLOSE, _EIO_PING, _EIO_PONG, _EIO_MESSAGE, _EIO_NOOP = "0", "1", "2", "3", "4", "6"
_SIO_CONNECT, _SIO_DISCONNECT, _SIO_EVENT, _SIO_CONNECT_ERROR = "0", "1", "2", "4"


def socketio_url(url: str, path: str = "/socket.io/") -> str:
    """The Engine.IO websocket-transport URL of a Socket.IO server at ``url`` (``ws://`` or ``http://``, any path)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}{path}?EIO=4&transport=websocket"


def socketio_framing(namespace: str = "/", *, timeout: float = 5.0) -> Framing:
    """Socket.IO (protocol 5) over the Engine.IO (protocol 4) websocket transport.

    The prelude reads the Engine.IO open packet (``0{"sid": ...}``), connects to ``namespace`` (``40``) and waits
    for the connect packet back (a connect error ``44`` fails the prelude). A message ``{"type": "join", "room":
    "r"}`` is the event packet ``42["join",{"room":"r"}]``. The battery's JSON values (an array, a number,
    ``null``, the deep nesting) become the data of the base message's event, where the application's handler
    reads it; a text that is not JSON follows ``42`` as it is; invalid UTF-8 goes in the event's name; the
    binary frame stays a binary frame (an Engine.IO binary message no event announced); the fragmented case is
    the unknown event packet split into fragments. Added: an Engine.IO packet of unknown type (``9``), an empty
    packet, a Socket.IO packet of unknown type (``47``) and an event on a namespace the client never connected.
    """
    nsp = "" if namespace == "/" else namespace + ","

    def encode(message: Mapping[str, Any]) -> str:
        fields = {k: v for k, v in message.items() if k != "type"}
        args = [message.get("type"), fields] if fields else [message.get("type")]
        return _EIO_MESSAGE + _SIO_EVENT + nsp + json.dumps(args)

    def event_with(base: Mapping[str, Any], data_json: str) -> str:
        return _EIO_MESSAGE + _SIO_EVENT + nsp + "[" + json.dumps(base.get("type")) + "," + data_json + "]"

    def wrap(case: HostileCase, base: Mapping[str, Any]) -> HostileCase:
        head = f"in a Socket.IO event packet: {case.description}"
        payload = case.payload
        if case.kind == "binary":
            return HostileCase(case.name, f"an Engine.IO binary message no event announced: {case.description}", "binary", payload)
        if case.kind == "text-bytes":
            assert isinstance(payload, bytes)
            return HostileCase(case.name, head, "text-bytes", (_EIO_MESSAGE + _SIO_EVENT + nsp + "[").encode() + payload + b"]")
        if case.kind == "fragments":
            assert isinstance(payload, tuple)
            whole = encode(json.loads("".join(payload)))
            third = max(1, len(whole) // 3)
            return HostileCase(case.name, head, "fragments", (whole[:third], whole[third : 2 * third], whole[2 * third :]))
        assert isinstance(payload, str)
        try:
            value = json.loads(payload)
        except RecursionError:  # the deep nesting: a JSON value too deep for Python, still the event's data
            return HostileCase(
                case.name, f"as the data of a {base.get('type')!r} event: {case.description}", "text", event_with(base, payload)
            )
        except ValueError:
            return HostileCase(case.name, head, "text", _EIO_MESSAGE + _SIO_EVENT + nsp + payload)
        if isinstance(value, dict):
            packet = encode(value)
            short = len(payload) - len(packet)
            if short > 0 and isinstance(value.get("padding"), str):  # the big frame stays as big as the battery's
                packet = encode({**value, "padding": value["padding"] + "a" * short})
            return HostileCase(case.name, head, "text", packet)
        return HostileCase(case.name, f"as the data of a {base.get('type')!r} event: {case.description}", "text", event_with(base, payload))

    def extra(base: Mapping[str, Any]) -> list[HostileCase]:
        fields = {k: v for k, v in base.items() if k != "type"}
        return [
            HostileCase("eio-unknown-packet", "an Engine.IO packet of an unknown type (9)", "text", "9"),
            HostileCase("eio-empty-packet", "an empty text frame (no Engine.IO packet type)", "text", ""),
            HostileCase(
                "sio-unknown-packet",
                "a Socket.IO packet of an unknown type (47)",
                "text",
                _EIO_MESSAGE + "7" + json.dumps([base.get("type")]),
            ),
            HostileCase(
                "sio-unknown-namespace",
                "an event on a namespace this client never connected to",
                "text",
                _EIO_MESSAGE + _SIO_EVENT + "/no-such-namespace," + json.dumps([base.get("type"), fields]),
            ),
        ]

    async def prelude(ws: ClientConnection) -> None:
        async with asyncio.timeout(timeout):
            opened = await ws.recv()
            if not isinstance(opened, str) or not opened.startswith(_EIO_OPEN):
                raise ConnectionError(f"no Engine.IO open packet: {_keep(opened)}")
            await ws.send(_EIO_MESSAGE + _SIO_CONNECT + nsp)
            while True:
                frame = await ws.recv()
                if not isinstance(frame, str) or is_noise(frame):
                    continue
                if frame.startswith(_EIO_MESSAGE + _SIO_CONNECT + nsp):
                    return
                raise ConnectionError(f"the Socket.IO connect was refused: {_keep(frame)}")

    def is_error(frame: Data) -> bool:
        text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
        if text == _EIO_CLOSE or text.startswith((_EIO_MESSAGE + _SIO_DISCONNECT, _EIO_MESSAGE + _SIO_CONNECT_ERROR)):
            return True
        return default_is_error(frame)

    def is_noise(frame: Data) -> bool:
        return isinstance(frame, str) and frame in (_EIO_PING, _EIO_PONG, _EIO_NOOP)

    return Framing(
        "socketio",
        prelude=prelude,
        wrap=wrap,
        extra_cases=extra,
        encode=encode,
        is_error=is_error,
        is_noise=is_noise,
        endpoint=socketio_url,
    )


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
        """An error message, or a close frame with a status code (a close frame without one, read as 1005, says nothing)."""
        return self.answer is Answer.ERROR_MESSAGE or (self.answer is Answer.CLOSE and self.close_code != CloseCode.NO_STATUS_RCVD)

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
                return "a close frame without a status code" if self.close_code == CloseCode.NO_STATUS_RCVD else close
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


async def _collect(
    ws: ClientConnection, timeout: float, grace: float, is_noise: Callable[[Data], bool] = lambda f: False
) -> tuple[list[Data], bool]:
    """Frames received within ``timeout`` (then ``grace`` after each), but noise; and whether the connection ended."""
    frames: list[Data] = []
    wait = timeout
    try:
        while len(frames) < _KEEP_FRAMES:
            async with asyncio.timeout(wait):
                frame = await ws.recv()
            if is_noise(frame):
                continue
            frames.append(frame)
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
    url: str, probe: Probe, timeout: float, prelude: Prelude | None, connect_kwargs: Mapping[str, Any], framing: Framing | None = None
) -> tuple[bool, str]:
    try:
        async with asyncio.timeout(timeout * 2), _connect(url, timeout, connect_kwargs) as ws:
            if prelude is not None:
                await prelude(ws)
            await ws.send(probe.encoded(framing))
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


def _logs(server_log: Callable[[], str | Sequence[str]] | None) -> list[str]:
    """The server's log, or the logs of its processes (each growing on its own), as a list."""
    if server_log is None:
        return []
    got = server_log()
    return [got] if isinstance(got, str) else list(got)


def _grown(before: list[str], after: list[str]) -> str:
    return "".join(_since(b, a) for b, a in zip(before + [""] * (len(after) - len(before)), after, strict=False))


async def _run_case(
    url: str,
    case: HostileCase,
    *,
    timeout: float,
    grace: float,
    is_error: Callable[[Data], bool],
    probe: Callable[[], Awaitable[tuple[bool, str]]],
    server_log: Callable[[], str | Sequence[str]] | None,
    prelude: Prelude | None,
    connect_kwargs: Mapping[str, Any],
    is_noise: Callable[[Data], bool],
) -> CaseResult:
    started = time.monotonic()
    log_before = _logs(server_log)
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
            frames, closed = await _collect(ws, timeout, grace, is_noise)
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
        traceback = _traceback_in(_grown(log_before, _logs(server_log)))
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
    cases: Iterable[HostileCase | str] | None = None,
    server_log: Callable[[], str | Sequence[str]] | None = None,
    is_error: Callable[[Data], bool] | None = None,
    timeout: float = 2.0,
    grace: float | None = None,
    prelude: Prelude | None = None,
    connect_kwargs: Mapping[str, Any] | None = None,
    stop_when_down: bool = True,
    framing: Framing | None = None,
) -> FrameReport:
    """Run the hostile-frame battery against the WebSocket server at ``url``.

    ``probe``: a :class:`Probe` (a valid message and a predicate on its reply), or an async function of the
    URL returning whether the server answered; it runs on a fresh connection after every case.
    ``base_message``: a valid-looking message of this server, from which the wrong-types cases are built.
    ``cases``: the cases to run, as names from :data:`CASE_NAMES` (or the framing's own) or :class:`HostileCase`
    objects, which are sent as given, not wrapped by the framing: a server's own protocol can put the same
    hostility under a battery case's name (default: all of :func:`hostile_cases`).
    ``server_log``: returns the server's log so far (a growing text, such as ``ServerProcess.log_since_start``),
    or a list of such logs for a server of several processes; the part written while a case ran must not contain
    "Traceback".
    ``timeout``: seconds to wait for an answer, to connect, and for the probe's reply; ``grace`` (default a
    quarter of it) is the wait for more after each frame received (a close that follows an error message).
    ``prelude`` runs on each hostile connection (and a :class:`Probe`'s) before its frame: a hello, a log-in.
    ``connect_kwargs`` go to ``websockets.asyncio.client.connect`` (headers, subprotocols, origin).
    ``framing`` (a :class:`Framing`, such as :func:`socketio_framing`) carries every case inside its protocol's
    packets, adds its own hostile packets (name them in ``cases`` like the others), runs its handshake before
    ``prelude``, encodes a :class:`Probe`'s mapping, tells its error answers (unless ``is_error`` is given) and
    ignores its heartbeat. ``url`` is then the protocol's endpoint (``framing.endpoint(server_url)``).
    """
    kwargs: Mapping[str, Any] = connect_kwargs or {}
    grace_s = timeout / 4 if grace is None else grace
    frame_with = framing or PLAIN
    error = is_error or frame_with.is_error
    if framing is not None and framing.prelude is not None:
        own, outer = prelude, framing.prelude

        async def both(ws: ClientConnection) -> None:
            await outer(ws)
            if own is not None:
                await own(ws)

        prelude = both
    battery = frame_with.cases(base_message)
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
            return await _probe_with(url, probe, timeout, prelude, kwargs, framing)
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
            is_error=error,
            probe=ask,
            server_log=server_log,
            prelude=prelude,
            connect_kwargs=kwargs,
            is_noise=frame_with.is_noise,
        )
        results.append(result)
        if stop_when_down and not result.still_serving:
            down_after = case.name
    return FrameReport(url=url, results=tuple(results), timeout_s=timeout, log_checked=server_log is not None)


def run_battery_sync(url: str, probe: Probe | ProbeFn, **kwargs: Any) -> FrameReport:
    """:func:`run_battery` from synchronous code (its own event loop)."""
    return asyncio.run(run_battery(url, probe, **kwargs))


# -- the battery as a spike's scenario, and back out of a stored run ------------------------------

#: The stored fact a robustness scenario writes (a :meth:`FrameReport.to_dict`), read back by the table and findings.
FACT = "frames"


@dataclass(frozen=True)
class BatteryPlan:
    """What the battery sends one option's server: the probe, the base message, the cases, the framing.

    ``cases`` are names (of :data:`CASE_NAMES` or the framing's own) or :class:`HostileCase` objects; a
    :class:`HostileCase` named like a battery case stands for it (the same hostility in the server's own
    protocol, such as an unknown message kind of a binary protocol). ``left_out`` says, per case left out,
    why (binary frames are part of the protocol): the document prints it under the table.
    """

    probe: Probe | ProbeFn
    base_message: Mapping[str, Any] | None = None
    cases: Sequence[HostileCase | str] | None = None
    framing: Framing | None = None
    is_error: Callable[[Data], bool] | None = None
    left_out: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatteryTarget:
    """A started server, as the battery reaches it: its URL, its log, and what a connection must present."""

    url: str
    server_log: Callable[[], str | Sequence[str]] | None = None
    connect_kwargs: Mapping[str, Any] = field(default_factory=dict)
    prelude: Prelude | None = None


#: A spike's own way to start an option's server for the battery (a stack, a log-in): a context manager of the context.
StartFn = Callable[["ScenarioContext"], contextlib.AbstractContextManager[BatteryTarget]]


@contextlib.contextmanager
def _declared_server(ctx: ScenarioContext, values: Mapping[str, object]) -> Iterator[BatteryTarget]:
    from harness.poc import poc_server

    with poc_server(ctx.option, ctx.workdir, name=f"{ctx.option.key} (hostile frames)", log_name="frames-server.log", values=values) as (
        server,
        url,
    ):
        yield BatteryTarget(url, server.log_since_start)


#: Why the load protocol's WebSocket servers skip two cases (see :func:`protocol_plan`).
PROTOCOL_LEFT_OUT = {
    "binary": "binary frames are part of the load protocol (`harness/load/protocol.py`): echoed as binary",
    "type-not-string": "the load protocol's message type is `op`, which wrong-field-types gives a wrong type",
}


def _op_echo(frame: Data) -> bool:
    try:
        msg = json.loads(frame)
    except ValueError:
        return False
    return isinstance(msg, dict) and msg.get("op") == "echo"


def _sio_echo(frame: Data) -> bool:
    return isinstance(frame, str) and frame.startswith('42["echo"')


def protocol_plan(client: str) -> BatteryPlan:
    """The battery for a server that speaks the load engine's protocol (``harness/load/protocol.py``), by its client adapter.

    Socket.IO clients (``socketio``, ``socketio-raw``...): every case inside Socket.IO event packets
    (:func:`socketio_framing`), the base message a ``join``, the probe an ``echo`` event. WebSocket clients (``ws``...):
    plain frames, the base message ``{"op": "join", "room": ...}`` and the probe an ``echo``; the binary and
    type-not-string cases are left out (:data:`PROTOCOL_LEFT_OUT`): a binary frame is echoed by the protocol, and
    the protocol's type is ``op``, which the wrong-field-types case already gives a wrong type.
    """
    probe_fields = {"seq": 1, "t": 0, "c": 1, "d": "hostile-frames probe"}
    if client.startswith("socketio"):
        return BatteryPlan(
            Probe({"type": "echo", **probe_fields}, expect=_sio_echo),
            base_message={"type": "join", "room": "table-1"},
            framing=socketio_framing(),
        )
    return BatteryPlan(
        Probe({"op": "echo", **probe_fields}, expect=_op_echo),
        base_message={"op": "join", "room": "table-1"},
        cases=[c for c in CASE_NAMES if c not in PROTOCOL_LEFT_OUT],
        left_out=PROTOCOL_LEFT_OUT,
    )


def _plan_of(plan: BatteryPlan | Callable[[str], BatteryPlan], option: str) -> BatteryPlan:
    return plan if isinstance(plan, BatteryPlan) else plan(option)


def robustness_output(report: FrameReport, plan: BatteryPlan | None = None) -> ScenarioOutput:
    """A :class:`FrameReport` as a scenario's output: per case passed (1/0), seconds and close code; the report as a fact."""
    from harness.plugin import ScenarioOutput

    out = ScenarioOutput()
    for r in report.results:
        if r.answer is Answer.NOT_RUN:
            continue
        out.add("case_passed", "bool", [1.0 if r.passed else 0.0], better="higher", case=r.case)
        out.add("case_seconds", "s", [r.seconds], better=None, case=r.case)
        if r.close_code is not None:
            out.add("close_code", "code", [r.close_code], better=None, case=r.case)
    out.add("cases_failed", "cases", [len(report.failed())])
    out.add("cases", "cases", [len(report.results)], better=None)
    out.facts[FACT] = report.to_dict()
    if plan is not None:
        out.facts["framing"] = (plan.framing or PLAIN).name
        if plan.left_out:
            out.facts["left_out"] = dict(plan.left_out)
    return out


def robustness_scenario(
    key: str = "robustness",
    title: str = "Hostile frames",
    *,
    plan: BatteryPlan | Callable[[str], BatteryPlan] | None = None,
    start: StartFn | None = None,
    values: Mapping[str, object] | None = None,
    options: tuple[str, ...] | None = None,
    requires: tuple[str, ...] = (),
    timeout_s: float = 2.0,
    method: str = "",
) -> Scenario:
    """The hostile-frame battery as a scenario of a spike: one line in its ``SCENARIOS``.

    Each run starts the option's server (``start(ctx)``, a context manager yielding a :class:`BatteryTarget`;
    by default the option's declared POC server through :func:`harness.poc.poc_server`, ``values`` filling its
    placeholders), runs the battery of ``plan`` (a :class:`BatteryPlan`, or a function of the option key
    returning one; by default :func:`protocol_plan` of the option's client adapter, for the servers that speak the
    load engine's protocol) with the server's log checked for tracebacks, and stores each case's result
    (:func:`robustness_output`). The cases cannot vary between repeats: it runs once. ``timeout_s`` (a
    parameter, so a slow machine can raise it) is the wait for each answer.
    """
    from harness.plugin import Scenario

    def run(ctx: ScenarioContext) -> ScenarioOutput:
        p = protocol_plan(ctx.option.client) if plan is None else _plan_of(plan, ctx.option.key)
        framing = p.framing or PLAIN
        timeout = float(ctx.params.get("timeout_s", timeout_s))
        starting = start(ctx) if start is not None else _declared_server(ctx, values or {})
        with starting as target:
            report = run_battery_sync(
                framing.endpoint(target.url),
                p.probe,
                base_message=p.base_message,
                cases=p.cases,
                server_log=target.server_log,
                is_error=p.is_error,
                timeout=timeout,
                prelude=target.prelude,
                connect_kwargs=target.connect_kwargs,
                framing=p.framing,
            )
        ctx.log(f"hostile frames, {ctx.option.key}: {len(report.results) - len(report.failed())} of {len(report.results)} cases passed")
        return robustness_output(report, p)

    described = method or (
        "One fresh connection per case sends one hostile message: a text frame that is not JSON, a JSON array, a number, null, "
        "JSON nested 10,000 levels deep, a 10 MiB text frame, invalid UTF-8 in a text frame, an unexpected binary frame, a message "
        "fragmented into continuation frames, an unknown message type and wrong field types (for Socket.IO each inside an event "
        "packet after the Engine.IO and Socket.IO handshakes, plus raw packets of unknown types). A case passes when the server "
        "answered clearly (an error message or a close code), wrote no traceback to its log, and a second, fresh connection still got "
        "a reply to a valid message (`harness/frames.py`)."
    )
    return Scenario(key, title, described, run, params={"timeout_s": timeout_s}, requires=requires, options=options, max_repeats=1)


def _stored(run: RunResult, scenario: str, option: str) -> dict[str, Any] | None:
    sr = run.ok(scenario, option)
    report = sr.fact.get(FACT) if sr is not None else None
    return report if isinstance(report, dict) else None


def robustness_table(
    run: RunResult, titles: Mapping[str, str] | None = None, *, scenario: str = "robustness", options: Sequence[str] | None = None
) -> Table | None:
    """The document's table of a stored run's robustness results: a row per case, a column per option.

    Each cell is ``pass`` or ``FAIL`` with the answer (``pass: close 1009 (message too big)``) and, when it failed,
    why; a case an option did not run says so. ``None`` when the scenario is not in the run.
    """
    from harness.plugin import Table

    opts = [o for o in (options or run.options) if run.result(scenario, o) is not None]
    if not opts:
        return None
    names = titles or {}
    stored = {o: _stored(run, scenario, o) for o in opts}
    cases: list[str] = []
    described: dict[str, str] = {}
    for report in stored.values():
        for r in (report or {}).get("results", []):
            if r["case"] not in cases:
                cases.append(r["case"])
                described[r["case"]] = r.get("description", "")
    rows = []
    for case in cases:
        row = [case]
        for o in opts:
            report = stored[o]
            if report is None:
                sr = run.result(scenario, o)
                row.append(sr.status.replace("_", " ") if sr is not None else "not in this run")
                continue
            r = next((x for x in report["results"] if x["case"] == case), None)
            if r is None:
                why = run.ok(scenario, o).fact.get("left_out", {}).get(case, "")  # type: ignore[union-attr]
                row.append("left out (see below)" if why else "not in its battery")
            elif r["answer"] == Answer.NOT_RUN.value:
                row.append(f"not run: {r.get('detail', '')}".rstrip(": "))
            elif r["passed"]:
                row.append(f"pass: {r['answer_text']}")
            else:
                row.append(f"**FAIL**: {r['answer_text']}; " + "; ".join(f for f in r["failures"] if not f.startswith("no clear answer")))
        rows.append([cell.rstrip("; ") for cell in row])
    totals = ["**passed**"]
    for o in opts:
        report = stored[o]
        results = (report or {}).get("results", [])
        totals.append(f"{sum(1 for r in results if r['passed'])} of {len(results)}" if report is not None else "-")
    rows.append(totals)
    left: dict[tuple[str, str], list[str]] = {}
    for o in opts:
        if (sr := run.ok(scenario, o)) is not None:
            for case, why in sr.fact.get("left_out", {}).items():
                left.setdefault((case, why), []).append(names.get(o, o))
    note = (
        "Each case on a fresh connection; a pass is a clear answer (an error message or a close code), no traceback in the server's "
        "log while it ran, and a second connection served afterwards. A server that stopped serving leaves the later cases not run."
    )
    if left:
        note += " Left out: " + "; ".join(f"{case} for {', '.join(who)} ({why})" for (case, why), who in left.items()) + "."
    return Table("Hostile frames: the answer to each case", ["Case", *(names.get(o, o) for o in opts)], rows, note)


def robustness_findings(run: RunResult, *, scenario: str = "robustness", options: Sequence[str] | None = None) -> list[Finding]:
    """A Bad finding per option with a failing case of the battery (naming the cases and why), from the stored run."""
    from harness.plugin import Finding

    out = []
    for o in options or run.options:
        report = _stored(run, scenario, o)
        if report is None:
            continue
        results = report.get("results", [])
        # A case not run (the server had stopped serving) is not a failure of its own: counted apart.
        not_run = [r for r in results if r.get("answer") == Answer.NOT_RUN.value]
        failed = [r for r in results if not r["passed"] and r.get("answer") != Answer.NOT_RUN.value]
        if failed or not_run:
            what = "; ".join(f"{r['case']}: {', '.join(r['failures'])}" for r in failed[:5])
            more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
            skipped = f", and {len(not_run)} more not run ({not_run[0].get('detail') or 'not run'})" if not_run else ""
            out.append(
                Finding(
                    o,
                    False,
                    f"its server failed {len(failed)} of {len(results)} hostile-frame cases"
                    + (f" ({what}{more})" if what else "")
                    + f"{skipped}.",
                )
            )
    return out
