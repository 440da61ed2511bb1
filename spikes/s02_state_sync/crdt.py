"""CRDT replicas on pycrdt (Yrs): Text for the note, Map for token positions, an Array per stroke.

pycrdt indexes ``Text`` by UTF-8 bytes (checked by a test on non-ASCII text),
while the traces and the tabletop count Unicode code points, as Python strings
do. ``CodePoints`` converts: while every character inserted so far is ASCII
the two counts are the same, and only after the first non-ASCII insert does it
keep a mirror string to convert positions.

Sync is the Yjs protocol's three messages (y-protocols' sync step 1, sync
step 2 and update): a state vector (``S``: what I have), answered by an
update with what the other lacks (``D``), and the update of every local
transaction (``U``), which the relay forwards. A replica sends its state
vector on connect, and again to the sender of an update it could not apply
because an earlier update it depends on has not arrived (a gap: part of the
update is not covered by the document's state vector after applying it; Yrs
keeps such an update pending, and pycrdt 0.14 was seen not to integrate it
when the missing update came). The answer re-sends the missing updates and
the held one, so peers that receive each other's updates in any order
converge. An answer (``D``) never triggers another request, so a sync ends.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Array, Doc, Map, Text, get_update

__all__ = ["CodePoints", "CrdtReplica", "CrdtRelay", "UPDATE", "STATE", "SYNC"]

UPDATE = b"U"  # an update: one local transaction (forwarded by the relay)
STATE = b"S"  # sync step 1: my state vector
SYNC = b"D"  # sync step 2: the update answering a state vector (what the asker lacked)


class CodePoints:
    """Maps code-point positions in a Text to the UTF-8 byte offsets pycrdt uses."""

    def __init__(self) -> None:
        self.mirror: str | None = None  # None while the text is all ASCII

    def insert(self, pos: int, s: str, current: Text) -> int:
        """The byte offset of code point ``pos``; records the insert."""
        if self.mirror is None and s.isascii():
            return pos
        if self.mirror is None:
            self.mirror = str(current)
        off = len(self.mirror[:pos].encode())
        self.mirror = self.mirror[:pos] + s + self.mirror[pos:]
        return off

    def delete(self, pos: int, n: int) -> tuple[int, int]:
        """The byte range of code points ``[pos, pos + n)``; records the delete."""
        if self.mirror is None:
            return pos, pos + n
        start = len(self.mirror[:pos].encode())
        end = start + len(self.mirror[pos : pos + n].encode())
        self.mirror = self.mirror[:pos] + self.mirror[pos + n :]
        return start, end


class CrdtReplica:
    """One replica of the tabletop: a pycrdt Doc whose every local transaction becomes an outgoing update."""

    def __init__(self, client_id: int | None = None, resync_on_gap: bool = True) -> None:
        """``resync_on_gap``: check every received update for a gap and ask its sender for what is missing.

        The trace replays turn it off: their delivery is causal by construction, so no gap can occur,
        and the check (a diff of the update against the state vector) would only add to the timed replay.
        """
        self.doc = Doc(client_id=client_id) if client_id is not None else Doc()
        self.resync_on_gap = resync_on_gap
        self.gaps = 0  # updates received with a gap (each answered with a state vector)
        self.note = self.doc.get("note", type=Text)
        self.tokens = self.doc.get("tokens", type=Map)
        self.strokes = self.doc.get("strokes", type=Map)
        self.outbox: list[bytes] = []
        self._remote = False
        self._pos = CodePoints()
        self._stale = False
        self._sub: Any = None

    def _listen(self) -> None:
        # Subscribe at the first local edit: a replica that only receives makes no
        # updates, and pycrdt encodes an update for every transaction it observes.
        if self._sub is None:
            self._sub = self.doc.observe(self._on_txn)

    def _on_txn(self, event: Any) -> None:
        if not self._remote:
            self.outbox.append(UPDATE + event.update)

    def _positions(self) -> CodePoints:
        # A remote update may have changed the text: re-read it once, before the next local edit.
        if self._stale:
            self._stale = False
            text = str(self.note)
            self._pos.mirror = None if self._pos.mirror is None and text.isascii() else text
        return self._pos

    # -- local edits ------------------------------------------------------------
    def transaction(self) -> Any:
        """Group several edits into one transaction (one update)."""
        self._listen()
        return self.doc.transaction()

    # The note edits are the hot path of a trace replay (the issue allows 1.2x over bare pycrdt): the
    # all-ASCII case, by far the most common, skips the position bookkeeping in a single test.
    def insert_note(self, pos: int, s: str) -> None:
        if self._sub is not None and not self._stale and self._pos.mirror is None and s.isascii():
            self.note.insert(pos, s)
            return
        self._listen()
        self.note.insert(self._positions().insert(pos, s, self.note), s)

    def delete_note(self, pos: int, n: int) -> None:
        if not n:
            return
        if self._sub is not None and not self._stale and self._pos.mirror is None:
            del self.note[pos : pos + n]
            return
        self._listen()
        a, b = self._positions().delete(pos, n)
        del self.note[a:b]

    def move_token(self, tid: str, x: float, y: float) -> None:
        self._listen()
        self.tokens[tid] = [x, y]

    def add_stroke(self, sid: str, points: list[float]) -> None:
        self._listen()
        self.strokes[sid] = Array(list(points))

    def extend_stroke(self, sid: str, points: list[float]) -> bool:
        """Append points to a stroke; False if the stroke is gone here."""
        self._listen()
        arr = self.strokes.get(sid)
        if arr is None:
            return False
        arr.extend(list(points))
        return True

    def delete_stroke(self, sid: str) -> None:
        self._listen()
        if sid in self.strokes:
            del self.strokes[sid]

    # -- sync ------------------------------------------------------------------------
    def take_outbox(self) -> list[bytes]:
        out, self.outbox = self.outbox, []
        return out

    def state_vector(self) -> bytes:
        return STATE + self.doc.get_state()

    def has_gap(self, update: bytes) -> bool:
        """Whether ``update``, already applied, holds items the document lacks (held pending: one it depends on has not arrived).

        ``get_update(update, state)`` is the part of the update the state does not cover; an update's first
        var-uint counts the clients it has items of, so a first byte of 0 means none is missing.
        """
        return get_update(update, self.doc.get_state())[:1] != b"\x00"

    def receive(self, msg: bytes) -> list[bytes]:
        """Apply an update (asking its sender for what is missing if it has a gap), or answer a state vector."""
        kind = msg[:1]
        if kind == UPDATE or kind == SYNC:
            if self._sub is None:  # nothing listens: no local update to tell apart (a pure reader)
                self.doc.apply_update(msg[1:])
            else:
                self._remote = True
                try:
                    self.doc.apply_update(msg[1:])
                finally:
                    self._remote = False
            self._stale = True
            if kind == UPDATE and self.resync_on_gap and self.has_gap(msg[1:]):
                self.gaps += 1
                return [self.state_vector()]
            return []
        if kind == STATE:
            return [SYNC + self.doc.get_update(msg[1:])]
        raise ValueError(f"unknown CRDT message kind {kind!r}")

    def view(self) -> dict[str, Any]:
        """The state as plain data, comparable across options."""
        strokes = self.strokes.to_py() or {}
        return {
            "note": str(self.note),
            "tokens": {k: [float(v[0]), float(v[1])] for k, v in (self.tokens.to_py() or {}).items()},
            "strokes": {k: [float(p) for p in v] for k, v in strokes.items()},
        }

    def size(self) -> int:
        """Bytes of the whole document encoded as one update (what a new client downloads)."""
        return len(self.doc.get_update())


class CrdtRelay:
    """The server side: keeps its own Doc (to answer state vectors), forwards every update to the others."""

    def __init__(self) -> None:
        self.replica = CrdtReplica()

    def on_message(self, sender: Any, msg: bytes, clients: list[Any]) -> list[tuple[Any, bytes]]:
        kind = msg[:1]
        if kind == UPDATE or kind == SYNC:
            # A client's answer to our state vector is news to the others too: forwarded as an update.
            replies = self.replica.receive(msg)
            return [(sender, m) for m in replies] + [(c, UPDATE + msg[1:]) for c in clients if c != sender]
        if kind == STATE:
            # Answer with what the client lacks, and ask for what we lack.
            return [(sender, m) for m in self.replica.receive(msg)] + [(sender, self.replica.state_vector())]
        raise ValueError(f"unknown CRDT message kind {kind!r}")

    def on_connect(self, client: Any) -> list[tuple[Any, bytes]]:
        return []
