"""A capacity search: the highest rate at which a probe passes, by geometric bisection over short steps (pure).

A spike's probe runs one short load step at a rate and says whether it passed its bounds (deliveries, p99) and
whether the load generator, not the server, was the limit. The search brackets the capacity between the highest
rate passed and the lowest failed, and says when the figure is only a lower bound ("at least"): the generator
was the limit, or nothing failed up to the top of the range. Spikes 4 and 6 search this way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CapacityStep", "CapacityResult", "search_capacity"]


@dataclass(frozen=True)
class CapacityStep:
    """One step of the search: the rate tried, whether it passed, and whether the load generator was the limit.

    ``client_bound`` is the load engine's verdict (a generator process at 90 % of its core, or behind its
    schedule): the step says nothing certain about the server above that rate. ``detail`` is what the probe
    measured (stored as is).
    """

    rate: float
    passed: bool
    client_bound: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CapacityResult:
    """What the search found.

    ``rate``: the highest rate that passed (None: none did). ``fail_rate``: the lowest rate that failed (None:
    none did). ``at_least``: the true capacity may be higher than ``rate`` for a reason that is not the server's
    (``why``: ``"generator"`` when the lowest failure was client-bound, or a pass was, which ends the search;
    ``"range"`` when no step failed, the bracket still open above). Otherwise ``why`` is ``"server"`` (the
    option itself failed at ``fail_rate``) or ``"none passed"``.
    """

    rate: float | None
    fail_rate: float | None
    at_least: bool
    why: str
    steps: tuple[CapacityStep, ...]

    @property
    def passing_step(self) -> CapacityStep | None:
        """The step that passed at ``rate`` (the last one at that rate)."""
        return next((s for s in reversed(self.steps) if s.passed and s.rate == self.rate), None)


def search_capacity(
    probe: Callable[[float], CapacityStep], lo: float, hi: float, *, ratio: float = 1.2, max_steps: int = 8
) -> CapacityResult:
    """The highest rate in ``[lo, hi]`` at which ``probe`` passes, by geometric bisection; pure apart from ``probe``.

    Assumes passing is monotone in the rate (a noisy step can mislead it: the document lists every step). The
    bracket starts as ``[lo, hi]``; each step tries its geometric midpoint: a pass raises the bottom, a failure
    lowers the top. A client-bound step lowers the top too (a failure there may be the generator's), and a
    client-bound pass also ends the search (nothing above it can be told). It stops when top / bottom <= ``ratio``
    or after ``max_steps`` steps; ``lo`` itself is tried (within ``max_steps``) only when nothing above it passed.
    """
    if not (0 < lo < hi) or not all(map(math.isfinite, (lo, hi))):
        raise ValueError(f"need 0 < lo < hi, finite; got lo={lo}, hi={hi}")
    if ratio <= 1 or max_steps < 1:
        raise ValueError(f"need ratio > 1 and max_steps >= 1; got ratio={ratio}, max_steps={max_steps}")
    steps: list[CapacityStep] = []
    bottom, top = lo, hi
    passed: float | None = None
    failed: float | None = None
    why_top = "range"

    def record(step: CapacityStep) -> CapacityStep:
        steps.append(step)
        return step

    while len(steps) < max_steps and top / bottom > ratio:
        rate = math.sqrt(bottom * top)
        step = record(probe(rate))
        if step.passed:
            bottom, passed = rate, rate
            if step.client_bound:  # the server held it at the generator's limit: no step above can be told
                why_top = "generator"
                break
        else:
            top, failed, why_top = rate, rate, "generator" if step.client_bound else "server"
    if passed is None and len(steps) < max_steps:
        step = record(probe(lo))
        if step.passed:
            passed = lo
            if step.client_bound:
                why_top = "generator"
        else:
            failed, why_top = lo, "generator" if step.client_bound else "server"
    if passed is None:
        return CapacityResult(None, failed, False, "none passed", tuple(steps))
    at_least = why_top in ("generator", "range")
    return CapacityResult(passed, failed, at_least, why_top, tuple(steps))
