"""Debugging ease as facts computed from the encoded cursor message and this machine, not opinions."""

from __future__ import annotations

import json
import shutil
from typing import Any

import msgpack
from google.protobuf import empty_pb2, unknown_fields

from .codecs.base import Codec
from .messages import sample

__all__ = ["CLI_DECODERS", "GENERIC_DECODERS", "raw_protobuf", "debug_facts"]


def raw_protobuf(data: bytes) -> dict[int, Any]:
    """Protobuf bytes read without a schema, as ``protoc --decode_raw`` does: field numbers and values."""
    out: dict[int, Any] = {}
    for field in unknown_fields.UnknownFieldSet(empty_pb2.Empty.FromString(data)):
        value = field.data
        if isinstance(value, bytes):  # a string, bytes or nested message: the wire cannot tell
            try:
                value = raw_protobuf(value) or value.decode()
            except Exception:
                value = value.decode(errors="replace")
        out[field.field_number] = value
    return out


#: The schema-less decoder a developer has at hand for each wire format.
GENERIC_DECODERS = {"json": json.loads, "msgpack": msgpack.unpackb, "protobuf": raw_protobuf}
_GENERIC_NAMES = {"json": "json.loads", "msgpack": "msgpack.unpackb", "protobuf": "a raw wire parse (protoc --decode_raw)"}
#: Standard command-line decoders, looked up on PATH.
CLI_DECODERS = {"json": ("jq",), "msgpack": ("msgpack2json", "msgpack-cli"), "protobuf": ("protoc",)}


def _strings(value: Any) -> set[str]:
    """Every key and string in a decoded value."""
    if isinstance(value, dict):
        return {str(k) for k in value} | {s for v in value.values() for s in _strings(v)}
    if isinstance(value, list):
        return {s for v in value for s in _strings(v)}
    return {value} if isinstance(value, str) else set()


def debug_facts(codec: Codec) -> dict[str, dict[str, Any]]:
    """``{fact: {"value": bool, "evidence": str}}`` for the cursor message in this codec's format."""
    data = codec.encode(codec.to_native(sample("cursor")))
    generic = GENERIC_DECODERS[codec.family](data)
    try:
        text = data.decode("utf-8")
        printable = text.isprintable()
    except UnicodeDecodeError:
        text, printable = None, False
    if printable:
        shown = f"the cursor is {len(data)} bytes of UTF-8 text: {text}; Chrome DevTools shows a text frame as text"
    else:
        shown = f"the cursor is {len(data)} bytes, not printable text: {data.hex(' ')}; Chrome DevTools shows binary frames as hex/base64"
    names = sorted(_strings(generic))
    found = {name: shutil.which(name) for name in CLI_DECODERS[codec.family]}
    return {
        "self_describing": {
            "value": "userId" in names,
            "evidence": f"{_GENERIC_NAMES[codec.family]} without a schema gives {generic!r}",
        },
        "printable": {"value": printable, "evidence": shown},
        "field_names_in_payload": {
            "value": b"userId" in data,
            "evidence": f"b'userId' {'occurs' if b'userId' in data else 'does not occur'} in the {len(data)} bytes",
        },
        "cli_decoder_on_path": {
            "value": any(found.values()),
            "evidence": "; ".join(f"{name}: {path or 'not found'}" for name, path in found.items()),
        },
    }
