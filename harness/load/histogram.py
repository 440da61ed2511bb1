"""HDR latency histograms: a fast recorder, merging across processes, percentiles in ms.

Every histogram of the load engine has the same shape, so histograms from
different generator processes (and runs) can be merged exactly: values in
microseconds, trackable from 1 us to 60 s, 3 significant digits. Values
outside the range are clamped (and counted) rather than silently dropped,
as ``HdrHistogram.record_value`` would do; values below 1 us count as 1 us.
"""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

__all__ = [
    "LOWEST_US",
    "HIGHEST_US",
    "SIGNIFICANT_DIGITS",
    "PERCENTILES",
    "new_histogram",
    "LatencyRecorder",
    "merge_encoded",
    "percentiles_ms",
    "decode",
]

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3

#: The percentiles every result reports, by label; ``max`` is the largest value.
PERCENTILES: dict[str, float] = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}

# With 3 significant digits HdrHistogram keeps 2048 sub-buckets per bucket:
# values below 2048 are exact, larger ones keep their top 11 bits. Quantizing
# the same way lets the recorder count values in a dict and fill the
# histogram once, at identical bucket positions.
_SUB_BUCKET_BITS = 11


def new_histogram() -> HdrHistogram:
    """An empty histogram of the engine's one shape (us, 1 us .. 60 s, 3 digits)."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


class LatencyRecorder:
    """Counts microsecond values in HDR buckets; ``record`` costs a few hundred ns.

    ``HdrHistogram.record_value`` is pure Python and costs about 1 us a call,
    a noticeable share of a generator's per-message budget; this recorder
    quantizes to the histogram's own buckets and fills a real histogram
    only when asked, so the result is the same histogram.
    """

    __slots__ = ("counts", "clamped", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.clamped = 0
        self.total = 0

    def record(self, value_us: int, count: int = 1) -> None:
        """Count ``count`` occurrences of one value in microseconds, clamped to the trackable range."""
        if value_us < LOWEST_US:
            value_us = LOWEST_US  # "at most 1 us": a lag of zero is normal, not an error
        elif value_us > HIGHEST_US:
            value_us = HIGHEST_US
            self.clamped += count
        shift = value_us.bit_length() - _SUB_BUCKET_BITS
        if shift > 0:
            value_us = (value_us >> shift) << shift
        counts = self.counts
        counts[value_us] = counts.get(value_us, 0) + count
        self.total += count

    def histogram(self) -> HdrHistogram:
        """A new HdrHistogram holding every recorded value."""
        h = new_histogram()
        for value, count in self.counts.items():
            h.record_value(value, count)
        return h

    def encode(self) -> str:
        """The HDR V2 base64 encoding of the recorded values."""
        return encode(self.histogram())


def encode(h: HdrHistogram) -> str:
    """The HDR V2 base64 encoding of ``h`` as text."""
    raw = h.encode()
    return raw.decode() if isinstance(raw, bytes) else raw


def decode(encoded: str) -> HdrHistogram:
    """A histogram from its HDR V2 base64 encoding."""
    return HdrHistogram.decode(encoded)


def merge_encoded(encoded: Iterable[str]) -> HdrHistogram:
    """One histogram holding every value of the encoded histograms (from generator processes)."""
    h = new_histogram()
    for e in encoded:
        if e:
            h.decode_and_add(e)
    return h


def percentiles_ms(h: HdrHistogram) -> dict[str, float | None]:
    """p50, p90, p99, p99.9 and max in milliseconds; None for each when the histogram is empty."""
    if h.get_total_count() == 0:
        return {**{k: None for k in PERCENTILES}, "max": None}
    out: dict[str, float | None] = {k: h.get_value_at_percentile(p) / 1000 for k, p in PERCENTILES.items()}
    out["max"] = h.get_max_value() / 1000
    return out
