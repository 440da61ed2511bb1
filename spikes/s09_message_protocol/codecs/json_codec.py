"""Stdlib JSON: the app's dicts as compact UTF-8 text, the seed's baseline."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["JsonCodec"]

# Compact separators and raw UTF-8 are what the browser's JSON.stringify sends; one encoder
# built up front, because json.dumps with options builds a new one on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class JsonCodec:
    """No schema: the dict is the message, field names and all."""

    key = "json"
    family = "json"

    def to_native(self, msg: dict[str, Any]) -> dict[str, Any]:
        return msg

    def encode(self, native: dict[str, Any]) -> bytes:
        return _ENCODER.encode(native).encode()

    def decode(self, data: bytes) -> dict[str, Any]:
        # Decoding UTF-8 first skips json.loads' pure-Python encoding detection for bytes.
        return json.loads(data.decode())

    def from_native(self, native: dict[str, Any]) -> dict[str, Any]:
        return native

    # Without a schema there is nothing to skip: any dict is written as it is.
    encode_loose = encode
