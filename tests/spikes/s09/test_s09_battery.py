"""The type-safety battery is real: strict decoders reject cases, schema-less ones accept them."""

from __future__ import annotations

import pytest

from spikes.s09_message_protocol.battery import CASES, run_battery
from spikes.s09_message_protocol.codecs import CODECS


@pytest.fixture(scope="module")
def results():
    return {key: {r["case"]: r for r in run_battery(codec)} for key, codec in CODECS.items()}


def test_cases_are_named_once_and_of_two_kinds():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) >= 18
    assert {c.kind for c in CASES} == {"malformed", "wrong_type"}


def test_every_codec_answers_every_case(results):
    for rows in results.values():
        assert list(rows) == [c.name for c in CASES]
        for r in rows.values():
            assert set(r) >= {"case", "kind", "rejected", "error"}
            assert bool(r["error"]) == r["rejected"]


def test_strict_decoders_reject_wrong_types(results):
    for key in ("protobuf", "msgspec"):
        assert any(r["rejected"] for r in results[key].values() if r["kind"] == "wrong_type"), key
    assert results["msgspec"]["cursor_x_string"]["rejected"]


def test_schema_less_decoders_accept_wrong_types(results):
    assert not results["json"]["cursor_x_string"]["rejected"]
    assert not any(r["rejected"] for r in results["json"].values() if r["kind"] == "wrong_type")
    assert results["json"]["truncated_last_byte"]["rejected"]


def test_protobuf_reads_a_wrong_wire_type_as_the_default(results):
    # The string "100" for an int32 field is kept as an unknown field: x reads as 0.
    row = results["protobuf"]["cursor_x_string"]
    assert not row["rejected"] and "x:" not in row["decoded"]
