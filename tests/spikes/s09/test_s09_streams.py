"""The size scenario's streams are genuinely varied, and the report labels and charts say what each figure is."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from harness.results import load
from spikes.s09_message_protocol import spike
from spikes.s09_message_protocol.bench import deflate_stream, encode_all
from spikes.s09_message_protocol.codecs import CODECS
from spikes.s09_message_protocol.messages import MESSAGE_KINDS, MIX, MIX_BLOCK, STREAM_METHOD, sample, stream

STORED = Path(__file__).parent / "data" / "tiny-run.json"


def _ratio_and_distinct(codec_key: str, kind: str, n: int) -> tuple[float, float]:
    payloads = encode_all(CODECS[codec_key], stream(kind, n))
    return sum(map(len, payloads)) / sum(map(len, deflate_stream(payloads))), len(set(payloads)) / n


@pytest.mark.parametrize("key", ["json", "msgpack", "protobuf"])
def test_the_mixed_stream_is_varied_not_one_message_repeated(key):
    ratio, distinct = _ratio_and_distinct(key, "mixed", 400)
    assert ratio < 10 and distinct > 0.9, (ratio, distinct)


@pytest.mark.parametrize("key", ["json", "msgpack"])
def test_consecutive_snapshots_differ_as_the_board_changes_in_play(key):
    # They were 57% byte-identical and a shared deflate context shrank them 93-100 times.
    ratio, distinct = _ratio_and_distinct(key, "snapshot", 25)
    assert distinct == 1.0 and ratio < 40, (ratio, distinct)


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_every_kinds_stream_is_mostly_distinct_messages(kind):
    msgs = stream(kind, 25 if kind == "snapshot" else 200)
    assert {m["type"] for m in msgs} == {kind}
    assert len({repr(m) for m in msgs}) / len(msgs) > 0.9


def test_a_kinds_stream_is_that_kind_taken_from_the_mixed_session_in_order():
    mixed = stream("mixed", 2 * MIX_BLOCK)
    for kind in ("token_move", "chat"):
        mine = [m for m in mixed if m["type"] == kind]
        assert stream(kind, len(mine)) == mine


def test_each_block_of_the_mixed_stream_holds_the_mix_exactly():
    msgs = stream("mixed", 3 * MIX_BLOCK)
    for b in range(3):
        counts = Counter(m["type"] for m in msgs[b * MIX_BLOCK : (b + 1) * MIX_BLOCK])
        assert counts == {kind: round(share * MIX_BLOCK) for kind, share in MIX.items()}
    assert [m["type"] for m in msgs[:MIX_BLOCK]] != [m["type"] for m in msgs[MIX_BLOCK : 2 * MIX_BLOCK]]  # shuffled per block


def test_chat_lines_vary_in_words_and_length():
    texts = [m["text"] for m in stream("chat", 200)]
    lengths = [len(t.split()) for t in texts]
    assert len(set(texts)) >= 0.95 * len(texts)  # a short remark ("Ok.", a number) may come twice, as in a real chat
    assert min(lengths) <= 3 and max(lengths) >= 15
    assert len({w for t in texts for w in t.split()}) > 150


def test_labels_say_what_each_size_figure_is_and_every_chart_has_its_spread():
    run = load(STORED)
    assert run.parameters["repeat"] >= 2
    content = spike.report(run)
    titles = [t.title for t in content.tables]
    assert "One message's size in bytes, raw" in titles
    stream_table = next(t for t in content.tables if t.title.startswith("Stream of "))
    assert [r[0] for r in stream_table.rows] == [*(f"{k} only" for k in MESSAGE_KINDS), "mixed"]
    assert all("raw " in c and "x smaller" in c for r in stream_table.rows for c in r[1:])
    assert "first message of a fresh session" in stream_table.note
    method = next(s.method for s in spike.scenarios if s.key == "size")
    assert STREAM_METHOD in method
    assert {c.slug for c in content.charts} == {"size-raw", "size-stream", "speed"}
    for chart in content.charts:
        assert set(chart.spread) == set(chart.series)
        for name, values in chart.series.items():
            ranges = chart.spread[name]
            assert len(ranges) == len(values)
            if chart.slug.startswith("size"):  # sizes are exact: the step runs once, so there is no spread to draw
                assert all(r is None for r in ranges)
            else:
                assert all(r is not None and r[0] <= r[1] for r in ranges)


def test_the_mixed_stream_is_a_varied_mix_of_kinds_and_sizes():
    # One message repeated, or one kind, or strokes all of one length (they were all 200 points) fails here.
    msgs = stream("mixed", 5 * MIX_BLOCK)
    assert {m["type"] for m in msgs} == set(MESSAGE_KINDS)
    sizes = [len(p) for p in encode_all(CODECS["json"], msgs)]
    assert len(set(sizes)) > 50, len(set(sizes))
    points = [len(m["points"]) // 2 for m in msgs if m["type"] == "stroke"]
    assert len(set(points)) > 0.8 * len(points) and min(points) < 30 and max(points) > 300, sorted(points)
    for kind in ("chat", "stroke"):
        kind_sizes = [s for s, m in zip(sizes, msgs) if m["type"] == kind]
        assert len(set(kind_sizes)) > 0.6 * len(kind_sizes) and max(kind_sizes) > 2 * min(kind_sizes), (kind, sorted(kind_sizes))


def test_the_representative_stroke_stays_the_200_point_line():
    assert len(sample("stroke")["points"]) == 400
