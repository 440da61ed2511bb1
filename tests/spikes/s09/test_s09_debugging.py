"""Debugging facts are computed, and come out as the formats' nature says."""

from __future__ import annotations

from spikes.s09_message_protocol.codecs import CODECS
from spikes.s09_message_protocol.debugging import debug_facts, raw_protobuf
from spikes.s09_message_protocol.messages import sample

FACTS = {"self_describing", "printable", "field_names_in_payload", "cli_decoder_on_path"}


def test_every_codec_has_the_same_facts():
    for codec in CODECS.values():
        facts = debug_facts(codec)
        assert set(facts) == FACTS
        assert all(isinstance(f["value"], bool) and f["evidence"] for f in facts.values())


def test_json_is_printable_and_self_describing():
    facts = debug_facts(CODECS["json"])
    assert facts["printable"]["value"] and facts["self_describing"]["value"] and facts["field_names_in_payload"]["value"]


def test_binary_formats_are_neither():
    for key in ("protobuf", "msgpack", "msgspec"):
        facts = debug_facts(CODECS[key])
        assert not facts["printable"]["value"] and not facts["self_describing"]["value"], key


def test_raw_protobuf_recovers_numbers_and_strings():
    codec = CODECS["protobuf"]
    assert raw_protobuf(codec.encode(codec.to_native(sample("cursor")))) == {1: {1: 100, 2: 200, 3: "user123"}}
