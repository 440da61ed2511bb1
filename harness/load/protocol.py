"""The wire protocol every POC server speaks to the load engine, and wire-size arithmetic.

Native WebSocket: one JSON object per text frame, with an ``op`` field::

    client -> server  {"op": "echo", "seq": 7, "t": 1717000000123456789, "c": 3, "d": "xxxx"}
    server -> client  the same object, unchanged
    client -> server  {"op": "join", "room": "r1"}
    server -> client  {"op": "joined", "room": "r1"}
    client -> server  {"op": "broadcast", "room": "r1", "seq": 7, "t": ..., "c": 3, "d": "xxxx"}
    server -> every member of "r1", the sender included: the same object, unchanged

``seq`` counts the messages of one connection from 0; ``t`` is the intended
send time in nanoseconds on the ``time.time_ns()`` clock (so receivers in
other processes can compute a latency); ``c`` is the integer id of the
sending connection within the run; ``d`` is an ASCII payload string.

Optional, for servers that number and replay (what a resuming client needs,
``harness.load.clients.resume``; ``reference_server --numbered`` does it)::

    server -> every member  the broadcast object plus "n": the room's sequence number, 1, 2, ...
    client -> server  {"op": "join", "room": "r1", "after": 41}
    server -> client  {"op": "joined", "room": "r1"}, then every broadcast it still holds with n > 41, in order
    server -> client  {"op": "joined", "room": "r1", "n": 41}: a server may say where the member's view starts
                      (the room's head for a new member): a member that saw no broadcast before a drop then
                      resumes from there instead of missing what came meanwhile (``last-seq`` takes any ``n``)
    server -> client  {"op": "ack", "c": 3, "seq": 7}: the server has message 7 of connection 3

A counting run (``LoadSpec.counting``) takes an ``ack``, or the sender's own
copy of its echo or broadcast, as the server's acknowledgement of a message
(``harness.load.account``); an ``ack`` is never a delivery.

Socket.IO (default namespace ``/``, websocket transport only): the client
emits the events ``echo``, ``join`` and ``broadcast`` with the same object,
minus ``op`` (the event name carries it), as the single argument; the server
emits ``echo`` back to the sender, ``joined`` ({"room": ...}) to the joiner
and ``broadcast`` to every member of the room, the sender included. Servers
should ignore an ``op`` field if a client sends one.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = [
    "OP_ECHO",
    "OP_JOIN",
    "OP_JOINED",
    "OP_BROADCAST",
    "OP_ACK",
    "SIO_CLIENT_EVENTS",
    "SIO_SERVER_EVENTS",
    "make_payload",
    "echo_message",
    "broadcast_message",
    "join_message",
    "joined_message",
    "encode_ws",
    "decode_ws",
    "to_sio",
    "from_sio",
    "ws_frame_header_size",
    "ws_frame_size",
    "sio_event_text",
    "sio_frame_size",
]

OP_ECHO = "echo"
OP_JOIN = "join"
OP_JOINED = "joined"
OP_BROADCAST = "broadcast"
OP_ACK = "ack"

#: Events a Socket.IO client emits, and events a Socket.IO server emits back.
SIO_CLIENT_EVENTS = (OP_ECHO, OP_JOIN, OP_BROADCAST)
SIO_SERVER_EVENTS = (OP_ECHO, OP_JOINED, OP_BROADCAST)


def make_payload(size: int) -> str:
    """An ASCII payload of ``size`` bytes (ASCII, so characters and bytes agree)."""
    return "x" * size


def echo_message(seq: int, t_ns: int, client: int, payload: str) -> dict[str, Any]:
    """An echo request; the server answers with the same object."""
    return {"op": OP_ECHO, "seq": seq, "t": t_ns, "c": client, "d": payload}


def broadcast_message(room: str, seq: int, t_ns: int, client: int, payload: str) -> dict[str, Any]:
    """A broadcast request; the server delivers it unchanged to every member of ``room``."""
    return {"op": OP_BROADCAST, "room": room, "seq": seq, "t": t_ns, "c": client, "d": payload}


def join_message(room: str) -> dict[str, Any]:
    """A request to join ``room``."""
    return {"op": OP_JOIN, "room": room}


def joined_message(room: str) -> dict[str, Any]:
    """The server's answer to a join."""
    return {"op": OP_JOINED, "room": room}


def encode_ws(msg: dict[str, Any]) -> bytes:
    """The UTF-8 payload of the text frame carrying ``msg`` (compact JSON)."""
    return orjson.dumps(msg)


def decode_ws(data: bytes | str) -> dict[str, Any]:
    """Parse a text frame's payload; raise ``ValueError`` if it is not a JSON object."""
    obj = orjson.loads(data)
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def to_sio(msg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The Socket.IO event name and argument for a protocol message."""
    data = dict(msg)
    return data.pop("op"), data


def from_sio(event: str, data: Any) -> dict[str, Any]:
    """The protocol message for a Socket.IO event received with ``data``."""
    out = dict(data) if isinstance(data, dict) else {"d": data}
    out["op"] = event
    return out


def ws_frame_header_size(payload_len: int, masked: bool) -> int:
    """Bytes of a WebSocket frame header (RFC 6455 5.2): 2, plus 2 or 8 for the length, plus 4 for a client's mask."""
    if payload_len < 0:
        raise ValueError("negative payload length")
    if payload_len < 126:
        extended = 0
    elif payload_len < 65536:
        extended = 2
    else:
        extended = 8
    return 2 + extended + (4 if masked else 0)


def ws_frame_size(payload_len: int, masked: bool) -> int:
    """Bytes on the wire of one unfragmented WebSocket frame (header plus payload)."""
    return ws_frame_header_size(payload_len, masked) + payload_len


def sio_event_text(event: str, data: Any, namespace: str = "/") -> str:
    """The text frame of a Socket.IO event: engine.io ``4`` (message), socket.io ``2`` (event), JSON array.

    This is how python-socketio and the JavaScript server encode an event
    without acknowledgement (Socket.IO protocol v5): ``42["echo",{...}]``, with
    ``/ns,`` after the ``2`` for a namespace other than ``/``.
    """
    body = orjson.dumps([event, data]).decode()
    ns = "" if namespace == "/" else f"{namespace},"
    return f"42{ns}{body}"


def sio_frame_size(event: str, data: Any, masked: bool, namespace: str = "/") -> int:
    """Bytes on the wire of one Socket.IO event over the websocket transport."""
    return ws_frame_size(len(sio_event_text(event, data, namespace).encode()), masked)
