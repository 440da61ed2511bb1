"""One cost model: measured resources turned into money per month at a number of concurrent users.

A spike says what its measured deployment needed (:class:`Usage`: server cores
and memory at the measured number of users, bytes sent to players, whether it
needs Redis or PostgreSQL and how busy they were) and declares a
:func:`money_part` in its Cost criterion. This module prices it from one table,
``harness/decide/prices.toml`` (or the file named by ``SPIKE_PRICES``):

    scale(N)       = N / measured users                  (linear: traffic per user held fixed)
    app machines   = max(ceil(cores x scale / (vCPUs x headroom)), ceil(memory x scale / (memory x headroom)), 1)
    Redis          = one Redis machine when the option needs Redis; infeasible when one Redis needs
                     more than headroom of its one command thread's core (a Redis Cluster is not priced)
    PostgreSQL     = one primary when the option needs it; infeasible when it needs more than the
                     machine's vCPUs x headroom (sharding is not priced)
    egress         = bytes per second to players x scale x seconds per month / 2^30 x price per GiB
    money(N)       = app machines x app price + Redis + PostgreSQL + egress, per month

A single-process option cannot add machines: past headroom of one core, or of one
machine's memory, it is infeasible at that scale and is not priced. A projection
more than 10x beyond the measured number of users is marked extrapolated.
"""

from __future__ import annotations

import contextlib
import math
import os
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.decide.model import Derived, NotMeasured, Part, Utility
from harness.results import ResultsError
from harness.stats import fmt_num

if TYPE_CHECKING:
    from harness.results import RunResult

__all__ = [
    "PRICES_FILE",
    "SCALES",
    "EXTRAPOLATION_LIMIT",
    "PricesError",
    "Machine",
    "Prices",
    "Usage",
    "Estimate",
    "Money",
    "estimate",
    "load_prices",
    "current",
    "using",
    "money_part",
    "fmt_usd",
    "FORMULA",
]

PRICES_FILE = Path(__file__).with_name("prices.toml")
#: The concurrent-user counts every cost table shows.
SCALES = (1_000, 10_000, 100_000)
#: A projection past this multiple of the measured users is marked extrapolated.
EXTRAPOLATION_LIMIT = 10.0
#: What the cost model returns for an option that cannot meet a scale (scores 0; shown as infeasible, never as a price).
INFEASIBLE = 1e15
_GIB = 2**30
#: Two monthly costs closer than this tie: just under one small machine's month ($59.57 at the table's m7g.large), so
#: an option that needs one machine more is not tied on money.
MIN_DIFF_USD = 55.0

FORMULA = (
    "money per month at N concurrent users = app machines x their price + one Redis machine (if the option needs Redis) + one "
    "PostgreSQL machine (if it needs PostgreSQL) + egress; app machines = max(ceil(cores(N) / (vCPUs x headroom)), ceil(memory(N) / "
    "(machine memory x headroom)), 1); cores, memory, egress and database load are linear in N from the measured users; a single "
    "process past headroom (70%) of one core or of its machine's memory, one Redis past headroom of its one command thread, or "
    "one PostgreSQL past headroom of its machine is infeasible at N and not priced; egress is priced through the table's volume tiers"
)


class PricesError(ResultsError):
    """The price table is missing, malformed or names an impossible machine."""


@dataclass(frozen=True)
class Machine:
    """One priced machine: what it offers and what it costs, with where the price was read."""

    role: str
    instance: str
    vcpus: int
    memory_gib: float
    usd_per_hour: float
    source: str
    status: str
    checked: str

    def monthly(self, hours: float) -> float:
        return self.usd_per_hour * hours


_STATUSES = ("verified", "secondary", "unverified")


@dataclass(frozen=True)
class Prices:
    """The price table (see ``prices.toml``)."""

    currency: str
    hours_per_month: float
    headroom: float
    app: Machine
    redis: Machine
    postgres: Machine
    egress_usd_per_gib: float  # the first tier's price (what a flip search scales, with every tier)
    egress_source: str
    egress_status: str
    egress_checked: str
    path: str = ""
    #: Volume tiers: (upper bound in GiB a month, cumulative; ``math.inf`` for the last), price per GiB in that tier.
    egress_tiers: tuple[tuple[float, float], ...] = ()

    def egress_monthly(self, gib: float) -> float:
        """Dollars for ``gib`` sent in a month, through the volume tiers (one flat rate when the table has none)."""
        tiers = self.egress_tiers or ((math.inf, self.egress_usd_per_gib),)
        usd, below = 0.0, 0.0
        for upper, price in tiers:
            take = max(0.0, min(gib, upper) - below)
            usd += take * price
            below = upper
            if gib <= upper:
                break
        return usd

    #: The prices a user can change, by key: what :meth:`scaled` multiplies.
    ITEMS = ("app", "redis", "postgres", "egress")

    def label(self, item: str) -> str:
        return {
            "app": "app machine",
            "redis": "Redis machine",
            "postgres": "PostgreSQL machine",
            "egress": "egress",
        }[item]

    def price(self, item: str) -> float:
        return self.egress_usd_per_gib if item == "egress" else getattr(self, item).usd_per_hour

    def price_text(self, item: str, factor: float = 1.0) -> str:
        p = self.price(item) * factor
        if item == "egress":
            more = f" for the first {fmt_num(self.egress_tiers[0][0] / 1024)} TiB a month, less above" if len(self.egress_tiers) > 1 else ""
            return f"${p:.3f}/GiB{more}"
        return f"${p:.4f}/hour"

    def status(self, item: str) -> str:
        return self.egress_status if item == "egress" else getattr(self, item).status

    def scaled(self, item: str, factor: float) -> Prices:
        """These prices with one item multiplied by ``factor``."""
        if item == "egress":
            return replace(
                self,
                egress_usd_per_gib=self.egress_usd_per_gib * factor,
                egress_tiers=tuple((upper, price * factor) for upper, price in self.egress_tiers),
            )
        m: Machine = getattr(self, item)
        changed = replace(m, usd_per_hour=m.usd_per_hour * factor)
        if item == "app":
            return replace(self, app=changed)
        if item == "redis":
            return replace(self, redis=changed)
        return replace(self, postgres=changed)

    def rows(self) -> list[dict[str, str]]:
        """The table as the documents print it."""
        out = []
        for item in self.ITEMS:
            if item == "egress":
                out.append(
                    {
                        "item": "egress to players",
                        "what": "per GiB sent",
                        "price": self.price_text(item),
                        "status": self.egress_status,
                        "source": f"{self.egress_source}; checked {self.egress_checked}",
                    }
                )
            else:
                m: Machine = getattr(self, item)
                out.append(
                    {
                        "item": self.label(item),
                        "what": f"{m.instance}: {m.vcpus} vCPUs, {fmt_num(m.memory_gib)} GiB",
                        "price": f"{self.price_text(item)} (${m.monthly(self.hours_per_month):,.0f}/month)",
                        "status": m.status,
                        "source": f"{m.source}; checked {m.checked}",
                    }
                )
        return out

    @property
    def unverified(self) -> list[str]:
        return [self.label(i) for i in self.ITEMS if self.status(i) == "unverified"]


def _get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise PricesError(f"{where}: missing {key!r}")
    v = table[key]
    if not isinstance(v, kind) or isinstance(v, bool):
        raise PricesError(f"{where}: {key!r} is {v!r}, not a {getattr(kind, '__name__', 'number')}")
    return v


def _positive(v: float, what: str) -> float:
    if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
        raise PricesError(f"{what} must be a positive number, not {v!r}")
    return float(v)


def _machine(data: dict[str, Any], role: str, where: str) -> Machine:
    t = data.get(role)
    if not isinstance(t, dict):
        raise PricesError(f"{where}: missing the [{role}] table")
    w = f"{where} [{role}]"
    status = _get(t, "status", str, w)
    if status not in _STATUSES:
        raise PricesError(f"{w}: status {status!r} is not one of {', '.join(_STATUSES)}")
    vcpus = _get(t, "vcpus", int, w)
    if vcpus < 1:
        raise PricesError(f"{w}: vcpus must be at least 1")
    return Machine(
        role,
        _get(t, "instance", str, w),
        vcpus,
        _positive(_get(t, "memory_gib", (int, float), w), f"{w} memory_gib"),
        _positive(_get(t, "usd_per_hour", (int, float), w), f"{w} usd_per_hour"),
        _get(t, "source", str, w),
        status,
        _get(t, "checked", str, w),
    )


def load_prices(path: str | os.PathLike[str] | None = None) -> Prices:
    """Read a price table: ``path``, else ``$SPIKE_PRICES``, else the harness's ``prices.toml``."""
    p = Path(path or os.environ.get("SPIKE_PRICES") or PRICES_FILE)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise PricesError(f"price table {p} is not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise PricesError(f"cannot read the price table {p}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PricesError(f"price table {p} is not valid TOML: {exc}") from exc
    where = str(p)
    headroom = _positive(_get(data, "headroom", (int, float), where), f"{where} headroom")
    if headroom > 1:
        raise PricesError(f"{where}: headroom is a share of a machine, at most 1, not {headroom}")
    egress = data.get("egress")
    if not isinstance(egress, dict):
        raise PricesError(f"{where}: missing the [egress] table")
    currency = _get(data, "currency", str, where)
    if currency != "USD":
        raise PricesError(f"{where}: currency {currency!r}: the documents print dollars, so the table must be in USD")
    estatus = _get(egress, "status", str, f"{where} [egress]")
    if estatus not in _STATUSES:
        raise PricesError(f"{where} [egress]: status {estatus!r} is not one of {', '.join(_STATUSES)}")
    return Prices(
        currency,
        _positive(_get(data, "hours_per_month", (int, float), where), f"{where} hours_per_month"),
        headroom,
        _machine(data, "app", where),
        _machine(data, "redis", where),
        _machine(data, "postgres", where),
        _positive(_get(egress, "usd_per_gib", (int, float), f"{where} [egress]"), f"{where} [egress] usd_per_gib"),
        _get(egress, "source", str, f"{where} [egress]"),
        estatus,
        _get(egress, "checked", str, f"{where} [egress]"),
        str(p),
        _tiers(egress, f"{where} [egress]"),
    )


def _tiers(egress: dict[str, Any], where: str) -> tuple[tuple[float, float], ...]:
    """``[[egress.tiers]]`` as (cumulative upper bound in GiB, price); the last without a bound; none: one flat rate."""
    raw = egress.get("tiers", [])
    if not isinstance(raw, list):
        raise PricesError(f"{where}: tiers must be a list of tables")
    out: list[tuple[float, float]] = []
    for i, t in enumerate(raw):
        if not isinstance(t, dict):
            raise PricesError(f"{where}: tier {i + 1} is not a table")
        price = _positive(_get(t, "usd_per_gib", (int, float), f"{where} tier {i + 1}"), f"{where} tier {i + 1} usd_per_gib")
        last = i == len(raw) - 1
        upper = (
            math.inf
            if last and "up_to_gib" not in t
            else _positive(_get(t, "up_to_gib", (int, float), f"{where} tier {i + 1}"), f"{where} tier {i + 1} up_to_gib")
        )
        if out and upper <= out[-1][0]:
            raise PricesError(f"{where}: tier {i + 1}'s up_to_gib must be above the previous tier's")
        out.append((upper, price))
    if out and out[-1][0] != math.inf:
        raise PricesError(f"{where}: the last tier must have no up_to_gib (it takes the rest)")
    return tuple(out)


_current: list[Prices] = []


def current() -> Prices:
    """The prices in force: the innermost :func:`using`, else the table (read once)."""
    if not _current:
        _current.append(load_prices())
    return _current[-1]


@contextlib.contextmanager
def using(prices: Prices) -> Iterator[Prices]:
    """Price with ``prices`` inside the block (sensitivity re-evaluates a decision under changed prices)."""
    current()
    _current.append(prices)
    try:
        yield prices
    finally:
        _current.pop()


def reload() -> None:
    """Forget the table read so far (after ``SPIKE_PRICES`` changed)."""
    _current.clear()


@dataclass(frozen=True)
class Usage:
    """What an option's measured deployment needed at ``users`` concurrent users (all figures measured)."""

    users: float
    cores: float = 0.0
    memory_bytes: float = 0.0
    egress_bytes_per_s: float = 0.0
    redis: bool = False
    redis_cores: float = 0.0
    postgres: bool = False
    pg_cores: float = 0.0
    scales_out: bool = True
    basis: str = ""
    #: False for a per-message model (sizes, encode times times an assumed rate): linear in users by construction,
    #: so no column is "extrapolated" from a user count.
    from_users: bool = True

    def __post_init__(self) -> None:
        if not self.users > 0:
            raise ValueError("usage needs a positive number of measured users")
        for name in ("cores", "memory_bytes", "egress_bytes_per_s", "redis_cores", "pg_cores"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"usage {name} must be a finite number >= 0, not {v!r}")


@dataclass(frozen=True)
class Estimate:
    """Money per month for one option at ``users``; ``usd`` is None when the option is infeasible there."""

    users: int
    usd: float | None
    app_machines: int
    parts: dict[str, float] = field(default_factory=dict)
    extrapolated: bool = False
    infeasible: str = ""

    def text(self) -> str:
        if self.usd is None:
            return f"infeasible: {self.infeasible} (not priced)"
        shown = fmt_usd(self.usd) + "/month"
        bits = [f"{self.app_machines} app machine{'s' if self.app_machines != 1 else ''}"]
        bits += [k for k in ("Redis", "PostgreSQL") if k in self.parts]
        if self.parts.get("egress", 0) >= 0.5:
            bits.append(f"egress {fmt_usd(self.parts['egress'])}")
        mark = " (extrapolated)" if self.extrapolated else ""
        return f"{shown}{mark}: {' + '.join(bits)}"


def fmt_usd(v: float) -> str:
    return f"${v:,.0f}" if v >= 10 else f"${v:,.2f}"


def estimate(usage: Usage, users: int, prices: Prices | None = None) -> Estimate:
    """Price ``usage`` at ``users`` concurrent users (see the module's formula)."""
    p = prices or current()
    scale = users / usage.users
    h = p.headroom
    cores = usage.cores * scale
    memory = usage.memory_bytes * scale
    extrapolated = usage.from_users and scale > EXTRAPOLATION_LIMIT
    limits = []
    if usage.scales_out:
        app = max(
            math.ceil(cores / (p.app.vcpus * h) - 1e-9) if cores > 0 else 1,
            math.ceil(memory / (p.app.memory_gib * _GIB * h) - 1e-9) if memory > 0 else 1,
            1,
        )
    else:
        app = 1
        if cores > h:
            limits.append(f"one process needs {cores:.2f} cores")
        if memory > p.app.memory_gib * _GIB * h:
            limits.append(f"one process needs {fmt_num(memory / _GIB)} GiB")
    redis_cores = usage.redis_cores * scale
    if usage.redis and redis_cores > h:
        limits.append(f"one Redis needs {redis_cores:.2f} cores")
    pg_cores = usage.pg_cores * scale
    if usage.postgres and pg_cores > p.postgres.vcpus * h:
        limits.append(f"PostgreSQL needs {pg_cores:.1f} cores")
    if limits:
        return Estimate(users, None, app, {}, extrapolated, "; ".join(limits))
    hours = p.hours_per_month
    parts = {"app": app * p.app.monthly(hours)}
    if usage.redis:
        parts["Redis"] = p.redis.monthly(hours)
    if usage.postgres:
        parts["PostgreSQL"] = p.postgres.monthly(hours)
    parts["egress"] = p.egress_monthly(usage.egress_bytes_per_s * scale * hours * 3600 / _GIB)
    return Estimate(users, sum(parts.values()), app, parts, extrapolated)


@dataclass(frozen=True)
class Money(Derived):
    """A :class:`Derived` value in money per month at ``users``, from the spike's :class:`Usage` of an option."""

    usage: Callable[[RunResult, str], Usage] | None = None
    users: int = 10_000

    def estimate(self, run: RunResult, option: str, users: int | None = None) -> Estimate:
        assert self.usage is not None
        return estimate(self.usage(run, option), users or self.users)


def money_part(usage: Callable[[RunResult, str], Usage], what: str, users: int = 10_000) -> Part:
    """The Cost criterion's part in money: what running ``users`` concurrent users costs a month.

    ``usage(run, option)`` reads the stored run and returns the measured
    :class:`Usage` (or raises :class:`NotMeasured`). An option infeasible at
    ``users`` scores 0 and shows as infeasible. Two options closer than
    :data:`MIN_DIFF_USD` a month tie on it: about one small machine's month, the
    smallest thing one can buy (a constant, so a malformed price table fails
    when a document is priced, not when the spikes are loaded).
    """

    def value(run: RunResult, option: str) -> float:
        est = estimate(usage(run, option), users)
        return INFEASIBLE if est.usd is None else est.usd

    def show(v: float) -> str:
        return f"infeasible at {fmt_num(users)} users" if v >= INFEASIBLE else f"{fmt_usd(v)}/month"

    return Part(
        f"money per month at {fmt_num(users)} concurrent users",
        # exact: one value from the whole run, as the cost table shows it (per repeat, an option infeasible in one
        # repeat only would average a price with the "infeasible" marker).
        Money(value, f"{what}, priced by the harness's cost model (Cost in money, below)", True, usage, users),
        "USD/month",
        Utility(
            100,
            10_000,
            f"$100 a month for {fmt_num(users)} players is a hobby's bill; $10,000 needs a business plan",
            log=True,
        ),
        min_diff=MIN_DIFF_USD,
        fmt=show,
    )


def money_parts(criteria: Any) -> list[tuple[Part, Money]]:
    """The money parts among a spike's criteria."""
    out = []
    for c in criteria:
        for p in c.parts:
            if isinstance(p.source, Money):
                out.append((p, p.source))
    return out


def require(value: float | None, what: str) -> float:
    """A stored figure a :class:`Usage` needs, or :class:`NotMeasured` naming it."""
    if value is None:
        raise NotMeasured(f"{what} was not measured")
    return float(value)
