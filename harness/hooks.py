"""Observing a run: events the runner emits (a step started, a step ended, a fault injected) and who hears them.

An observer is any callable taking one :data:`Event`. Observers are attached either globally, for every run of
the process (a user's exporter: :func:`attach` / :func:`detach`), or to one run: passed to
``harness.runner.run_spike(observers=...)`` or returned by the spike's :meth:`harness.plugin.Spike.observers`.
A scenario reports a fault it injected with :meth:`harness.plugin.ScenarioContext.fault`.

The runner emits :class:`StepStarted` and :class:`StepEnded` around each repeat of each step (a step skipped
because a program is missing gets one pair, repeat 0, status ``not_run``, duration 0), in run order. Every event
carries a monotonic time (``time.monotonic()``, to order and subtract) and a wall time (``time.time()``, to
line up with other systems' clocks). An observer that raises does not stop the run: its traceback goes to the
run's log file and the other observers still hear the event. Observers are called synchronously, on the thread
that emitted the event (a fault may be reported from a scenario's own thread), so a slow observer slows the run.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Event",
    "StepStarted",
    "StepEnded",
    "FaultInjected",
    "Observer",
    "Observers",
    "RunHooks",
    "GLOBAL",
    "attach",
    "detach",
]


@dataclass(frozen=True, kw_only=True)
class _Event:
    """What every event carries: when it happened, and in which run and step."""

    #: The run's id (as stored: ``runs/<run_id>.json``) and the spike's key (``s10-monitoring``).
    run_id: str = ""
    spike: str = ""
    scenario: str = ""
    option: str = ""
    #: 0-based, as :attr:`harness.plugin.ScenarioContext.repeat`.
    repeat: int = 0
    #: ``time.monotonic()`` and ``time.time()`` when the event was made.
    monotonic: float = field(default_factory=time.monotonic)
    wall: float = field(default_factory=time.time)


@dataclass(frozen=True, kw_only=True)
class StepStarted(_Event):
    """A repeat of a step (one scenario against one option) is about to run."""


@dataclass(frozen=True, kw_only=True)
class StepEnded(_Event):
    """A repeat of a step finished.

    ``status`` is the step's status once this repeat ended (``ok``, ``failed``, ``not_run``, ``interrupted``),
    ``reason`` why it is not ``ok``, ``duration_s`` how long the repeat ran. For the step's last repeat the
    status includes the runner's check of the step's output (a NaN sample fails the step), so it is the status
    that is stored.
    """

    status: str
    duration_s: float
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class FaultInjected(_Event):
    """A scenario injected a fault: ``what`` (``kill``, ``partition``, ``latency``) into ``target`` (a server, a link)."""

    what: str
    target: str
    details: Mapping[str, Any] = field(default_factory=dict)


Event = StepStarted | StepEnded | FaultInjected
Observer = Callable[[Event], None]


class Observers:
    """A set of observers to attach to and detach from, safe to use from several threads."""

    def __init__(self, observers: Iterable[Observer] = ()):
        self._lock = threading.Lock()
        self._observers: list[Observer] = []
        for o in observers:
            self.attach(o)

    def attach(self, observer: Observer) -> Observer:
        """Add ``observer`` (once: attaching it again does nothing); return it, so this works as a decorator."""
        with self._lock:
            if observer not in self._observers:
                self._observers.append(observer)
        return observer

    def detach(self, observer: Observer) -> None:
        """Remove ``observer``; one that is not attached is ignored."""
        with self._lock:
            if observer in self._observers:
                self._observers.remove(observer)

    def clear(self) -> None:
        with self._lock:
            self._observers.clear()

    def snapshot(self) -> list[Observer]:
        """The observers attached now, in the order they were attached."""
        with self._lock:
            return list(self._observers)

    def __len__(self) -> int:
        return len(self.snapshot())


#: Observers of every run in this process (a user's exporter).
GLOBAL = Observers()


def attach(observer: Observer) -> Observer:
    """Attach ``observer`` to every run from now on (until :func:`detach`)."""
    return GLOBAL.attach(observer)


def detach(observer: Observer) -> None:
    """Detach an observer attached with :func:`attach`."""
    GLOBAL.detach(observer)


def _name(observer: Observer) -> str:
    return getattr(observer, "__qualname__", None) or type(observer).__qualname__


class RunHooks:
    """The events of one run: made with the run's ids, sent to the global observers and to the run's own.

    ``log`` takes a line for the run's log file; an observer's error goes there (its full traceback the first
    time that observer fails, one line each later time), and the run goes on. Only ``Exception`` is caught:
    Ctrl-C inside an observer still interrupts the run.
    """

    def __init__(self, run_id: str, spike: str, observers: Iterable[Observer] = (), *, log: Callable[[str], None] = print):
        self.run_id = run_id
        self.spike = spike
        self.observers = Observers(observers)
        self._log = log
        self._failed: list[Observer] = []

    def emit(self, event: Event) -> None:
        heard: list[Observer] = []
        for observer in GLOBAL.snapshot() + self.observers.snapshot():
            if observer in heard:  # attached both globally and to the run: it hears the event once
                continue
            heard.append(observer)
            try:
                observer(event)
            except Exception as exc:
                where = f"{event.scenario}/{event.option} repeat {event.repeat}"
                head = f"--- observer {_name(observer)} failed on {type(event).__name__} ({where})"
                if observer in self._failed:
                    self._log(f"{head}: {type(exc).__name__}: {exc}")
                else:
                    self._failed.append(observer)
                    self._log(f"{head}\n{traceback.format_exc()}")

    def step_started(self, scenario: str, option: str, repeat: int) -> None:
        self.emit(StepStarted(run_id=self.run_id, spike=self.spike, scenario=scenario, option=option, repeat=repeat))

    def ended_event(self, scenario: str, option: str, repeat: int, status: str, duration_s: float, reason: str = "") -> StepEnded:
        """The event of a repeat that ended, made now (its times are now) but not emitted: the runner emits it."""
        return StepEnded(
            run_id=self.run_id,
            spike=self.spike,
            scenario=scenario,
            option=option,
            repeat=repeat,
            status=status,
            duration_s=duration_s,
            reason=reason,
        )

    def on_fault(self, scenario: str, option: str, repeat: int) -> Callable[[str, str, dict[str, Any]], None]:
        """What :attr:`harness.plugin.ScenarioContext.on_fault` is set to for one repeat of one step."""

        def report(what: str, target: str, details: dict[str, Any]) -> None:
            self.emit(
                FaultInjected(
                    run_id=self.run_id,
                    spike=self.spike,
                    scenario=scenario,
                    option=option,
                    repeat=repeat,
                    what=what,
                    target=target,
                    details=dict(details),
                )
            )

        return report
