"""A type-safety battery: malformed bytes and wrong-typed messages, fed to each format's own decoder.

Every case is defined once, independently of the format. Wrong-typed cases are
app-level dicts written with the codec's ``encode_loose`` (the format's wire
form, no schema checks: what a buggy or hostile sender would put on the wire);
malformed cases damage the bytes of a valid encoding.

A case counts as *rejected* only when ``codec.decode`` raises. No validation is
added by hand to the schema-less formats: the battery measures what each decoder
catches by itself, and an accepted case is one the application would have to
catch in its own code (or would silently act on).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .codecs.base import Codec
from .messages import sample

__all__ = ["Case", "CASES", "run_battery"]


@dataclass(frozen=True)
class Case:
    """A named bad input: ``make`` produces its bytes in a codec's format."""

    name: str
    kind: str  # "malformed" (damaged bytes) or "wrong_type" (well-formed bytes, wrong content)
    make: Callable[[Codec], bytes]


def _valid(kind: str, codec: Codec) -> bytes:
    return codec.encode(codec.to_native(sample(kind)))


def _bytes(name: str, kind: str, damage: Callable[[bytes], bytes]) -> Case:
    return Case(name, "malformed", lambda codec: damage(_valid(kind, codec)))


def _loose(name: str, kind: str, **changes: Any) -> Case:
    """``sample(kind)`` with some fields replaced; a value of ``...`` removes the field."""
    msg = {k: v for k, v in {**sample(kind), **changes}.items() if v is not ...}
    return Case(name, "wrong_type", lambda codec: codec.encode_loose(msg))


def _token(**changes: Any) -> dict[str, Any]:
    """The snapshot sample with its first token changed."""
    tokens = sample("snapshot")["tokens"]
    return {"tokens": [{**tokens[0], **changes}, *tokens[1:]]}


def _flip(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]


_GARBAGE = random.Random(9).randbytes(64)

CASES: tuple[Case, ...] = (
    Case("empty", "malformed", lambda codec: b""),
    _bytes("truncated_last_byte", "cursor", lambda b: b[:-1]),
    _bytes("truncated_half", "snapshot", lambda b: b[: len(b) // 2]),
    Case("random_garbage", "malformed", lambda codec: _GARBAGE),
    _bytes("flipped_middle_byte", "token_move", _flip),
    _loose("cursor_x_string", "cursor", x="100"),
    _loose("cursor_x_float", "cursor", x=100.5),
    _loose("cursor_x_bool", "cursor", x=True),
    _loose("cursor_x_null", "cursor", x=None),
    _loose("cursor_x_overflow_int32", "cursor", x=2**40 + 100),  # low 32 bits: 100
    _loose("cursor_userId_int", "cursor", userId=123),
    _loose("cursor_missing_userId", "cursor", userId=...),
    _loose("cursor_unknown_extra_field", "cursor", color="#ff0000"),
    _loose("unknown_type", "cursor", type="teleport"),
    _loose("token_move_x_nan", "token_move", x=float("nan")),
    _loose("stroke_point_string", "stroke", points=[0.25, "1.5", *sample("stroke")["points"][2:]]),
    _loose("stroke_points_object", "stroke", points={"x": 10.0, "y": 20.0}),
    _loose("snapshot_hp_string", "snapshot", **_token(hp="12")),
    _loose("snapshot_hidden_string", "snapshot", **_token(hidden="yes")),
    _loose("snapshot_size_negative", "snapshot", **_token(size=-3)),
    _loose("snapshot_tags_string", "snapshot", **_token(tags="boss")),
    _loose("snapshot_token_not_object", "snapshot", tokens=["goblin"]),
)


def run_battery(codec: Codec) -> list[dict[str, Any]]:
    """Each case's bytes through ``codec.decode``: rejected when it raises, with what it said or returned."""
    results = []
    for case in CASES:
        data = case.make(codec)
        try:
            native = codec.decode(data)
        except Exception as exc:  # any exception is the decoder refusing the input
            rejected, error, decoded = True, _show(f"{type(exc).__name__}: {exc}"), ""
        else:
            rejected, error, decoded = False, "", _show(native)
        results.append({"case": case.name, "kind": case.kind, "rejected": rejected, "error": error, "decoded": decoded})
    return results


def _show(value: Any) -> str:
    """A decoded value or an error, short and on one line (protobuf prints its text format)."""
    text = " ".join(str(value).split())
    return text if len(text) <= 160 else text[:157] + "..."
