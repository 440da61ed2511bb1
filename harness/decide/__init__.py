"""The decision layer: criteria and gates declared as data, scored, tied and weighed by the harness.

A spike declares :class:`Criterion`, :class:`Gate` and weights
(:mod:`harness.decide.model`); :func:`evaluate` (:mod:`harness.decide.engine`)
turns a stored run into a :class:`Decision`. No spike computes a score.
"""

from harness.decide.engine import DEFAULT_TIE_MARGIN, Decision, evaluate, repeat_view, sensitivity
from harness.decide.model import COMPLEXITY, Criterion, Derived, Gate, Largest, Metric, NotMeasured, Part, Utility

__all__ = [
    "COMPLEXITY",
    "Criterion",
    "DEFAULT_TIE_MARGIN",
    "Decision",
    "Derived",
    "Gate",
    "Largest",
    "Metric",
    "NotMeasured",
    "Part",
    "Utility",
    "evaluate",
    "repeat_view",
    "sensitivity",
]
