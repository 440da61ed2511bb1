"""When connections arrive and when each one sends: pure functions, no sockets, no clocks.

All times are integers in nanoseconds (or float seconds for arrival offsets),
relative to whatever origin the caller picks, so the schedules can be tested
exactly and shared by generator processes that agree on one start time.

The open model (the default) fixes every intended send time in advance:
connection ``i`` sends at ``start_i + phase_i + k / rate``. The random phase
spreads connections over the interval, so N connections at rate R produce a
smooth N*R msg/s instead of N-message spikes. A sender that falls behind
still stamps each message with its intended time, which is what corrects
latency for coordinated omission. The closed model (for comparison) sends
the next message only after the previous reply.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator, Sequence
from typing import TypeVar

__all__ = [
    "ARRIVALS",
    "arrival_offsets",
    "ramp_arrivals",
    "burst_arrivals",
    "interval_ns",
    "random_phases",
    "send_times",
    "OpenLoopSchedule",
    "closed_loop_next",
    "split_round_robin",
]

T = TypeVar("T")

#: Arrival patterns: all at once, evenly spaced, or random (Poisson) within a window.
ARRIVALS = ("instant", "ramp", "burst")


def ramp_arrivals(n: int, over_s: float) -> list[float]:
    """Offsets (s) of ``n`` connections arriving evenly over ``over_s`` seconds: 0, T/n, 2T/n, ..."""
    if n <= 0:
        return []
    return [i * over_s / n for i in range(n)]


def burst_arrivals(n: int, over_s: float, seed: int = 0) -> list[float]:
    """Sorted offsets (s) of ``n`` arrivals in ``[0, over_s)``, uniformly random.

    ``n`` uniform points are a Poisson process conditioned on ``n`` arrivals:
    the mean rate is ``n / over_s`` but arrivals clump as real surges do,
    which a ramp's even spacing never does.
    """
    rng = random.Random(seed)
    return sorted(rng.random() * over_s for _ in range(n))


def arrival_offsets(n: int, arrival: str, arrival_s: float, seed: int = 0) -> list[float]:
    """Arrival offsets (s) of ``n`` connections for an arrival pattern (see ``ARRIVALS``)."""
    if arrival_s < 0:
        raise ValueError("arrival_s must be >= 0")
    if arrival == "instant" or arrival_s == 0:
        if arrival not in ARRIVALS:
            raise ValueError(f"unknown arrival {arrival!r}; expected one of {', '.join(ARRIVALS)}")
        return [0.0] * n
    if arrival == "ramp":
        return ramp_arrivals(n, arrival_s)
    if arrival == "burst":
        return burst_arrivals(n, arrival_s, seed)
    raise ValueError(f"unknown arrival {arrival!r}; expected one of {', '.join(ARRIVALS)}")


def interval_ns(rate: float) -> int | None:
    """Nanoseconds between two sends at ``rate`` msg/s; None for 0 (idle) or infinity (back to back)."""
    if rate < 0 or math.isnan(rate):
        raise ValueError("rate must be >= 0")
    if rate == 0 or math.isinf(rate):
        return None
    return max(1, round(1e9 / rate))


def random_phases(n: int, interval: int | None, seed: int = 0) -> list[int]:
    """A random offset in ``[0, interval)`` ns per connection, so their sends do not coincide."""
    if not interval:
        return [0] * n
    rng = random.Random(seed)
    return [rng.randrange(interval) for _ in range(n)]


def send_times(first_ns: int, interval: int, end_ns: int) -> Iterator[int]:
    """Intended send times of one connection: ``first, first + interval, ...`` while before ``end_ns``."""
    if interval <= 0:
        raise ValueError("interval must be > 0")
    k = 0
    while (t := first_ns + k * interval) < end_ns:
        yield t
        k += 1


class OpenLoopSchedule:
    """The merged open-model schedule of many connections, in intended-time order.

    One scheduler serves every connection of a generator process: a heap of
    next intended times, so the event loop keeps one timer instead of one
    per connection. Times are computed as ``first + k * interval`` (never by
    accumulating), so the schedule does not drift however long it runs.
    """

    def __init__(self, end_ns: int) -> None:
        self.end_ns = end_ns
        self._heap: list[tuple[int, int, int, int, int]] = []  # (due, conn, k, first, interval)
        self._removed: set[int] = set()

    def add(self, conn: int, first_ns: int, interval: int) -> None:
        """Schedule ``conn`` to send at ``first_ns + k * interval`` until the end."""
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self._removed.discard(conn)
        if first_ns < self.end_ns:
            heapq.heappush(self._heap, (first_ns, conn, 0, first_ns, interval))

    def remove(self, conn: int) -> None:
        """Stop scheduling ``conn`` (its connection is gone)."""
        self._removed.add(conn)

    def next_due(self) -> int | None:
        """The earliest intended time still scheduled, or None when the schedule is done."""
        heap = self._heap
        while heap and heap[0][1] in self._removed:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now_ns: int, limit: int | None = None) -> list[tuple[int, int, int]]:
        """Sends due at ``now_ns`` (at most ``limit``), as ``(conn, seq, intended_ns)`` in intended-time order."""
        heap = self._heap
        out: list[tuple[int, int, int]] = []
        while heap and heap[0][0] <= now_ns and (limit is None or len(out) < limit):
            due, conn, k, first, interval = heapq.heappop(heap)
            if conn in self._removed:
                continue
            out.append((conn, k, due))
            nxt = first + (k + 1) * interval
            if nxt < self.end_ns:
                heapq.heappush(heap, (nxt, conn, k + 1, first, interval))
        return out

    def __len__(self) -> int:
        return sum(1 for e in self._heap if e[1] not in self._removed)


def closed_loop_next(intended_ns: int, interval: int | None, reply_ns: int) -> int:
    """The intended time of a closed-loop connection's next send, given its last reply.

    With a rate, the next send stays on the fixed grid (``intended + interval``):
    when the reply comes late, the next message goes at once but keeps its
    grid time, so the wait shows in its latency. Back to back (no interval),
    the next send is intended the moment the reply arrived.
    """
    if interval is None:
        return reply_ns
    return intended_ns + interval


def split_round_robin(items: Sequence[T], parts: int) -> list[list[T]]:
    """Deal ``items`` to ``parts`` lists in turn, so each part gets early and late arrivals alike."""
    if parts <= 0:
        raise ValueError("parts must be > 0")
    return [list(items[i::parts]) for i in range(parts)]
