"""Spike 9's declared criteria, checked against values computed by hand from a small stored run."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from harness.report.render import decide
from harness.results import load
from spikes.s09_message_protocol import spike
from spikes.s09_message_protocol.browser_bench import measured_by
from spikes.s09_message_protocol.messages import MIX
from tests.spikes import handcheck as h

STORED = Path(__file__).parent / "data" / "tiny-run.json"


def _round_trip_us(data, option: str, kind: str) -> float:
    enc = h.repeats(data, "speed", option, "encode_ns", message=kind)
    dec = h.repeats(data, "speed", option, "decode_ns", message=kind)
    return statistics.median((statistics.median(e) + statistics.median(d)) / 1000 for e, d in zip(enc, dec, strict=True))


def test_criteria_match_hand_computed_values_from_the_stored_run():
    data = h.load_json(STORED)
    run = load(STORED)
    d = decide(spike, run)
    assert d.options == ["json", "orjson", "msgspec-json", "msgpack", "protobuf", "msgspec"] and not d.left_out
    for o in d.options:
        facts = h.value(data, "debugging", o, "debug_facts_true") / h.value(data, "debugging", o, "debug_facts_total")
        # The browser step ran once per wire format; an option sending another's bytes is scored on that one's figures.
        browser = measured_by(o)
        bundle = h.value(data, "browser", browser, "bundle_gzip_bytes")
        expected = {
            "Performance": (
                3 * h.logu(_round_trip_us(data, o, "cursor"), 2, 50)
                + h.logu(_round_trip_us(data, o, "snapshot"), 1000, 16000)
                + h.logu(h.value(data, "browser", browser, "browser_decode_ns", message="mixed"), 5000, 200_000)
                + (10.0 if bundle == 0 else h.logu(bundle, 5000, 100_000))
            )
            / 6,
            "Maintenance": (h.lin(h.value(data, "type-safety", o, "rejected_fraction"), 0.9, 0.0) + h.lin(facts, 1.0, 0.0)) / 2,
            "Scalability": h.logu(h.value(data, "size", o, "size_raw_stream", message="mixed"), 50, 1000),
            "Cost": h.money_score(  # one value from the whole run (all samples), as the cost table shows it
                h.money(
                    sum(share * h.pooled(data, "speed", o, "encode_ns", message=k) for k, share in MIX.items()) * 1e-9 * 30,
                    0.0,
                    h.pooled(data, "size", o, "size_deflate_stream", message="mixed") * 30,
                    1,
                )
            ),
            "Complexity": h.complexity(data, o),
        }
        for crit, v in expected.items():
            assert d.cells[o][crit].score == pytest.approx(v), (o, crit)
        assert d.totals[o] == pytest.approx(sum(spike.weights[c] * v for c, v in expected.items()) / 100)
    # The two JSON codecs send the same bytes, and so do the two MessagePack ones: same size scores (Cost adds encoding CPU).
    for a, b in (("json", "orjson"), ("msgpack", "msgspec")):
        assert d.cells[a]["Scalability"].score == d.cells[b]["Scalability"].score


def test_a_run_without_the_browser_step_leaves_performance_out_for_every_option():
    # Runs stored before the step existed, or made where Chromium is missing: not measured is not zero.
    run = load(STORED)
    run.scenarios = [sr for sr in run.scenarios if sr.scenario != "browser"]
    d = decide(spike, run)
    assert set(d.left_out) == {"Performance"} and "the browser step did not run" in d.left_out["Performance"]


def test_the_recommendation_is_the_same_in_the_document_and_the_index(tmp_path):
    from harness.report.render import render_index, render_spike

    run = load(STORED)
    d = decide(spike, run)
    text = render_spike(spike, run, tmp_path).read_text()
    index = render_index({9: spike}, {9: run}, tmp_path).read_text()
    assert d.label in index
    if d.tie:
        assert "Tie within noise: " + d.tie_names(bold=True) in text
    else:
        assert f"Chosen option: **{d.title(d.best)}**" in text
