"""The feed's resume adapters: resume after the last broadcast number received, in the epoch it was numbered in.

``last-event-id`` (SSE and long polling) sends the point back as the feed's
``E-N`` text (a ``Last-Event-ID``, a cursor); ``last-seq-epoch`` (the engine's
WebSocket clients) sends it as a join's ``"after": N`` and ``"epoch": E``. Both
keep ``n`` and ``e`` as one pair, taken from the same message (see
:class:`FeedPosition`), and fall back to a plain ``N`` when the server sent no
epoch (a server older than the epoch: the old rules, ``history`` and ``future``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from harness.feed.client import FeedClient
from harness.load import protocol
from harness.load.clients import Client
from harness.load.clients.resume import Resume

__all__ = ["FeedPosition", "LastEventIdResume", "LastSeqEpochResume", "point_text"]


def point_text(epoch: str | None, n: int) -> str | int:
    """The feed's text resume point: ``E-N``, or the plain ``N`` (an int) when no epoch is known."""
    return n if epoch is None else f"{epoch}-{n}"


class FeedPosition(Resume):
    """Remember the room, the last ``n`` seen and its epoch ``e``; count resets, by reason.

    ``n`` is taken from broadcasts and resets (a reset moves the client to the
    HEAD it names), and from ``joined`` only before any other (a fresh member's
    view starts at the HEAD; a resumed one's ``joined`` names the HEAD while the
    replay after the resume point, or a reset, is still to come). Not from an
    ``ack``: the sender's ack may come before the stream's copy. The epoch comes
    with its ``n``, from the same message, never alone: had a resumed member
    taken a new server's epoch from its ``joined`` and then dropped before the
    ``reset`` that follows it, it would resume with the new epoch and its old
    ``N``, and silently miss the new server's first ``N`` broadcasts, the very
    gap the epoch is there to close. Resets are counted (``resets``), and by
    reason (``reset_reasons``: ``history``, ``future``, ``epoch``).
    """

    def __init__(self) -> None:
        self.room: str | None = None
        self.last: int | None = None
        self.epoch: str | None = None
        self.resets = 0
        self.reset_reasons: Counter[str] = Counter()

    @property
    def point(self) -> str | int | None:
        """The resume point as the feed's text (``E-N``; a plain ``N`` without an epoch); ``None`` before any."""
        return None if self.last is None else point_text(self.epoch, self.last)

    def _at(self, n: int, msg: dict[str, Any]) -> None:
        e = msg.get("e")
        self.last = n
        self.epoch = e if isinstance(e, str) and e else None

    def seen(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        n = msg.get("n")
        if not isinstance(n, int) or isinstance(n, bool):
            n = None
        if op == protocol.OP_BROADCAST and n is not None:
            self._at(n, msg)
        elif op == "reset":
            self.resets += 1
            self.reset_reasons[str(msg.get("reason"))] += 1
            if n is not None:
                self._at(n, msg)
        elif op == protocol.OP_JOINED:
            room = msg.get("room")
            if isinstance(room, str):
                self.room = room
            if self.last is None and n is not None:
                self._at(n, msg)


class LastEventIdResume(FeedPosition):
    """A reconnected SSE client sends the last ``E-N`` as ``Last-Event-ID``, a poller as its cursor.

    Like the engine's ``last-seq``, but for the feed's messages and with the
    epoch (see :class:`FeedPosition`). Before a reconnect the client is told its
    room and resume point, so it opens in ``connect``; the join carries
    ``"after"`` (the same text) too, as ``last-seq``'s does.
    """

    name = "last-event-id"
    transports = ("sse", "longpoll", "sse-h2", "longpoll-h2")

    def before_connect(self, client: Client) -> None:
        if self.room is not None and isinstance(client, FeedClient):
            client.room = self.room
            client.after = self.point

    def join(self, room: str) -> dict[str, Any]:
        msg = protocol.join_message(room)
        if self.last is not None:
            msg["after"] = self.point
        return msg


class LastSeqEpochResume(FeedPosition):
    """The engine's ``last-seq`` with the feed's epoch: rejoin a WebSocket feed with ``"after": N, "epoch": E``.

    ``last-seq`` sends ``"after"`` only, and a feed server takes that under the
    old rules: a restarted server that has numbered past N again replays from
    N + 1 as if nothing happened. This one sends the epoch of its N beside it
    (once it has seen one), so such a server answers with a ``reset`` (reason
    ``epoch``). Against a server that sends no epoch it is ``last-seq``, with
    :class:`FeedPosition`'s rules for which ``n`` to keep.
    """

    name = "last-seq-epoch"
    transports = ("ws", "ws-websockets")

    def join(self, room: str) -> dict[str, Any]:
        msg = protocol.join_message(room)
        if self.last is not None:
            msg["after"] = self.last
            if self.epoch is not None:
                msg["epoch"] = self.epoch
        return msg
