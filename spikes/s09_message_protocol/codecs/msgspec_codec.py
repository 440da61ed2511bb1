"""msgspec: the seed's positional MessagePack, decoded against typed ``msgspec.Struct`` schemas."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from .msgpack_codec import to_positional

__all__ = ["MsgspecCodec", "Cursor", "TokenMove", "Chat", "Stroke", "Token", "Snapshot", "Message"]

UInt = Annotated[int, msgspec.Meta(ge=0)]  # protobuf's uint32 fields, checked while decoding


# array_like: a Struct travels as [tag, field, field, ...], the seed's layout; the field
# names match the app's (JavaScript's) keys so dicts convert without renaming.
class Cursor(msgspec.Struct, array_like=True, tag=1):
    x: int
    y: int
    userId: str


class TokenMove(msgspec.Struct, array_like=True, tag=2):
    tokenId: str
    x: float
    y: float
    userId: str
    seq: UInt


class Chat(msgspec.Struct, array_like=True, tag=3):
    userId: str
    text: str
    ts: int


class Stroke(msgspec.Struct, array_like=True, tag=4):
    strokeId: str
    userId: str
    color: str
    width: float
    points: list[float]


class Token(msgspec.Struct, array_like=True):
    id: str
    name: str
    x: float
    y: float
    size: UInt
    color: str
    hp: int
    hidden: bool
    tags: list[str]


class Snapshot(msgspec.Struct, array_like=True, tag=5):
    tokens: list[Token]


Message = Cursor | TokenMove | Chat | Stroke | Snapshot  # tagged union: the tag picks the type
#: The schema of each message kind (the JSON option with msgspec schemas declares its own from these).
STRUCTS: dict[str, type[msgspec.Struct]] = {"cursor": Cursor, "token_move": TokenMove, "chat": Chat, "stroke": Stroke, "snapshot": Snapshot}
_KINDS = {cls: kind for kind, cls in STRUCTS.items()}


def build(msg: dict[str, Any], structs: dict[str, Any], token: Any) -> Any:
    """The app-level dict as the Struct of its kind (``structs[msg["type"]]``), a snapshot's tokens as ``token``s."""
    body = {k: v for k, v in msg.items() if k != "type"}
    if "tokens" in body:
        body["tokens"] = [token(**t) for t in body["tokens"]]
    return structs[msg["type"]](**body)


class MsgspecCodec:
    """The same bytes as the positional MessagePack codec, but every decode validates types."""

    key = "msgspec"
    family = "msgpack"

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(Message)

    def to_native(self, msg: dict[str, Any]) -> Message:
        return build(msg, STRUCTS, Token)  # type: ignore[no-any-return]

    def encode(self, native: Message) -> bytes:
        return self._encoder.encode(native)

    def decode(self, data: bytes) -> Message:
        return self._decoder.decode(data)

    def from_native(self, native: Message) -> dict[str, Any]:
        msg = {"type": _KINDS[type(native)], **msgspec.structs.asdict(native)}
        if "tokens" in msg:
            msg["tokens"] = [msgspec.structs.asdict(t) for t in msg["tokens"]]
        return msg

    def encode_loose(self, obj: dict[str, Any]) -> bytes:
        # Bad input must bypass the Structs, so it is written by plain msgpack in the same layout.
        return msgspec.msgpack.encode(to_positional(obj))
