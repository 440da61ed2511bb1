"""The account of every message of a run: what was sent, and what became of it. Defined once, here.

Every spike that counts loss uses this account and these words. Its shape is
that of Jepsen's queue checker (``jepsen.checker/total-queue``): each message
handed to the client library is an *attempt*, each acknowledgement by the
server makes it *acknowledged*, and each message a client receives is
matched to the attempt it came from. Messages are named by their sender's
connection id ``c`` and that connection's sequence number ``seq`` (see
``harness.load.protocol``); a message is *expected* at a connection when the
protocol promises it there: an echo back to its sender, a broadcast to every
member of the room (the sender included).

Per connection, and in total (the sum over connections):

``sent``
    Messages the connection handed to its client library (attempts). Its
    fraction is of the messages its schedule planned (``sent + unsent``; a
    reconnecting connection skips the sends due while it is away).
``delivered``
    Expected messages that arrived at least once. Fraction: of ``expected``.
``lost_after_ack``
    Expected messages that never arrived although the server had acknowledged
    them to their sender (an explicit ``ack``, or the sender's own copy of a
    broadcast or echo): the server accepted them, then lost them. Fraction: of
    ``expected``.
``lost_without_ack``
    Expected messages that never arrived and that the server never
    acknowledged: handed to the client library, never delivered (they may have
    died in a socket buffer, on the wire, or in the server). Fraction: of
    ``expected``. ``delivered + lost_after_ack + lost_without_ack ==
    expected``, always.
``duplicated``
    Arrivals of a message beyond its first at the same connection. Fraction:
    of ``arrivals``.
``unexpected``
    Arrivals naming no message that was sent, or one not expected at this
    connection (another connection's echo, a broadcast to a non-member), and
    arrivals that name no message at all (not decodable, unknown op).
    Fraction: of ``arrivals``. ``delivered + duplicated + unexpected ==
    arrivals``, always.
``reordered``
    First arrivals of a message with a lower ``seq`` than a message of the
    same sender that already arrived at this connection: each sender's
    messages should arrive in the order sent. Fraction: of ``arrivals``.

Recovery: for each fault window (start and end on the ``time.time_ns()``
clock, the clock of the engine's samples; a ``harness.faults.Fault``
converts through :meth:`FaultWindow.from_fault`), the time from the fault's
end to the first delivery after it, over all connections and per connection
that expects messages (``expected`` > 0: a connection that sends nothing in
echo mode, or is not a member, has nothing to recover and is not counted);
``None`` when nothing was delivered after it.

:class:`Account` is pure: it computes from :class:`ConnLog` records (what
each connection sent, which of those were acknowledged, and what arrived,
in order) and knows nothing of processes or sockets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["ConnLog", "FaultWindow", "Tally", "Recovery", "Account", "NO_SENDER", "OUTCOMES"]

#: ``sender`` of an arrival that names no message (not decodable, unknown op, no ``c``/``seq``).
NO_SENDER = -1

#: The account's words, in the order every table and JSON lists them.
OUTCOMES = ("sent", "delivered", "lost_after_ack", "lost_without_ack", "duplicated", "unexpected", "reordered")


@dataclass(frozen=True)
class ConnLog:
    """What one connection did, for the account.

    ``sent``: the ``seq`` of every message handed to the client library;
    ``unsent``: sends its schedule planned but skipped (disconnected);
    ``acked``: the ``seq`` of its messages the server acknowledged;
    ``arrivals``: every message received, in order, as ``(sender, seq, t_ns)``
    (``sender`` :data:`NO_SENDER` for one naming no message); ``member``:
    whether the room's broadcasts are expected here (it joined);
    ``reconnects``: successful reconnections.
    """

    conn: int
    sent: tuple[int, ...] = ()
    acked: tuple[int, ...] = ()
    arrivals: tuple[tuple[int, int, int], ...] = ()
    member: bool = False
    unsent: int = 0
    reconnects: int = 0


class _FaultLike(Protocol):
    kind: str
    target: str
    started_wall: float
    ended_wall: float | None


@dataclass(frozen=True)
class FaultWindow:
    """A fault's window on the ``time.time_ns()`` clock; ``end_ns`` None while it lasts."""

    start_ns: int
    end_ns: int | None
    kind: str = "fault"
    target: str = ""

    @classmethod
    def from_fault(cls, fault: _FaultLike) -> FaultWindow:
        """The window of a ``harness.faults.Fault`` (its wall-clock start and end, ``time.time()`` floats: kept to the microsecond)."""
        end = None if fault.ended_wall is None else _wall_ns(fault.ended_wall)
        return cls(_wall_ns(fault.started_wall), end, fault.kind, fault.target)


def _wall_ns(t: float) -> int:
    # A time.time() float near 1.7e9 s holds about a quarter of a microsecond; more digits would be noise.
    return round(t * 1e6) * 1000


@dataclass
class Tally:
    """The account's counts for one connection, or for all of them (see the module's definitions)."""

    sent: int = 0
    unsent: int = 0
    expected: int = 0
    delivered: int = 0
    lost_after_ack: int = 0
    lost_without_ack: int = 0
    duplicated: int = 0
    unexpected: int = 0
    reordered: int = 0
    arrivals: int = 0
    reconnects: int = 0

    @property
    def lost(self) -> int:
        """Expected messages that never arrived, acknowledged or not."""
        return self.lost_after_ack + self.lost_without_ack

    def fraction(self, name: str) -> float | None:
        """``name``'s count over its denominator (see the module's definitions); None when that is 0."""
        count = getattr(self, name)
        if name == "sent":
            of = self.sent + self.unsent
        elif name in ("delivered", "lost_after_ack", "lost_without_ack"):
            of = self.expected
        else:
            of = self.arrivals
        return count / of if of else None

    def add(self, other: Tally) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_dict(self) -> dict[str, Any]:
        """``{outcome: {"count", "fraction"}}`` in :data:`OUTCOMES` order, plus the denominators and reconnects."""
        out: dict[str, Any] = {}
        for name in OUTCOMES:
            frac = self.fraction(name)
            out[name] = {"count": getattr(self, name), "fraction": None if frac is None else round(frac, 6)}
        out["expected"] = self.expected
        out["arrivals"] = self.arrivals
        out["unsent"] = self.unsent
        out["reconnects"] = self.reconnects
        return out


@dataclass(frozen=True)
class Recovery:
    """One fault and the first delivery after its end: over all connections, and per connection (ms)."""

    fault: FaultWindow
    first_delivery_ms: float | None
    per_connection_ms: Mapping[int, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        per = [v for v in self.per_connection_ms.values() if v is not None]
        return {
            "kind": self.fault.kind,
            "target": self.fault.target,
            "start_ns": self.fault.start_ns,
            "end_ns": self.fault.end_ns,
            "first_delivery_ms": self.first_delivery_ms,
            "connections": len(self.per_connection_ms),
            "connections_recovered": len(per),
            "slowest_connection_ms": max(per) if per else None,
        }


@dataclass
class Account:
    """The account of a run: a :class:`Tally` per connection and in total, and the recovery after each fault."""

    mode: str
    per_connection: dict[int, Tally]
    total: Tally
    recoveries: list[Recovery]

    @classmethod
    def of(cls, logs: Iterable[ConnLog], mode: str = "echo", faults: Iterable[FaultWindow] = ()) -> Account:
        """Match every arrival to its message. ``mode``: ``echo`` (back to the sender) or ``broadcast`` (to every member)."""
        if mode not in ("echo", "broadcast"):
            raise ValueError(f"unknown mode {mode!r}")
        logs = sorted(logs, key=lambda log: log.conn)
        sent = {log.conn: frozenset(log.sent) for log in logs}
        acked = {log.conn: frozenset(log.acked) & sent[log.conn] for log in logs}
        all_sent = sum(len(s) for s in sent.values())
        all_acked = sum(len(a) for a in acked.values())
        per: dict[int, Tally] = {}
        firsts: dict[int, list[int]] = {}  # per connection: arrival times of first copies, in order
        for log in logs:
            t = Tally(sent=len(sent[log.conn]), unsent=log.unsent, reconnects=log.reconnects, arrivals=len(log.arrivals))
            if mode == "echo":
                t.expected, expected_acked = len(sent[log.conn]), len(acked[log.conn])
            elif log.member:
                t.expected, expected_acked = all_sent, all_acked
            else:
                expected_acked = 0
            seen: set[tuple[int, int]] = set()
            highest: dict[int, int] = {}
            delivered_acked = 0
            times: list[int] = []
            for sender, seq, t_ns in log.arrivals:
                key = (sender, seq)
                if not _expected_here(mode, log, sender, seq, sent):
                    t.unexpected += 1
                elif key in seen:
                    t.duplicated += 1
                else:
                    seen.add(key)
                    t.delivered += 1
                    times.append(t_ns)
                    if seq in acked[sender]:
                        delivered_acked += 1
                    top = highest.get(sender)
                    if top is not None and seq < top:
                        t.reordered += 1
                    else:
                        highest[sender] = seq
            t.lost_after_ack = expected_acked - delivered_acked
            t.lost_without_ack = t.expected - t.delivered - t.lost_after_ack
            per[log.conn] = t
            if t.expected:  # a connection that expects nothing (not a sender in echo, not a member) has nothing to recover
                firsts[log.conn] = sorted(times)
        total = Tally()
        for t in per.values():
            total.add(t)
        recoveries = [_recovery(w, firsts) for w in faults]
        return cls(mode, per, total, recoveries)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the total, each connection (keyed by its id as a string), the recoveries."""
        return {
            "mode": self.mode,
            "total": self.total.to_dict(),
            "connections": {str(c): t.to_dict() for c, t in self.per_connection.items()},
            "recovery": [r.to_dict() for r in self.recoveries],
        }


def _expected_here(mode: str, log: ConnLog, sender: int, seq: int, sent: Mapping[int, frozenset[int]]) -> bool:
    if sender == NO_SENDER or seq not in sent.get(sender, ()):
        return False
    return sender == log.conn if mode == "echo" else log.member


def _first_at_or_after(times: Sequence[int], t_ns: int) -> int | None:
    import bisect

    i = bisect.bisect_left(times, t_ns)
    return times[i] if i < len(times) else None


def _recovery(window: FaultWindow, firsts: Mapping[int, Sequence[int]]) -> Recovery:
    if window.end_ns is None:
        return Recovery(window, None, {c: None for c in firsts})
    end = window.end_ns
    per: dict[int, float | None] = {}
    for conn, times in firsts.items():
        first = _first_at_or_after(times, end)
        per[conn] = None if first is None else round((first - end) / 1e6, 3)
    got = [v for v in per.values() if v is not None]
    return Recovery(window, min(got) if got else None, per)
