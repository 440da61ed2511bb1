"""The measuring functions of Spike 9: sizes with and without WebSocket compression, and timing."""

from __future__ import annotations

import gc
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from .codecs.base import Codec

__all__ = [
    "SYNC_TRAILER",
    "encode_all",
    "zlib_size",
    "deflate_message",
    "deflate_stream",
    "roundtrip_ok",
    "time_per_op",
]

#: The empty stored block a sync flush ends with; permessage-deflate removes it (RFC 7692, 7.2.1).
SYNC_TRAILER = b"\x00\x00\xff\xff"


def encode_all(codec: Codec, messages: Iterable[dict[str, Any]]) -> list[bytes]:
    """The wire bytes of each app-level message."""
    return [codec.encode(codec.to_native(m)) for m in messages]


def zlib_size(data: bytes) -> int:
    """Size after ``zlib.compress`` at level 6, header and checksum included."""
    return len(zlib.compress(data, 6))


def _flush(compressor: Any, data: bytes) -> bytes:
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(SYNC_TRAILER)
    return out[: -len(SYNC_TRAILER)]


def _compressor() -> Any:
    return zlib.compressobj(6, zlib.DEFLATED, -15)  # raw deflate, 32 KiB window, as browsers negotiate


def deflate_message(data: bytes) -> bytes:
    """One frame's payload with permessage-deflate without context takeover: a fresh context per message."""
    return _flush(_compressor(), data)


def deflate_stream(payloads: Iterable[bytes]) -> list[bytes]:
    """Each frame's payload with permessage-deflate with context takeover: one context for the whole stream."""
    compressor = _compressor()
    return [_flush(compressor, data) for data in payloads]


def roundtrip_ok(codec: Codec, msg: dict[str, Any]) -> bool:
    """Whether the message comes back equal after encode and decode."""
    return codec.from_native(codec.decode(codec.encode(codec.to_native(msg)))) == msg


def _timed(fn: Callable[[Any], Any], arg: Any, loops: int) -> int:
    """Nanoseconds for ``loops`` calls, with the garbage collector off so a collection does not land in one sample."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(loops):
            fn(arg)
        return time.perf_counter_ns() - start
    finally:
        if enabled:
            gc.enable()


def time_per_op(fn: Callable[[Any], Any], arg: Any, *, samples: int, sample_s: float, warmup_s: float) -> list[float]:
    """``samples`` values of ns per ``fn(arg)``, each the mean over a loop calibrated to last about ``sample_s``."""
    # Warm up in doubling batches; the last batch's rate calibrates the loop count.
    loops, spent, per_op = 1, 0, 0.0
    while True:
        elapsed = _timed(fn, arg, loops)
        spent += elapsed
        per_op = elapsed / loops
        if spent >= warmup_s * 1e9 and elapsed >= 1e5:  # at least 0.1 ms, so the rate is not clock noise
            break
        loops *= 2
    loops = max(1, round(sample_s * 1e9 / per_op))
    return [_timed(fn, arg, loops) / loops for _ in range(samples)]
