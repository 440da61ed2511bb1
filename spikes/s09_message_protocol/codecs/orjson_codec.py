"""orjson: the same JSON text as the stdlib codec, through a Rust encoder and decoder."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["OrjsonCodec"]


class OrjsonCodec:
    """No schema: the dict is the message, field names and all."""

    key = "orjson"
    family = "json"

    def to_native(self, msg: dict[str, Any]) -> dict[str, Any]:
        return msg

    def encode(self, native: dict[str, Any]) -> bytes:
        return orjson.dumps(native)  # already compact UTF-8 bytes

    def decode(self, data: bytes) -> dict[str, Any]:
        return orjson.loads(data)

    def from_native(self, native: dict[str, Any]) -> dict[str, Any]:
        return native

    # Without a schema there is nothing to skip: any dict is written as it is.
    encode_loose = encode
