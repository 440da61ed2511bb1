"""Spike 5's charts: every count states its true denominator, and every chart carries its spread across repeats."""

from __future__ import annotations

import copy
from pathlib import Path

from harness.results import RunResult, load
from spikes.s05_auth import spike

STORED = Path(__file__).parent / "data" / "quick-run.json"


def _chart(run: RunResult, slug: str):
    return next(c for c in spike.report(run).charts if c.slug == slug)


def test_the_attacks_chart_counts_what_the_matrices_count_with_their_denominators():
    run = load(STORED)
    chart = _chart(run, "attacks-blocked")
    titles = {o.key: o.title for o in spike.options}
    for variant, bars in chart.series.items():
        for o, bar in zip(run.options, bars):
            blocked, total = spike.blocked_of(run, o, variant)
            assert bar == blocked
            assert f"{titles[o]} {blocked} of {total}" in chart.caption
    # The recommended count adds the revocation scenario's replay on another instance to the battery.
    for o in run.options:
        battery = run.median("attacks", o, "attacks_applicable", variant="recommended")
        assert spike.blocked_of(run, o, "recommended")[1] == battery + 1
        assert spike.blocked_of(run, o, "weak")[1] == run.median("attacks", o, "attacks_applicable", variant="weak")
    # The battery runs once: no spread to draw, said as such.
    assert set(chart.spread) == set(chart.series) and all(r is None for rs in chart.spread.values() for r in rs)


def test_the_security_matrices_last_rows_use_the_same_counts():
    run = load(STORED)
    content = spike.report(run)
    for variant in ("recommended", "weak"):
        table = next(t for t in content.tables if t.title.startswith("Security matrix") and ("weak" in t.title) == (variant == "weak"))
        assert table.rows[-1][1:] == [f"{b} of {t}" for b, t in (spike.blocked_of(run, o, variant) for o in run.options)]


def test_cost_charts_show_the_spread_across_repeats():
    run = load(STORED)
    assert all(r is None for c in ("handshake", "connections-per-s") for rs in _chart(run, c).spread.values() for r in rs)
    # Give every cost step a second repeat, twice as slow, and the whiskers span both.
    two = copy.deepcopy(run)
    for sr in two.scenarios:
        if sr.scenario == "cost":
            for m in sr.measurements:
                if m.name in ("handshake_ms", "connections_per_s"):
                    m.repeats = [m.repeats[0], [x * 2 for x in m.repeats[0]]]
    handshake, cps = _chart(two, "handshake"), _chart(two, "connections-per-s")
    titles = {o.key: o.title for o in spike.options}
    for o in two.options:
        one = run.ok("cost", o).measurement("handshake_ms").samples
        p50 = sorted(one)[round(0.5 * (len(one) - 1))]
        assert handshake.spread[titles[o]][0] == (p50, 2 * p50)
        assert len(handshake.spread[titles[o]]) == 3
        rate = run.median("cost", o, "connections_per_s")
        assert cps.spread[titles[o]] == [(rate, 2 * rate)]
