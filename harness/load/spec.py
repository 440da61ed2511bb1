"""What a load run is asked to do (``LoadSpec``) and what it measured (``LoadResult``)."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from harness.load.clients import transports
from harness.load.clients.resume import get_resume_class, resume_adapters
from harness.load.report import GeneratorReport
from harness.load.schedules import ARRIVALS
from harness.load.system import check_loopback_url

if TYPE_CHECKING:
    from harness.plugin import ScenarioOutput

__all__ = [
    "MODES",
    "ReconnectPolicy",
    "LoadSpec",
    "GeneratorResult",
    "LoadResult",
    "SAMPLE_UNITS",
    "CLIENT_BOUND_CPU",
    "CLIENT_BOUND_LAG_MS",
]

#: What each connection does: echo requests, or broadcasts to a room it joined.
MODES = ("echo", "broadcast")

#: A generator process using this share of one core is the bottleneck.
CLIENT_BOUND_CPU = 0.90
#: An open-model generator this late (p99 send lag, ms) is not keeping its schedule.
CLIENT_BOUND_LAG_MS = 10.0


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a dropped connection comes back: exponential backoff with full jitter, at most ``max_attempts`` tries in a row.

    Before attempt ``k`` (0 for the first after a drop) the client sleeps a
    uniformly random time in ``[0, min(cap_s, base_s * 2**k)]`` ("full
    jitter", as in AWS's *Exponential Backoff and Jitter*): clients dropped
    together do not come back together. ``max_attempts`` 0: no limit (until
    the run ends). ``jitter=False`` sleeps the whole ceiling instead: clients
    dropped together come back together (a reconnect storm, on purpose).
    """

    base_s: float = 0.1
    cap_s: float = 5.0
    max_attempts: int = 0
    jitter: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.base_s) and math.isfinite(self.cap_s)) or self.base_s <= 0 or self.cap_s < self.base_s:
            raise ValueError("reconnect: base_s must be > 0 and cap_s >= base_s, both finite seconds")
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 0:
            raise ValueError("reconnect: max_attempts must be an integer >= 0 (0: no limit)")

    def ceiling_s(self, attempt: int) -> float:
        """The longest sleep before attempt ``attempt`` (0-based)."""
        return min(self.cap_s, self.base_s * 2.0 ** min(attempt, 64))

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """The sleep before attempt ``attempt``: uniform in ``[0, ceiling_s(attempt)]`` (the ceiling itself without jitter)."""
        if not self.jitter:
            return self.ceiling_s(attempt)
        uniform = (rng or random.Random()).uniform
        return float(uniform(0.0, self.ceiling_s(attempt)))

    def gives_up_after(self, attempt: int) -> bool:
        """Whether no attempt follows attempt ``attempt`` (0-based) when it failed."""
        return self.max_attempts > 0 and attempt + 1 >= self.max_attempts

    @classmethod
    def parse(cls, text: str) -> ReconnectPolicy:
        """``BASE[,CAP[,MAX_ATTEMPTS]]`` in seconds, e.g. ``0.1,5,20``; ``on`` for the defaults."""
        if text.strip().lower() in ("on", "yes", "default"):
            return cls()
        parts = [p.strip() for p in text.split(",")]
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"{text!r}: expected BASE[,CAP[,MAX_ATTEMPTS]] (seconds, seconds, count), e.g. 0.1,5,20")
        try:
            base = float(parts[0])
            cap = float(parts[1]) if len(parts) > 1 else max(cls.cap_s, base)
            attempts = int(parts[2]) if len(parts) > 2 else 0
        except ValueError:
            raise ValueError(f"{text!r}: expected BASE[,CAP[,MAX_ATTEMPTS]] (seconds, seconds, count), e.g. 0.1,5,20") from None
        return cls(base, cap, attempts)


@dataclass(frozen=True)
class LoadSpec:
    """One load run: who to connect to, how many connections, how they arrive, and what they send.

    Timing: connections arrive over ``arrival_s`` (``instant`` ignores it);
    each sends ``rate`` msg/s from the moment it is connected until
    ``arrival_s + duration_s`` after the start, then the run waits up to
    ``grace_s`` for replies still in flight. In ``broadcast`` mode every
    connection first joins ``room``, and sending starts for all of them
    together once all have joined, for ``duration_s``: a delivery count is
    only well defined for a room whose membership does not change.

    ``rate=0`` holds idle connections. ``rate=math.inf`` is allowed with
    ``closed_loop`` only: each connection sends its next message as soon as
    the previous reply arrives. ``senders`` limits sending to the first
    ``senders`` connections (the others only receive: fan-out).

    ``window`` (closed loop, back to back, echo only) keeps that many
    requests outstanding per connection: each reply frees a slot and the
    next request goes at once (pipelining). With the ``ws`` client the
    requests freed by one received chunk leave in one write, which is what
    lets one generator core outrun a server; the document must state the
    window, since a server's throughput depends on it too. A windowed run
    measures throughput: its latencies include the wait behind the window
    and the generator's short naps between reads (at most 1 ms); measure
    latency with the open model.

    ``account`` counts every message into ``harness.load.account.Account``
    (sent, delivered, lost after and without acknowledgement, duplicated,
    unexpected, reordered; ``LoadResult.account``). It costs per-message
    bookkeeping, so it is off unless asked for, and on whenever ``reconnect``
    is set: a ``ReconnectPolicy`` brings dropped connections back (open model
    only), and the ``resume`` adapter (``harness.load.clients.resume``: ``none``,
    ``last-seq``, ...) says how a reconnected client asks for what it missed.
    """

    url: str
    transport: str = "ws"
    connections: int = 1
    rate: float = 1.0
    duration_s: float = 5.0
    arrival: str = "instant"
    arrival_s: float = 0.0
    mode: str = "echo"
    room: str = "load"
    payload_bytes: int = 64
    processes: int = 1
    closed_loop: bool = False
    connect_timeout_s: float = 10.0
    grace_s: float = 2.0
    allow_remote: bool = False
    senders: int | None = None
    compression: bool = False
    seed: int = 0
    cpu_affinity: tuple[int, ...] | None = None
    window: int = 1
    account: bool = False
    reconnect: ReconnectPolicy | None = None
    resume: str = "none"

    def __post_init__(self) -> None:
        check_loopback_url(self.url, self.allow_remote)
        if self.transport not in transports():
            raise ValueError(f"unknown transport {self.transport!r}; known: {', '.join(transports())}")
        if self.connections < 1:
            raise ValueError("connections must be >= 1")
        if self.rate < 0 or math.isnan(self.rate):
            raise ValueError("rate must be >= 0 (0: idle connections)")
        if math.isinf(self.rate) and not self.closed_loop:
            raise ValueError("an infinite rate needs closed_loop=True (an open model needs a finite schedule)")
        # NaN passes every comparison below, and infinity overflows the engine's nanosecond clock arithmetic.
        if not all(math.isfinite(s) for s in (self.duration_s, self.arrival_s, self.grace_s, self.connect_timeout_s)):
            raise ValueError("duration_s, arrival_s, grace_s and connect_timeout_s must be finite numbers of seconds")
        if self.duration_s < 0 or self.arrival_s < 0 or self.grace_s < 0 or self.connect_timeout_s <= 0:
            raise ValueError("durations must be >= 0 and connect_timeout_s > 0")
        if self.arrival not in ARRIVALS:
            raise ValueError(f"unknown arrival {self.arrival!r}; expected one of {', '.join(ARRIVALS)}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {', '.join(MODES)}")
        if self.payload_bytes < 0:
            raise ValueError("payload_bytes must be >= 0")
        if self.processes < 1:
            raise ValueError("processes must be >= 1")
        if self.senders is not None and self.senders < 0:
            raise ValueError("senders must be >= 0")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ValueError("window must be an integer >= 1")
        if self.window > 1 and not (self.closed_loop and math.isinf(self.rate) and self.mode == "echo"):
            raise ValueError("window > 1 (requests outstanding per connection) needs closed_loop=True, rate=inf and mode='echo'")
        if self.cpu_affinity is not None:
            object.__setattr__(self, "cpu_affinity", tuple(self.cpu_affinity))
        if isinstance(self.reconnect, dict):
            object.__setattr__(self, "reconnect", ReconnectPolicy(**self.reconnect))
        if self.resume not in resume_adapters():
            raise ValueError(f"unknown resume adapter {self.resume!r}; known: {', '.join(resume_adapters())}")
        supported = get_resume_class(self.resume).transports
        if supported is not None and self.transport not in supported:
            raise ValueError(f"resume {self.resume!r} needs transport {' or '.join(supported)}, not {self.transport!r}")
        if self.resume != "none" and self.reconnect is None:
            raise ValueError(f"resume {self.resume!r} needs reconnect (a ReconnectPolicy): only a reconnecting client resumes")
        if self.reconnect is not None and self.closed_loop:
            raise ValueError("reconnect needs the open model (closed_loop=False): a closed loop stops at its first drop")

    @property
    def counting(self) -> bool:
        """Whether every message is counted into the account (``account``, or any ``reconnect``)."""
        return self.account or self.reconnect is not None

    @property
    def sending_connections(self) -> int:
        """How many connections send (the rest only receive or idle)."""
        if self.rate == 0:
            return 0
        return self.connections if self.senders is None else min(self.senders, self.connections)

    @property
    def effective_processes(self) -> int:
        """Generator processes actually started: never more than connections."""
        return min(self.processes, self.connections)

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready data (infinity as the string ``"inf"``)."""
        d = asdict(self)
        # Left out at their defaults, so the spec stored by runs that do not count stays what it was.
        for name, default in (("account", False), ("reconnect", None), ("resume", "none")):
            if d[name] == default:
                del d[name]
        if d.get("reconnect", {}).get("jitter") is True:  # the default, left out like the others
            del d["reconnect"]["jitter"]
        if math.isinf(self.rate):
            d["rate"] = "inf"
        if self.cpu_affinity is not None:
            d["cpu_affinity"] = list(self.cpu_affinity)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoadSpec:
        """The inverse of ``to_dict``."""
        d = dict(d)
        if d.get("rate") == "inf":
            d["rate"] = math.inf
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


#: Unit and better-direction of each key of ``LoadResult.to_samples()``.
SAMPLE_UNITS: dict[str, tuple[str, str | None]] = {
    **{f"latency_{p}_ms": ("ms", "lower") for p in ("p50", "p90", "p99", "p99.9", "max")},
    **{f"service_{p}_ms": ("ms", "lower") for p in ("p50", "p90", "p99", "p99.9", "max")},
    "send_lag_p99_ms": ("ms", "lower"),
    "connect_ms": ("ms", "lower"),
    "sent": ("messages", None),
    "received": ("messages", None),
    "lost": ("messages", "lower"),
    "unsent": ("messages", "lower"),
    "errors": ("count", "lower"),
    "connect_failed": ("connections", "lower"),
    "dropped": ("connections", "lower"),
    "bytes_out": ("bytes", "lower"),
    "bytes_in": ("bytes", "lower"),
    "achieved_rate": ("msg/s", "higher"),
    "received_rate": ("msg/s", "higher"),
    "generator_cpu": ("cores", None),
    "generator_cpu_s": ("s", None),
    "generator_us_per_msg": ("us", "lower"),
}


#: The per-process report, by its former name (now a frozen dataclass, ``harness.load.report``).
GeneratorResult = GeneratorReport


@dataclass
class LoadResult:
    """Everything one load run measured, merged across generator processes.

    Latency (``histogram``, ``latency_ms``) runs from a message's intended send
    time to its arrival: coordinated omission corrected. ``service_ms`` runs
    from the actual send (own messages only): what a naive generator would
    report. ``send_lag_ms`` is how late the generator sent, its own share of
    the latency. Bytes are message traffic after the handshake, framing
    included. ``client_bound`` means the generator, not the server, was the
    limit: its numbers must never be presented as the server's.
    ``reconnected`` counts successful reconnections (``LoadSpec.reconnect``);
    ``account`` is ``harness.load.account.Account.to_dict()`` when the run
    counted every message (``LoadSpec.counting``), else None.
    """

    spec: dict[str, Any]
    histogram: str = ""
    service_histogram: str = ""
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    service_ms: dict[str, float | None] = field(default_factory=dict)
    send_lag_ms: dict[str, float | None] = field(default_factory=dict)
    sent: int = 0
    received: int = 0
    expected: int = 0
    lost: int = 0
    unsent: int = 0
    unexpected: int = 0
    clamped: int = 0
    connections: int = 0
    connected: int = 0
    connect_failed: int = 0
    dropped: int = 0
    members: int = 0
    connect_ms: list[float] = field(default_factory=list)
    failed_connects: dict[str, int] = field(default_factory=dict)
    bytes_out: int = 0
    bytes_in: int = 0
    duration_s: float = 0.0
    wall_s: float = 0.0
    achieved_rate: float = 0.0
    received_rate: float = 0.0
    generator_cpu: list[float] = field(default_factory=list)
    generator_cpu_s: list[float] = field(default_factory=list)
    client_bound: bool = False
    client_bound_reasons: list[str] = field(default_factory=list)
    error_count: int = 0
    errors: list[str] = field(default_factory=list)
    reconnected: int = 0
    #: Drops not brought back because the sending window had ended (in the grace period, or a backoff past the end).
    reconnect_window_over: int = 0
    account: dict[str, Any] | None = None

    def to_samples(self) -> dict[str, list[float]]:
        """Raw numbers to store, by name (units in ``SAMPLE_UNITS``); empty latency entries are left out."""
        out: dict[str, list[float]] = {}
        for prefix, values in (("latency", self.latency_ms), ("service", self.service_ms)):
            for key, value in values.items():
                if value is not None:
                    out[f"{prefix}_{key}_ms"] = [float(value)]
        if (lag_p99 := self.send_lag_ms.get("p99")) is not None:
            out["send_lag_p99_ms"] = [float(lag_p99)]
        if self.connect_ms:
            out["connect_ms"] = [float(x) for x in self.connect_ms]
        for name in (
            "sent",
            "received",
            "lost",
            "unsent",
            "connect_failed",
            "dropped",
            "bytes_out",
            "bytes_in",
            "achieved_rate",
            "received_rate",
        ):
            out[name] = [float(getattr(self, name))]
        out["errors"] = [float(self.error_count)]
        out["generator_cpu"] = [float(x) for x in self.generator_cpu]
        if self.generator_cpu_s:
            out["generator_cpu_s"] = [float(x) for x in self.generator_cpu_s]
            if self.generator_us_per_msg is not None:
                out["generator_us_per_msg"] = [self.generator_us_per_msg]
        return out

    @property
    def generator_us_per_msg(self) -> float | None:
        """The generators' CPU time (user + system, all processes) per message received, in microseconds.

        A message sent and its reply, or one delivery in broadcast mode: the
        cost figure that stays honest on a busy machine, where a throughput
        may be lower only because the generator was not given the CPU.
        """
        if not self.generator_cpu_s or not self.received:
            return None
        return sum(self.generator_cpu_s) / self.received * 1e6

    def facts(self) -> dict[str, Any]:
        """What is not a number series: the encoded histograms, the verdict on the generator, reasons; the account and
        the reconnections when the run counted (only then, so a plain run's facts are as before)."""
        return {
            "latency_hdr": self.histogram,
            "service_hdr": self.service_histogram,
            "hdr_unit": "us",
            "client_bound": self.client_bound,
            "client_bound_reasons": list(self.client_bound_reasons),
            "failed_connects": dict(self.failed_connects),
            "errors": list(self.errors),
            "load_spec": dict(self.spec),
        } | ({"account": self.account, "reconnected": self.reconnected} if self.account is not None else {})

    def add_to(self, output: ScenarioOutput, prefix: str = "", **tags: str) -> None:
        """Add the samples (with units) and facts to a scenario's output, names prefixed by ``prefix``."""
        for name, samples in self.to_samples().items():
            unit, better = SAMPLE_UNITS[name]
            output.add(f"{prefix}{name}", unit, samples, better, **tags)
        output.facts.update({f"{prefix}{k}": v for k, v in self.facts().items()})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoadResult:
        """The inverse of ``to_dict``."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
