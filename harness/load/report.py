"""What the generator processes and their parent say to each other: typed messages, pickled over a pipe.

The conversation of one run, parent (``harness.load.engine``) and generator
(``harness.load.generator``)::

    generator -> parent   Ready()
    parent -> generator   Start(start_ns)           the common start on the time.time_ns() clock
    generator -> parent   Joined(members)           broadcast only: every connection has joined (or given up)
    parent -> generator   Go(go_ns)                 broadcast only: start sending at go_ns
    generator -> parent   GeneratorReport(...)      the process's counts, histograms and CPU use
    generator -> parent   Failed(traceback)         instead of any of the above, when the process failed

Each message is a frozen dataclass, so a misspelt field or a count of the
wrong type is a type error in the parent, not a key that flows into the
stored numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.load.account import ConnLog

__all__ = ["Share", "Ready", "Start", "Joined", "Go", "Failed", "GeneratorReport", "Message"]


@dataclass(frozen=True)
class Share:
    """The connections one generator process runs: global ids, arrival offsets (s), send phases (ns)."""

    index: int
    conn_ids: tuple[int, ...]
    arrivals_s: tuple[float, ...]
    phases_ns: tuple[int, ...]


@dataclass(frozen=True)
class Ready:
    """A generator process has started and set up; it waits for ``Start``."""


@dataclass(frozen=True)
class Start:
    """The common start time of the run (``time.time_ns()``): arrivals count from it."""

    start_ns: int


@dataclass(frozen=True)
class Joined:
    """Broadcast mode: this process's connections have joined the room; ``members`` of them made it."""

    members: int


@dataclass(frozen=True)
class Go:
    """Broadcast mode: every process sends from ``go_ns`` on, for the run's duration."""

    go_ns: int


@dataclass(frozen=True)
class Failed:
    """The generator process failed; ``traceback`` is its formatted traceback."""

    traceback: str

    @property
    def last_line(self) -> str:
        """The exception line of the traceback."""
        lines = self.traceback.strip().splitlines()
        return lines[-1] if lines else "unknown failure"


@dataclass(frozen=True)
class GeneratorReport:
    """What one generator process measured, merged by the parent into a ``LoadResult``.

    Histograms are HDR histograms encoded with ``histogram.encode`` (microseconds).
    ``logs`` is empty unless the run counts every message (``LoadSpec.counting``):
    then it holds, per connection, what it sent and received, for the account.
    """

    index: int
    pid: int
    latency: str
    service: str
    lag: str
    clamped: int
    sent: int
    received: int
    unexpected: int
    outstanding: int
    unsent: int
    connected: int
    members: int
    connect_ms: tuple[float, ...]
    failed_connects: dict[str, int]
    dropped: int
    bytes_in: int
    bytes_out: int
    cpu_s: float
    wall_s: float
    cpu: float
    window_s: float
    errors: dict[str, int]
    reconnected: int = 0
    #: Drops not brought back because the sending window had ended: not a failure to come back.
    window_over: int = 0
    logs: tuple[ConnLog, ...] = field(default=())


#: Anything a generator process sends to its parent.
Message = Ready | Joined | GeneratorReport | Failed
