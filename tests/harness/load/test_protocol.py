from __future__ import annotations

import struct

import pytest
import socketio.packet

from harness.load import protocol
from harness.load.clients.sio_raw import RawSocketIOClient, engineio_ws_url
from harness.load.clients.ws_raw import OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, FrameParser, accept_key, build_frame


@pytest.mark.parametrize(
    ("length", "masked", "header"),
    [
        (0, True, 6),
        (125, True, 6),
        (126, True, 8),
        (65535, True, 8),
        (65536, True, 14),
        (125, False, 2),
        (126, False, 4),
        (65536, False, 10),
    ],
)
def test_frame_header_sizes_follow_rfc_6455(length, masked, header):
    assert protocol.ws_frame_header_size(length, masked) == header
    assert len(build_frame(b"x" * length, mask=masked)) == protocol.ws_frame_size(length, masked) == header + length


def test_messages_of_the_wire_protocol():
    msg = protocol.echo_message(seq=7, t_ns=1_700_000_000_000_000_000, client=3, payload=protocol.make_payload(4))
    assert msg == {"op": "echo", "seq": 7, "t": 1_700_000_000_000_000_000, "c": 3, "d": "xxxx"}
    assert protocol.decode_ws(protocol.encode_ws(msg)) == msg
    assert protocol.broadcast_message("r", 1, 2, 3, "x") == {"op": "broadcast", "room": "r", "seq": 1, "t": 2, "c": 3, "d": "x"}
    assert protocol.join_message("r") == {"op": "join", "room": "r"}
    assert protocol.joined_message("r") == {"op": "joined", "room": "r"}
    with pytest.raises(ValueError):
        protocol.decode_ws(b"[1, 2]")


def test_socketio_events_carry_the_same_object_without_op():
    msg = protocol.echo_message(1, 2, 3, "xy")
    event, data = protocol.to_sio(msg)
    assert event == "echo" and "op" not in data and data["seq"] == 1
    assert protocol.from_sio(event, data) == msg


def test_socketio_event_text_matches_python_socketio_encoding():
    data = {"seq": 1, "t": 2, "c": 3, "d": "xx"}
    sio_text = socketio.packet.Packet(socketio.packet.EVENT, data=["echo", data]).encode()
    assert protocol.sio_event_text("echo", data) == "4" + sio_text
    assert protocol.sio_frame_size("echo", data, masked=True) == len("4" + sio_text) + 6


def test_frame_parser_reassembles_split_and_fragmented_frames():
    parser = FrameParser()
    wire = (
        build_frame(b'{"a":1}', mask=False)
        + bytes((OP_TEXT, 3))
        + b"abc"  # first fragment, FIN clear
        + bytes((0x80 | OP_CONT, 3))
        + b"def"
        + build_frame(b"hi", OP_PING, mask=False)
        + build_frame(b"y" * 300, mask=True)  # masked (servers should not, but may)
    )
    got = []
    for i in range(0, len(wire), 5):  # byte-dribbled, as TCP may deliver
        got.extend(parser.feed(wire[i : i + 5]))
    assert got == [(OP_TEXT, b'{"a":1}'), (OP_TEXT, b"abcdef"), (OP_PING, b"hi"), (OP_TEXT, b"y" * 300)]
    assert parser.wire_bytes == len(wire)


def test_close_frame_and_handshake_key():
    frame = build_frame(struct.pack("!H", 1000), OP_CLOSE, mask=False)
    assert FrameParser().feed(frame) == [(OP_CLOSE, b"\x03\xe8")]
    # The example of RFC 6455 section 1.3.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_engineio_url_of_a_socketio_server():
    assert engineio_ws_url("http://127.0.0.1:5000") == "ws://127.0.0.1:5000/socket.io/?EIO=4&transport=websocket"
    assert engineio_ws_url("https://localhost/rt/") == "wss://localhost/rt/?EIO=4&transport=websocket"


def test_lean_socketio_client_decodes_events_and_ignores_what_is_not_one():
    got, closed = [], []
    client = RawSocketIOClient("http://127.0.0.1:1", got.append, closed.append)
    client._on_text(b'42["echo",{"seq":1,"t":2,"c":3,"d":"x"}]')
    client._on_text(b'42["joined",{"room":"r"}]')
    client._on_text(b"42not json")
    assert got[0] == {"op": "echo", "seq": 1, "t": 2, "c": 3, "d": "x"}
    assert got[1] == {"op": "joined", "room": "r"}
    assert got[2]["op"] is None  # counted as unexpected by the engine, not a crash
    assert closed == []
