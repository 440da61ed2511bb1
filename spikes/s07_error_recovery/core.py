"""Spike 7's logic, without sockets: the tabletop room, its event log, resume requests, the strategies.

The POC server (``poc/server.py``) only wires these to WebSocket connections, Redis and PostgreSQL.

- :class:`Room`: a room's state. Each broadcast of the load engine's protocol (``c``, ``seq``, ``t``) is one
  tabletop operation, chosen by ``seq % 3``: a token move (last writer wins by ``(t, c, seq)``), a chat line,
  or an edit of the shared note (a pycrdt ``Text``, each edit inserted where its id sorts). Every operation
  commutes, so two replicas that applied the same set of operations hash the same, whatever the order:
  :meth:`Room.state_hash` hashes the token map and the note's text.
- :class:`RoomLog`: the per-room event log with sequence numbers ``n`` (1, 2, ...), bounded by length and by
  age; :meth:`RoomLog.since` answers a resume, or raises :class:`Gap` when it is older than the log.
- :func:`parse_resume`: a resume request checked; a malformed one is a :class:`ResumeError` with the error
  frame's code and the close code.
- :class:`Outbox`: a client's outbox (ids, acknowledgements, what to send again), the logic of the harness's
  ``outbox`` resume adapter, kept here for the browser client and its tests.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pycrdt

__all__ = [
    "STRATEGIES",
    "CLOSE_BAD_RESUME",
    "CLOSE_UNKNOWN_ROOM",
    "CLOSE_FUTURE_SEQ",
    "CLOSE_CODES",
    "Room",
    "RoomLog",
    "Gap",
    "ResumeError",
    "parse_resume",
    "Outbox",
    "op_kind",
]

#: The recovery strategies a POC server can run (``--strategy``).
STRATEGIES = ("reconnect", "queue", "reconstruct", "queue-reconstruct", "checkpoint", "fallback")

#: Close codes (4000-4999 are the application's, RFC 6455 7.4.2).
CLOSE_BAD_RESUME = 4400
CLOSE_UNKNOWN_ROOM = 4404
CLOSE_FUTURE_SEQ = 4416
CLOSE_CODES = {
    CLOSE_BAD_RESUME: "resume request malformed (after not a non-negative integer)",
    CLOSE_UNKNOWN_ROOM: "resume into a room that does not exist",
    CLOSE_FUTURE_SEQ: "resume after a sequence number the room has not reached",
}

#: Width of one note edit in characters: fixed, so an edit's offset is its rank times this.
EDIT_WIDTH = 14
#: Tokens on the map: a move names one of these.
TOKENS = 100


def op_kind(seq: int) -> str:
    """Which tabletop operation the message with this ``seq`` stands for."""
    return ("move", "chat", "edit")[seq % 3]


class Room:
    """One room's state: tokens (LWW), chat lines and a pycrdt note; applying is idempotent by ``(c, seq)``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.applied: set[tuple[int, int]] = set()
        self.tokens: dict[str, tuple[tuple[int, int, int], tuple[int, int]]] = {}  # token -> (key, position)
        self.chat: dict[tuple[int, int, int], str] = {}
        self.doc = pycrdt.Doc()
        self.note = self.doc.get("note", type=pycrdt.Text)
        self._edits: list[tuple[int, int, int]] = []  # sorted keys of the note's edits

    def apply(self, c: int, seq: int, t: int) -> bool:
        """Apply message ``(c, seq)`` sent at ``t``; False (and nothing changes) if it was applied before."""
        if (c, seq) in self.applied:
            return False
        self.applied.add((c, seq))
        key = (t, c, seq)
        kind = op_kind(seq)
        if kind == "move":
            token = f"token-{(c * 7 + seq) % TOKENS}"
            old = self.tokens.get(token)
            if old is None or old[0] < key:
                self.tokens[token] = (key, (seq % 50, c % 50))
        elif kind == "chat":
            self.chat[key] = f"{c}: line {seq}"
        else:
            import bisect

            i = bisect.bisect_left(self._edits, key)
            self._edits.insert(i, key)
            self.note.insert(i * EDIT_WIDTH, f"[{c:05d}.{seq:06d}]")
        return True

    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to rebuild this room (JSON-ready): the note as a pycrdt update, the rest as data."""
        import base64

        return {
            "applied": sorted(self.applied),
            "tokens": {k: [list(v[0]), list(v[1])] for k, v in self.tokens.items()},
            "chat": [[list(k), v] for k, v in self.chat.items()],
            "edits": [list(k) for k in self._edits],
            "note": base64.b64encode(self.doc.get_update()).decode(),
        }

    @classmethod
    def restore(cls, name: str, data: dict[str, Any]) -> Room:
        """A room rebuilt from :meth:`checkpoint`'s output."""
        import base64

        room = cls(name)
        room.applied = {(c, s) for c, s in data["applied"]}
        room.tokens = {k: (tuple(v[0]), tuple(v[1])) for k, v in data["tokens"].items()}  # type: ignore[misc]
        room.chat = {tuple(k): v for k, v in data["chat"]}  # type: ignore[misc]
        room._edits = [tuple(k) for k in data["edits"]]  # type: ignore[misc]
        room.doc.apply_update(base64.b64decode(data["note"]))
        return room

    def state(self) -> dict[str, Any]:
        """What a replica shows: the token map, the chat lines in order, the note's text."""
        return {
            "tokens": {k: list(v[1]) for k, v in sorted(self.tokens.items())},
            "chat": [self.chat[k] for k in sorted(self.chat)],
            "note": str(self.note),
        }

    def state_hash(self) -> str:
        """SHA-256 of the state, first 16 hex digits: equal for replicas that applied the same operations."""
        return hashlib.sha256(json.dumps(self.state(), sort_keys=True).encode()).hexdigest()[:16]


class Gap(Exception):
    """A resume asked for entries the log no longer holds: the client needs a full snapshot."""

    def __init__(self, after: int, first: int) -> None:
        super().__init__(f"resume after {after}, the log starts at {first}")
        self.after = after
        self.first = first


@dataclass
class LogEntry:
    n: int
    at: float  # time.monotonic() when appended
    msg: dict[str, Any]


class RoomLog:
    """A room's event log: entries numbered 1, 2, ...; at most ``max_len`` entries, none older than ``max_age_s``."""

    def __init__(self, max_len: int = 10_000, max_age_s: float = 300.0, head: int = 0) -> None:
        if max_len < 1 or max_age_s <= 0:
            raise ValueError("the log must hold at least one entry for a positive time")
        self.max_len = max_len
        self.max_age_s = max_age_s
        self.head = head  # the last number given out
        self.entries: deque[LogEntry] = deque()
        self.trimmed = 0

    def append(self, msg: dict[str, Any], now: float | None = None) -> int:
        """Number ``msg`` (sets its ``n``), keep it, trim; returns ``n``."""
        now = time.monotonic() if now is None else now
        self.head += 1
        msg["n"] = self.head
        self.entries.append(LogEntry(self.head, now, msg))
        self.trim(now)
        return self.head

    def trim(self, now: float | None = None) -> int:
        """Drop entries beyond the length bound or past the age bound; returns how many went."""
        now = time.monotonic() if now is None else now
        before = len(self.entries)
        while len(self.entries) > self.max_len:
            self.entries.popleft()
        while self.entries and now - self.entries[0].at > self.max_age_s:
            self.entries.popleft()
        gone = before - len(self.entries)
        self.trimmed += gone
        return gone

    @property
    def first(self) -> int:
        """The oldest number still held (``head + 1`` when empty)."""
        return self.entries[0].n if self.entries else self.head + 1

    def since(self, after: int) -> list[dict[str, Any]]:
        """Every entry with ``n > after``, in order; :class:`Gap` if some of them were trimmed."""
        if after > self.head:
            raise ValueError(f"after {after} is past the head {self.head}")
        if after + 1 < self.first:
            raise Gap(after, self.first)
        skip = after + 1 - self.first
        return [e.msg for i, e in enumerate(self.entries) if i >= skip]


class ResumeError(Exception):
    """A malformed resume request: ``code`` names it in the error frame, ``close`` is the WebSocket close code."""

    def __init__(self, code: str, reason: str, close: int) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.close = close

    def frame(self) -> dict[str, Any]:
        return {"op": "error", "code": self.code, "reason": self.reason}


def parse_resume(msg: dict[str, Any], heads: dict[str, int]) -> tuple[str, int | None]:
    """The room and the ``after`` of a join (None: a plain join); :class:`ResumeError` when malformed.

    ``heads``: each known room's last sequence number. A plain join creates a room; a resume needs one.
    """
    room = msg.get("room")
    if not isinstance(room, str) or not room or len(room) > 200:
        raise ResumeError("bad-room", "room must be a non-empty string of at most 200 characters", CLOSE_BAD_RESUME)
    if "after" not in msg:
        return room, None
    after = msg["after"]
    if not isinstance(after, int) or isinstance(after, bool):
        raise ResumeError("bad-after", f"after must be an integer, got {type(after).__name__}", CLOSE_BAD_RESUME)
    if after < 0:
        raise ResumeError("bad-after", f"after must not be negative, got {after}", CLOSE_BAD_RESUME)
    if room not in heads:
        raise ResumeError("unknown-room", f"no room {room!r} to resume", CLOSE_UNKNOWN_ROOM)
    if after > heads[room]:
        raise ResumeError("future-after", f"after {after} is past the room's last sequence number {heads[room]}", CLOSE_FUTURE_SEQ)
    return room, after


class Outbox:
    """A client's outbox: messages by id until acknowledged; after a reconnect, what is left goes again, in id order."""

    def __init__(self) -> None:
        self.pending: dict[int, dict[str, Any]] = {}
        self.next_id = 0
        self.resent = 0

    def add(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Give ``msg`` the next id (``seq``) and keep it; returns it, to send."""
        msg = {**msg, "seq": self.next_id}
        self.pending[self.next_id] = msg
        self.next_id += 1
        return msg

    def ack(self, seq: int) -> bool:
        """The server has message ``seq``: forget it. False if it was not pending (a duplicate ack)."""
        return self.pending.pop(seq, None) is not None

    def to_resend(self) -> list[dict[str, Any]]:
        """What to send again after a reconnect, oldest first."""
        out = [self.pending[k] for k in sorted(self.pending)]
        self.resent += len(out)
        return out


def hash_of(room: str, ops: Iterable[tuple[int, int, int]]) -> str:
    """The state hash of a fresh room after applying ``(c, seq, t)`` operations: what a replica should show."""
    r = Room(room)
    for c, seq, t in ops:
        r.apply(c, seq, t)
    return r.state_hash()


def applied_of(room: Room | None, name: Any, c: Any) -> dict[str, Any]:
    """The answer to ``{"op": "applied", "room", "c"}`` (read-only): the ``seq`` of every message of client ``c`` the room
    applied, sorted; an ``error`` frame for an unknown room or a ``c`` that is not an integer."""
    if not isinstance(c, int) or isinstance(c, bool):
        return {"op": "error", "code": "bad-message", "reason": "c must be an integer"}
    if room is None:
        return {"op": "error", "code": "unknown-room", "reason": f"no room {name!r}"[:200]}
    return {"op": "applied", "room": room.name, "c": c, "seqs": sorted(s for k, s in room.applied if k == c)}
