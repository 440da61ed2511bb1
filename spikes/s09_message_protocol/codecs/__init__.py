"""One codec per wire-format option, by option key."""

from __future__ import annotations

from .base import Codec
from .json_codec import JsonCodec
from .msgpack_codec import MsgpackCodec
from .msgspec_codec import MsgspecCodec
from .msgspec_json_codec import MsgspecJsonCodec
from .orjson_codec import OrjsonCodec
from .protobuf_codec import ProtobufCodec

__all__ = ["Codec", "CODECS"]

CODECS: dict[str, Codec] = {
    c.key: c for c in (JsonCodec(), OrjsonCodec(), MsgspecJsonCodec(), MsgpackCodec(), ProtobufCodec(), MsgspecCodec())
}
