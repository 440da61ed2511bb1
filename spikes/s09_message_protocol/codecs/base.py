"""The interface every wire-format option implements, so scenarios treat them alike."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Codec"]


@runtime_checkable
class Codec(Protocol):
    """One wire format: the object the app holds, its bytes, and a schema-free writer for bad input."""

    #: The option key (``json``, ``orjson``, ``msgpack``, ``protobuf``, ``msgspec``).
    key: str
    #: The generic wire format, for schema-less tools: ``json``, ``msgpack`` or ``protobuf``.
    family: str

    def to_native(self, msg: dict[str, Any]) -> Any:
        """The app-level dict as the object the app would hold (not timed)."""

    def encode(self, native: Any) -> bytes:
        """The bytes sent in one WebSocket frame."""

    def decode(self, data: bytes) -> Any:
        """The received bytes back to the native object, checked against the schema where the format has one."""

    def from_native(self, native: Any) -> dict[str, Any]:
        """The native object back to the app-level dict, for round-trip checks."""

    def encode_loose(self, obj: dict[str, Any]) -> bytes:
        """Any dict, wrong types included, in this format's wire form, without schema checks."""
