"""Each scenario returns the measurement names and facts the spike's report reads."""

from __future__ import annotations

import pytest

from harness.plugin import Option, ScenarioContext
from spikes.s09_message_protocol import scenarios as sc
from spikes.s09_message_protocol.messages import MESSAGE_KINDS

TINY_SPEED = {"samples": 2, "sample_s": 0.0005, "warmup_s": 0.0005}


def ctx(tmp_path, key, **params):
    return ScenarioContext(option=Option(key, key.upper()), params=params, repeat=0, quick=True, workdir=tmp_path)


def names(out, message):
    return {m.name for m in out.measurements if m.tags.get("message") == message}


@pytest.mark.parametrize("key", ["json", "protobuf"])
def test_size(tmp_path, key):
    out = sc.run_size(ctx(tmp_path, key, stream_messages=20))
    for kind in MESSAGE_KINDS:
        assert names(out, kind) == {"size_raw", "size_zlib", "size_deflate_msg", "size_deflate_stream", "size_raw_stream"}
    assert names(out, "mixed") == {"size_deflate_stream", "size_raw_stream"}
    assert all(m.unit == "bytes" and m.better == "lower" and len(m.samples) == 1 for m in out.measurements)


def test_speed(tmp_path):
    out = sc.run_speed(ctx(tmp_path, "msgspec", **TINY_SPEED))
    for kind in MESSAGE_KINDS:
        assert names(out, kind) == {"encode_ns", "decode_ns"}
    assert all(m.unit == "ns/op" and len(m.samples) == 2 for m in out.measurements)
    assert out.facts["roundtrip_ok"] == dict.fromkeys(MESSAGE_KINDS, True)


def test_type_safety(tmp_path):
    out = sc.run_type_safety(ctx(tmp_path, "json"))
    by_name = {m.name: m for m in out.measurements}
    assert set(by_name) == {"rejected_fraction", "rejected", "cases_total"}
    assert by_name["rejected_fraction"].better == "higher"
    assert by_name["cases_total"].samples == [len(out.facts["cases"])]
    assert by_name["rejected_fraction"].samples[0] == by_name["rejected"].samples[0] / by_name["cases_total"].samples[0]


def test_debugging(tmp_path):
    out = sc.run_debugging(ctx(tmp_path, "json"))
    by_name = {m.name: m.samples[0] for m in out.measurements}
    # All four facts are shown; the machine-dependent one (a CLI decoder installed) is not scored.
    assert len(out.facts) == 4 and by_name["debug_facts_total"] == 3
    assert by_name["debug_facts_true"] == sum(f["value"] for k, f in out.facts.items() if k != "cli_decoder_on_path")


def test_params_are_exported():
    assert sc.SIZE_PARAMS["stream_messages"] == 1000
    assert set(sc.SPEED_PARAMS) == set(sc.SPEED_QUICK) == {"samples", "sample_s", "warmup_s"}
