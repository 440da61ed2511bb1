"""MessagePack with positional arrays, as the seed proposes: ``[1, 100, 200, "user123"]``."""

from __future__ import annotations

from typing import Any

import msgpack

from ..messages import FIELDS, TYPE_IDS, TYPE_NAMES, UNKNOWN_TYPE_ID

__all__ = ["MsgpackCodec", "to_positional", "from_positional"]


def _values(obj: dict[str, Any], fields: tuple[str, ...]) -> list[Any]:
    # Known fields in schema order; a missing one is left out and unknown keys go last,
    # so a wrong dict is written as faithfully as a positional layout allows.
    keys = [k for k in fields if k in obj] + [k for k in obj if k not in fields and k != "type"]
    return [_tokens(obj[k]) if k == "tokens" else obj[k] for k in keys]


def _tokens(tokens: list[Any]) -> list[Any]:
    return [_values(t, FIELDS["token"]) if isinstance(t, dict) else t for t in tokens]


def to_positional(msg: dict[str, Any]) -> list[Any]:
    """The type id, then the field values in ``FIELDS`` order; snapshot tokens are arrays too."""
    return [TYPE_IDS.get(msg["type"], UNKNOWN_TYPE_ID), *_values(msg, FIELDS.get(msg["type"], ()))]


def from_positional(row: list[Any]) -> dict[str, Any]:
    """The app-level dict of a positional array."""
    kind = TYPE_NAMES[row[0]]
    msg = {"type": kind, **dict(zip(FIELDS[kind], row[1:]))}
    if kind == "snapshot":
        msg["tokens"] = [dict(zip(FIELDS["token"], t)) for t in msg["tokens"]]
    return msg


class MsgpackCodec:
    """Binary, no field names on the wire, no schema: the field order lives in ``FIELDS``."""

    key = "msgpack"
    family = "msgpack"

    def to_native(self, msg: dict[str, Any]) -> list[Any]:
        return to_positional(msg)

    def encode(self, native: list[Any]) -> bytes:
        return msgpack.packb(native)

    def decode(self, data: bytes) -> list[Any]:
        return msgpack.unpackb(data)

    def from_native(self, native: list[Any]) -> dict[str, Any]:
        return from_positional(native)

    def encode_loose(self, obj: dict[str, Any]) -> bytes:
        return msgpack.packb(to_positional(obj))
