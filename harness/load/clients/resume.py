"""Resume adapters: how a reconnected client asks the server for what it missed, one per option, found by name.

The engine owns reconnecting (backoff with full jitter, ``LoadSpec.reconnect``),
the sequence bookkeeping and the account (``harness.load.account``); a resume
adapter only says how to resume. One adapter object lives as long as one
logical connection, across its reconnections: it sees every protocol message
that connection receives (``seen``) and, when it reconnects, gives the URL to
connect to (``url``) and the join to send (``join``).

- ``none``: reconnect and rejoin, ask for nothing; what was sent meanwhile is lost.
- ``last-seq``: the server numbers each room's broadcasts (``n``, see
  ``harness.load.protocol``); the client remembers the last ``n`` it received
  and rejoins with ``{"op": "join", "room": ..., "after": n}``; the server
  replays what it still holds after ``n`` (``python -m
  harness.load.reference_server --numbered`` does).
- ``socketio-recovery``: Socket.IO's connection state recovery (server 4.6+
  with ``connectionStateRecovery`` on): the server's CONNECT reply names a
  private session id (``pid``) and every event it sends carries an offset as
  its last argument; the reconnecting client sends ``{"pid", "offset"}`` in
  its CONNECT packet and the server restores its rooms and replays what came
  after the offset. Needs the ``socketio-raw`` client, which speaks the
  packets itself.
- ``outbox``: a client outbox. Every message handed to the client library
  stays in the outbox until the server acknowledges it (an ``ack``, or the
  sender's own copy of its broadcast or echo); after a reconnect, once the
  server answers the join, the client sends every message still in the
  outbox again, unchanged (same ``c`` and ``seq``), so a server that applies
  by id drops the copies it already had. ``outbox-last-seq`` does both: the
  outbox, and the rejoin after the last room sequence number.

More register through :func:`register_resume` (an SSE ``Last-Event-ID``, once
an SSE client adapter exists), as ``"module:Class"`` strings imported on
first use, like client adapters.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, ClassVar

from harness.load import protocol

if TYPE_CHECKING:
    from harness.load.clients import Client

__all__ = [
    "Resume",
    "LastSeqResume",
    "SocketIORecoveryResume",
    "OutboxResume",
    "OutboxLastSeqResume",
    "register_resume",
    "resume_adapters",
    "get_resume_class",
    "resume_path",
]


class Resume:
    """How one connection resumes after a reconnect: here, not at all (``none``)."""

    name: ClassVar[str] = "none"
    #: The client adapters (transport names) this adapter can resume; None: any.
    transports: ClassVar[tuple[str, ...] | None] = None

    def before_connect(self, client: Client) -> None:
        """Called with each new client before it connects, the first one included."""

    def after_connect(self, client: Client) -> None:
        """Called with each client that connected, the first one included."""

    def seen(self, msg: dict[str, Any]) -> None:
        """A protocol message arrived on this connection (called for every one while the run counts)."""

    def sent(self, msg: dict[str, Any]) -> None:
        """A message of the schedule was handed to the client library (called for every one while the run counts)."""

    def url(self, url: str) -> str:
        """The URL to reconnect to."""
        return url

    def join(self, room: str) -> dict[str, Any]:
        """The join message to send after reconnecting (broadcast mode)."""
        return protocol.join_message(room)


class LastSeqResume(Resume):
    """Rejoin with the last room sequence number received; the server replays what came after it."""

    name = "last-seq"

    def __init__(self) -> None:
        self.last: int | None = None

    def seen(self, msg: dict[str, Any]) -> None:
        n = msg.get("n")
        if isinstance(n, int) and not isinstance(n, bool):
            self.last = n

    def join(self, room: str) -> dict[str, Any]:
        msg = protocol.join_message(room)
        if self.last is not None:
            msg["after"] = self.last
        return msg


class SocketIORecoveryResume(Resume):
    """Socket.IO connection state recovery: reconnect with the session's ``pid`` and the last event offset received."""

    name = "socketio-recovery"
    transports = ("socketio-raw",)

    def __init__(self) -> None:
        self.client: Any = None  # the last client that connected (a RawSocketIOClient): its pid and last offset
        self.pid: str | None = None
        self.offset: str | None = None

    def before_connect(self, client: Client) -> None:
        last = self.client
        if last is not None:  # what the last connection learnt, kept across attempts that learnt nothing
            self.pid = getattr(last, "pid", None) or self.pid
            self.offset = getattr(last, "offset", None) or self.offset
        if self.pid is not None:
            client.auth = {"pid": self.pid, "offset": self.offset}  # type: ignore[attr-defined]

    def after_connect(self, client: Client) -> None:
        self.client = client


class OutboxResume(Resume):
    """An outbox: keep every sent message until the server acknowledges it, send what is left again after rejoining."""

    name = "outbox"

    def __init__(self) -> None:
        self.client: Any = None
        self.pending: dict[int, dict[str, Any]] = {}  # seq -> the message as sent, until acknowledged
        self.own: int | None = None  # this connection's id (``c`` of what it sends)
        self.connects = 0
        self.resent = 0  # messages sent again after reconnects, in total

    def after_connect(self, client: Client) -> None:
        self.client = client
        self.connects += 1

    def sent(self, msg: dict[str, Any]) -> None:
        seq = msg.get("seq")
        if isinstance(seq, int):
            self.own = msg.get("c", self.own)
            self.pending[seq] = msg

    def seen(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == protocol.OP_JOINED:
            if self.connects > 1 and self.pending and self.client is not None:
                # Only after the join: a server takes a room's messages from members only.
                for seq in sorted(self.pending):
                    self.client.send(self.pending[seq])
                self.resent += len(self.pending)
            return
        sender, number = msg.get("c"), msg.get("seq")
        if isinstance(number, int) and sender == self.own and sender is not None and op != "error":
            self.pending.pop(number, None)


class OutboxLastSeqResume(OutboxResume):
    """The outbox, and the rejoin after the last room sequence number received (``last-seq``)."""

    name = "outbox-last-seq"

    def __init__(self) -> None:
        super().__init__()
        self.numbered = LastSeqResume()

    def seen(self, msg: dict[str, Any]) -> None:
        self.numbered.seen(msg)
        super().seen(msg)

    def join(self, room: str) -> dict[str, Any]:
        return self.numbered.join(room)


_REGISTRY: dict[str, str | type[Resume]] = {
    "none": Resume,
    "last-seq": LastSeqResume,
    "socketio-recovery": SocketIORecoveryResume,
    "outbox": OutboxResume,
    "outbox-last-seq": OutboxLastSeqResume,
}


def register_resume(name: str, adapter: str | type[Resume]) -> None:
    """Register a resume adapter class (or ``"module:Class"``) under ``name``; it must be importable by module path."""
    _REGISTRY[name] = adapter


def resume_adapters() -> list[str]:
    """The registered resume adapter names."""
    return sorted(_REGISTRY)


def resume_path(name: str) -> str:
    """The ``"module:Class"`` import path of a resume adapter (for spawned generator processes)."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ValueError(f"unknown resume adapter {name!r}; known: {', '.join(resume_adapters())}")
    return entry if isinstance(entry, str) else f"{entry.__module__}:{entry.__qualname__}"


def get_resume_class(name: str) -> type[Resume]:
    """The adapter class registered as ``name``; ``ValueError`` for an unknown name."""
    try:
        entry = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown resume adapter {name!r}; known: {', '.join(resume_adapters())}") from None
    if isinstance(entry, str):
        module, _, cls_name = entry.partition(":")
        entry = getattr(importlib.import_module(module), cls_name)
        _REGISTRY[name] = entry
    return entry
