"""The seed's ten spikes and their run-time budgets, read from ``budgets.toml``.

One table, kept in the repository next to this module, answers two questions
for the CLI and the runner: which spikes the seed plans (so ``spike run 3``
can say "planned, not implemented yet" instead of "unknown"), and how many
minutes a run of each may take before it is reported as over budget.

``SPIKE_NO_BUDGET=1`` (any non-empty value but ``0``) switches enforcement off:
``budget_minutes`` then answers ``None``, so a run records no budget and is
never over. The test suite sets it (``tests/conftest.py``) because a test
checks behaviour, not speed, and a quick run on a loaded machine may take
longer than its budget; the nightly job and users leave it unset. The table
itself (``table_minutes``, used to upgrade old results files) does not change.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["BUDGETS_FILE", "NO_BUDGET_ENV", "PlannedSpike", "seed_spikes", "table_minutes", "budgets_apply", "budget_minutes"]

BUDGETS_FILE = Path(__file__).with_name("budgets.toml")
#: Set (to anything but "" or "0") to run without budgets: see the module docstring.
NO_BUDGET_ENV = "SPIKE_NO_BUDGET"


@dataclass(frozen=True)
class PlannedSpike:
    """One spike of the seed: its number, slug, title and full-profile budget in minutes."""

    number: int
    slug: str
    title: str
    full_minutes: float


@cache
def _table() -> tuple[dict[int, PlannedSpike], float]:
    data = tomllib.loads(BUDGETS_FILE.read_text(encoding="utf-8"))
    spikes = {
        int(n): PlannedSpike(int(n), str(row["slug"]), str(row["title"]), float(row["full_minutes"])) for n, row in data["spike"].items()
    }
    return dict(sorted(spikes.items())), float(data["quick"]["minutes"])


def seed_spikes() -> dict[int, PlannedSpike]:
    """The seed's spikes by number, implemented or not."""
    return dict(_table()[0])


def table_minutes(number: int, quick: bool) -> float | None:
    """The table's budget for one run of spike ``number`` in minutes, or ``None`` for a spike outside the seed."""
    spikes, quick_minutes = _table()
    if quick:
        return quick_minutes
    spike = spikes.get(number)
    return spike.full_minutes if spike else None


def budgets_apply() -> bool:
    """Whether runs are held to their budgets: yes unless ``SPIKE_NO_BUDGET`` is set."""
    return os.environ.get(NO_BUDGET_ENV, "") in ("", "0")


def budget_minutes(number: int, quick: bool) -> float | None:
    """The budget a run of spike ``number`` is held to, in minutes; ``None`` outside the seed or under ``SPIKE_NO_BUDGET``."""
    return table_minutes(number, quick) if budgets_apply() else None
