"""A schema-free protobuf wire writer for the type-safety battery: the wire type follows the Python type.

The generated classes refuse wrong types when a message is built, so bad input
is written here by hand, with the field numbers of ``tabletop.proto``: int and
bool as varint, float as fixed32 (every real number of the schema is a 32-bit
``float``), str, bytes and dict as length-delimited, a list as a repeated field.
"""

from __future__ import annotations

import struct
from typing import Any

from google.protobuf.descriptor import Descriptor

from ..messages import UNKNOWN_TYPE_ID
from ..tabletop_pb2 import Envelope

__all__ = ["encode"]


def encode(obj: dict[str, Any]) -> bytes:
    """An app-level dict as an ``Envelope``, whatever the types of its values."""
    body = {k: v for k, v in obj.items() if k != "type"}
    field = Envelope.DESCRIPTOR.fields_by_name.get(obj["type"])
    if field is None:
        return _field(UNKNOWN_TYPE_ID, body, None)
    return _field(field.number, body, field.message_type)


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negatives as 10-byte two's complement, as int32/int64 fields are written
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out) + bytes([n])


def _field(number: int, value: Any, desc: Descriptor | None) -> bytes:
    if value is None:
        return b""  # proto3 has no null: the field is simply absent
    if isinstance(value, list):  # repeated, written unpacked: parsers must accept both
        return b"".join(_field(number, v, desc) for v in value)
    if isinstance(value, int):  # bool included
        return _varint(number << 3 | 0) + _varint(int(value))
    if isinstance(value, float):  # every float of the schema is a 32-bit float
        return _varint(number << 3 | 5) + struct.pack("<f", value)
    if isinstance(value, dict):
        value = _message(value, desc)
    elif isinstance(value, str):
        value = value.encode()
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _message(obj: dict[str, Any], desc: Descriptor | None) -> bytes:
    # Keys get the .proto's field numbers; unknown keys get the next free numbers.
    known = desc.fields_by_camelcase_name if desc is not None else {}
    free = max((f.number for f in known.values()), default=0) + 1
    out = b""
    for key, value in obj.items():
        field = known.get(key)
        if field is None:
            out += _field(free, value, None)
            free += 1
        else:
            out += _field(field.number, value, field.message_type)
    return out
