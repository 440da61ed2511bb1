"""The limit search and the frame statistics it judges by: plain functions, tested without a browser.

A frame-time window passes at the normal frame rate when fewer than 1% of its frames take over 25 ms
(:data:`LONG_FRAME_MS`, a frame and a half at 60 Hz: a stutter a player sees), and in headroom mode
(vsync and the frame-rate cap off) when its 95th percentile stays within one 60 Hz frame, 16.7 ms.
:func:`bisect_limit` finds the largest object count that still passes, geometrically (counts span
orders of magnitude), from a bracket a sweep found.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

__all__ = [
    "FRAME_60_MS",
    "LONG_FRAME_MS",
    "LONG_SHARE",
    "percentile",
    "share_over",
    "share_late",
    "JITTER_MS",
    "passes_normal",
    "passes_headroom",
    "bracket",
    "bisect_limit",
]

FRAME_60_MS = 1000 / 60
LONG_FRAME_MS = 25.0
LONG_SHARE = 0.01
#: rAF intervals of vsync-paced frames read 16.6-16.8 ms (the timer steps by 0.1 ms and vsync jitters): a frame counts
#: as "over 16.7 ms" or "over 33 ms" only past this margin, so on-time frames are not counted as late.
JITTER_MS = 1.0


def share_late(xs: Sequence[float], frames: int) -> float:
    """The fraction of intervals longer than ``frames`` 60 Hz frames (beyond :data:`JITTER_MS`): frames a player sees late."""
    return share_over(xs, frames * FRAME_60_MS + JITTER_MS)


def percentile(xs: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not xs:
        return math.nan
    s = sorted(xs)
    k = (len(s) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def share_over(xs: Sequence[float], limit: float) -> float:
    """The fraction of ``xs`` above ``limit``; 1.0 for no values (no frame is not a fast frame)."""
    return sum(1 for x in xs if x > limit) / len(xs) if xs else 1.0


def passes_normal(intervals: Sequence[float]) -> bool:
    """Fewer than 1% of frames over 25 ms (and at least one frame measured)."""
    return bool(intervals) and share_over(intervals, LONG_FRAME_MS) < LONG_SHARE


def passes_headroom(intervals: Sequence[float]) -> bool:
    """The 95th percentile frame within 16.7 ms with the frame rate uncapped."""
    return bool(intervals) and percentile(intervals, 95) <= FRAME_60_MS


def bracket(results: dict[int, bool]) -> tuple[int | None, int | None]:
    """From a sweep's pass/fail per count: the largest passing count below the first failing one, and that failing one."""
    counts = sorted(results)
    fail = next((n for n in counts if not results[n]), None)
    ok = [n for n in counts if results[n] and (fail is None or n < fail)]
    return (ok[-1] if ok else None), fail


def bisect_limit(passes: Callable[[int], bool], lo: int, hi: int, *, ratio: float = 1.15, max_steps: int = 8) -> tuple[int, int, list[int]]:
    """The largest count that passes, between ``lo`` (passes) and ``hi`` (fails), by geometric bisection.

    Stops when ``hi / lo <= ratio`` or after ``max_steps`` probes. Returns ``(lo, hi, probed)``: the limit
    lies in ``[lo, hi)``. A noisy curve (a pass above a fail) cannot fool it into a count it did not see pass.
    """
    if lo < 1 or hi <= lo:
        raise ValueError(f"need 1 <= lo < hi, got lo={lo}, hi={hi}")
    probed: list[int] = []
    while hi / lo > ratio and len(probed) < max_steps:
        mid = int(round(math.sqrt(lo * hi)))
        if mid <= lo or mid >= hi:
            break
        probed.append(mid)
        if passes(mid):
            lo = mid
        else:
            hi = mid
    return lo, hi, probed
