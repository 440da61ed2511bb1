"""Pipelined closed-loop echo on the raw client: frames built and checked in bulk, every message accounted.

Pure logic: a real ``RawWebSocketClient`` on a fake transport, a fake clock,
and a test "server" that answers each request frame the way an echo server
does. Real sockets are in ``test_engine.py``.
"""

from __future__ import annotations

import random
import struct
from collections import Counter

import orjson
import pytest

from harness.load.clients import ws_raw
from harness.load.clients.ws_raw import (
    ECHO_KEY,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    EchoTemplate,
    FrameParser,
    PipelineTally,
    RawWebSocketClient,
    build_frame,
)
from harness.load.histogram import LatencyRecorder


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def take(self) -> bytes:
        out = b"".join(self.written)
        self.written.clear()
        return out


class Clock:
    """``time.time_ns`` under the test's control."""

    def __init__(self, start: int = 1_760_000_000_000_000_000) -> None:
        self.now = start

    def time_ns(self) -> int:
        return self.now


class Recorder:
    """Every (value, count) recorded."""

    def __init__(self) -> None:
        self.values: Counter[int] = Counter()

    def record(self, value_us: int, count: int = 1) -> None:
        self.values[value_us] += count


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(ws_raw, "time", c)
    return c


def _client(messages: list[dict]) -> tuple[RawWebSocketClient, FakeTransport]:
    client = RawWebSocketClient("ws://127.0.0.1:9/", messages.append, lambda reason: messages.append({"closed": reason}))
    tr = FakeTransport()
    client._tr = tr
    client._open = True
    return client, tr


def _requests(data: bytes) -> list[bytes]:
    """The payloads of the client frames in ``data`` (unmasked), checking each is a masked final text frame."""
    parser = FrameParser()
    frames = parser.feed(data)
    assert not parser._buf, "a request frame was cut"
    for opcode, _ in frames:
        assert opcode == OP_TEXT
    return [p for _, p in frames]


@pytest.mark.parametrize("size", [0, 1, 2, 3, 64, 100, 126, 1000, 70_000])
def test_a_batch_is_legal_masked_frames_carrying_each_request(size):
    tpl = EchoTemplate(7, "x" * size)
    frames, replies = tpl.batch(40, 5, 1_760_000_000_123_456_789)
    assert len(frames) == 5 * tpl.frame_len and tpl.frame_len % 4 == 0
    assert len(replies) == 5 * tpl.reply_len
    payloads = _requests(frames)
    assert len(payloads) == 5
    for i, payload in enumerate(payloads):
        frame = frames[i * tpl.frame_len : (i + 1) * tpl.frame_len]
        assert frame[0] == 0x81 and frame[1] & 0x80  # final text frame, masked
        hl = tpl.frame_len - tpl.payload_len
        assert frame[hl - 4 : hl] == ECHO_KEY
        assert orjson.loads(payload) == {"op": "echo", "c": 7, "d": "x" * size, "seq": 40 + i, "t": 1_760_000_000_123_456_789}
        # The reply an echo server sends: the same payload in an unmasked frame.
        assert replies[i * tpl.reply_len : (i + 1) * tpl.reply_len] == build_frame(payload, OP_TEXT, mask=False)


def _echo(data: bytes) -> bytes:
    """What an echo server answers to the client bytes ``data``: each payload back, unmasked."""
    return b"".join(build_frame(p, OP_TEXT, mask=False) for p in _requests(data))


def _chunks(data: bytes, rng: random.Random) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        n = rng.choice([1, 2, 3, 7, 50, 97, 200, 1000, 5000])
        out.append(data[pos : pos + n])
        pos += n
    return out


@pytest.mark.parametrize("seed", range(6))
def test_every_reply_counts_once_with_latency_from_its_own_intended_time(clock, seed):
    rng = random.Random(seed)
    messages: list[dict] = []
    client, tr = _client(messages)
    lat, svc, lag, tally = Recorder(), Recorder(), Recorder(), PipelineTally()
    window = rng.choice([1, 3, 8])
    end = clock.now + 5_000_000  # 5 ms of sending
    pipe = client.start_echo_pipeline(3, "y" * rng.choice([0, 10, 64, 130]), window, end, lat, svc, lag, tally)
    intended: dict[int, int] = {}  # seq -> t, read back from the requests on the wire
    expected_latency: Counter[int] = Counter()
    pending = b""
    while True:
        out = tr.take()
        for p in _requests(out):
            msg = orjson.loads(p)
            assert msg["seq"] not in intended and msg["c"] == 3
            intended[msg["seq"]] = msg["t"]
        pending += _echo(out)
        if not pending:
            break
        # The server answers some of what it has, in pieces of any size, later.
        take = rng.randint(1, len(pending))
        for chunk in _chunks(pending[:take], rng):
            clock.now += rng.randint(1_000, 400_000)
            before = pipe.received
            client.data_received(chunk)
            for seq in range(before, pipe.received):
                expected_latency[(clock.now - intended[seq]) // 1000] += 1
        pending = pending[take:]
    assert messages == []  # nothing unexpected
    assert pipe.sent == pipe.received == len(intended) == tally.sent == tally.received > window
    assert pipe.outstanding == 0
    assert sorted(intended) == list(range(pipe.sent))
    assert lat.values == expected_latency
    assert sum(svc.values.values()) == sum(lag.values.values()) == pipe.sent
    # Closed loop: a request is intended when the reply that freed its slot arrived; the first window at the start.
    assert all(t < end for t in intended.values())
    assert client.bytes_in == pipe.template.reply_len * pipe.received
    assert client.bytes_out == pipe.template.frame_len * pipe.sent


def test_a_ping_between_replies_is_answered_and_nothing_is_lost(clock):
    messages: list[dict] = []
    client, tr = _client(messages)
    lat = Recorder()
    pipe = client.start_echo_pipeline(1, "z" * 20, 4, clock.now + 10**9, lat, Recorder(), Recorder())
    replies = _echo(tr.take())
    one = pipe.template.reply_len
    ping = build_frame(b"hi", OP_PING, mask=False)
    clock.now += 50_000
    # Half a reply, then the rest of it, a ping, and the other replies.
    client.data_received(replies[: one // 2])
    client.data_received(replies[one // 2 : one] + ping + replies[one:])
    assert pipe.received == 4 and messages == []
    written = FrameParser().feed(tr.take())
    assert (OP_PONG, b"hi") in written
    assert sum(1 for op, _ in written if op == OP_TEXT) == 4  # the window refilled
    assert lat.values == Counter({50: 4})


def test_a_reply_re_encoded_by_the_server_still_counts_a_wrong_one_does_not(clock):
    messages: list[dict] = []
    client, tr = _client(messages)
    pipe = client.start_echo_pipeline(2, "", 2, clock.now + 10**9, Recorder(), Recorder(), Recorder())
    first, second = (orjson.loads(p) for p in _requests(tr.take()))
    # The same object, keys in another order and without the padding: JSON-equal, bytes different.
    reencoded = orjson.dumps(dict(reversed(list(first.items()))))
    client.data_received(build_frame(reencoded, OP_TEXT, mask=False))
    assert pipe.received == 1 and messages == []
    wrong = orjson.dumps({**second, "seq": 99})
    client.data_received(build_frame(wrong, OP_TEXT, mask=False))
    assert pipe.received == 1 and messages == [{**second, "seq": 99}]  # handed on: the engine counts it unexpected
    client.data_received(build_frame(orjson.dumps(second), OP_TEXT, mask=False))
    assert pipe.received == 2


def test_no_request_leaves_after_the_end(clock):
    client, tr = _client([])
    end = clock.now + 1000
    pipe = client.start_echo_pipeline(0, "a", 4, end, Recorder(), Recorder(), Recorder())
    replies = _echo(tr.take())
    clock.now = end
    client.data_received(replies)
    assert pipe.received == pipe.sent == 4 and tr.take() == b""


def test_pipeline_only_on_an_adapter_that_sends_the_protocol_as_is():
    from harness.load.clients.sio_raw import RawSocketIOClient

    assert RawWebSocketClient.supports_echo_pipeline()
    assert not RawSocketIOClient.supports_echo_pipeline()


def test_recording_a_count_equals_recording_one_at_a_time():
    a, b = LatencyRecorder(), LatencyRecorder()
    for value, count in ((0, 3), (5, 1), (2047, 2), (123_456, 4), (10**9, 2)):
        a.record(value, count)
        for _ in range(count):
            b.record(value)
    assert a.counts == b.counts and a.total == b.total == 12 and a.clamped == b.clamped == 2
    assert a.encode() == b.encode()


def test_frame_length_is_a_multiple_of_four_at_every_payload_size():
    for size in range(0, 300):
        tpl = EchoTemplate(12345, "q" * size)
        assert tpl.frame_len % 4 == 0
        frames, _ = tpl.batch(0, 2, 1)
        assert [orjson.loads(p)["d"] for p in _requests(frames)] == ["q" * size] * 2


def test_a_close_frame_length_header_is_what_the_parser_reads():
    # 126..65535-byte payloads take the 16-bit length form; beyond, the 64-bit one.
    for size, ext in ((200, 126), (70_000, 127)):
        tpl = EchoTemplate(0, "x" * size)
        frames, replies = tpl.batch(0, 1, 0)
        assert frames[1] & 0x7F == ext and replies[1] == ext
        n = struct.unpack("!H", frames[2:4])[0] if ext == 126 else struct.unpack("!Q", frames[2:10])[0]
        assert n == tpl.payload_len


def test_open_model_requests_due_together_go_in_one_write_each_timed_from_its_own_intended_time(clock):
    messages: list[dict] = []
    client, tr = _client(messages)
    lat, lag = Recorder(), Recorder()
    pipe = client.start_echo_pipeline(5, "w" * 30, 0, clock.now + 10**9, lat, Recorder(), lag)
    assert tr.written == []  # window 0: nothing until the scheduler sends
    t0 = clock.now
    due = [(0, t0 - 3_000_000), (1, t0 - 2_000_000), (2, t0 - 1_000)]  # intended 3 ms, 2 ms and 1 us ago
    assert pipe.send_scheduled(due) == 3
    assert len(tr.written) == 1
    sent = [orjson.loads(p) for p in _requests(tr.written[0])]
    assert [(m["seq"], m["t"]) for m in sent] == due
    assert lag.values == Counter({3000: 1, 2000: 1, 1: 1})
    replies = _echo(tr.take())
    clock.now += 250_000
    client.data_received(replies[:-1])  # two replies and most of the third
    clock.now += 100_000
    client.data_received(replies[-1:])
    assert pipe.received == 3 and messages == [] and tr.take() == b""  # no closed-loop refill
    assert lat.values == Counter({3250: 1, 2250: 1, (350_000 + 1_000) // 1000: 1})
    with pytest.raises(ValueError, match="out of turn"):
        pipe.send_scheduled([(7, clock.now)])


def test_a_payload_that_needs_escaping_stays_valid_json():
    tpl = EchoTemplate(1, 'quote " backslash \\ percent %d')
    frames, _ = tpl.batch(0, 2, 5)
    assert [orjson.loads(p)["d"] for p in _requests(frames)] == ['quote " backslash \\ percent %d'] * 2
