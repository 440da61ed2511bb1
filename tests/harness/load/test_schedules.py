from __future__ import annotations

import math

import pytest

from harness.load.schedules import (
    OpenLoopSchedule,
    arrival_offsets,
    burst_arrivals,
    closed_loop_next,
    interval_ns,
    ramp_arrivals,
    random_phases,
    send_times,
    split_round_robin,
)


def test_instant_arrivals_are_all_at_zero():
    assert arrival_offsets(4, "instant", 10.0) == [0.0] * 4
    assert arrival_offsets(3, "ramp", 0.0) == [0.0] * 3  # a ramp over no time is instant


def test_ramp_spreads_connections_evenly_over_the_window():
    offsets = ramp_arrivals(5, 10.0)
    assert offsets == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert arrival_offsets(500, "ramp", 10.0)[-1] < 10.0


def test_burst_arrivals_are_random_within_the_window_and_reproducible():
    offsets = burst_arrivals(500, 10.0, seed=3)
    assert len(offsets) == 500 and offsets == sorted(offsets)
    assert all(0 <= x < 10.0 for x in offsets)
    assert offsets == burst_arrivals(500, 10.0, seed=3)
    assert offsets != burst_arrivals(500, 10.0, seed=4)
    # Random, not evenly spaced: gaps vary (a Poisson process clumps).
    gaps = [b - a for a, b in zip(offsets, offsets[1:])]
    assert max(gaps) > 3 * (10.0 / 500)


def test_unknown_arrival_and_negative_window_are_refused():
    with pytest.raises(ValueError):
        arrival_offsets(3, "trickle", 1.0)
    with pytest.raises(ValueError):
        arrival_offsets(3, "ramp", -1.0)


def test_interval_of_a_rate():
    assert interval_ns(100) == 10_000_000
    assert interval_ns(1 / 60) == 60_000_000_000  # the seed's "1 message/minute"
    assert interval_ns(0) is None and interval_ns(math.inf) is None
    with pytest.raises(ValueError):
        interval_ns(-1)


def test_phases_spread_connections_within_one_interval():
    phases = random_phases(1000, 10_000_000, seed=1)
    assert all(0 <= p < 10_000_000 for p in phases)
    assert len(set(phases)) > 900
    assert random_phases(3, None) == [0, 0, 0]


def test_send_times_are_on_a_fixed_grid_until_the_end():
    assert list(send_times(5, 10, 40)) == [5, 15, 25, 35]
    assert list(send_times(50, 10, 40)) == []


def test_open_loop_schedule_merges_connections_in_intended_time_order():
    s = OpenLoopSchedule(end_ns=100)
    s.add(1, first_ns=0, interval=30)
    s.add(2, first_ns=10, interval=25)
    got = []
    while (due := s.next_due()) is not None:
        got.extend(s.pop_due(due))
    assert [t for _, _, t in got] == sorted(t for _, _, t in got)
    assert [(c, k, t) for c, k, t in got if c == 1] == [(1, 0, 0), (1, 1, 30), (1, 2, 60), (1, 3, 90)]
    assert [(c, k, t) for c, k, t in got if c == 2] == [(2, 0, 10), (2, 1, 35), (2, 2, 60), (2, 3, 85)]


def test_open_loop_schedule_never_hands_out_a_send_before_its_time():
    s = OpenLoopSchedule(end_ns=1_000)
    s.add(7, first_ns=100, interval=100)
    assert s.pop_due(99) == []
    assert s.pop_due(100) == [(7, 0, 100)]
    # A late sender gets every missed send at once, each with its own intended time.
    assert s.pop_due(450) == [(7, 1, 200), (7, 2, 300), (7, 3, 400)]
    assert s.pop_due(10_000, limit=2) == [(7, 4, 500), (7, 5, 600)]


def test_open_loop_schedule_does_not_drift():
    interval = interval_ns(3)  # 333_333_333 ns: rounding must not accumulate
    s = OpenLoopSchedule(end_ns=10**13)
    s.add(0, 0, interval)
    for _ in range(10_000):
        ((conn, k, t),) = s.pop_due(s.next_due())
        assert t == k * interval


def test_removed_connections_stop_sending():
    s = OpenLoopSchedule(end_ns=1_000)
    s.add(1, 0, 100)
    s.add(2, 50, 100)
    s.remove(1)
    assert {c for c, _, _ in s.pop_due(1_000)} == {2}
    assert s.next_due() is None and len(s) == 0


def test_closed_loop_keeps_the_grid_or_follows_replies():
    # With a rate, a late reply does not move the grid: the next send is late, and says so.
    assert closed_loop_next(intended_ns=1_000, interval=100, reply_ns=5_000) == 1_100
    # Back to back: the next send is intended when the reply arrives.
    assert closed_loop_next(intended_ns=1_000, interval=None, reply_ns=5_000) == 5_000


def test_round_robin_split_gives_every_process_early_and_late_arrivals():
    parts = split_round_robin(list(range(7)), 3)
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(x for p in parts for x in p) == list(range(7))
    with pytest.raises(ValueError):
        split_round_robin([1], 0)
