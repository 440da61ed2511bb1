"""Spike 3: canvas performance limits. How should the tabletop draw its board, and how much can it draw?

Four renderers, each a Svelte 5 component in one SvelteKit 2 page (``app/``, built with vite from a
committed lock file): hand-written Canvas 2D, Konva, PixiJS 8 (WebGL) and SVG rendered by Svelte. The
page measures frame times in real Chromium (``page.py``); ``limit.py`` holds the frame statistics and
the bisection of the largest object count; ``decision.py`` declares what is scored. Every figure is
labelled with the engine and WebGL renderer that produced it.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

from harness.browser import software_renderer
from harness.plugin import Chart, Finding, Option, ReportContent, Scenario, Spike, Table
from harness.results import RunResult, ScenarioResult
from harness.stats import fmt_num
from spikes.s03_canvas_performance import limit as lim
from spikes.s03_canvas_performance import scenarios as _sc
from spikes.s03_canvas_performance.decision import CRITERIA, GATES, WEIGHTS, scored_parts

__all__ = ["CanvasPerformanceSpike", "spike"]

_LIB = "app/src/lib"
_SHARED = (f"{_LIB}/scene.js",)
OPTIONS = (
    Option(
        "canvas2d",
        "Canvas 2D, hand-written",
        "immediate mode: the map and finished strokes baked into one bitmap blitted when the camera moves, tokens on a second "
        "canvas redrawn by dirty regions when it is still",
        (f"{_LIB}/Canvas2D.svelte", *_SHARED),
        (),
    ),
    Option(
        "konva",
        "Konva",
        "scene graph on Canvas 2D with its performance settings: listening(false), a map layer and a token layer, the strokes group cached",
        (f"{_LIB}/KonvaStage.svelte", *_SHARED),
        ("konva",),
    ),
    Option(
        "pixi",
        "PixiJS 8 (WebGL)",
        "tokens as sprites from one texture atlas, the map one sprite, finished strokes rendered into a render texture",
        (f"{_LIB}/PixiStage.svelte", *_SHARED),
        ("pixi.js",),
    ),
    Option(
        "svg",
        "SVG rendered by Svelte",
        "one element per token and stroke, the camera a transform: the no-library baseline",
        (f"{_LIB}/SvgScene.svelte", *_SHARED),
        (),
    ),
)

_COMMON = (
    "In headless Chromium (harness/browser.py) with --enable-precise-memory-info, a 1280x720 view of a 4096x4096 map; "
    "frame intervals from requestAnimationFrame after a warm-up of `warmup_ms`, over `window_ms`; main-thread JS per frame "
    "is the time of the frame's callback (the renderer's update and draw calls); the renderer's and GPU process's CPU per "
    "frame from psutil over the browser's process tree by Chromium process role."
)
_REQ = ("chromium", "node", "npm")

SCENARIOS = (
    Scenario(
        "tokens",
        "100 tokens with pan and zoom",
        "100 tokens, `moving` of them moving (players dragging), the camera panning and zooming 0.75-1.25x every frame. " + _COMMON,
        _sc.run_tokens,
        _sc.TOKENS_PARAMS,
        _sc.TOKENS_QUICK,
        requires=_REQ,
        max_repeats=1,
    ),
    Scenario(
        "strokes",
        "Draw operations, then panning",
        "`strokes` strokes of 50-500 points (a random walk, as a hand draws) added "
        "`draw_per_frame` a frame, each baked into the option's static layer (time per draw operation), then the camera pans "
        "over all of them with 100 tokens. The stroke limit (when `limit_counts` is given): the same panning with each count "
        "of strokes already on the map (one launch, `limit_window_ms` each), a count passing when fewer than 1% of frames take "
        "over 25 ms, then `limit_refine` bisection launches between the largest passing and first failing count (in the first repeat "
        "only). " + _COMMON,
        _sc.run_strokes,
        _sc.STROKES_PARAMS,
        _sc.STROKES_QUICK,
        requires=_REQ,
        # once: its draw phase is the costliest launch of the spike (Konva re-caches its stroke layer per draw); a
        # second repeat does not fit the budget, and the document says its scored figure has no noise estimate
        max_repeats=1,
    ),
    Scenario(
        "state",
        "10 MB canvas state",
        "A saved table of `state_mb` MB of JSON (100 tokens and about 260 strokes per MB) parsed, "
        "turned into the scene and rendered (first render: from the start of parsing to the second frame after mounting), then "
        "held and panned; JS heap growth and the browser's resident memory. " + _COMMON,
        _sc.run_state,
        _sc.STATE_PARAMS,
        _sc.STATE_QUICK,
        requires=_REQ,
        # repeats: its two scored figures (heap held, first render) vary from launch to launch
    ),
    Scenario(
        "animation",
        "60 fps animation and the limit",
        "Every token animated every frame, the camera still, at each count of "
        "`counts` (one launch, `sweep_window_ms` each); a count passes at the normal frame rate when fewer than 1% of its frames "
        "take over 25 ms. The limit is then bisected geometrically between the largest passing and the first failing count "
        "(`refine_steps` more launches of `probe_window_ms`). With `headroom`, the same in headroom mode (--disable-gpu-vsync "
        "--disable-frame-rate-limit: frames not capped at 60), where a count passes when its 95th percentile frame is within "
        "16.7 ms. The sweep, the bisection and headroom mode run in the first repeat; each later repeat measures again, at the "
        "normal rate in one launch, only the smallest and largest counts (the two the decision scores). " + _COMMON,
        _sc.run_animation,
        _sc.ANIMATION_PARAMS,
        _sc.ANIMATION_QUICK,
        requires=_REQ,
        # repeats: the first searches the limit, later ones re-measure the scored counts (run_animation)
    ),
    Scenario(
        "bad-input",
        "Bad input",
        "Each option meets NaN and 1e308 token coordinates and a stroke of 100,000 points; Canvas 2D a "
        "16385x16385 canvas (over Chromium's limit: it renders blank without an exception); PixiJS no WebGL context "
        "(--disable-gpu --disable-software-rasterizer) and a 16384x16384 map (over this GPU's maximum texture size). A case "
        "counts as detected when the page reports it (refused, simplified, or 'not supported'); never as a fast blank page.",
        _sc.run_bad_input,
        _sc.BAD_PARAMS,
        _sc.BAD_PARAMS,
        requires=_REQ,
        max_repeats=1,
    ),
    Scenario(
        "engines",
        "Main-thread cost in Firefox ESR and WebKitGTK",
        "The 100 tokens all animated, camera still (as in `animation` at 100), in Firefox ESR and WebKitGTK's MiniBrowser on an "
        "Xvfb display (harness/browser.py), to cross-check Chromium's main-thread JS per frame. Firefox rounds performance.now() "
        "to 1 ms and WebKit reports no WebGL renderer and no performance.memory: their per-frame JS is coarse, their heap not "
        "measured, and psutil's CPU is the whole browser's.",
        _sc.run_engines,
        _sc.ENGINES_PARAMS,
        _sc.ENGINES_QUICK,
        requires=("node", "npm"),
        max_repeats=1,
    ),
)


def first_fact(sr: ScenarioResult | None, key: str) -> Any:
    """``key`` from the first repeat's facts that holds it: the limit searches are made in the first repeat only."""
    for f in sr.facts if sr is not None else ():
        if key in f:
            return f[key]
    return None


def main_thread_at_limit(run: RunResult, option: str = "canvas2d") -> dict[str, Any] | None:
    """Whether the main thread is ``option``'s limit, from the run: its main-thread JS per frame where it stops passing.

    The count judged is the first count seen to fail at the normal frame rate (the sweep's or a bisection
    probe's); when no count failed, the largest count swept (the limit lies above it). The main thread is the
    limit when the median JS time of a frame there reaches the 60 Hz frame, 16.7 ms: then no rasteriser can
    keep the frame rate, and moving the drawing off the main thread (an OffscreenCanvas in a worker) is what
    would raise it. ``None`` when the run has no limit search for ``option``.
    """
    f = first_fact(run.ok("animation", option), "limit_normal")
    if not f or not f.get("swept"):
        return None
    failed = f.get("fails") is not None
    count = int(f["fails"]) if failed else max(int(k) for k in f["swept"])
    js = run.median("animation", option, "script_ms", tokens=str(count), mode="normal")
    if js is None:
        return None
    return {
        "option": option,
        "count": count,
        "failed": failed,
        "passes": f.get("passes"),
        "js_ms": js,
        "gpu_ms": run.median("animation", option, "gpu_cpu_ms_per_frame", tokens=str(count), mode="normal"),
        "budget_ms": lim.FRAME_60_MS,
        "limited": js >= lim.FRAME_60_MS,
    }


def _names(xs: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return ", ".join(xs[:-1]) + " and " + xs[-1] if len(xs) > 1 else "".join(xs)


def _pct(v: float | None) -> str:
    return "not run" if v is None else f"{v:.1%}"


def _n(v: float | None, unit: str = "") -> str:
    return "not run" if v is None else f"{fmt_num(v)}{unit}"


class CanvasPerformanceSpike(Spike):
    """Canvas 2D vs Konva vs PixiJS 8 vs SVG, for the tabletop's board."""

    number = 3
    slug = "canvas-performance"
    title = "Canvas Performance Limits"
    priority = "important"
    planned_hours = 4
    question = (
        "How should the tabletop draw its board (hand-written Canvas 2D, Konva, PixiJS on WebGL, or SVG), and where are the limits: "
        "how many objects before lag, which rendering strategy, should we use WebGL, and how does memory grow?"
    )
    options = OPTIONS
    scenarios = SCENARIOS
    weights = WEIGHTS
    criteria = CRITERIA
    gates = GATES
    ships_anyway = ("svelte", "@sveltejs/kit")
    #: Two repeats of the scored scenarios (``state``, ``animation``) for a spread; the others are capped at one
    #: (``max_repeats``) to keep the full profile within its 12-minute budget (harness/budgets.toml).
    default_repeat = 2
    quick_repeat = 1
    package_dir = Path(__file__).parent

    # -- labels ---------------------------------------------------------------------
    @staticmethod
    def _renderers(run: RunResult) -> dict[str, str]:
        """Each distinct browser label the run's figures came from (engine, version, WebGL renderer), by scenario."""
        out: dict[str, str] = {}
        for sr in run.scenarios:
            if sr.status != "ok":
                continue
            for fact in sr.facts:
                for k, v in fact.items():
                    if k.endswith("_label") and isinstance(v, str):
                        out.setdefault(v, sr.scenario)
                for e in (fact.get("engines") or {}).values():
                    if e.get("label"):
                        out.setdefault(e["label"], sr.scenario)
        return out

    def _chromium_label(self, run: RunResult) -> str:
        labels = [k for k in self._renderers(run) if k.startswith("Chromium")]
        return " / ".join(labels) if labels else "no Chromium ran"

    @staticmethod
    def _software(run: RunResult) -> bool:
        for sr in run.scenarios:
            for fact in sr.facts:
                for k, v in fact.items():
                    if k.startswith("browser") and isinstance(v, dict) and software_renderer(v.get("renderer")):
                        return True
        return False

    def _label(self, run: RunResult) -> str:
        return self._chromium_label(run)

    def _short_label(self, run: RunResult) -> str:
        """``Chromium 156, WebGL on SwiftShader (software)``: the renderer in a few words, for a chart's title."""
        for sr in run.scenarios:
            for k, v in sr.fact.items():
                if k.startswith("browser") and isinstance(v, dict) and v.get("engine") == "chromium":
                    r = v.get("renderer") or ""
                    m = re.search(r"SwiftShader|llvmpipe|lavapipe|softpipe", r, re.IGNORECASE)
                    gl = m.group(0) if m else (r[:40] or "no WebGL")
                    soft = " (software)" if software_renderer(r) else ""
                    return f"Chromium {str(v.get('version', '')).split('.')[0]}, WebGL on {gl}{soft}"
        return "no Chromium ran"

    # -- tables -----------------------------------------------------------------------
    def _frame_table(
        self, run: RunResult, scenario: str, title: str, tags: dict[str, str], extra: list[tuple[str, str, str]] = ()
    ) -> Table:
        titles = {o.key: o.title for o in self.options}
        rows = []
        for o in run.options:
            sr = run.ok(scenario, o)
            if sr is None:
                res = run.result(scenario, o)
                rows.append(
                    [titles[o], (res.status.replace("_", " ") + (f": {res.reason}" if res and res.reason else "")) if res else "not run"]
                )
                continue
            try:
                iv = sr.measurement("frame_ms", **tags).samples
                sc = sr.measurement("script_ms", **tags).samples
            except KeyError:
                rows.append([titles[o], "no frames stored"])
                continue

            def med(name: str, o: str = o) -> float | None:
                return run.median(scenario, o, name, **tags)

            cells = [
                titles[o],
                f"{fmt_num(lim.percentile(iv, 50))} / {fmt_num(lim.percentile(iv, 95))} / {fmt_num(lim.percentile(iv, 99))}",
                _pct(lim.share_late(iv, 1)),
                _pct(lim.share_late(iv, 2)),
                f"{fmt_num(statistics.median(sc))} (p95 {fmt_num(lim.percentile(sc, 95))})",
                _n(med("renderer_cpu_ms_per_frame")),
                _n(med("gpu_cpu_ms_per_frame")),
                _n(med("long_frames")),
                _n(med("js_heap_mb")),
                _n(med("browser_rss_mb")),
            ]
            for name, _, unit in extra:
                cells.append(_n(run.median(scenario, o, name), unit))
            rows.append(cells)
        headers = [
            "Option",
            "Frame p50 / p95 / p99 (ms)",
            "Frames > 16.7 ms (+1 ms jitter)",
            "Frames > 33 ms (+1 ms jitter)",
            "Main-thread JS per frame, median (ms)",
            "Renderer process CPU per frame (ms)",
            "GPU process CPU per frame (ms, raster)",
            "Long animation frames",
            "JS heap (MB)",
            "Browser RSS (MB)",
            *(h for _, h, _ in extra),
        ]
        width = len(headers)
        rows = [r + [""] * (width - len(r)) if len(r) < width else r for r in rows]
        return Table(f"{title} [{self._label(run)}]", headers, rows, f"Renderer of every figure: {self._label(run)}.")

    def _sweep(self, run: RunResult, mode: str) -> tuple[list[int], dict[str, list[tuple[int, float]]], dict[str, list[tuple[int, float]]]]:
        titles = {o.key: o.title for o in self.options}
        p95: dict[str, list[tuple[int, float]]] = {}
        js: dict[str, list[tuple[int, float]]] = {}
        counts: set[int] = set()
        for o in run.options:
            sr = run.ok("animation", o)
            if sr is None:
                continue
            pts, jpts = [], []
            for m in sr.find("p95_frame_ms"):
                if m.tags.get("mode") != mode:
                    continue
                n = int(m.tags["tokens"])
                counts.add(n)
                pts.append((n, m.median))
                jpts.append((n, statistics.median(sr.measurement("script_ms", tokens=str(n), mode=mode).samples)))
            p95[titles[o]] = sorted(pts)
            js[titles[o]] = sorted(jpts)
        return sorted(counts), p95, js

    @staticmethod
    def _windows(run: RunResult, mode: str) -> str:
        """How many measured windows (launches) each count of a sweep pooled, from the stored repeats."""
        per: dict[int, int] = {}
        for sr in run.scenarios:
            if sr.scenario != "animation" or sr.status != "ok":
                continue
            for m in sr.find("p95_frame_ms"):
                if m.tags.get("mode") == mode:
                    n = int(m.tags["tokens"])
                    per[n] = max(per.get(n, 0), sum(1 for r in m.repeats if r))
        most = max(per.values(), default=1)
        if most <= 1:
            return "One window per count"
        at = sorted(n for n, k in per.items() if k == most)
        return f"{most} windows per point at {_names([str(n) for n in at])} tokens (one per repeat, each a launch: the median of their values), one at the other counts"

    def _repeats_caveat(self, run: RunResult) -> str | None:
        """Which scenarios ran fewer repeats than the most, and which scored figures therefore have no noise estimate.

        ``None`` when every scenario ran once (the harness's own caveat, "one repeat", says it) or all ran alike.
        """
        reps: dict[str, int] = {}
        for sr in run.scenarios:
            if sr.status == "ok":
                reps[sr.scenario] = max(reps.get(sr.scenario, 0), len(sr.durations_s))
        most = max(reps.values(), default=0)
        if most < 2:
            return None
        order = [sc.key for sc in self.scenarios if sc.key in reps] + sorted(k for k in reps if k not in {sc.key for sc in self.scenarios})
        many = [k for k in order if reps[k] >= 2]
        once = [k for k in order if reps[k] < 2]
        text = "repeats: " + "; ".join(f"`{k}` {reps[k]}" for k in many)
        lesser = []
        for k in many:
            later = [f for sr in run.scenarios if sr.scenario == k and sr.status == "ok" for f in sr.facts[1:]]
            if any(f.get("limit_search") is False for f in later):
                counts = sorted({int(n) for f in later for n in f.get("counts_normal") or ()})
                lesser.append(
                    f"`{k}`'s repeats after the first measured only {_names([str(n) for n in counts])} tokens at the normal rate; "
                    "its other counts, the bisection and headroom mode ran once"
                )
        if lesser:
            text += " (" + "; ".join(lesser) + ")"
        if once:
            text += f"; {_names([f'`{k}`' for k in once])} ran once"
            unsure = [label for label, scenario, exact in scored_parts() if scenario in once and not exact]
            if unsure:
                text += f": no noise estimate for the scored {_names(unsure)}"
        return text

    def _offscreen_note(self, run: RunResult, titles: dict[str, str]) -> str:
        """Whether the run indicates the issue's optional OffscreenCanvas step: is the main thread Canvas 2D's limit?"""
        head = "**OffscreenCanvas in a worker** (optional, if the main thread limits Canvas 2D): "
        v = main_thread_at_limit(run, "canvas2d")
        if v is None:
            return head + "not judged: this run has no limit search for Canvas 2D."
        where = (
            f"at {v['count']} animated tokens (the first count that failed at the normal rate)"
            if v["failed"]
            else f"at {v['count']} animated tokens (the most swept; none failed, so its limit lies above)"
        )
        share = v["js_ms"] / v["budget_ms"]
        js = (
            f"{titles['canvas2d']}: main-thread JS per frame {where} is {fmt_num(v['js_ms'])} ms (median), "
            f"{share:.0%} of the {fmt_num(v['budget_ms'])} ms frame"
        )
        if v["limited"]:
            return (
                head + f"**indicated** by this run. {js}: the main thread is the limit, so drawing from a worker through an "
                "OffscreenCanvas is the step that could raise it. No OffscreenCanvas option is built yet."
            )
        gpu = f"; GPU-process CPU per frame there: {fmt_num(v['gpu_ms'])} ms" if v["gpu_ms"] is not None else ""
        tail = (
            "Its JavaScript stays under the frame, so what drops frames at that count is not the main-thread work an "
            "OffscreenCanvas would move" + gpu
            if v["failed"]
            else "The main thread is not its limit at any count measured"
        )
        return (
            head + f"not indicated by this run. {js}. {tail}. Moving the drawing into a worker would free main-thread time "
            "this renderer does not lack, so it was not built."
        )

    def report(self, run: RunResult) -> ReportContent:
        content = ReportContent()
        titles = {o.key: o.title for o in self.options}
        label = self._label(run)
        software = self._software(run)
        content.tables.append(
            Table(
                "Where every figure comes from",
                ["Browser (engine, version, WebGL renderer)", "First seen in"],
                [[k, v] for k, v in self._renderers(run).items()] or [["no browser ran", ""]],
                "SwiftShader, llvmpipe and the like are CPU rasterisers: frame rates and WebGL costs measured on them are not a GPU's. "
                "Main-thread JS per frame is the figure that carries to a player's hardware.",
            )
        )
        content.tables.append(
            self._frame_table(run, "tokens", "100 tokens, pan and zoom", {"tokens": "100"}, [("load_ms", "Load to first frame (ms)", "")])
        )
        strokes_n = str(next((sr.params.get("strokes") for sr in run.scenarios if sr.scenario == "strokes"), ""))
        content.tables.append(
            self._frame_table(
                run,
                "strokes",
                f"Panning over {strokes_n} strokes",
                {"strokes": strokes_n, "phase": "drawn"},
                [("draw_op_ms", "Draw operation, median (ms)", "")],
            )
        )
        mb = str(next((sr.params.get("state_mb") for sr in run.scenarios if sr.scenario == "state"), ""))
        content.tables.append(
            self._frame_table(
                run,
                "state",
                f"A {mb} MB table: load, hold, pan",
                {"state_mb": mb},
                [
                    ("parse_ms", "JSON.parse (ms)", ""),
                    ("first_render_ms", "First render (ms)", ""),
                    ("state_heap_mb", "Heap growth (MB)", ""),
                ],
            )
        )
        # The sweep and the limit.
        for mode, what in (("normal", "normal frame rate (vsync, 60 Hz)"), ("headroom", "headroom mode (vsync and frame cap off)")):
            counts, p95, js = self._sweep(run, mode)
            if not counts:
                continue
            content.charts.append(
                Chart(
                    f"frame-p95-{mode}",
                    f"p95 frame time vs animated tokens, {mode} [{self._short_label(run)}]",
                    "line",
                    "ms (log scale)",
                    {k: [list(p) for p in v] for k, v in p95.items()},
                    xlabel="tokens, all animated every frame",
                    log_y=True,
                    caption=f"95th percentile frame time, {what}. Renderer: {label}. {self._windows(run, mode)}; 16.7 ms is one 60 Hz frame. "
                    + ("Software rasterisation: the WebGL option's raster cost runs on the CPU here, not on a GPU." if software else ""),
                )
            )
            content.charts.append(
                Chart(
                    f"frame-js-{mode}",
                    f"Main-thread JS per frame vs animated tokens, {mode} [{self._short_label(run)}]",
                    "line",
                    "ms per frame, median (log scale)",
                    {k: [list(p) for p in v] for k, v in js.items()},
                    xlabel="tokens, all animated every frame",
                    log_y=True,
                    caption=f"{what.capitalize()}. Renderer: {label}. The renderer's own JavaScript in each frame's callback: the cost that carries to a hardware GPU.",
                )
            )
        rows = []
        for o in run.options:
            sr = run.ok("animation", o)
            if sr is None:
                continue
            cells = [titles[o]]
            ss = run.ok("strokes", o)
            facts = {
                "normal": first_fact(sr, "limit_normal"),
                "headroom": first_fact(sr, "limit_headroom"),
                "strokes": first_fact(ss, "limit_strokes"),
            }
            for mode in ("normal", "headroom", "strokes"):
                f = facts[mode]
                if not f:
                    cells.append("not run")
                    continue
                lo, hi = f["passes"], f["fails"]
                if lo is None:
                    cells.append(f"below {min(int(k) for k in f['swept'])} (the smallest count failed)")
                elif hi is None:
                    cells.append(f"at least {lo} (no count swept failed)")
                else:
                    cells.append(
                        f"{lo} passes, {hi} fails" + (f" ({len(f['probed'])} bisection probes)" if f["probed"] else " (sweep only)")
                    )
            rows.append(cells)
        if rows:
            content.tables.append(
                Table(
                    f"The limit: largest count that passes [{label}]",
                    [
                        "Option",
                        "Animated tokens, normal rate: < 1% of frames over 25 ms",
                        "Animated tokens, headroom mode: p95 frame within 16.7 ms",
                        "Strokes while panning (100 tokens), normal rate: < 1% of frames over 25 ms",
                    ],
                    rows,
                    f"Renderer: {label}. A limit measured on a software rasteriser is the CPU's, not a GPU's.",
                )
            )
        rows = []
        for o in run.options:
            sr = run.ok("bad-input", o)
            if sr is None:
                continue
            for c in sr.fact.get("cases", []):
                rows.append([titles[o], c["case"], "yes" if c["detected"] else "**no**", c["report"]])
        if rows:
            content.tables.append(
                Table("Bad input: detected and reported?", ["Option", "Case", "Detected", "What the page reported"], rows)
            )
        content.tables.extend(self._engines_table(run, titles))
        content.findings.extend(self._findings(run, titles, label))
        content.notes.append(self._answers(run, titles, label, software))
        content.notes.append(self._offscreen_note(run, titles))
        if software:
            content.caveats.append(
                f"every figure is from {label}: WebGL there is a CPU rasteriser, so PixiJS's frame rates are not a GPU's and "
                '"should we use WebGL?" cannot be answered on software rendering; the scores use main-thread JS per frame only, '
                "which carries across hardware; a run on a machine with a GPU (same command, its renderer recorded) decides WebGL"
            )
        content.caveats.append("the seed's four questions are answered one by one at the top of Results, each with its renderer")
        if (rc := self._repeats_caveat(run)) is not None:
            content.caveats.append(rc)
        return content

    def _engines_table(self, run: RunResult, titles: dict[str, str]) -> list[Table]:
        engines = ("firefox", "webkit")
        rows = []
        labels: dict[str, str] = {}
        for o in run.options:
            chrome = run.median("animation", o, "script_ms", tokens="100", mode="normal")
            cells = [titles[o], _n(chrome)]
            sr = run.ok("engines", o)
            for e in engines:
                info = (sr.fact.get("engines") or {}).get(e, {}) if sr else {}
                if info.get("label"):
                    labels[e] = info["label"]
                v = run.median("engines", o, "script_ms", tokens="100", engine=e) if sr else None
                fps = run.median("engines", o, "fps", tokens="100", engine=e) if sr else None
                if v is not None:
                    cells.append(f"{fmt_num(v)} ({fmt_num(fps)} fps)")
                else:
                    cells.append(info.get("not_run") or info.get("error") or "not run")
            rows.append(cells)
        if not any(run.ok("engines", o) for o in run.options):
            return []
        steps = {e: (run.ok("engines", run.options[0]) or None) for e in engines}
        clock = []
        for e in engines:
            sr = steps[e]
            c = ((sr.fact.get("engines") or {}).get(e) or {}).get("clock_step_ms") if sr else None
            if c is not None:
                clock.append(f"{e}: performance.now() steps by {fmt_num(c)} ms")
        return [
            Table(
                "Main-thread JS per frame, 100 tokens all animated, in three engines (median ms)",
                ["Option", f"Chromium [{self._chromium_label(run)}]", *(f"{e} [{labels.get(e, 'not run')}]" for e in engines)],
                rows,
                "The same page and scene in each engine. "
                + ("; ".join(clock) + ": a median below the step reads as 0 or as one step. " if clock else "")
                + "Frame rates in Firefox and WebKit are their own compositors' "
                "on Xvfb with software GL, not comparable to Chromium's as raster figures.",
            )
        ]

    def _findings(self, run: RunResult, titles: dict[str, str], label: str) -> list[Finding]:
        out = []
        for o in run.options:
            v = run.median("animation", o, "script_ms", tokens="100", mode="normal")
            if v is not None:
                out.append(Finding(o, v < 2, f"its JS costs {fmt_num(v)} ms of main thread per frame with 100 animated tokens ({label})"))
            sr = run.ok("bad-input", o)
            if sr is not None:
                missed = [c["case"] for c in sr.fact.get("cases", []) if not c["detected"]]
                if missed:
                    out.append(Finding(o, False, f"bad input not detected: {', '.join(missed)}"))
        return out

    def _answers(self, run: RunResult, titles: dict[str, str], label: str, software: bool) -> str:
        lines = ["**The seed's four questions, answered from this run** (renderer: " + label + "):", ""]
        lim_txt = []
        for o in run.options:
            f = first_fact(run.ok("animation", o), "limit_normal")
            if f:
                lo = f["passes"]
                lim_txt.append(
                    f"{titles[o]} {'below ' + str(min(int(k) for k in f['swept'])) if lo is None else str(lo) + ('+' if f['fails'] is None else '')}"
                )
        lines.append(
            "1. *Max objects before lag* (animated tokens with < 1% of frames over 25 ms): "
            + (", ".join(lim_txt) if lim_txt else "not measured")
            + f". Measured on {label}"
            + (": the raster part is a CPU's; a GPU moves these limits up, WebGL's most." if software else ".")
        )
        js = {o: run.median("animation", o, "script_ms", tokens="100", mode="normal") for o in run.options}
        ranked = sorted(((v, o) for o, v in js.items() if v is not None))
        lines.append(
            "2. *Optimal rendering strategy*: by main-thread JS per frame at 100 animated tokens, "
            + (", ".join(f"{titles[o]} {fmt_num(v)} ms" for v, o in ranked) if ranked else "not measured")
            + "; a static layer baked into a bitmap and only the moving layer redrawn keeps strokes and the map off the per-frame cost."
        )
        lines.append(
            "3. *Should we use WebGL?* "
            + (
                "Cannot be answered on software rendering: here WebGL is SwiftShader on the CPU. What PixiJS costs the main thread "
                "is above; its raster cost needs a run of `spike run 3` on a machine with a GPU (Chromium with GPU access, not "
                "headless SwiftShader; the renderer string in the table above then names the GPU), comparing the same sweep."
                if software
                else "Answered by the sweep above on a hardware renderer: compare PixiJS's limit with Canvas 2D's."
            )
        )
        heap = {o: run.median("state", o, "state_heap_mb") for o in run.options}
        rss = {
            o: run.median(
                "state",
                o,
                "browser_rss_mb",
                state_mb=str(next((sr.params.get("state_mb") for sr in run.scenarios if sr.scenario == "state"), "")),
            )
            for o in run.options
        }
        lines.append(
            "4. *Memory usage patterns*: holding the saved table, JS heap growth "
            + ", ".join(f"{titles[o]} {_n(heap[o], ' MB')}" for o in run.options)
            + "; the browser's whole process tree "
            + ", ".join(f"{titles[o]} {_n(rss[o], ' MB')}" for o in run.options)
            + " (bitmaps and textures live outside the JS heap: the map alone is 64 MB as RGBA)."
        )
        return "\n".join(lines)


spike = CanvasPerformanceSpike()
