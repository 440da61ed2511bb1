"""msgspec JSON: the same JSON objects as the json and orjson codecs, decoded against typed ``msgspec.Struct`` schemas.

Type safety belongs to the decoder as much as to the format: this option keeps JSON on the wire (readable in
the browser's devtools, no schema needed to debug) and checks every field's type while decoding, as the
MessagePack option with msgspec schemas does for its binary layout.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

__all__ = ["MsgspecJsonCodec"]

UInt = Annotated[int, msgspec.Meta(ge=0)]  # protobuf's uint32 fields, checked while decoding


# tag_field="type": the object carries its kind in "type", exactly as the app's JSON messages do.
class Cursor(msgspec.Struct, tag_field="type", tag="cursor"):
    x: int
    y: int
    userId: str


class TokenMove(msgspec.Struct, tag_field="type", tag="token_move"):
    tokenId: str
    x: float
    y: float
    userId: str
    seq: UInt


class Chat(msgspec.Struct, tag_field="type", tag="chat"):
    userId: str
    text: str
    ts: int


class Stroke(msgspec.Struct, tag_field="type", tag="stroke"):
    strokeId: str
    userId: str
    color: str
    width: float
    points: list[float]


class Token(msgspec.Struct):
    id: str
    name: str
    x: float
    y: float
    size: UInt
    color: str
    hp: int
    hidden: bool
    tags: list[str]


class Snapshot(msgspec.Struct, tag_field="type", tag="snapshot"):
    tokens: list[Token]


Message = Cursor | TokenMove | Chat | Stroke | Snapshot
_STRUCTS = {"cursor": Cursor, "token_move": TokenMove, "chat": Chat, "stroke": Stroke, "snapshot": Snapshot}


class MsgspecJsonCodec:
    """JSON text with field names; every decode validates the message against its schema."""

    key = "msgspec-json"
    family = "json"

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(Message)

    def to_native(self, msg: dict[str, Any]) -> Message:
        body = {k: v for k, v in msg.items() if k != "type"}
        if "tokens" in body:
            body["tokens"] = [Token(**t) for t in body["tokens"]]
        return _STRUCTS[msg["type"]](**body)

    def encode(self, native: Message) -> bytes:
        return self._encoder.encode(native)

    def decode(self, data: bytes) -> Message:
        return self._decoder.decode(data)

    def from_native(self, native: Message) -> dict[str, Any]:
        return msgspec.to_builtins(native)

    def encode_loose(self, obj: dict[str, Any]) -> bytes:
        # Bad input bypasses the Structs: written as plain JSON, the same objects any JSON client would send.
        return msgspec.json.encode(obj)
