"""Spike 9's decision, declared as data for ``harness.decide``: what the options are judged on and must pass.

Not part of the source hash (like ``harness/decide``): changing a utility or a gate re-scores the stored
runs (``spike report``) without making them stale. Everything here reads only a stored run.
"""

from __future__ import annotations

from harness.decide import Criterion, Derived, Metric, NotMeasured, Part, Utility, cost
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


def _browser(name: str, **tags: str):
    """A value of the browser step, read from the option that measured this option's bytes (its wire format's)."""

    def value(run: RunResult, option: str) -> float:
        from spikes.s09_message_protocol.browser_bench import measured_by

        v = run.median("browser", measured_by(option), name, **tags)
        if v is None:
            raise NotMeasured(f"the browser step did not run for {measured_by(option)}")
        return v

    return value


#: The traffic a player receives, for the cost model: an assumption (this spike measures per message, not per player),
#: the same 30 messages a second the size utilities below are written for.
RECEIVED_PER_PLAYER_S = 30.0


def _usage(run: RunResult, option: str) -> cost.Usage:
    """Egress and encoding CPU per player at :data:`RECEIVED_PER_PLAYER_S` messages of the tabletop mix."""
    from spikes.s09_message_protocol.messages import MIX

    size = run.median("size", option, "size_deflate_stream", message="mixed")
    if size is None:
        raise NotMeasured("size did not measure the mixed stream")
    ns = 0.0
    for kind, share in MIX.items():
        e = run.median("speed", option, "encode_ns", message=kind)
        if e is None:
            raise NotMeasured(f"speed did not measure {kind}")
        ns += share * e
    rate = RECEIVED_PER_PLAYER_S
    return cost.Usage(
        users=1,
        cores=ns * 1e-9 * rate,
        egress_bytes_per_s=size * rate,
        from_users=False,
        basis=(
            f"per player, assuming {fmt_num(rate)} messages a second received (an assumption, not measured here): "
            f"{fmt_num(size)} B per message of the tabletop mix with permessage-deflate = {fmt_num(size * rate)} B/s of egress; "
            f"{fmt_num(ns)} ns to encode a message of the mix (weighted by its shares), one encode per recipient (an upper bound) "
            f"= {ns * 1e-9 * rate * 1e6:.1f} µs of CPU per second"
        ),
    )


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
            Part(
                "browser decode of the tabletop mix",
                Derived(
                    _browser("browser_decode_ns", message="mixed"),
                    "median ns per message decoding the mixed stream in Chromium (`browser`), measured on the option sending "
                    "the same bytes to the same library where the step ran for that one",
                ),
                "ns per message",
                Utility(
                    5000,
                    200_000,
                    "a player's page decodes the table's traffic on its main thread: a burst of 80 messages in one 16 ms frame "
                    "(a reconnect's catch-up, a busy table) costs 0.4 ms at 5 µs a message and the whole frame at 200 µs",
                    log=True,
                ),
                min_diff=500,
                fmt=lambda v: _us(v / 1000),
            ),
            Part(
                "library bytes the page downloads (gzip)",
                Derived(
                    _browser("bundle_gzip_bytes"),
                    "gzip -9 bytes of the esbuild bundle of the library the page reads the format with (`browser`; JSON: 0)",
                    exact=True,
                ),
                "B",
                Utility(
                    5000,
                    100_000,
                    "downloaded before the board shows: on a slow 4G link (1.6 Mbit/s, Chrome DevTools' preset) 5 kB take 25 ms "
                    "and 100 kB half a second",
                    log=True,
                ),
                min_diff=1000,
            ),
        ),
        "CPU per message on the server, where the traffic is (cursors) and where a stall hurts (snapshots), and in the "
        "player's browser (decoding the mix, Chromium), plus the decoder's bytes in the page",
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
            cost.money_part(
                _usage,
                f"egress of the tabletop mix with permessage-deflate and the CPU to encode it, at {fmt_num(RECEIVED_PER_PLAYER_S)} messages a second per player",
            ),
        ),
        "money per month: the deflated bytes billed as egress, and the encoding CPU (the raw size under Scalability is what each "
        "subscriber's send buffer holds when compression is off; it is not billed)",
    ),
)


def _fraction(run: RunResult, option: str) -> float:
    true, total = run.median("debugging", option, "debug_facts_true"), run.median("debugging", option, "debug_facts_total")
    if true is None or not total:
        raise NotMeasured("the debugging step did not run")
    return true / total
