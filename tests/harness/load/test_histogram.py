from __future__ import annotations

import random

from harness.load.histogram import HIGHEST_US, LatencyRecorder, decode, merge_encoded, new_histogram, percentiles_ms


def _encoded(values):
    r = LatencyRecorder()
    for v in values:
        r.record(v)
    return r.encode()


def test_merging_two_encoded_histograms_equals_one_histogram_of_all_values():
    rng = random.Random(5)
    a = [rng.randint(50, 5_000) for _ in range(5_000)]
    b = [rng.randint(1_000, 900_000) for _ in range(3_000)]
    merged = merge_encoded([_encoded(a), _encoded(b)])
    direct = new_histogram()
    for v in a + b:
        direct.record_value(v)
    assert merged.get_total_count() == 8_000
    assert merged.equals(direct)
    assert percentiles_ms(merged) == percentiles_ms(direct)


def test_the_fast_recorder_builds_the_same_histogram_as_record_value():
    rng = random.Random(1)
    values = [rng.choice([rng.randint(1, 3_000), rng.randint(3_000, 50_000_000)]) for _ in range(20_000)]
    rec = LatencyRecorder()
    direct = new_histogram()
    for v in values:
        rec.record(v)
        direct.record_value(v)
    assert rec.histogram().equals(direct)
    assert decode(rec.encode()).equals(direct)


def test_percentiles_in_milliseconds():
    rec = LatencyRecorder()
    for v in range(1, 1001):  # 1 us .. 1000 us, all exact below 2048
        rec.record(v)
    p = percentiles_ms(rec.histogram())
    assert p == {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999, "max": 1.0}


def test_out_of_range_values_are_clamped_and_counted_not_dropped():
    rec = LatencyRecorder()
    rec.record(0)
    rec.record(-5)
    rec.record(HIGHEST_US * 10)
    h = rec.histogram()
    assert h.get_total_count() == 3
    assert rec.clamped == 1  # below 1 us is "at most 1 us"; above 60 s is a clamp
    assert h.get_max_value() >= HIGHEST_US


def test_an_empty_histogram_has_no_percentiles_and_merges_cleanly():
    empty = LatencyRecorder().encode()
    assert percentiles_ms(merge_encoded([empty]))["p99"] is None
    assert merge_encoded([empty, _encoded([100])]).get_total_count() == 1
