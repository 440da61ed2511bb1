"""Spike 9's decision, declared as data for ``harness.decide``: what the options are judged on and must pass.

Not part of the source hash (like ``harness/decide``): changing a utility or a gate re-scores the stored
runs (``spike report``) without making them stale. Everything here reads only a stored run.
"""

from __future__ import annotations

from harness.decide import Criterion, Derived, Metric, NotMeasured, Part, Utility
from harness.results import RunResult
from harness.stats import fmt_num


def _round_trip(kind: str):
    """Median encode + median decode time of one message kind, in µs (one repeat's, when called on a repeat alone)."""

    def value(run: RunResult, option: str) -> float:
        e, d = run.median("speed", option, "encode_ns", message=kind), run.median("speed", option, "decode_ns", message=kind)
        if e is None or d is None:
            raise NotMeasured(f"speed did not measure {kind}")
        return (e + d) / 1000

    return value


def _us(x: float) -> str:
    return f"{fmt_num(x / 1000)} ms" if x >= 1000 else f"{fmt_num(x)} µs"


CRITERIA = (
    Criterion(
        "Performance",
        (
            Part(
                "cursor encode+decode",
                Derived(_round_trip("cursor"), "median encode time + median decode time of the cursor message (`speed`), per repeat"),
                "µs",
                Utility(
                    2,
                    50,
                    "the most frequent message: at 10,000 cursor messages/s a server spends 2% of a core at 2 µs, half a core at 50 µs",
                    log=True,
                ),
                min_diff=0.5,
                weight=3,
                fmt=_us,
            ),
            Part(
                "snapshot encode+decode",
                Derived(_round_trip("snapshot"), "median encode time + median decode time of the snapshot message (`speed`), per repeat"),
                "µs",
                Utility(
                    1000,
                    16000,
                    "sent when a player joins: past one 60 fps frame (16 ms) it stalls every other connection on the event loop",
                    log=True,
                ),
                min_diff=100,
                fmt=_us,
            ),
        ),
        "server CPU per message, where the traffic is (cursors) and where a stall hurts (snapshots)",
    ),
    Criterion(
        "Maintenance",
        (
            Part(
                "bad inputs rejected by the decoder",
                Metric("type-safety", "rejected_fraction", exact=True),
                "of the battery",
                Utility(0.9, 0.0, "every bad input the decoder lets through needs a hand-written check in each message handler"),
                min_diff=0.1,
                fmt=lambda v: f"{v:.0%}",
            ),
            Part(
                "debugging facts true",
                Derived(
                    lambda run, o: _fraction(run, o),
                    "debugging facts true / facts checked (`debugging`: readable in DevTools, field names recovered without a schema, names in the bytes)",
                    exact=True,
                ),
                "of the facts",
                Utility(1.0, 0.0, "each fact false is a step a developer needs a tool or the schema for while debugging a live session"),
                min_diff=0.34,
                fmt=lambda v: f"{v:.0%}",
            ),
        ),
        "what a team works around day to day: validating input by hand, reading frames while debugging",
    ),
    Criterion(
        "Scalability",
        (
            Part(
                "raw bytes per message of the tabletop mix",
                Metric("size", "size_raw_stream", {"message": "mixed"}, exact=True),
                "B",
                Utility(
                    50,
                    1000,
                    "copied to every subscriber when permessage-deflate is off, as it often is at scale: 50 B at 30 messages/s to 50 players "
                    "is 75 KB/s per table, 1,000 B is 1.5 MB/s",
                    log=True,
                ),
                min_diff=5,
            ),
        ),
    ),
    Criterion(
        "Cost",
        (
            Part(
                "bytes per message of the tabletop mix with permessage-deflate",
                Metric("size", "size_deflate_stream", {"message": "mixed"}, exact=True),
                "B",
                Utility(
                    20,
                    200,
                    "egress, the running cost, with compression on: 20 B per message is about a TCP/IP header's worth, 200 B ten times that",
                    log=True,
                ),
                min_diff=3,
            ),
        ),
    ),
)


def _fraction(run: RunResult, option: str) -> float:
    true, total = run.median("debugging", option, "debug_facts_true"), run.median("debugging", option, "debug_facts_total")
    if true is None or not total:
        raise NotMeasured("the debugging step did not run")
    return true / total
