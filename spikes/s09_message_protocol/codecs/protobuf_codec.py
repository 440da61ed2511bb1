"""Protocol Buffers: messages generated from ``tabletop.proto``, one ``Envelope`` with a oneof per frame."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from ..tabletop_pb2 import Envelope
from . import protobuf_loose

__all__ = ["ProtobufCodec"]


def _to_dict(message: Any) -> dict[str, Any]:
    # json_name is the camelCase key of the app (user_id -> userId).
    out = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None:
            value = [_to_dict(v) for v in value]  # Snapshot.tokens, the only nested field
        elif field.is_repeated:
            value = list(value)
        out[field.json_name] = value
    return out


class ProtobufCodec:
    """Binary, typed by the generated classes; only field numbers travel on the wire."""

    key = "protobuf"
    family = "protobuf"

    def to_native(self, msg: dict[str, Any]) -> Envelope:
        body = {k: v for k, v in msg.items() if k != "type"}
        return json_format.ParseDict({msg["type"]: body}, Envelope())

    def encode(self, native: Envelope) -> bytes:
        return native.SerializeToString()

    def decode(self, data: bytes) -> Envelope:
        return Envelope.FromString(data)

    def from_native(self, native: Envelope) -> dict[str, Any]:
        kind = native.WhichOneof("msg")
        return {"type": kind, **_to_dict(getattr(native, kind))}

    def encode_loose(self, obj: dict[str, Any]) -> bytes:
        return protobuf_loose.encode(obj)  # a hand-written wire writer: the generated code checks types
