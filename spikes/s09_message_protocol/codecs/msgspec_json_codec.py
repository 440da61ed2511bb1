"""msgspec JSON: the same JSON objects as the json and orjson codecs, decoded against typed ``msgspec.Struct`` schemas.

Type safety belongs to the decoder as much as to the format: this option keeps JSON on the wire (readable in
the browser's devtools, no schema needed to debug) and checks every field's type while decoding, as the
MessagePack option with msgspec schemas does for its binary layout. The schemas are that option's, field for
field (``msgspec_codec``), re-declared only in how they travel: as objects with the kind in ``"type"``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from . import msgspec_codec as positional

__all__ = ["MsgspecJsonCodec"]


def _as_object(cls: type[msgspec.Struct], tag: str | None, **swap: Any) -> Any:
    """``cls``'s fields (a field's type replaced where ``swap`` says), as a JSON object tagged in ``"type"``."""
    fields = [(f.name, swap.get(f.name, f.type)) for f in msgspec.structs.fields(cls)]
    return msgspec.defstruct(cls.__name__, fields, tag_field="type" if tag else None, tag=tag)


Token = _as_object(positional.Token, None)
_STRUCTS = {kind: _as_object(cls, kind) for kind, cls in positional.STRUCTS.items() if kind != "snapshot"}
_STRUCTS["snapshot"] = _as_object(positional.Snapshot, "snapshot", tokens=list[Token])  # type: ignore[valid-type]
Message = _STRUCTS["cursor"] | _STRUCTS["token_move"] | _STRUCTS["chat"] | _STRUCTS["stroke"] | _STRUCTS["snapshot"]


class MsgspecJsonCodec:
    """JSON text with field names; every decode validates the message against its schema."""

    key = "msgspec-json"
    family = "json"

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(Message)

    def to_native(self, msg: dict[str, Any]) -> Any:
        return positional.build(msg, _STRUCTS, Token)

    def encode(self, native: Any) -> bytes:
        return self._encoder.encode(native)

    def decode(self, data: bytes) -> Any:
        return self._decoder.decode(data)

    def from_native(self, native: Any) -> dict[str, Any]:
        return msgspec.to_builtins(native)

    def encode_loose(self, obj: dict[str, Any]) -> bytes:
        # Bad input bypasses the Structs: written as plain JSON, the same objects any JSON client would send.
        return msgspec.json.encode(obj)
