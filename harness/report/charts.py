"""Charts as SVG files, drawn with matplotlib from a spike's :class:`~harness.plugin.Chart`."""

from __future__ import annotations

import base64
import binascii
import functools
import math
from pathlib import Path
from typing import Any

from harness.plugin import Chart

__all__ = ["draw"]


@functools.cache
def _pyplot() -> Any:
    """matplotlib's pyplot, imported on the first chart: the CLI imports this module, and so does every
    load-generator process it spawns, which never draws."""
    import matplotlib

    matplotlib.use("Agg")  # no display here or in CI
    # Deterministic SVG: the same data gives the same bytes, so re-rendering a
    # document from the same run does not churn the repository.
    matplotlib.rcParams["svg.hashsalt"] = "realtime-spikes"
    matplotlib.rcParams["svg.fonttype"] = "none"
    import matplotlib.pyplot as plt

    return plt


def _has_data(chart: Chart) -> bool:
    if chart.kind == "bar":
        return any(v is not None for values in chart.series.values() for v in values)
    return any(points for points in chart.series.values())


def _whiskers(ax: Any, xs: list[float], ys: list[float], ranges: list[tuple[float, float] | None] | None, color: Any) -> None:
    """Min-max across repeats as error bars around each drawn value (nothing where a value ran once)."""
    if not ranges:
        return
    for x, y, r in zip(xs, ys, ranges):
        if r is None or y is None or (isinstance(y, float) and math.isnan(y)):
            continue
        lo, hi = r
        ax.errorbar(
            [x], [y], yerr=[[max(0.0, y - lo)], [max(0.0, hi - y)]], fmt="none", ecolor="black", elinewidth=0.9, capsize=3, alpha=0.8
        )


def _image(chart: Chart, path: Path) -> Path | None:
    """A captured image (kind ``"image"``: a base64 PNG stored in the run, e.g. a screenshot), written as captured."""
    data = (chart.series.get("png_base64") or [None])[0]
    if not data:
        return None
    try:
        png = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None  # a damaged capture is not drawn; the document lists the chart's absence like any unmeasured one
    if not png.startswith(b"\x89PNG"):
        return None
    out = path.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    return out


def draw(chart: Chart, path: Path) -> Path | None:
    """Draw one chart into ``path`` (an ``.svg``; an ``"image"`` chart is written as the ``.png`` it holds).

    ``None`` when there is nothing measured to draw.
    """
    if chart.kind == "image":
        return _image(chart, path)
    if not _has_data(chart):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    try:
        if chart.kind == "bar":
            names = list(chart.series)
            n = max(1, len(names))
            width = 0.8 / n
            xs = range(len(chart.categories))
            for i, name in enumerate(names):  # a value not measured gets no bar, not a zero bar
                values = chart.series[name]
                ys = [math.nan if v is None else v for v in values]
                bx = [x - 0.4 + width * (i + 0.5) for x in xs]
                bars = ax.bar(bx, ys, width, label=name)
                _whiskers(ax, bx, ys, chart.spread.get(name), bars.patches[0].get_facecolor() if bars.patches else None)
            ax.set_xticks(list(xs))
            ax.set_xticklabels(chart.categories, rotation=0)
        elif chart.kind == "line":
            for name, points in chart.series.items():
                if points:
                    x, y = zip(*points)
                    (line,) = ax.plot(x, y, marker="o", markersize=3, label=name)
                    _whiskers(ax, list(x), list(y), chart.spread.get(name), line.get_color())
        else:
            raise ValueError(f"unknown chart kind {chart.kind!r}")
        if chart.log_y:
            ax.set_yscale("log")
        ax.set_title(chart.title)
        ax.set_ylabel(chart.ylabel)
        if chart.xlabel:
            ax.set_xlabel(chart.xlabel)
        ax.grid(axis="y", alpha=0.3)
        if len(chart.series) > 1:
            ax.legend(fontsize="small")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="svg", metadata={"Date": None})
    finally:
        plt.close(fig)
    return path
