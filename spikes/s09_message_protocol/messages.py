"""The virtual tabletop's real-time messages as plain app-level dicts, generated deterministically.

Every float is a multiple of 0.25 well below 2**22, so it is exactly
representable in float32 and survives every format (protobuf's ``float``
included) unchanged; every stream comes from a seeded ``random.Random``.

A stream is one simulated session (:data:`STREAM_METHOD` says how it varies):
the ``mixed`` stream is its traffic in order, and the stream of one kind is the
messages of that kind taken from it in order, so the board changes between two
snapshots as much as it does in play. Without that, consecutive snapshots were
nearly identical and a shared deflate context shrank them 93 times.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

__all__ = [
    "MESSAGE_KINDS",
    "MIX",
    "MIX_BLOCK",
    "STREAM_METHOD",
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
#: The ``mixed`` stream holds exactly :data:`MIX` in each block of this many messages (shuffled within the block),
#: so a short stream is not skewed by chance (1000 independent draws gave 12 snapshots instead of 5).
MIX_BLOCK = 200

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
#: The chat sample's text (the first chat line of a session): non-ASCII on purpose.
_SAMPLE_LINE = "Nat 20 on stealth 🎲 so the rogue slips past the two guards at the gate, right?"

#: Chat vocabulary, most frequent first; a word is drawn with weight 1/rank (Zipf's law of word frequencies).
_VOCAB = tuple(
    dict.fromkeys(  # in first-seen order, each word once
        """
    the I to a you and it is that of on in we do he she they this can my what so be is not at with his
    for was just have if it's ok go get your I'm all me no yes one there but at up out now then did
    lol roll attack move turn wait guys yeah right back door goblin DM hit miss damage spell cast check
    round next first take two three four five ten feet more still any here how why who where when which
    sure think want need got let's look see try use open run room hall bridge cave tower chest key gold
    rogue wizard cleric fighter ranger bard paladin druid monk warlock sorcerer barbarian party healer
    initiative advantage disadvantage saving throw perception stealth insight persuasion athletics
    arcana history investigation survival sleight acrobatics intimidation deception medicine nature
    orc wolf bandit cultist zombie skeleton dragon spider troll ogre lich owlbear kobold gnoll imp mimic
    sword bow arrow dagger staff shield armor potion scroll rope torch ring amulet wand map cart horse
    fire ice lightning poison necrotic radiant thunder acid psychic healing bless shield haste fly
    darkness misty step fireball magic missile counterspell sneak inspiration rage smite wild shape
    behind around under over near far left right north south east west upstairs downstairs outside
    quick break brb afk back sorry thanks nice great awesome oops wow damn ugh haha gg nope maybe
    again already almost really probably exactly actually definitely anyway though because while
    said says ask asks tell told know knew remember forgot found lost saw heard killed died dead
    alive prone grappled stunned frightened charmed invisible concentrating unconscious exhausted
    bonus action reaction opportunity ready dash dodge disengage help hide search short long rest
    level hp AC DC d4 d6 d8 d10 d12 d20 crit nat twenty natural fail pass save half full
    tavern inn village city castle dungeon temple forest swamp mountain river road camp ship market
    king queen lord lady captain guard merchant priest innkeeper blacksmith stranger old man woman
    tonight tomorrow session last week next time snacks pizza ready everyone sound mic discord
    """.split()
    )
)
_VOCAB_WEIGHTS = tuple(1 / rank for rank in range(1, len(_VOCAB) + 1))
_EMOJI = ("🎲", "😂", "🔥", "💀", "⚔️", "🛡️", "👀", "🙏", "😅", "🧙")
#: Chat lengths in words: mostly short remarks, some sentences, a few long explanations.
_CHAT_LENGTHS = ((1, 3), (4, 9), (10, 18), (19, 40))
_CHAT_LENGTH_WEIGHTS = (0.30, 0.45, 0.20, 0.05)
_DICE = ("d4", "d6", "d8", "d10", "d12", "d20", "d100")
#: Points in a freehand stroke: log-uniform between these, so most are short marks (a tick, a circle round a token) and
#: a few are long paths (a wall, a route across the map); the first stroke of a session, the sample, has 200.
_STROKE_POINTS = (8, 600)
_STROKE_POINTS_LOG = (math.log(_STROKE_POINTS[0]), math.log(_STROKE_POINTS[1]))
_SAMPLE_STROKE_POINTS = 200

#: How the streams vary, for the spike's Method text.
STREAM_METHOD = (
    "Streams are seeded and reproducible: one simulated session of 5 players and 100 tokens "
    "(mix: cursor 70%, token move 22%, chat 5%, stroke 2.5%, snapshot 0.5%, exactly so in each block of "
    f"{MIX_BLOCK} messages, shuffled). Cursors random-walk per player; "
    "a token move shifts a random token by up to 40 px and carries a running sequence number; timestamps advance 5-59 ms "
    "per message; chat lines are 1-40 words drawn by Zipf weight from a vocabulary of "
    f"{len(_VOCAB)} tabletop words, with dice rolls, numbers and emoji; strokes are freehand lines with fresh ids and "
    f"{_STROKE_POINTS[0]}-{_STROKE_POINTS[1]} points (log-uniform: mostly short marks, a few long paths); "
    "between two snapshots tokens move, take damage, change conditions, and a defeated monster is replaced by a new one. "
    "The `mixed` stream is that session's traffic in order; the stream of one kind is the messages of that kind taken "
    "from the same session in order."
)


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
        self.queue: list[str] = []

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
        text = _SAMPLE_LINE if self.seq == 0 else self._line()
        return {"type": "chat", "userId": self.rng.choice(_PLAYERS), "text": text, "ts": self.ts}

    def _line(self) -> str:
        rng = self.rng
        if rng.random() < 0.15:  # a dice roll posted to the chat
            n, die, bonus = rng.choice((1, 1, 1, 2, 3, 4, 8)), rng.choice(_DICE), rng.randrange(-1, 9)
            rolls = [rng.randint(1, int(die[1:])) for _ in range(n)]
            return f"rolls {n}{die}{bonus:+d}: {' + '.join(map(str, rolls))} {bonus:+d} = {sum(rolls) + bonus}"
        low, high = rng.choices(_CHAT_LENGTHS, _CHAT_LENGTH_WEIGHTS)[0]
        words = rng.choices(_VOCAB, _VOCAB_WEIGHTS, k=rng.randint(low, high))
        if rng.random() < 0.2:
            words[rng.randrange(len(words))] = str(rng.randrange(1, 120))
        if rng.random() < 0.3:
            words.append(rng.choice(_EMOJI))
        text = " ".join(words)
        return text[0].upper() + text[1:] + rng.choice(("", "", "", ".", "?", "!", "..."))

    def stroke(self) -> dict[str, Any]:
        rng = self.rng
        # The first stroke of a session (the sample) has 200 points; later ones range from a quick tick to a long path.
        n = _SAMPLE_STROKE_POINTS if self.seq == 0 else round(math.exp(rng.uniform(*_STROKE_POINTS_LOG)))
        x, y, points = rng.uniform(100, 2500), rng.uniform(100, 1500), []
        for _ in range(n):  # a freehand line: small steps in a slowly turning direction
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
        return {"type": "snapshot", "tokens": [dict(t, tags=list(t["tags"])) for t in self.tokens]}

    def _fight(self) -> None:
        """What happens to the board in play besides the messages: damage, conditions, monsters replaced."""
        rng = self.rng
        token = rng.choice(self.tokens)
        token["hp"] = max(0, token["hp"] - rng.randrange(0, 12))
        if rng.random() < 0.3:
            tag = rng.choice(_TAGS[-2:])  # prone or concentrating, the conditions that come and go
            token["tags"] = [t for t in token["tags"] if t != tag] if tag in token["tags"] else [*token["tags"], tag]
        if token["hp"] == 0 and token["name"] not in _HEROES:  # a defeated monster leaves; a new one arrives
            self.tokens[self.tokens.index(token)] = self._token(len(_HEROES) + rng.randrange(1000))

    def next(self, kind: str) -> dict[str, Any]:
        msg: dict[str, Any] = getattr(self, kind)()
        self.seq += 1
        self.tick()
        if self.rng.random() < 0.1:
            self._fight()
        return msg

    def next_kind(self) -> str:
        """The kind of the session's next message: each block of 200 holds exactly :data:`MIX`, shuffled."""
        if not self.queue:
            self.queue = [kind for kind, share in MIX.items() for _ in range(round(share * MIX_BLOCK))]
            self.rng.shuffle(self.queue)
        return self.queue.pop()


def _messages(kind: str, seed: int) -> Iterator[dict[str, Any]]:
    world = _World(random.Random(seed))
    while True:
        msg = world.next(world.next_kind())  # every message is built, kept or not, so the session is the same
        if kind in ("mixed", msg["type"]):
            yield msg


def stream(kind: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` messages of one seeded session: all its traffic (``"mixed"``), or those of one kind, in order."""
    if kind not in MESSAGE_KINDS and kind != "mixed":
        raise ValueError(f"unknown message kind {kind!r}")
    gen = _messages(kind, seed)
    return [next(gen) for _ in range(n)]


def sample(kind: str) -> dict[str, Any]:
    """The representative message of a kind: the first of a fresh session; ``sample("cursor")`` is the seed's example."""
    return _World(random.Random(0)).next(kind)
