"""Operational Transformation, sans-I/O: text operations, tabletop operations, the Jupiter client and server.

Text operations have the shape of ot.js's ``TextOperation``: a list of
components, ``int > 0`` retain that many code points, ``str`` insert it,
``int < 0`` delete that many. ``transform(a, b)`` returns ``(a', b')`` with
``apply(apply(s, a), b') == apply(apply(s, b), a')`` (TP1); on a tie (both
insert at one place) ``a``'s insert goes first.

A tabletop operation is a list of primitives (``Prim``): a text operation on
the note, a token move, a stroke added, points inserted into a stroke, a
stroke deleted. Lists transform pairwise, so one transform function covers
every kind. Conflicts resolve so: a token keeps the move the server ordered
last; a deleted stroke stays deleted (a concurrent extension is lost).

``OTClient`` is the three-state client (Synchronized, AwaitingConfirm,
AwaitingWithBuffer) and ``OTServer`` the central server that transforms an
incoming operation against the operations since the client's revision.
``JupiterSite`` is the two-party Jupiter algorithm (each side transforms the
other's operations against its own unacknowledged ones), and ``JupiterServer``
the central server built from it: one link per client, so N authors edit
through one server, each edit sent as it is made. The concurrent trace
replays go through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TextOp",
    "apply_text",
    "compose_text",
    "transform_text",
    "text_op",
    "base_length",
    "Prim",
    "transform",
    "transform_prim",
    "apply",
    "compose",
    "empty_state",
    "OTClient",
    "OTServer",
    "JupiterSite",
    "JupiterServer",
    "OTError",
    "OTReplica",
    "OTRelay",
]

TextOp = list  # list[int | str]
Prim = tuple  # ("note", TextOp) | ("token", id, x, y) | ("stroke_add", id, pts) | ("stroke_ins", id, index, pts) | ("stroke_del", id)


class OTError(ValueError):
    """An operation does not fit the document it is applied to."""


# -- text operations --------------------------------------------------------------


def _push(op: TextOp, c: int | str) -> None:
    """Append a component, merging with the last one of the same kind (ot.js normal form: insert before delete)."""
    if c == 0 or c == "":
        return
    if op:
        last = op[-1]
        if isinstance(c, str):
            if isinstance(last, str):
                op[-1] = last + c
                return
            if isinstance(last, int) and last < 0:
                # Keep inserts before deletes so equal operations have one form.
                if len(op) >= 2 and isinstance(op[-2], str):
                    op[-2] = op[-2] + c
                else:
                    op.insert(len(op) - 1, c)
                return
        elif isinstance(last, int) and (last > 0) == (c > 0):
            op[-1] = last + c
            return
    op.append(c)


def text_op(doc_len: int, pos: int, ndel: int, ins: str) -> TextOp:
    """The operation for one trace patch: at ``pos`` delete ``ndel`` code points, insert ``ins``."""
    if pos < 0 or ndel < 0 or pos + ndel > doc_len:
        raise OTError(f"patch ({pos}, {ndel}) does not fit a document of {doc_len} code points")
    op: TextOp = []
    _push(op, pos)
    _push(op, ins)
    _push(op, -ndel)
    _push(op, doc_len - pos - ndel)
    return op


def base_length(op: TextOp) -> int:
    return sum(c if c > 0 else -c for c in op if isinstance(c, int))


def target_length(op: TextOp) -> int:
    return sum(c if isinstance(c, int) and c > 0 else len(c) if isinstance(c, str) else 0 for c in op)


def apply_text(doc: str, op: TextOp) -> str:
    if base_length(op) != len(doc):
        raise OTError(f"operation spans {base_length(op)} code points, the document has {len(doc)}")
    parts, i = [], 0
    for c in op:
        if isinstance(c, str):
            parts.append(c)
        elif c > 0:
            parts.append(doc[i : i + c])
            i += c
        else:
            i -= c
    return "".join(parts)


def compose_text(a: TextOp, b: TextOp) -> TextOp:
    """One operation with the effect of ``a`` then ``b``."""
    if target_length(a) != base_length(b):
        raise OTError("compose: the second operation does not start where the first ends")
    out: TextOp = []
    ia, ib = iter(a), iter(b)
    x, y = next(ia, None), next(ib, None)
    while x is not None or y is not None:
        if isinstance(x, int) and x < 0:
            _push(out, x)
            x = next(ia, None)
        elif isinstance(y, str):
            _push(out, y)
            y = next(ib, None)
        elif x is None or y is None:
            raise OTError("compose: operations of different lengths")
        elif isinstance(x, str):
            if y > 0:  # retain an insert: keep (part of) it
                n = min(len(x), y)
                _push(out, x[:n])
                x = x[n:] or next(ia, None)
                y = (y - n) or next(ib, None)
            else:  # delete an insert: nothing left
                n = min(len(x), -y)
                x = x[n:] or next(ia, None)
                y = (y + n) or next(ib, None)
        else:  # x retain
            n = min(x, abs(y))
            _push(out, n if y > 0 else -n)
            x = (x - n) or next(ia, None)
            y = (y - n if y > 0 else y + n) or next(ib, None)
    return out


def _as_insert(op: TextOp) -> tuple[int, str, int] | None:
    """``(pos, text, document length)`` when ``op`` only inserts one string (typing), else None."""
    n = len(op)
    if n == 3:
        x, t, y = op
        if type(t) is str and type(x) is int and type(y) is int and x > 0 and y > 0:
            return x, t, x + y
    elif n == 2:
        x, y = op
        if type(x) is str and type(y) is int and y > 0:
            return 0, x, y
        if type(y) is str and type(x) is int and x > 0:
            return x, y, x
    elif n == 1 and type(op[0]) is str:
        return 0, op[0], 0
    return None


def _insert_op(pos: int, text: str, length: int) -> TextOp:
    return ([pos] if pos else []) + [text] + ([length - pos] if length > pos else [])


def transform_text(a: TextOp, b: TextOp) -> tuple[TextOp, TextOp]:
    """``(a', b')`` for two operations on one document; ``a`` inserts first on a tie.

    Two plain inserts (most of a typing trace) take a shortcut with the same result as the general walk
    (a test holds them equal).
    """
    fa, fb = _as_insert(a), _as_insert(b)
    if fa is not None and fb is not None and fa[2] == fb[2]:
        (pa, sa, n), (pb, sb, _) = fa, fb
        if pa <= pb:
            return _insert_op(pa, sa, n + len(sb)), _insert_op(pb + len(sa), sb, n + len(sa))
        return _insert_op(pa + len(sb), sa, n + len(sb)), _insert_op(pb, sb, n + len(sa))
    return _transform_walk(a, b)


def _transform_walk(a: TextOp, b: TextOp) -> tuple[TextOp, TextOp]:
    """``transform_text`` for any two operations: one walk over both."""
    if base_length(a) != base_length(b):
        raise OTError("transform: operations on documents of different lengths")
    a2: TextOp = []
    b2: TextOp = []
    ia, ib = iter(a), iter(b)
    x, y = next(ia, None), next(ib, None)
    while x is not None or y is not None:
        if isinstance(x, str):
            _push(a2, x)
            _push(b2, len(x))
            x = next(ia, None)
        elif isinstance(y, str):
            _push(a2, len(y))
            _push(b2, y)
            y = next(ib, None)
        elif x is None or y is None:
            raise OTError("transform: operations of different lengths")
        elif x > 0 and y > 0:
            n = min(x, y)
            _push(a2, n)
            _push(b2, n)
            x, y = (x - n) or next(ia, None), (y - n) or next(ib, None)
        elif x < 0 and y < 0:  # both delete the same span
            n = min(-x, -y)
            x, y = (x + n) or next(ia, None), (y + n) or next(ib, None)
        elif x < 0:  # a deletes what b retains
            n = min(-x, y)
            _push(a2, -n)
            x, y = (x + n) or next(ia, None), (y - n) or next(ib, None)
        else:  # b deletes what a retains
            n = min(x, -y)
            _push(b2, -n)
            x, y = (x - n) or next(ia, None), (y + n) or next(ib, None)
    return a2, b2


# -- tabletop operations -------------------------------------------------------------


def empty_state() -> dict[str, Any]:
    return {"note": "", "tokens": {}, "strokes": {}}


def apply(state: dict[str, Any], ops: list[Prim]) -> dict[str, Any]:
    """Apply a tabletop operation in place and return the state: all of it or, if any part is invalid, none of it.

    The parts are staged (the note as a new string, touched strokes copied on write) and committed at the end, so
    an operation whose second part is invalid leaves the server's state as it was, in step with its history.
    """
    note = state["note"]
    tokens: dict[str, list[Any]] = {}
    strokes: dict[str, list[Any] | None] = {}  # None: deleted
    for p in ops:
        kind = p[0]
        if kind == "note":
            note = apply_text(note, p[1])
        elif kind == "token":
            tokens[p[1]] = [p[2], p[3]]
        elif kind == "stroke_add":
            strokes[p[1]] = list(p[2])
        elif kind == "stroke_ins":
            staged = p[1] in strokes
            pts = strokes[p[1]] if staged else state["strokes"].get(p[1])
            if pts is None:
                raise OTError(f"stroke {p[1]!r} does not exist")
            if not staged:
                pts = strokes[p[1]] = list(pts)
            pts[p[2] : p[2]] = p[3]
        elif kind == "stroke_del":
            strokes[p[1]] = None
        else:
            raise OTError(f"unknown operation {kind!r}")
    state["note"] = note
    state["tokens"].update(tokens)
    for sid, pts in strokes.items():
        if pts is None:
            state["strokes"].pop(sid, None)
        else:
            state["strokes"][sid] = pts
    return state


def transform_prim(a: Prim, b: Prim) -> tuple[Prim | None, Prim | None]:
    """``(a', b')`` for two primitives; ``None`` means the primitive has no effect any more.

    ``a`` is the operation the server orders last (the incoming one): its token move
    wins, and its insert goes first on a tie.
    """
    ka, kb = a[0], b[0]
    if ka == "note" and kb == "note":
        x, y = transform_text(a[1], b[1])
        return ("note", x), ("note", y)
    if ka == "note" or kb == "note" or a[1] != b[1]:
        return a, b  # different objects: independent
    if ka == kb and ka in ("token", "stroke_add"):
        return a, None  # one register: the later in server order wins
    if ka == "stroke_del" and kb == "stroke_del":
        return None, None
    if ka == "stroke_del":
        return a, None  # the deleted stroke stays deleted
    if kb == "stroke_del":
        return None, b
    if ka == "stroke_ins" and kb == "stroke_ins":
        if a[2] <= b[2]:
            return a, ("stroke_ins", b[1], b[2] + len(a[3]), b[3])
        return ("stroke_ins", a[1], a[2] + len(b[3]), a[3]), b
    return a, b  # stroke_add with an id the other never saw: ids are unique per client


def transform(a: list[Prim], b: list[Prim]) -> tuple[list[Prim], list[Prim]]:
    """Transform two tabletop operations (lists of primitives) against each other."""
    out_a: list[Prim] = []
    for pa in a:
        cur: Prim | None = pa
        nb: list[Prim] = []
        for pb in b:
            if cur is None:
                nb.append(pb)
                continue
            cur, pb2 = transform_prim(cur, pb)
            if pb2 is not None:
                nb.append(pb2)
        b = nb
        if cur is not None:
            out_a.append(cur)
    return out_a, b


def compose(a: list[Prim], b: list[Prim]) -> list[Prim]:
    """``a`` then ``b`` as one operation; adjacent note operations are composed into one."""
    out = list(a)
    for p in b:
        if p[0] == "note" and out and out[-1][0] == "note":
            out[-1] = ("note", compose_text(out[-1][1], p[1]))
        else:
            out.append(p)
    return out


# -- the central-server protocol -------------------------------------------------------


@dataclass
class OTClient:
    """The ot.js client: at most one operation in flight; later local edits wait, composed, in a buffer."""

    state: dict[str, Any] = field(default_factory=empty_state)
    revision: int = 0
    outstanding: list[Prim] | None = None
    buffer: list[Prim] | None = None

    @property
    def mode(self) -> str:
        if self.outstanding is None:
            return "synchronized"
        return "awaiting_confirm" if self.buffer is None else "awaiting_with_buffer"

    def local(self, ops: list[Prim]) -> tuple[int, list[Prim]] | None:
        """Apply a local edit; return ``(revision, op)`` to send now, or None if it waits in the buffer."""
        apply(self.state, ops)
        if self.outstanding is None:
            self.outstanding = list(ops)
            return self.revision, self.outstanding
        self.buffer = list(ops) if self.buffer is None else compose(self.buffer, ops)
        return None

    def ack(self) -> tuple[int, list[Prim]] | None:
        """The server applied our outstanding operation; return the buffer to send next, if any."""
        if self.outstanding is None:
            raise OTError("acknowledgement while synchronized")
        self.revision += 1
        self.outstanding, self.buffer = self.buffer, None
        return (self.revision, self.outstanding) if self.outstanding is not None else None

    def server_op(self, ops: list[Prim]) -> None:
        """Another client's operation, in server order: transform past our pending edits and apply."""
        self.revision += 1
        if self.outstanding is not None:
            self.outstanding, ops = transform(self.outstanding, ops)
            if self.buffer is not None:
                self.buffer, ops = transform(self.buffer, ops)
        apply(self.state, ops)


@dataclass
class OTServer:
    """The central server: one history; an operation made at revision r is transformed against history[r:]."""

    state: dict[str, Any] = field(default_factory=empty_state)
    history: list[list[Prim]] = field(default_factory=list)

    @property
    def revision(self) -> int:
        return len(self.history)

    def receive(self, revision: int, ops: list[Prim]) -> list[Prim]:
        """Apply a client's operation; return it as transformed, for every other client."""
        if not 0 <= revision <= len(self.history):
            raise OTError(f"revision {revision} is not in the server's history (0..{len(self.history)})")
        for concurrent in self.history[revision:]:
            ops, _ = transform(ops, concurrent)
        apply(self.state, ops)
        self.history.append(ops)
        return ops


@dataclass
class JupiterSite:
    """One side of two-party Jupiter: messages carry how many of the receiver's operations the sender had seen."""

    priority: bool
    state: dict[str, Any] = field(default_factory=empty_state)
    sent: int = 0
    received: int = 0
    pending: list[tuple[int, list[Prim]]] = field(default_factory=list)

    def local(self, ops: list[Prim]) -> tuple[list[Prim], int]:
        """Apply a local edit; return the message ``(op, operations of the other side seen)``."""
        apply(self.state, ops)
        return self.record(ops)

    def record(self, ops: list[Prim]) -> tuple[list[Prim], int]:
        """Note an operation already applied on this side (a server link: the server's state holds it); return the message."""
        self.pending.append((self.sent, list(ops)))
        self.sent += 1
        return list(ops), self.received

    def integrate(self, ops: list[Prim], seen: int) -> list[Prim]:
        """The other side's operation, made after it had seen ``seen`` of ours, transformed past the rest of ours (not applied)."""
        if not 0 <= seen <= self.sent:
            raise OTError(f"the other side saw {seen} of our operations; we sent {self.sent}")
        self.pending = [(n, p) for n, p in self.pending if n >= seen]
        out = []
        for n, mine in self.pending:
            if self.priority:
                mine, ops = transform(mine, ops)
            else:
                ops, mine = transform(ops, mine)
            out.append((n, mine))
        self.pending = out
        self.received += 1
        return ops

    def receive(self, ops: list[Prim], seen: int) -> None:
        """The other side's operation, made after it had seen ``seen`` of ours: transform and apply."""
        apply(self.state, self.integrate(ops, seen))


@dataclass
class JupiterServer:
    """The Jupiter central server for any number of clients (Nichols et al., 1995): one history, one two-party link per client.

    Each client is a ``JupiterSite(priority=True)`` and sends every edit at once with how many of the
    server's messages to it it had applied. The server's end of that client's link
    (``JupiterSite(priority=False)``, its own state unused) transforms the operation past the server's
    messages the client had not yet applied; the result fits the server's state, is applied, appended to
    the history and sent down every other link. The incoming operation is transformed as the one ordered
    last (its token move wins, its insert goes first on a tie), the rule ``OTServer`` follows. Unlike the
    ot.js client, nothing waits for an acknowledgement, so a client's edits reach the others one by one,
    as they were made.
    """

    state: dict[str, Any] = field(default_factory=empty_state)
    history: list[list[Prim]] = field(default_factory=list)
    links: dict[Any, JupiterSite] = field(default_factory=dict)

    def connect(self, client: Any) -> list[tuple[list[Prim], int]]:
        """A client joins with an empty document: the history so far, as the messages it must apply first."""
        if client in self.links:
            raise OTError(f"client {client!r} is already connected")
        link = self.links[client] = JupiterSite(priority=False)
        return [link.record(ops) for ops in self.history]

    def receive(self, client: Any, ops: list[Prim], seen: int) -> list[tuple[Any, list[Prim], int]]:
        """A client's operation, made after it had applied ``seen`` of the server's messages to it: ``(client, op, seen)`` to send."""
        link = self.links.get(client)
        if link is None:
            raise OTError(f"operation from {client!r}, which never connected")
        ops = link.integrate(ops, seen)
        apply(self.state, ops)
        self.history.append(ops)
        out = []
        for c, other in self.links.items():
            if c != client:
                op, s = other.record(ops)
                out.append((c, op, s))
        return out


# -- the tabletop over messages (the same interface as the CRDT and LWW replicas) ------


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _prims(raw: list) -> list[Prim]:
    return [tuple(p) for p in raw]


class OTReplica:
    """A tabletop client over OTClient: edits become operations; messages are JSON.

    Client to server: ``["op", revision, op]`` and, on reconnect, ``["hello", revision]``.
    Server to client: ``["ack", r]`` and ``["op", op, r]``, ``r`` the operation's place in the
    server's history: the client checks it arrives in order. The server forwards live operations
    only to clients that said hello, after replaying what they missed.
    """

    def __init__(self) -> None:
        self.client = OTClient()
        self.outbox: list[bytes] = []

    def _local(self, ops: list[Prim]) -> None:
        send = self.client.local(ops)
        if send is not None:
            self.outbox.append(_encode(["op", send[0], send[1]]))

    def replace_note(self, pos: int, n: int, s: str) -> None:
        """At code point ``pos`` delete ``n`` and insert ``s``, as one operation."""
        self._local([("note", text_op(len(self.client.state["note"]), pos, n, s))])

    def insert_note(self, pos: int, s: str) -> None:
        self.replace_note(pos, 0, s)

    def delete_note(self, pos: int, n: int) -> None:
        if n:
            self.replace_note(pos, n, "")

    def move_token(self, tid: str, x: float, y: float) -> None:
        self._local([("token", tid, x, y)])

    def add_stroke(self, sid: str, points: list[float]) -> None:
        self._local([("stroke_add", sid, list(points))])

    def extend_stroke(self, sid: str, points: list[float]) -> bool:
        pts = self.client.state["strokes"].get(sid)
        if pts is None:
            return False
        self._local([("stroke_ins", sid, len(pts), list(points))])
        return True

    def delete_stroke(self, sid: str) -> None:
        if sid in self.client.state["strokes"]:
            self._local([("stroke_del", sid)])

    def take_outbox(self) -> list[bytes]:
        out, self.outbox = self.outbox, []
        return out

    def hello(self) -> bytes:
        """Sent on (re)connect: the server replays what this client missed."""
        return _encode(["hello", self.client.revision])

    @property
    def settled(self) -> bool:
        return self.client.outstanding is None

    def receive(self, msg: bytes) -> list[bytes]:
        m = json.loads(msg)
        if m[-1] != self.client.revision:
            raise OTError(f"server operation {m[-1]} arrived at revision {self.client.revision}: the channel lost or reordered one")
        if m[0] == "ack":
            send = self.client.ack()
            return [_encode(["op", send[0], send[1]])] if send else []
        if m[0] == "op":
            self.client.server_op(_prims(m[1]))
            return []
        raise OTError(f"unknown OT message {m[0]!r}")

    def view(self) -> dict[str, Any]:
        s = self.client.state
        return {
            "note": s["note"],
            "tokens": {k: [float(v[0]), float(v[1])] for k, v in s["tokens"].items()},
            "strokes": {k: [float(p) for p in v] for k, v in s["strokes"].items()},
        }


class OTRelay:
    """The server side over messages: transforms, acknowledges the sender, forwards to the others."""

    def __init__(self) -> None:
        self.server = OTServer()
        self.joined: set[Any] = set()  # clients that said hello: only they get live operations

    def on_message(self, sender: Any, msg: bytes, clients: list[Any]) -> list[tuple[Any, bytes]]:
        m = json.loads(msg)
        clients = [c for c in clients if c in self.joined]
        if m[0] == "op":
            ops = self.server.receive(int(m[1]), _prims(m[2]))
            r = self.server.revision - 1
            out = _encode(["op", ops, r])
            return [(sender, _encode(["ack", r]))] + [(c, out) for c in clients if c != sender]
        if m[0] == "hello":
            # A reconnecting client goes offline only when synchronized, so history[rev:] holds no op of its own.
            start = int(m[1])
            self.joined.add(sender)
            return [(sender, _encode(["op", ops, start + k])) for k, ops in enumerate(self.server.history[start:])]
        raise OTError(f"unknown OT message {m[0]!r}")

    def on_connect(self, client: Any) -> list[tuple[Any, bytes]]:
        return []
