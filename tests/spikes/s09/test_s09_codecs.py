"""Every codec round-trips every message exactly, and the layouts agree with the .proto."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikes.s09_message_protocol.codecs import CODECS, Codec
from spikes.s09_message_protocol.messages import FIELDS, MESSAGE_KINDS, TYPE_IDS, sample, stream
from spikes.s09_message_protocol.tabletop_pb2 import Envelope

KEYS = sorted(CODECS)
STREAM_KINDS = (*MESSAGE_KINDS, "mixed")


def roundtrip(codec: Codec, msg: dict) -> dict:
    return codec.from_native(codec.decode(codec.encode(codec.to_native(msg))))


def _floats(value):
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _floats(v)
    elif isinstance(value, list):
        for v in value:
            yield from _floats(v)


def test_codecs_implement_the_protocol():
    assert KEYS == ["json", "msgpack", "msgspec", "msgspec-json", "orjson", "protobuf"]
    for key, codec in CODECS.items():
        assert isinstance(codec, Codec) and codec.key == key


def test_cursor_sample_is_the_seeds_example():
    assert sample("cursor") == {"type": "cursor", "x": 100, "y": 200, "userId": "user123"}
    assert CODECS["msgpack"].to_native(sample("cursor")) == [1, 100, 200, "user123"]


def test_messages_are_deterministic_and_shaped():
    assert stream("mixed", 300) == stream("mixed", 300)
    assert stream("cursor", 50, seed=1) != stream("cursor", 50, seed=2)
    assert len(sample("stroke")["points"]) == 400
    assert len(sample("snapshot")["tokens"]) == 100
    assert not sample("chat")["text"].isascii()
    assert {m["type"] for m in stream("mixed", 1000)} == set(MESSAGE_KINDS)
    for kind in MESSAGE_KINDS:
        assert list(sample(kind)) == ["type", *FIELDS[kind]]


@pytest.mark.parametrize("kind", STREAM_KINDS)
def test_all_floats_are_float32_exact(kind):
    for msg in stream(kind, 100):
        for f in _floats(msg):
            assert struct.unpack("<f", struct.pack("<f", f))[0] == f


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_roundtrip_sample(key, kind):
    assert roundtrip(CODECS[key], sample(kind)) == sample(kind)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("kind", STREAM_KINDS)
def test_roundtrip_stream(key, kind):
    codec = CODECS[key]
    for msg in stream(kind, 60 if kind == "snapshot" else 300):
        assert roundtrip(codec, msg) == msg


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("kind", STREAM_KINDS)
def test_loose_encoding_of_valid_messages_decodes_to_them(key, kind):
    codec = CODECS[key]
    for msg in stream(kind, 20):
        assert codec.from_native(codec.decode(codec.encode_loose(msg))) == msg


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_msgspec_writes_the_same_bytes_as_positional_msgpack(kind):
    msg = sample(kind)
    assert CODECS["msgspec"].encode(CODECS["msgspec"].to_native(msg)) == CODECS["msgpack"].encode(CODECS["msgpack"].to_native(msg))


def test_proto_field_numbers_follow_fields():
    for kind in MESSAGE_KINDS:
        envelope_field = Envelope.DESCRIPTOR.fields_by_name[kind]
        assert envelope_field.number == TYPE_IDS[kind]
        desc = envelope_field.message_type
        assert [f.json_name for f in sorted(desc.fields, key=lambda f: f.number)] == list(FIELDS[kind])
        assert [f.number for f in desc.fields] == list(range(1, len(FIELDS[kind]) + 1))
    token = Envelope.DESCRIPTOR.fields_by_name["snapshot"].message_type.fields_by_name["tokens"].message_type
    assert [f.json_name for f in token.fields] == list(FIELDS["token"])


_user = st.text(min_size=0, max_size=30)
_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, database=None, deadline=None)
@given(x=st.integers(-(2**31), 2**31 - 1), y=st.integers(-(2**31), 2**31 - 1), user=_user)
def test_roundtrip_any_cursor(x, y, user):
    msg = {"type": "cursor", "x": x, "y": y, "userId": user}
    for codec in CODECS.values():
        assert roundtrip(codec, msg) == msg


@settings(max_examples=60, database=None, deadline=None)
@given(token=_user, x=_f32, y=_f32, user=_user, seq=st.integers(0, 2**32 - 1))
def test_roundtrip_any_token_move(token, x, y, user, seq):
    msg = {"type": "token_move", "tokenId": token, "x": x, "y": y, "userId": user, "seq": seq}
    for codec in CODECS.values():
        back = roundtrip(codec, msg)
        assert back == msg
        assert all(math.copysign(1, back[k]) == math.copysign(1, msg[k]) for k in ("x", "y"))  # -0.0 survives


def test_json_with_msgspec_schemas_sends_orjsons_bytes_and_checks_types():
    from spikes.s09_message_protocol.messages import MESSAGE_KINDS, stream

    typed, plain = CODECS["msgspec-json"], CODECS["orjson"]
    for msg in stream("mixed", 400, seed=3) + [stream(k, 1)[0] for k in MESSAGE_KINDS]:
        data = typed.encode(typed.to_native(msg))
        assert data == plain.encode(plain.to_native(msg))  # the same wire bytes: only the decoder differs
        assert typed.from_native(typed.decode(data)) == plain.decode(data)
    bad = plain.encode({"type": "cursor", "x": "12", "y": 3, "userId": "u"})
    with pytest.raises(Exception, match="Expected `int`"):
        typed.decode(bad)
    assert plain.decode(bad)["x"] == "12"  # what the schema-less decoder lets through
