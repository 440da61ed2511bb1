"""The virtual tabletop's real-time messages as plain app-level dicts, generated deterministically.

Every float is a multiple of 0.25 well below 2**22, so it is exactly
representable in float32 and survives every format (protobuf's ``float``
included) unchanged; every stream comes from a seeded ``random.Random``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

__all__ = [
    "MESSAGE_KINDS",
    "MIX",
    "TYPE_IDS",
    "TYPE_NAMES",
    "UNKNOWN_TYPE_ID",
    "FIELDS",
    "sample",
    "stream",
]

MESSAGE_KINDS = ("cursor", "token_move", "chat", "stroke", "snapshot")

#: Share of each kind in the ``mixed`` stream: pointer traffic dominates a live session.
MIX = {"cursor": 0.70, "token_move": 0.22, "chat": 0.05, "stroke": 0.025, "snapshot": 0.005}

#: The numeric type id of the positional layouts (the seed's ``[1, 100, 200, "user123"]``)
#: and the field number of the message in protobuf's ``Envelope``.
TYPE_IDS = {kind: number for number, kind in enumerate(MESSAGE_KINDS, start=1)}
TYPE_NAMES = {number: kind for kind, number in TYPE_IDS.items()}

#: The id a loose encoder writes for a type name that has none (the battery's unknown type).
UNKNOWN_TYPE_ID = 99

#: Field order of each message: its position after the type id, and its protobuf number minus one.
FIELDS: dict[str, tuple[str, ...]] = {
    "cursor": ("x", "y", "userId"),
    "token_move": ("tokenId", "x", "y", "userId", "seq"),
    "chat": ("userId", "text", "ts"),
    "stroke": ("strokeId", "userId", "color", "width", "points"),
    "snapshot": ("tokens",),
    "token": ("id", "name", "x", "y", "size", "color", "hp", "hidden", "tags"),
}

_PLAYERS = ("user123", "user456", "user789", "user314", "user271")
_COLORS = ("#e63946", "#457b9d", "#2a9d8f", "#f4a261", "#8338ec", "#1d3557")
_TAGS = ("npc", "enemy", "ally", "boss", "undead", "flying", "prone", "concentrating")
_NAMES = ("Goblin", "Skeleton", "Orc Archer", "Wolf", "Bandit", "Cultist", "Zombie", "Giant Spider")
_HEROES = ("Aragorn", "Lyra Dawnstar", "Brother Éamon", "Kestrel", "Grimbold Ironfoot")
_LINES = (
    "Nat 20 on stealth 🎲 so the rogue slips past the two guards at the gate, right?",
    "I cast Fireball on the goblins near the bridge: that is 8d6, rolling now 🔥",
    "Can someone remind me where we left the cart? Somewhere near the café in Ébène",
    "DM here: quick break, back in five minutes. Please don't open the chest yet!",
    "Grimbold drinks the potion and moves ten feet behind the pillar to take cover",
    "lol the wolf rolled a 1 again, that's three in a row 😂 the dice hate you today",
    "I'd like to ready an action: if the cultist starts chanting, I shoot an arrow.",
)

_WORDS = " ".join(_LINES).split()


def _q(value: float) -> float:
    """Round to a multiple of 0.25, which float32 represents exactly."""
    return round(value * 4) / 4


def _uid(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=8))


class _World:
    """The shared state of a session, so consecutive messages are related as in a real game."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.ts = 1_700_000_000_000
        self.seq = 0
        self.cursors = {p: [rng.randrange(200, 1800), rng.randrange(200, 1000)] for p in _PLAYERS}
        self.cursors["user123"] = [100, 200]  # the seed's example is the first cursor message
        self.tokens = [self._token(i) for i in range(100)]

    def _token(self, i: int) -> dict[str, Any]:
        rng = self.rng
        hero = i < len(_HEROES)
        return {
            "id": _uid(rng, "tok_"),
            "name": _HEROES[i] if hero else f"{rng.choice(_NAMES)} {i}",
            "x": _q(rng.uniform(0, 3000)),
            "y": _q(rng.uniform(0, 2000)),
            "size": rng.choice((1, 1, 1, 2, 3)),
            "color": rng.choice(_COLORS),
            "hp": rng.randrange(1, 120),
            "hidden": rng.random() < 0.1,
            "tags": rng.sample(_TAGS, rng.choice((0, 1, 1, 2, 3))),
        }

    def tick(self) -> None:
        self.ts += self.rng.randrange(5, 60)

    def cursor(self) -> dict[str, Any]:
        user = "user123" if self.seq == 0 else self.rng.choice(_PLAYERS)
        pos = self.cursors[user]
        msg = {"type": "cursor", "x": pos[0], "y": pos[1], "userId": user}
        pos[0] = max(0, pos[0] + self.rng.randint(-25, 25))  # random walk of a moving pointer
        pos[1] = max(0, pos[1] + self.rng.randint(-25, 25))
        return msg

    def token_move(self) -> dict[str, Any]:
        token = self.rng.choice(self.tokens)
        token["x"] = _q(token["x"] + self.rng.uniform(-40, 40))
        token["y"] = _q(token["y"] + self.rng.uniform(-40, 40))
        return {
            "type": "token_move",
            "tokenId": token["id"],
            "x": token["x"],
            "y": token["y"],
            "userId": self.rng.choice(_PLAYERS),
            "seq": self.seq,
        }

    def chat(self) -> dict[str, Any]:
        text = _LINES[0] if self.seq == 0 else self._line()
        return {"type": "chat", "userId": self.rng.choice(_PLAYERS), "text": text, "ts": self.ts}

    def _line(self) -> str:
        # Words of the sample lines in a new order: a stream of verbatim repeats would compress unrealistically well.
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < 80:
            words.append(self.rng.choice(_WORDS))
        return " ".join(words)

    def stroke(self) -> dict[str, Any]:
        rng = self.rng
        x, y, points = rng.uniform(100, 2500), rng.uniform(100, 1500), []
        for _ in range(200):  # a freehand line: small steps in a slowly turning direction
            x, y = x + rng.uniform(-2, 6), y + rng.uniform(-4, 4)
            points += [_q(x), _q(y)]
        return {
            "type": "stroke",
            "strokeId": _uid(rng, "str_"),
            "userId": rng.choice(_PLAYERS),
            "color": rng.choice(_COLORS),
            "width": rng.choice((1.5, 2.5, 4.0, 8.0)),
            "points": points,
        }

    def snapshot(self) -> dict[str, Any]:
        for token in self.rng.sample(self.tokens, 5):  # some damage between snapshots
            token["hp"] = max(0, token["hp"] - self.rng.randrange(0, 12))
        return {"type": "snapshot", "tokens": [dict(t, tags=list(t["tags"])) for t in self.tokens]}

    def next(self, kind: str) -> dict[str, Any]:
        msg = getattr(self, kind)()
        self.seq += 1
        self.tick()
        return msg


def _messages(kind: str, seed: int) -> Iterator[dict[str, Any]]:
    world = _World(random.Random(seed))
    kinds, weights = list(MIX), list(MIX.values())
    while True:
        yield world.next(world.rng.choices(kinds, weights)[0] if kind == "mixed" else kind)


def stream(kind: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` related messages of one kind (or ``"mixed"`` session traffic), the same for the same seed."""
    if kind not in MESSAGE_KINDS and kind != "mixed":
        raise ValueError(f"unknown message kind {kind!r}")
    gen = _messages(kind, seed)
    return [next(gen) for _ in range(n)]


def sample(kind: str) -> dict[str, Any]:
    """The representative message of a kind; ``sample("cursor")`` is the seed's example."""
    return stream(kind, 1)[0]
