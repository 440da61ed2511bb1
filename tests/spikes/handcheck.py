"""Hand computation for the spikes' decision tests: raw samples straight from a stored run's JSON, and the utilities written out.

Each spike's test recomputes its criteria from the raw samples with these few lines, independently of
``harness.decide``, and compares: a declaration that reads the wrong metric, tag or direction fails.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def repeats(data: dict[str, Any], scenario: str, option: str, name: str, **tags: str) -> list[list[float]]:
    """The per-repeat samples of one stored measurement."""
    for sr in data["scenarios"]:
        if sr["scenario"] == scenario and sr["option"] == option and sr["status"] == "ok":
            for m in sr["measurements"]:
                if m["name"] == name and all(m["tags"].get(k) == v for k, v in tags.items()):
                    return m["repeats"]
    raise KeyError(f"{scenario}/{option}/{name} {tags}")


def value(data: dict[str, Any], scenario: str, option: str, name: str, stat: str = "median", **tags: str) -> float:
    """The median over repeats of each repeat's statistic: the value a criterion shows."""
    f = {"median": statistics.median, "max": max, "sum": sum}[stat]
    return statistics.median(f(r) for r in repeats(data, scenario, option, name, **tags) if r)


def largest(data: dict[str, Any], scenario: str, option: str, name: str, tag: str) -> str:
    for sr in data["scenarios"]:
        if sr["scenario"] == scenario and sr["option"] == option:
            return max((m["tags"][tag] for m in sr["measurements"] if m["name"] == name and tag in m["tags"]), key=float)
    raise KeyError(scenario)


def lin(v: float, good: float, bad: float) -> float:
    return 10 * min(1.0, max(0.0, (bad - v) / (bad - good)))


def logu(v: float, good: float, bad: float) -> float:
    return 10 * min(1.0, max(0.0, (math.log(bad) - math.log(v)) / (math.log(bad) - math.log(good))))


def complexity(data: dict[str, Any], option: str, anyway: tuple[str, ...] = ()) -> float:
    cx = data["complexity"][option]
    extra = [d for d in cx["dependencies"] if d not in anyway]
    return logu(cx["loc"] + 25 * len(extra), 150, 1500)


def money(
    cores: float,
    memory: float,
    egress: float,
    users: float,
    at: int = 10_000,
    redis: bool = False,
    postgres: bool = False,
) -> float:
    """The cost model written out from the price table: app machines by cores or memory, Redis and PostgreSQL machines, egress."""
    import tomllib

    p = tomllib.loads((Path(__file__).parents[2] / "harness" / "decide" / "prices.toml").read_text())
    h, hours, app = p["headroom"], p["hours_per_month"], p["app"]
    scale = at / users
    machines = max(math.ceil(cores * scale / (app["vcpus"] * h)), math.ceil(memory * scale / (app["memory_gib"] * 2**30 * h)), 1)
    usd = machines * app["usd_per_hour"] * hours
    usd += p["redis"]["usd_per_hour"] * hours if redis else 0.0
    usd += p["postgres"]["usd_per_hour"] * hours if postgres else 0.0
    gib, below = egress * scale * hours * 3600 / 2**30, 0.0
    for tier in p["egress"]["tiers"]:  # the volume tiers, written out
        upper = tier.get("up_to_gib", math.inf)
        usd += max(0.0, min(gib, upper) - below) * tier["usd_per_gib"]
        below = upper
    return usd


def money_score(usd: float) -> float:
    return logu(usd, 100, 10_000)


def pooled(data: dict[str, Any], scenario: str, option: str, name: str, **tags: str) -> float:
    """The median of every stored sample of a measurement, all repeats together (``RunResult.median``)."""
    return statistics.median(s for r in repeats(data, scenario, option, name, **tags) for s in r)
