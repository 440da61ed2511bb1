"""Spike 3's browser side: build the SvelteKit app, run its measuring page for one option, sample the browser's processes.

The app (``app/``: four Svelte 5 components in one SvelteKit 2 page, adapter-static) is built by
:func:`harness.npm.vite_build` from the committed lock file, once per source hash, into the npm cache.
:func:`run_option` serves the build through :func:`harness.browser.run_page` with the steps to run put
into the page as ``window.__S03``, and samples the CPU time of every process of the browser's tree by
its Chromium role (``--type=renderer``, ``gpu-process``...) at 10 Hz, so each measured window gets the
CPU its renderer (main thread, raster workers) and its GPU process (raster, WebGL, compositing) spent.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from harness import browser, npm

__all__ = ["APP_DIR", "OPTIONS", "PageRun", "build", "run_option", "cpu_between", "HEADROOM_ARGS", "BASE_ARGS", "NO_WEBGL_ARGS"]

APP_DIR = Path(__file__).resolve().parent / "app"
#: The option keys, as the page's components know them.
OPTIONS = ("canvas2d", "konva", "pixi", "svg")
#: Every measuring launch: performance.memory moves in real steps only with precise memory info.
BASE_ARGS = ("--enable-precise-memory-info", "--window-size=1280,720")
#: Headroom mode: frames are not held to the display's 60 Hz, so the margin under 16.7 ms shows.
HEADROOM_ARGS = ("--disable-gpu-vsync", "--disable-frame-rate-limit")
#: No WebGL at all: no GPU process and no software rasteriser to fall back to.
NO_WEBGL_ARGS = ("--disable-gpu", "--disable-software-rasterizer")
_TYPE = re.compile(r"--type=([\w-]+)")


def build() -> Path:
    """The built app's directory (``index.html`` and ``_app/``), built once per source hash."""
    return npm.vite_build(APP_DIR, "s03-app")


def package_versions() -> dict[str, str]:
    return npm.locked_versions(APP_DIR, ("@sveltejs/kit", "svelte", "vite", "konva", "pixi.js"))


@dataclass
class _Sampler:
    """CPU seconds of each process role of a browser's tree, sampled at ``hz`` with wall-clock times."""

    hz: float = 10.0
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, pid: int) -> None:
        root = psutil.Process(pid)
        self._thread = threading.Thread(target=self._run, args=(root,), name=f"s03-sampler-{pid}", daemon=True)
        self._thread.start()

    def _run(self, root: psutil.Process) -> None:
        seen: dict[int, tuple[str, float]] = {}  # pid -> role, last cpu seconds: an exited process keeps its total
        totals: dict[str, float] = {}
        while not self._stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            rss = 0
            for p in procs:
                try:
                    with p.oneshot():
                        t = p.cpu_times()
                        cpu = t.user + t.system
                        rss += p.memory_info().rss
                        if p.pid not in seen:
                            m = _TYPE.search(" ".join(p.cmdline()))
                            role = m.group(1) if m else "browser"
                            seen[p.pid] = (role, 0.0)
                        role, last = seen[p.pid]
                        totals[role] = totals.get(role, 0.0) + max(0.0, cpu - last)
                        seen[p.pid] = (role, cpu)
                except psutil.Error:
                    continue
            now = time.time()
            self.samples.append((now, dict(totals)))
            self.rss.append((now, rss))
            self._stop.wait(1.0 / self.hz)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def cpu_between(samples: list[tuple[float, dict[str, float]]], start: float, end: float) -> dict[str, float]:
    """CPU seconds per process role between two wall-clock times (epoch s), from cumulative samples (nearest inside)."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return {}
    (t0, a), (t1, b) = inside[0], inside[-1]
    return {role: max(0.0, b.get(role, 0.0) - a.get(role, 0.0)) for role in b} | {"_seconds": t1 - t0}


@dataclass
class PageRun:
    """One launch of the measuring page: what it posted back, the engine's label, and the browser's CPU by role."""

    page: browser.PageResult
    steps: list[dict[str, Any]]
    cpu: list[tuple[float, dict[str, float]]]
    rss: list[tuple[float, int]]

    def step_cpu(self, step: dict[str, Any]) -> dict[str, float]:
        if not step.get("wallStart"):
            return {}
        return cpu_between(self.cpu, step["wallStart"] / 1000, step["wallEnd"] / 1000)

    def step_rss(self, step: dict[str, Any]) -> int | None:
        if not step.get("wallStart"):
            return None
        vals = [r for t, r in self.rss if step["wallStart"] / 1000 <= t <= step["wallEnd"] / 1000]
        return max(vals) if vals else None


def run_option(
    option: str,
    steps: list[dict[str, Any]],
    *,
    engine: str = "chromium",
    args: tuple[str, ...] = (),
    workdir: Path | None = None,
    timeout: float | None = None,
) -> PageRun:
    """Run ``steps`` for ``option`` in one launch of ``engine``; raises :class:`harness.browser.BrowserError` on failure."""
    out = build()
    html = (out / "index.html").read_text(encoding="utf-8")
    cfg = json.dumps({"option": option, "steps": steps})
    html = html.replace("<!--S03_CONFIG-->", f"<script>window.__S03 = {cfg};</script>")
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "index.html"}
    if timeout is None:
        timeout = 60 + sum((s.get("warmupMs", 1000) + s.get("windowMs", 2000)) / 1000 + 10 for s in steps)
    sampler = _Sampler()
    try:
        page = browser.run_page(
            engine,
            html,
            files=files,
            timeout=timeout,
            workdir=workdir,
            chromium_args=(*BASE_ARGS, *args),
            on_start=sampler.start,
        )
    finally:
        sampler.stop()
    data = page.data or {}
    if data.get("error"):
        raise browser.BrowserError(f"the measuring page failed for {option}: {data['error']}")
    return PageRun(page, list(data.get("steps") or []), sampler.samples, sampler.rss)
