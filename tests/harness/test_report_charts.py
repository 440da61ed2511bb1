"""harness.report.charts: an ``image`` chart is a capture stored in the run, written back byte for byte."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

from harness.plugin import Chart
from harness.report.charts import draw


def _png() -> bytes:
    """A valid 1x1 PNG, built here so the test needs no image library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")


def test_image_chart_is_written_as_the_png_it_holds(tmp_path: Path) -> None:
    png = _png()
    chart = Chart("shot", "A screenshot", "image", "", {"png_base64": [base64.b64encode(png).decode()]})
    out = draw(chart, tmp_path / "charts" / "spike-10-shot.svg")
    assert out == tmp_path / "charts" / "spike-10-shot.png"
    assert out.read_bytes() == png


def test_image_chart_without_a_capture_or_with_damage_is_not_drawn(tmp_path: Path) -> None:
    for series in ({}, {"png_base64": [None]}, {"png_base64": ["not base64!"]}, {"png_base64": [base64.b64encode(b"GIF89a").decode()]}):
        assert draw(Chart("shot", "A screenshot", "image", "", series), tmp_path / "x.svg") is None
    assert not list(tmp_path.iterdir())
