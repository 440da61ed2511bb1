"""The tabletop workload, the replicas of each option behind one interface, and a simulated network.

Every option's replica offers the same edits (``move_token``,
``add_stroke``, ``extend_stroke``, ``delete_stroke``, ``insert_note``,
``delete_note``), an outbox of messages, ``receive(msg) -> replies`` and
``view()`` (the state as plain data). Every server core offers
``on_message(sender, msg, clients) -> [(target, msg)]`` and ``on_connect``.

``Workload`` makes random tabletop edits whose intents can be checked in the
final state: every note insert is a unique marker, every stroke point unique,
every token move a unique position. ``Ledger.lost(view)`` counts the intents
missing from a final state. A token keeps one position by design (the last
writer wins in every option), so a token move counts as lost only when the
final position is one its author had already seen (directly, or through a
chain of moves each made after seeing the previous): that move, made later and
knowing the old position, should have replaced it. The
``Network`` delivers messages over per-client FIFO channels (as a WebSocket
does) in any interleaving, with clients disconnected for a while: it is the
sans-I/O test bed of the property tests and the intent scenario.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from spikes.s02_state_sync import crdt, lww, ot

__all__ = ["OPTIONS", "make_replica", "make_server", "Ledger", "Workload", "Network", "lost_total"]

OPTIONS = ("ot", "crdt", "lww")


def make_replica(option: str, index: int, now: Any = None) -> Any:
    """A fresh client replica of an option (``index`` names it: CRDT client id, LWW replica id)."""
    if option == "ot":
        return ot.OTReplica()
    if option == "crdt":
        return crdt.CrdtReplica(client_id=index + 1)
    if option == "lww":
        return lww.LWWReplica(f"c{index:03d}", now)
    raise ValueError(f"unknown option {option!r} (one of {', '.join(OPTIONS)})")


def make_server(option: str) -> Any:
    """The server core of an option."""
    if option == "ot":
        return ot.OTRelay()
    if option == "crdt":
        return crdt.CrdtRelay()
    if option == "lww":
        return lww.LWWServer()
    raise ValueError(f"unknown option {option!r} (one of {', '.join(OPTIONS)})")


@dataclass
class Ledger:
    """Every intent the clients expressed, to check against a final state."""

    inserted: set[str] = field(default_factory=set)
    deleted_markers: set[str] = field(default_factory=set)
    added: set[str] = field(default_factory=set)
    deleted_strokes: set[str] = field(default_factory=set)
    extended: list[tuple[str, float]] = field(default_factory=list)
    moves: int = 0
    #: Per token: every position it was moved to -> the position its author saw before moving (None: none yet).
    token_moves: dict[str, dict[tuple[float, float], tuple[float, float] | None]] = field(default_factory=dict)

    def move(self, tid: str, pos: tuple[float, float], seen: Any) -> None:
        """Record a move of ``tid`` to ``pos`` made by a client whose replica showed it at ``seen``."""
        self.token_moves.setdefault(tid, {})[pos] = None if seen is None else (float(seen[0]), float(seen[1]))
        self.moves += 1

    def lost_moves(self, tokens: dict[str, Any]) -> int:
        """Token moves lost in ``tokens`` (the final positions).

        A move is lost when its author had seen the token's final position, directly or through
        a chain of moves (it came after that position and should have replaced it); every move
        of a token that is missing or stands at a position no move set is lost too.
        """
        lost = 0
        for tid, moves in self.token_moves.items():
            pos = tokens.get(tid)
            final = None if pos is None else (float(pos[0]), float(pos[1]))
            if final not in moves:
                lost += len(moves)
                continue
            after: dict[Any, list[tuple[float, float]]] = {}
            for p, seen in moves.items():
                after.setdefault(seen, []).append(p)
            later: set[tuple[float, float]] = set()
            stack = list(after.get(final, []))
            while stack:
                p = stack.pop()
                if p not in later:
                    later.add(p)
                    stack.extend(after.get(p, []))
            lost += len(later)
        return lost

    def lost(self, view: dict[str, Any]) -> dict[str, int]:
        """Intents missing from ``view``, by kind; extensions of a deleted stroke are counted apart."""
        note, strokes = view["note"], view["strokes"]
        points = {sid: set(pts) for sid, pts in strokes.items()}
        out = {
            "note_insert": sum(1 for m in self.inserted - self.deleted_markers if m not in note),
            "note_delete": sum(1 for m in self.deleted_markers if m in note),
            "stroke_add": sum(1 for s in self.added - self.deleted_strokes if s not in strokes),
            "stroke_delete": sum(1 for s in self.deleted_strokes if s in strokes),
            "stroke_extend": sum(1 for s, p in self.extended if s in points and p not in points[s]),
            "token_move": self.lost_moves(view.get("tokens", {})),
        }
        out["extend_of_deleted_stroke"] = sum(1 for s, _ in self.extended if s in self.deleted_strokes and s not in strokes)
        return out

    @property
    def intents(self) -> int:
        moves = sum(len(m) for m in self.token_moves.values())
        return len(self.inserted) + len(self.deleted_markers) + len(self.added) + len(self.deleted_strokes) + len(self.extended) + moves


def lost_total(lost: dict[str, int]) -> int:
    """Lost intents, not counting extensions discarded because their stroke was deleted (every option's rule)."""
    return sum(v for k, v in lost.items() if k != "extend_of_deleted_stroke")


class Workload:
    """Random tabletop edits by one client; ``mix`` weighs token moves, stroke edits and note edits."""

    def __init__(self, client: int, ledger: Ledger, rng: random.Random, tokens: int = 5, mix: tuple[int, int, int] = (5, 3, 2)):
        self.client, self.ledger, self.rng, self.tokens, self.mix = client, ledger, rng, tokens, mix
        self.k = 0
        self.mine: list[str] = []

    def edit(self, replica: Any) -> str:
        """Make one random edit on ``replica``; return its kind."""
        self.k += 1
        c, k, rng = self.client, self.k, self.rng
        kind = rng.choices(("token", "stroke", "note"), weights=self.mix)[0]
        if kind == "token":
            tid = f"t{rng.randrange(self.tokens)}"
            seen = replica.view()["tokens"].get(tid)  # what this client's replica shows: the move replaces it
            replica.move_token(tid, float(c), float(k))
            self.ledger.move(tid, (float(c), float(k)), seen)
            return "token"
        view = replica.view()
        if kind == "stroke":
            live = list(view["strokes"])
            r = rng.random()
            if live and r < 0.5:
                sid = rng.choice(live)
                p = c * 1_000_000 + k + 0.5
                if replica.extend_stroke(sid, [p]):
                    self.ledger.extended.append((sid, p))
                return "stroke_extend"
            if live and r < 0.6:
                sid = rng.choice(live)
                replica.delete_stroke(sid)
                self.ledger.deleted_strokes.add(sid)
                return "stroke_delete"
            sid = f"s{c}.{k}"
            replica.add_stroke(sid, [float(c), float(k)])
            self.ledger.added.add(sid)
            return "stroke_add"
        note = view["note"]
        mine = [m for m in self.mine if m in note]
        if mine and rng.random() < 0.2:
            m = rng.choice(mine)
            replica.delete_note(note.index(m), len(m))
            self.ledger.deleted_markers.add(m)
            return "note_delete"
        marker = f"|c{c}.{k}é"  # non-ASCII on purpose: positions count code points
        bounds = [i for i, ch in enumerate(note) if ch == "|"] + [len(note)]
        replica.insert_note(rng.choice(bounds), marker)
        self.mine.append(marker)
        self.ledger.inserted.add(marker)
        return "note_insert"


class Network:
    """Clients and a server over per-client FIFO channels, delivered one message at a time in any order."""

    def __init__(self, option: str, n: int, now: Any = None):
        self.option = option
        self.server = make_server(option)
        self.replicas = [make_replica(option, i, now) for i in range(n)]
        self.up: list[deque[bytes]] = [deque() for _ in range(n)]
        self.down: list[deque[bytes]] = [deque() for _ in range(n)]
        self.connected = [True] * n
        self.bytes = 0
        for i, r in enumerate(self.replicas):
            if hasattr(r, "hello"):  # an OT client joins before the server forwards it anything
                self.up[i].append(r.hello())

    def flush(self, i: int) -> None:
        """Move client i's outbox into its upstream channel."""
        self.up[i].extend(self.replicas[i].take_outbox())

    def deliver_up(self, i: int) -> None:
        msg = self.up[i].popleft()
        self.bytes += len(msg)
        for target, out in self.server.on_message(i, msg, list(range(len(self.replicas)))):
            self.down[target].append(out)

    def deliver_down(self, i: int) -> None:
        msg = self.down[i].popleft()
        self.bytes += len(msg)
        self.up[i].extend(self.replicas[i].receive(msg))
        self.flush(i)

    def pending(self) -> list[tuple[str, int]]:
        """Channels with a message ready to deliver (a disconnected client's channels wait)."""
        out = [("up", i) for i, q in enumerate(self.up) if q and self.connected[i]]
        return out + [("down", i) for i, q in enumerate(self.down) if q and self.connected[i]]

    def step(self, rng: random.Random) -> bool:
        """Deliver one message from a random ready channel; False when none is ready."""
        ready = self.pending()
        if not ready:
            return False
        way, i = rng.choice(ready)
        (self.deliver_up if way == "up" else self.deliver_down)(i)
        return True

    def settle(self, rng: random.Random | None = None, limit: int = 1_000_000) -> int:
        """Reconnect everyone and deliver until every channel is empty; return the messages delivered."""
        rng = rng or random.Random(0)
        self.connected = [True] * len(self.replicas)
        for i in range(len(self.replicas)):
            self.flush(i)
        n = 0
        while self.step(rng):
            n += 1
            if n > limit:
                raise RuntimeError("the network did not settle")
        return n

    def views(self) -> list[dict[str, Any]]:
        return [r.view() for r in self.replicas]
