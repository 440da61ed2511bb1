"""The size and timing helpers do what permessage-deflate and the scenarios need."""

from __future__ import annotations

import zlib

from spikes.s09_message_protocol.bench import SYNC_TRAILER, deflate_message, deflate_stream, encode_all, roundtrip_ok, time_per_op
from spikes.s09_message_protocol.codecs import CODECS
from spikes.s09_message_protocol.messages import sample, stream


def _inflate(payloads):
    # What the receiving end does: append the trailer back, one context for the stream.
    d = zlib.decompressobj(-15)
    return [d.decompress(p + SYNC_TRAILER) for p in payloads]


def test_deflate_message_strips_the_trailer_and_inflates():
    data = CODECS["json"].encode(sample("snapshot"))
    out = deflate_message(data)
    assert not out.endswith(SYNC_TRAILER)
    assert _inflate([out]) == [data]


def test_shared_context_beats_fresh_contexts_on_a_repetitive_stream():
    payloads = encode_all(CODECS["json"], stream("cursor", 200))
    shared = deflate_stream(payloads)
    assert _inflate(shared) == payloads
    assert sum(map(len, shared)) < sum(len(deflate_message(p)) for p in payloads)


def test_roundtrip_ok():
    assert roundtrip_ok(CODECS["protobuf"], sample("stroke"))
    assert not roundtrip_ok(CODECS["orjson"], {"type": "cursor", "x": float("nan"), "y": 0, "userId": ""})


def test_time_per_op_returns_the_asked_samples():
    samples = time_per_op(len, b"abc", samples=3, sample_s=0.001, warmup_s=0.001)
    assert len(samples) == 3 and all(s > 0 for s in samples)
