"""Last-Write-Wins, sans-I/O: a map of registers, one per field, ordered by hybrid logical clocks.

A field is a token's position (``token/<id>``), a stroke's whole point list
(``stroke/<id>``, ``None`` once deleted: a tombstone), or the whole note text
(``note``). A write carries a hybrid logical clock stamp ``(wall ms, counter,
replica id)`` (Kulkarni et al., 2014): it never runs backwards, it moves past
every stamp the replica has seen, and the replica id breaks ties, so every
replica picks the same winner and merge is commutative, associative and
idempotent. Concurrent writes to one field keep one value: the others are lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HLC", "Stamp", "LWWMap", "LWWReplica", "LWWServer"]

Stamp = tuple  # (wall_ms, counter, replica)


@dataclass
class HLC:
    """A hybrid logical clock for one replica; ``now`` gives wall time in ms (injectable for tests)."""

    replica: str
    now: Callable[[], int] = lambda: time.time_ns() // 1_000_000
    wall: int = 0
    counter: int = 0

    def tick(self) -> Stamp:
        """A stamp for a local write, later than any stamp seen so far."""
        t = self.now()
        if t > self.wall:
            self.wall, self.counter = t, 0
        else:
            self.counter += 1
        return (self.wall, self.counter, self.replica)

    def observe(self, stamp: Stamp) -> None:
        """Move past a stamp received from another replica."""
        t = self.now()
        w = max(t, self.wall, stamp[0])
        if w == self.wall == stamp[0]:
            self.counter = max(self.counter, stamp[1]) + 1
        elif w == self.wall:
            self.counter += 1
        elif w == stamp[0]:
            self.counter = stamp[1] + 1
        else:
            self.counter = 0
        self.wall = w


@dataclass
class LWWMap:
    """Field -> (value, stamp); a write with a larger stamp replaces the field's value."""

    fields: dict[str, tuple[Any, Stamp]] = field(default_factory=dict)

    def merge(self, key: str, value: Any, stamp: Stamp) -> bool:
        """Apply one write; True if it won (the value changed)."""
        cur = self.fields.get(key)
        if cur is not None and tuple(cur[1]) >= tuple(stamp):
            return False
        self.fields[key] = (value, tuple(stamp))
        return True

    def view(self) -> dict[str, Any]:
        tokens, strokes = {}, {}
        note = ""
        for k, (v, _) in sorted(self.fields.items()):
            if k == "note":
                note = v
            elif k.startswith("token/"):
                tokens[k[6:]] = [float(v[0]), float(v[1])]
            elif k.startswith("stroke/") and v is not None:
                strokes[k[7:]] = [float(p) for p in v]
        return {"note": note, "tokens": tokens, "strokes": strokes}


def encode(writes: list[tuple[str, Any, Stamp]]) -> bytes:
    return json.dumps([[k, v, list(s)] for k, v, s in writes], separators=(",", ":")).encode()


def _valid(key: Any, stamp: Any) -> bool:
    """A field name and a ``[wall ms, counter, replica]`` stamp: anything else would break ordering for every later write."""
    return (
        isinstance(key, str)
        and type(stamp) is list
        and len(stamp) == 3
        and type(stamp[0]) is int
        and type(stamp[1]) is int
        and isinstance(stamp[2], str)
    )


def decode(msg: bytes) -> list[tuple[str, Any, Stamp]]:
    """A message's writes; ``ValueError`` unless it is a JSON list of ``[field, value, stamp]`` with a valid stamp each.

    Checked, because one write with a stamp of another shape (a string, say) would make every later comparison of
    that field's stamps raise: a field no honest client could write again.
    """
    try:
        writes = json.loads(msg)
        if type(writes) is not list:
            raise TypeError(f"a JSON {type(writes).__name__}, not a list of writes")
        out = [(k, v, tuple(s)) for k, v, s in writes]
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValueError(f"not an LWW message: {exc}") from None
    for k, _, s in out:
        if not _valid(k, list(s)):
            raise ValueError(f"not an LWW write: field {k!r}, stamp {list(s)!r}"[:200])
    return out


class LWWReplica:
    """One replica: local writes stamp and queue a message; received writes merge."""

    def __init__(self, replica: str, now: Callable[[], int] | None = None) -> None:
        self.clock = HLC(replica, now) if now else HLC(replica)
        self.map = LWWMap()
        self.outbox: list[bytes] = []

    def _write(self, key: str, value: Any) -> None:
        stamp = self.clock.tick()
        self.map.merge(key, value, stamp)
        self.outbox.append(encode([(key, value, stamp)]))

    @property
    def note(self) -> str:
        return self.map.fields.get("note", ("", None))[0]

    def replace_note(self, pos: int, n: int, s: str) -> None:
        """The whole note, with code points ``[pos, pos + n)`` replaced by ``s``, as one write."""
        t = self.note
        self._write("note", t[:pos] + s + t[pos + n :])

    def insert_note(self, pos: int, s: str) -> None:
        self.replace_note(pos, 0, s)

    def delete_note(self, pos: int, n: int) -> None:
        if n:
            self.replace_note(pos, n, "")

    def move_token(self, tid: str, x: float, y: float) -> None:
        self._write(f"token/{tid}", [x, y])

    def add_stroke(self, sid: str, points: list[float]) -> None:
        self._write(f"stroke/{sid}", list(points))

    def extend_stroke(self, sid: str, points: list[float]) -> bool:
        cur = self.map.fields.get(f"stroke/{sid}")
        if cur is None or cur[0] is None:
            return False
        self._write(f"stroke/{sid}", list(cur[0]) + list(points))
        return True

    def delete_stroke(self, sid: str) -> None:
        self._write(f"stroke/{sid}", None)

    def take_outbox(self) -> list[bytes]:
        out, self.outbox = self.outbox, []
        return out

    def compact_outbox(self) -> list[bytes]:
        """The queued writes as one message, keeping only the last write per field (for a reconnect)."""
        last: dict[str, tuple[Any, Stamp]] = {}
        for msg in self.take_outbox():
            for k, v, s in decode(msg):
                last[k] = (v, s)
        return [encode([(k, v, s) for k, (v, s) in last.items()])] if last else []

    def full_state(self) -> bytes:
        """Every field, for a reconnect."""
        return encode([(k, v, s) for k, (v, s) in self.map.fields.items()])

    def receive(self, msg: bytes) -> list[bytes]:
        for k, v, s in decode(msg):
            self.clock.observe(s)
            self.map.merge(k, v, s)
        return []

    def view(self) -> dict[str, Any]:
        return self.map.view()


class LWWServer:
    """The server merges every write and forwards the ones that won to the other clients."""

    def __init__(self) -> None:
        self.map = LWWMap()
        self.overwritten = 0

    def on_message(self, sender: Any, msg: bytes, clients: list[Any]) -> list[tuple[Any, bytes]]:
        won = [(k, v, s) for k, v, s in decode(msg) if self.map.merge(k, v, s)]
        if not won:
            return []
        out = encode(won)
        return [(c, out) for c in clients if c != sender]

    def on_connect(self, client: Any) -> list[tuple[Any, bytes]]:
        if not self.map.fields:
            return []
        return [(client, encode([(k, v, s) for k, (v, s) in self.map.fields.items()]))]
