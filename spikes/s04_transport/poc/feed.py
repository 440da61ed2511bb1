"""The activity feed's room model, shared by the three transports: numbering, history, fan-out, resume points.

Each room numbers its broadcasts ``n`` = 1, 2, ... and keeps the last ``history`` of
them (a ring buffer), so a client that lost its connection names the last ``n`` it
saw and gets what came after it, whatever the transport: SSE's ``Last-Event-ID``, a
long poll's ``cursor`` and a WebSocket join's ``after`` are the same number. A resume
point the history cannot honour gets a ``reset`` (reload in full), never a silent gap:
``history`` when it is older than what is held, ``future`` when it is past the head
(the server restarted and lost the room). A resume point that is not a non-negative
integer is an error (:class:`ProtocolError`). ``joined`` names where the member's view
starts: the head for a new member, its resume point for a resuming one, so a client
that takes any ``n`` it sees (the load engine's ``last-seq``) cannot skip the replay
that follows when it drops again.

The epoch: each :class:`Feed` (one server process) picks a random token at start
(:func:`new_epoch`, 8 hex digits) and every numbered message carries it as ``e``
beside ``n``; the HTTP transports' resume points are ``E-N`` text (SSE ids, poll
cursors), a WebSocket join names it as ``"epoch"``. A resume point of another epoch
gets a ``reset`` with reason ``epoch``: the numbering it counts in is gone (the server
restarted), whatever its ``N``, so a restarted server that has numbered past the
client's point again cannot answer as if nothing happened. A resume point without an
epoch (a plain ``N``, from a client that never saw one) keeps the old rules:
``history`` and ``future`` only (it cannot tell a restart unless N > HEAD).

Live delivery goes through a :class:`Subscriber` per connection (SSE stream,
WebSocket): a bounded queue filled synchronously by :meth:`Feed.publish` and drained
by the transport's writer. A subscriber that falls ``queue_limit`` events behind is
dropped with a reason instead of holding memory without limit; since the events it
missed are in the history, it reconnects and resumes. Long polling has no queue:
its waiters wait on the room's ``changed`` event and read the history.

Validation of what a publisher sends (:func:`validate_broadcast`) lives here too, so
the three transports refuse the same messages with the same words. The activity
events the app sends (:func:`activity_event`) are what a broadcast's ``d`` carries in
a realistic publisher: a join, a dice roll, a summarised token move, a chat notice.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "ProtocolError",
    "Resume",
    "Subscriber",
    "Room",
    "Feed",
    "parse_resume",
    "parse_point",
    "parse_epoch",
    "point_text",
    "new_epoch",
    "validate_broadcast",
    "validate_room",
    "joined_message",
    "reset_message",
    "error_message",
    "ack_message",
    "activity_event",
    "activity_broadcast",
    "DEFAULT_HISTORY",
    "DEFAULT_QUEUE_LIMIT",
    "DEFAULT_MAX_ROOMS",
    "MAX_ROOM_CHARS",
    "SHUTDOWN",
]

#: Broadcasts kept per room for resuming (a server option: ``--history``).
DEFAULT_HISTORY = 1000
#: Events a live subscriber may fall behind before it is dropped (``--queue``).
DEFAULT_QUEUE_LIMIT = 1000
#: Rooms one server holds at most: a room is created by its first subscriber or broadcast, so a client could make many.
DEFAULT_MAX_ROOMS = 10_000
MAX_ROOM_CHARS = 200
#: Longest resume point accepted, in digits: more is a malformed value, not a number to parse at length.
_MAX_DIGITS = 30
_DIGITS = re.compile(r"[0-9]+")
#: An epoch as a client may send it back: what :func:`new_epoch` makes, or another server's token (letters, digits, _).
_EPOCH = re.compile(r"[0-9A-Za-z_]{1,32}")
#: A text resume point: ``N``, or ``E-N`` (the epoch, a dash, the number).
_POINT = re.compile(r"(?:([0-9A-Za-z_]{1,32})-)?([0-9]{1,30})")

OP_BROADCAST = "broadcast"
#: The reason every subscriber is dropped with when the server stops.
SHUTDOWN = "server shutting down"


class ProtocolError(ValueError):
    """A message or parameter the protocol refuses; ``str()`` is the reason sent back to the client."""


# -- messages ---------------------------------------------------------------------------------


def new_epoch() -> str:
    """A new epoch: 8 random hex digits (32 bits), drawn once per server process.

    Random, not the start time: two starts in the same millisecond, or a clock set back,
    would give a restarted server its old epoch, and a client its silent gap again; a
    token compares only for equality, which is all a client needs (a changed epoch means
    the history is gone, never which one is newer).
    """
    return secrets.token_hex(4)


def point_text(epoch: str, n: int) -> str:
    """The text resume point of ``n`` in ``epoch``: ``E-N`` (an SSE id, a poll cursor)."""
    return f"{epoch}-{n}"


def joined_message(room: str, n: int, epoch: str) -> dict[str, Any]:
    """The answer to a join: the room, and the ``n`` (of epoch ``e``) the member's view starts after."""
    return {"op": "joined", "room": room, "n": n, "e": epoch}


def reset_message(room: str, head: int, reason: str, epoch: str) -> dict[str, Any]:
    """Reload in full: the resume point could not be honoured (``history``, ``future``, ``epoch``); the stream goes on from ``head``."""
    return {"op": "reset", "room": room, "n": head, "e": epoch, "reason": reason}


def error_message(reason: str) -> dict[str, Any]:
    return {"op": "error", "error": reason}


def ack_message(c: int, seq: int, n: int, epoch: str) -> dict[str, Any]:
    """The server has message ``seq`` of connection ``c``, numbered ``n`` in its room (in epoch ``e``)."""
    return {"op": "ack", "c": c, "seq": seq, "n": n, "e": epoch}


# -- validation -------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_room(room: object) -> str:
    """The room name, or :class:`ProtocolError` when it is not a non-empty string of at most :data:`MAX_ROOM_CHARS`."""
    if not isinstance(room, str):
        raise ProtocolError(f"room must be a string, not {_kind(room)}")
    if not room or len(room) > MAX_ROOM_CHARS:
        raise ProtocolError(f"room must be 1 to {MAX_ROOM_CHARS} characters")
    return room


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def validate_broadcast(msg: object) -> dict[str, Any]:
    """A publisher's message checked: a JSON object with op "broadcast", a room, integer seq, t, c and a string d.

    Anything else is a :class:`ProtocolError` naming the first fault. Other fields are kept
    (the protocol delivers the object as sent, plus ``n``).
    """
    if not isinstance(msg, dict):
        raise ProtocolError(f"expected a JSON object, got {_kind(msg)}")
    op = msg.get("op")
    if not isinstance(op, str):
        raise ProtocolError(f"op must be a string, not {_kind(op)}")
    if op != OP_BROADCAST:
        raise ProtocolError(f"unknown op {op[:40]!r}: a publisher sends op 'broadcast'")
    validate_room(msg.get("room"))
    for name in ("seq", "t", "c"):
        if not _is_int(msg.get(name)):
            raise ProtocolError(f"{name} must be an integer, not {_kind(msg.get(name))}")
    if not isinstance(msg.get("d"), str):
        raise ProtocolError(f"d must be a string, not {_kind(msg.get('d'))}")
    return msg


def parse_resume(value: object, *, text: bool = True) -> int | None:
    """A resume point (``Last-Event-ID``, ``cursor``, ``after``) as an int; ``None`` when absent; :class:`ProtocolError` when malformed.

    Text (an HTTP header or query value; refused when ``text`` is false, for a JSON
    field) must be decimal digits only: no sign, no spaces, no exponent. A JSON value
    must be a non-negative integer (not a bool, not a float).
    """
    if value is None:
        return None
    if isinstance(value, str) and text:
        if len(value) > _MAX_DIGITS or not _DIGITS.fullmatch(value):
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise ProtocolError(f"resume point must be a non-negative integer, not {shown!r}")
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ProtocolError(f"resume point must be a non-negative integer, not {_kind(value)} {str(value)[:40]}")


def parse_point(value: str | None) -> tuple[str | None, int] | None:
    """A text resume point (``Last-Event-ID``, ``cursor``) as ``(epoch, n)``; ``None`` when absent.

    ``E-N`` (what this server sends) or a plain ``N`` (epoch ``None``: a client that never
    saw an epoch, or a hand-written one; it resumes under the old rules). Anything else is a
    :class:`ProtocolError` (``E``: 1 to 32 letters, digits or ``_``; ``N``: decimal digits).
    """
    if value is None:
        return None
    m = _POINT.fullmatch(value) if len(value) <= 70 else None
    if m is None:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ProtocolError(f"resume point must be EPOCH-N or a non-negative integer N, not {shown!r}")
    return m.group(1), int(m.group(2))


def parse_epoch(value: object) -> str | None:
    """A WebSocket join's ``epoch`` (``None`` when absent); :class:`ProtocolError` unless 1 to 32 letters, digits or ``_``."""
    if value is None:
        return None
    if isinstance(value, str) and _EPOCH.fullmatch(value):
        return value
    raise ProtocolError(f"epoch must be a string of 1 to 32 letters, digits or _, not {_kind(value)} {str(value)[:40]}")


# -- rooms and subscribers ---------------------------------------------------------------------


@dataclass(frozen=True)
class Resume:
    """Where a (re)joining client starts: ``joined`` at ``start``, then ``replay`` (held broadcasts), or a ``reset``."""

    room: str
    start: int  # the n the client's view starts after: its resume point, or the head
    replay: list[tuple[int, str]]  # (n, JSON text) of held broadcasts after the resume point
    reset: str | None = None  # "history", "future" or "epoch" when the resume point could not be honoured
    epoch: str = ""  # the server's

    def joined(self) -> dict[str, Any]:
        return joined_message(self.room, self.start, self.epoch)

    def reset_msg(self) -> dict[str, Any] | None:
        return reset_message(self.room, self.start, self.reset, self.epoch) if self.reset else None

    def point(self) -> str:
        """Where the view starts as a text resume point (``E-N``)."""
        return point_text(self.epoch, self.start)


@dataclass(eq=False)
class Subscriber:
    """One live connection's outbox: a bounded queue of ``(n, text)`` events, drained by its transport's one writer.

    A connection (an SSE stream, a WebSocket) has one subscriber, a member of every
    room it joined. ``wake`` is set whenever something arrives or the subscriber is
    dropped; ``dropped`` says why it was (``None`` while it is live). ``on_drop`` lets
    a transport unblock a writer stuck on a full socket (close the connection).
    """

    limit: int
    hard_limit: int
    queue: deque[tuple[int, str]] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    rooms: set[str] = field(default_factory=set)
    dropped: str | None = None
    on_drop: Callable[[str], None] | None = None

    def offer(self, n: int, text: str) -> None:
        """A live event: queued, or the subscriber dropped when it is ``limit`` behind."""
        if self.dropped is not None:
            return
        if len(self.queue) >= self.limit:
            self.drop(f"slow consumer: {len(self.queue)} events queued (limit {self.limit})")
            return
        self.push(n, text)

    def push(self, n: int, text: str) -> None:
        """Queue above ``limit``: a join's replay (at most the history) may go over it, up to ``hard_limit``."""
        if self.dropped is not None:
            return
        if len(self.queue) >= self.hard_limit:
            self.drop(f"slow consumer: {len(self.queue)} events and answers queued (limit {self.hard_limit})")
            return
        self.queue.append((n, text))
        self.wake.set()

    def drop(self, reason: str) -> None:
        if self.dropped is not None:
            return
        self.dropped = reason
        self.queue.clear()
        self.wake.set()
        if self.on_drop is not None:
            self.on_drop(reason)

    def take(self) -> list[tuple[int, str]]:
        """Everything queued, in order; clears the wake flag."""
        items = list(self.queue)
        self.queue.clear()
        self.wake.clear()
        return items


class Room:
    """A room's head, its last ``history`` broadcasts, its live subscribers, and an event long pollers wait on."""

    def __init__(self, name: str, history: int, epoch: str) -> None:
        self.name = name
        self.epoch = epoch
        self.head = 0
        self.held: deque[tuple[int, str]] = deque(maxlen=history) if history > 0 else deque(maxlen=0)
        self.subscribers: set[Subscriber] = set()
        self.changed = asyncio.Event()
        self.waiters = 0

    def resume(self, after: int | None, epoch: str | None = None) -> Resume:
        """Where a client resuming after ``after`` of ``epoch`` (``None``: a new client; no epoch: the old rules) starts."""
        e = self.epoch
        if after is not None and epoch is not None and epoch != e:  # another server's numbering: all of it is gone
            return Resume(self.name, self.head, [], "epoch", e)
        if after is None or after == self.head:
            return Resume(self.name, self.head, [], epoch=e)
        if after > self.head:
            return Resume(self.name, self.head, [], "future", e)
        if after < self.head - len(self.held):  # some n in (after, oldest held) is gone
            return Resume(self.name, self.head, [], "history", e)
        return Resume(self.name, after, [(n, text) for n, text in self.held if n > after], epoch=e)

    def after(self, cursor: int) -> list[tuple[int, str]]:
        return [(n, text) for n, text in self.held if n > cursor]

    @property
    def idle(self) -> bool:
        """Nothing to keep: no broadcast ever, no subscriber, no waiter (it can be forgotten)."""
        return self.head == 0 and not self.subscribers and self.waiters == 0


class Feed:
    """Every room of one server process."""

    def __init__(
        self,
        history: int = DEFAULT_HISTORY,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        max_rooms: int = DEFAULT_MAX_ROOMS,
        epoch: str | None = None,
    ) -> None:
        if history < 0 or queue_limit < 1 or max_rooms < 1:
            raise ValueError("history must be >= 0, queue_limit and max_rooms >= 1")
        #: This server's epoch (random unless given): in every numbered message as ``e``.
        self.epoch = new_epoch() if epoch is None else str(parse_epoch(epoch))
        self.history = history
        self.queue_limit = queue_limit
        self.max_rooms = max_rooms
        self.rooms: dict[str, Room] = {}
        self.published = 0
        self.dropped = 0

    def room(self, name: str) -> Room:
        """The room, created on first use; :class:`ProtocolError` when the server holds ``max_rooms`` already."""
        room = self.rooms.get(name)
        if room is None:
            if len(self.rooms) >= self.max_rooms:
                raise ProtocolError(f"this server holds {self.max_rooms} rooms already")
            room = self.rooms[name] = Room(name, self.history, self.epoch)
        return room

    def forget_if_idle(self, room: Room) -> None:
        if room.idle and self.rooms.get(room.name) is room:
            del self.rooms[room.name]

    def publish(self, msg: dict[str, Any]) -> int:
        """Number a validated broadcast in its room, hold it, hand it to every subscriber; return its ``n``.

        Synchronous: no await between numbering and fan-out, so every subscriber sees the room's order.
        """
        room = self.room(msg["room"])
        n = room.head = room.head + 1
        msg["n"] = n
        msg["e"] = self.epoch
        text = orjson.dumps(msg).decode()
        room.held.append((n, text))
        for sub in list(room.subscribers):
            sub.offer(n, text)
            if sub.dropped is not None:
                room.subscribers.discard(sub)
                self.dropped += 1
        changed, room.changed = room.changed, asyncio.Event()
        changed.set()  # wakes every long poller of the room at once
        self.published += 1
        return n

    def subscriber(self, on_drop: Callable[[str], None] | None = None) -> Subscriber:
        """A new connection's outbox, in no room yet."""
        return Subscriber(self.queue_limit, self.queue_limit + self.history, on_drop=on_drop)

    def join(self, sub: Subscriber, name: str, after: int | None, epoch: str | None = None) -> Resume:
        """Make ``sub`` a member of the room and say where it starts (``after`` of ``epoch``: see :meth:`Room.resume`).

        Registered before returning, with no await: every broadcast is either in the
        returned replay or will be offered to ``sub``, never both, never neither.
        """
        room = self.room(name)
        resume = room.resume(after, epoch)
        room.subscribers.add(sub)
        sub.rooms.add(name)
        return resume

    def leave(self, sub: Subscriber) -> None:
        """Take ``sub`` out of every room it joined (its connection ended)."""
        for name in sub.rooms:
            room = self.rooms.get(name)
            if room is not None:
                room.subscribers.discard(sub)
                self.forget_if_idle(room)
        sub.rooms.clear()

    def stats(self) -> dict[str, Any]:
        """What ``GET /health`` reports: rooms, live subscribers, held long polls, broadcasts published, subscribers dropped."""
        rooms = self.rooms.values()
        return {
            "ok": True,
            "epoch": self.epoch,
            "rooms": len(self.rooms),
            "subscribers": sum(len(r.subscribers) for r in rooms),
            "waiting_polls": sum(r.waiters for r in rooms),
            "published": self.published,
            "dropped": self.dropped,
        }

    def close(self, reason: str = SHUTDOWN) -> None:
        """Drop every subscriber (their transports end their streams) and wake every long poller."""
        for room in self.rooms.values():
            for sub in list(room.subscribers):
                sub.drop(reason)
            room.subscribers.clear()
            room.changed.set()


# -- the app's activity events ---------------------------------------------------------------------

_NAMES = ("Mira", "Tobin", "Ashe", "Quill", "Bram", "Isolde", "GM")
_TOKENS = ("goblin-1", "goblin-2", "ogre", "wolf-3", "Mira", "Tobin", "chest")
_DICE = ("1d20+5", "2d6+3", "1d8", "4d6kh3", "1d100", "3d10")
_NOTICES = ("whispered to the GM", "started a poll", "shared a handout", "set the scene to night", "paused the encounter")


def activity_event(rng: random.Random, kinds: tuple[str, ...] = ("join", "roll", "move", "chat")) -> dict[str, Any]:
    """One activity event as the tabletop sends it to the feed (what a broadcast's ``d`` carries, as compact JSON).

    A token move is summarised (one event where the drag ended, not every pointer move); a
    chat notice names the action, not the message text (the chat has its own channel).
    """
    who = rng.choice(_NAMES)
    kind = rng.choice(kinds)
    if kind == "join":
        return {"k": "join", "who": who}
    if kind == "roll":
        expr = rng.choice(_DICE)
        count, _, rest = expr.partition("d")
        sides = int(re.split(r"[^0-9]", rest)[0])
        total = sum(rng.randint(1, sides) for _ in range(int(count))) + (int(expr.split("+")[1]) if "+" in expr else 0)
        return {"k": "roll", "who": who, "expr": expr, "total": total}
    if kind == "move":
        x, y = rng.randrange(40), rng.randrange(30)
        return {
            "k": "move",
            "who": who,
            "token": rng.choice(_TOKENS),
            "from": [x, y],
            "to": [x + rng.randint(-6, 6), y + rng.randint(-6, 6)],
        }
    return {"k": "chat", "who": who, "notice": rng.choice(_NOTICES)}


def activity_broadcast(room: str, seq: int, client: int, event: dict[str, Any], t_ns: int | None = None) -> dict[str, Any]:
    """The protocol's broadcast message carrying ``event`` in ``d`` (what the app's publisher POSTs or sends)."""
    d = orjson.dumps(event).decode()
    return {"op": OP_BROADCAST, "room": room, "seq": seq, "t": time.time_ns() if t_ns is None else t_ns, "c": client, "d": d}
