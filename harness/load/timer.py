"""Sleeping until an absolute ``time.time_ns()`` instant, precisely, inside an asyncio event loop.

uvloop keeps time in whole milliseconds and rounds timer delays, so
``asyncio.sleep`` wakes up to half a millisecond early or about a
millisecond late; for a generator whose latencies start at 100 us that is
too coarse, and every late send adds to the measured latency. On Linux this
module arms one ``timerfd`` per event loop on CLOCK_REALTIME (the clock of
the protocol's ``t`` field) with an absolute deadline, and wakes through the
loop's reader callback: sends then leave within tens of microseconds of
their intended time. Elsewhere it falls back to millisecond timers that
never fire early.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import heapq
import itertools
import math
import os
import sys
import time
from collections.abc import Callable

__all__ = ["PreciseTimer", "timerfd_available"]

_CLOCK_REALTIME = 0
_TFD_TIMER_ABSTIME = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)
_PR_SET_TIMERSLACK = 29


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        _libc.timerfd_create  # noqa: B018 - probe the symbol
    except (OSError, AttributeError):  # pragma: no cover
        _libc = None


def timerfd_available() -> bool:
    """Whether precise timers (Linux timerfd) are available here."""
    return _libc is not None


class _Entry:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class PreciseTimer:
    """Callbacks and sleeps at absolute ``time.time_ns()`` instants, for one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, *, use_timerfd: bool = True) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self._heap: list[tuple[int, int, _Entry]] = []
        self._counter = itertools.count()
        self._armed: int | None = None
        self._fallback: asyncio.TimerHandle | None = None
        self._fd = -1
        if use_timerfd and _libc is not None:
            fd = _libc.timerfd_create(_CLOCK_REALTIME, _TFD_NONBLOCK | _TFD_CLOEXEC)
            if fd >= 0:
                self._fd = fd
                # The default 50 us timer slack would be most of the error left; ask for 1 us.
                _libc.prctl(_PR_SET_TIMERSLACK, 1000, 0, 0, 0)
                self.loop.add_reader(fd, self._on_fire)

    @property
    def precise(self) -> bool:
        """Whether this timer uses timerfd (else millisecond event-loop timers)."""
        return self._fd >= 0

    def call_at(self, t_ns: int, callback: Callable[[], None]) -> _Entry:
        """Run ``callback`` at ``t_ns`` (or at once if that has passed); returns a handle with ``cancel()``."""
        entry = _Entry(callback)
        heapq.heappush(self._heap, (t_ns, next(self._counter), entry))
        if self._armed is None or t_ns < self._armed:
            self._arm(t_ns)
        return entry

    async def sleep_until(self, t_ns: int) -> None:
        """Return at ``t_ns`` or later, never earlier."""
        if t_ns <= time.time_ns():
            return
        fut = self.loop.create_future()
        entry = self.call_at(t_ns, lambda: _resolve(fut))
        try:
            await fut
        finally:
            entry.cancel()

    def close(self) -> None:
        """Release the timerfd."""
        if self._fd >= 0:
            self.loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        if self._fallback is not None:
            self._fallback.cancel()
        self._heap.clear()

    # -- internals ---------------------------------------------------------------------
    def _arm(self, t_ns: int) -> None:
        self._armed = t_ns
        if self._fd >= 0:
            assert _libc is not None  # a timerfd was opened through it
            t_ns = max(t_ns, 1)  # zero would disarm the timer
            spec = _Itimerspec(_Timespec(0, 0), _Timespec(t_ns // 1_000_000_000, t_ns % 1_000_000_000))
            _libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None)
        else:
            if self._fallback is not None:
                self._fallback.cancel()
            # Whole milliseconds, rounded up: the loop's timers may round a shorter delay down to zero.
            delay = math.ceil(max(0, t_ns - time.time_ns()) / 1e6) / 1e3
            self._fallback = self.loop.call_later(delay, self._on_fire)

    def _disarm(self) -> None:
        self._armed = None
        if self._fd >= 0:
            assert _libc is not None  # a timerfd was opened through it
            _libc.timerfd_settime(self._fd, 0, ctypes.byref(_Itimerspec()), None)

    def _on_fire(self) -> None:
        self._armed = None
        heap = self._heap
        now = time.time_ns()
        due: list[_Entry] = []
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap)[2])
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        # Setting the timer (re-arming, or disarming) also clears the expiry
        # count that makes the fd readable, which saves a read() per wake-up.
        if heap:
            self._arm(heap[0][0])
        elif self._fd >= 0:
            self._disarm()
        for entry in due:
            if not entry.cancelled:
                entry.callback()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
