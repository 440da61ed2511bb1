"""What a spike declares to be judged: criteria, gates and utilities, as data.

A spike never turns a figure into a score itself. It declares, for each
criterion, which stored value(s) the criterion reads (:class:`Metric` for a
stored measurement, :class:`Derived` for a value the spike computes from stored
measurements, in that value's own unit), and a :class:`Utility` in that unit:
the value that is good enough (10), the value that is unacceptable (0) and why.
It declares :class:`Gate` requirements (no data loss, no attack through,
feasible at the target scale) that an option must pass to be recommended.
:mod:`harness.decide.engine` does the rest: scores, the basis and formula text,
ties, gates, renormalised weights and sensitivity, from this one declaration.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from harness.stats import fmt_num

if TYPE_CHECKING:
    from harness.results import RunResult

__all__ = [
    "Utility",
    "Largest",
    "Metric",
    "Derived",
    "Part",
    "Criterion",
    "Gate",
    "NotMeasured",
    "STATS",
    "COMPLEXITY",
    "DEPENDENCY_LINES",
    "complexity_part",
    "memory_per_connection_part",
]


class NotMeasured(Exception):
    """Raised by a :class:`Derived` function (or a source) when the value could not be measured; the message says why."""


@dataclass(frozen=True)
class Utility:
    """How a value in its own unit becomes a 0..10 score: 10 at ``good`` or better, 0 at ``bad`` or worse.

    Between the two the score is linear in the value, or in its logarithm with
    ``log=True`` (for latencies, sizes and rates that span orders of magnitude,
    where halving matters the same at every scale). ``good < bad`` means lower
    is better. ``why`` says where the two anchors come from.
    """

    good: float
    bad: float
    why: str
    log: bool = False

    def __post_init__(self) -> None:
        if self.good == self.bad:
            raise ValueError(f"utility anchors must differ (good = bad = {self.good})")
        if self.log and (self.good <= 0 or self.bad <= 0):
            raise ValueError("a logarithmic utility needs positive anchors")
        if not self.why.strip():
            raise ValueError("a utility must say why its anchors are where they are")

    @property
    def lower_is_better(self) -> bool:
        return self.good < self.bad

    def score(self, value: float) -> float:
        """The 0..10 score of ``value``."""
        if self.log:
            v = max(value, min(self.good, self.bad) / 1e6)
            frac = (math.log(self.bad) - math.log(v)) / (math.log(self.bad) - math.log(self.good))
        else:
            frac = (self.bad - value) / (self.bad - self.good)
        return 10.0 * min(1.0, max(0.0, frac))

    def text(self, fmt: Callable[[float], str]) -> str:
        better, worse = ("or less", "or more") if self.lower_is_better else ("or more", "or less")
        scale = "logarithmic" if self.log else "linear"
        return f"10 at {fmt(self.good)} {better}, 0 at {fmt(self.bad)} {worse}, {scale} between ({self.why})"


@dataclass(frozen=True)
class Largest:
    """In a :class:`Metric`'s tags: the largest value of this tag that the step measured (e.g. the most connections)."""

    def __repr__(self) -> str:
        return "Largest()"


def _p99(xs: Sequence[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


#: How one repeat's samples become that repeat's value.
STATS: dict[str, Callable[[Sequence[float]], float]] = {
    "median": lambda xs: float(statistics.median(xs)),
    "mean": lambda xs: float(statistics.fmean(xs)),
    "max": lambda xs: float(max(xs)),
    "min": lambda xs: float(min(xs)),
    "sum": lambda xs: float(sum(xs)),
    "p99": _p99,
}


def _tag_number(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        return math.inf


@dataclass(frozen=True)
class Metric:
    """A stored measurement of one scenario, one value per repeat (``stat`` of that repeat's samples).

    ``tags`` select the measurement; a tag given as :class:`Largest` picks the
    largest value of that tag the step measured. ``exact`` marks a value that
    cannot vary between repeats (a size, a count of features): then options
    tie on it only by the smallest difference that matters, never for want of
    repeats.
    """

    scenario: str
    name: str
    tags: Mapping[str, str | Largest] = field(default_factory=dict)
    stat: str = "median"
    exact: bool = False

    def __post_init__(self) -> None:
        if self.stat not in STATS:
            raise ValueError(f"unknown stat {self.stat!r}; one of {', '.join(STATS)}")

    def resolve_tags(self, run: RunResult, option: str) -> dict[str, str]:
        """The tags with every :class:`Largest` replaced by the value measured for ``option``."""
        sr = run.ok(self.scenario, option)
        out: dict[str, str] = {}
        for k, v in self.tags.items():
            if isinstance(v, Largest):
                values = {m.tags[k] for m in (sr.find(self.name) if sr else []) if k in m.tags}
                if not values:
                    raise KeyError(f"scenario {self.scenario!r}, option {option!r} has no measurement {self.name!r} with a {k!r} tag")
                out[k] = max(values, key=_tag_number)
            else:
                out[k] = v
        return out

    def repeats(self, run: RunResult, option: str) -> list[float]:
        sr = run.result(self.scenario, option)
        if sr is None:
            raise NotMeasured(f"{self.scenario} did not run for this option")
        if sr.status != "ok":
            reason = f": {sr.reason}" if sr.reason else ""
            raise NotMeasured(f"{self.scenario} {sr.status.replace('_', ' ')}{reason}")
        tags = self.resolve_tags(run, option)
        # A step that ran ok but lacks the measurement is a malformed file or a renamed metric, not "not measured":
        # ScenarioResult.measurement's KeyError becomes a one-line "cannot score" error naming the file.
        record = sr.measurement(self.name, **tags)
        values = [STATS[self.stat](rep) for rep in record.repeats if rep]
        if not values:
            raise NotMeasured(f"{self.scenario} stored no samples of {self.name}")
        return values

    @staticmethod
    def _tag_text(tags: Mapping[str, Any]) -> str:
        return f" [{', '.join(f'{k}={v}' for k, v in tags.items())}]" if tags else ""

    def describe(self) -> str:
        tags = {k: ("the largest measured" if isinstance(v, Largest) else v) for k, v in self.tags.items()}
        per = "" if self.exact else f", the {self.stat} of each repeat"
        return f"`{self.name}`{self._tag_text(tags)} of scenario `{self.scenario}`{per}"


@dataclass(frozen=True)
class Derived:
    """A value the spike computes from stored measurements, in its own unit: never a score.

    ``fn(run, option)`` reads the stored run (only) and returns the value, or
    raises :class:`NotMeasured` with the reason. The harness calls it on each
    repeat alone (a view of the run holding only that repeat) to get one value
    per repeat, unless ``exact`` (the value cannot vary: computed once).
    ``describe`` is the formula in words, shown in the document.
    """

    fn: Callable[[RunResult, str], float | None]
    describe_text: str
    exact: bool = False

    def describe(self) -> str:
        return self.describe_text


Source = Metric | Derived


@dataclass(frozen=True)
class Part:
    """One measured quantity of a criterion, and how it is scored.

    ``min_diff`` is the smallest difference, in ``unit``, that matters: two
    options closer than that tie on this part whatever the repeats say.
    ``weight`` is its share of the criterion when a criterion has several parts.
    ``max_spread`` (a fraction, 0.10 = 10%) declares a quantity that does not
    always repeat: when one option's per-repeat values spread (max - min) by more
    than that fraction of their median, its runs disagree too much to rank it, and
    the options tie on this part: it is left out of the criterion for every
    option (the other parts renormalised), as a part not measured would be.
    """

    label: str
    source: Source
    unit: str
    utility: Utility
    min_diff: float
    weight: float = 1.0
    fmt: Callable[[float], str] | None = None
    max_spread: float | None = None

    def show(self, value: float) -> str:
        return self.fmt(value) if self.fmt else fmt_num(value, self.unit)

    def spread(self, repeats: Sequence[float]) -> float | None:
        """(max - min) / median of per-repeat values; ``None`` with fewer than two or a zero median."""
        if len(repeats) < 2:
            return None
        med = statistics.median(repeats)
        return (max(repeats) - min(repeats)) / abs(med) if med else None

    def too_spread(self, repeats: Sequence[float]) -> bool:
        """Whether these repeats disagree by more than ``max_spread`` (always ``False`` when none is declared)."""
        s = self.spread(repeats)
        return self.max_spread is not None and s is not None and s > self.max_spread


@dataclass(frozen=True)
class Criterion:
    """A column of the decision matrix (Performance, Cost...): its parts, and what it stands for."""

    name: str
    parts: tuple[Part, ...]
    about: str = ""


@dataclass(frozen=True)
class Gate:
    """A requirement an option must pass to be recommended, whatever its scores.

    ``kind`` is ``"data loss"``, ``"security"`` or ``"scale"``. The option
    passes when its *worst* repeat is at most ``at_most`` (or at least
    ``at_least``): one repeat that lost data is data loss. With a
    :class:`Metric` whose tags hold a :class:`Largest`, the gate is judged at
    the largest load measured, and every smaller load measured is judged too,
    so a failure can say the highest load at which the option still passed.
    """

    name: str
    kind: Literal["data loss", "security", "scale"]
    source: Source
    unit: str
    why: str
    at_most: float | None = None
    at_least: float | None = None
    fmt: Callable[[float], str] | None = None

    def __post_init__(self) -> None:
        if (self.at_most is None) == (self.at_least is None):
            raise ValueError(f"gate {self.name!r}: give exactly one of at_most, at_least")

    def show(self, value: float) -> str:
        return self.fmt(value) if self.fmt else fmt_num(value, self.unit)

    def passes(self, value: float) -> bool:
        return value <= self.at_most if self.at_most is not None else value >= self.at_least  # type: ignore[operator]

    def worst(self, values: Sequence[float]) -> float:
        return max(values) if self.at_most is not None else min(values)

    @property
    def rule(self) -> str:
        return f"at most {self.show(self.at_most)}" if self.at_most is not None else f"at least {self.show(self.at_least)}"  # type: ignore[arg-type]


#: A third-party dependency the app would not ship anyway counts as this many lines: code you did not write but must
#: upgrade, audit and ship.
DEPENDENCY_LINES = 25

#: The name of the harness's own criterion.
COMPLEXITY = "Complexity"


def _complexity_value(ships_anyway: frozenset[str]) -> Callable[[RunResult, str], float | None]:
    def value(run: RunResult, option: str) -> float:
        cx = run.complexity.get(option)
        if not cx:
            raise NotMeasured("no lines of code were counted for this option")
        extra = [d for d in cx.get("dependencies", []) if d not in ships_anyway]
        return float(cx["loc"]) + DEPENDENCY_LINES * len(extra)

    return value


def complexity_part(ships_anyway: Sequence[str] = ()) -> Part:
    """The Complexity criterion's one part: what an option adds to the code base, in line-equivalents.

    Lines of its POC code (not blank, not comments) plus :data:`DEPENDENCY_LINES`
    per third-party dependency beyond ``ships_anyway`` (what the app ships
    whichever option wins).
    """
    anyway = frozenset(ships_anyway)
    shipped = f" (not counted: {', '.join(sorted(anyway))}, which the app ships anyway)" if anyway else ""
    return Part(
        "POC code plus dependencies",
        Derived(
            _complexity_value(anyway),
            f"lines of the option's POC code (not blank, not comments; the files under Code/Artifacts) + {DEPENDENCY_LINES} per "
            f"third-party dependency{shipped}",
            exact=True,
        ),
        "line-equivalents",
        Utility(
            150,
            1500,
            "150: a proof of concept one reviewer reads in an hour; 1,500: a subsystem that needs an owner",
            log=True,
        ),
        min_diff=50,
        fmt=lambda v: f"{fmt_num(v)} line-equivalents",
    )


def memory_per_connection_part(source: Metric | Derived, label: str = "memory per connection") -> Part:
    """Server memory per connection, in bytes: the same requirement in every spike that holds connections."""
    return Part(
        label,
        source,
        "B",
        Utility(10 * 1024, 100 * 1024, "100k connections need 1 GiB at 10 KiB each, 10 GiB at 100 KiB", log=True),
        min_diff=2048,
        fmt=lambda v: f"{fmt_num(v / 1024)} KiB",
    )
