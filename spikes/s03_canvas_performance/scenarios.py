"""Spike 3's scenarios: each runs the measuring page for one option and stores raw frame samples.

Every step stores, tagged with its object counts: ``frame_ms`` (rAF intervals of the measured window,
raw), ``script_ms`` (the JS time of each frame's callback: the main-thread cost the renderer adds, which
carries across GPUs), the CPU the renderer and GPU processes spent per frame (psutil, by Chromium
process role: the GPU process is where SwiftShader rasterises), long-animation-frame counts, the JS heap
and the browser's resident memory. The engine, its version and WebGL renderer go into the facts.
"""

from __future__ import annotations

import math
from typing import Any

from harness.browser import BrowserError
from harness.plugin import ScenarioContext, ScenarioOutput
from spikes.s03_canvas_performance import limit as lim
from spikes.s03_canvas_performance import page

__all__ = [
    "TOKENS_PARAMS",
    "TOKENS_QUICK",
    "STROKES_PARAMS",
    "STROKES_QUICK",
    "STATE_PARAMS",
    "STATE_QUICK",
    "ANIMATION_PARAMS",
    "ANIMATION_QUICK",
    "BAD_PARAMS",
    "run_tokens",
    "run_strokes",
    "run_state",
    "run_animation",
    "repeat_counts",
    "run_bad_input",
    "run_engines",
    "ENGINES_PARAMS",
    "ENGINES_QUICK",
    "step_measurements",
]

_WINDOW = {"warmup_ms": 1000, "window_ms": 10000}
_WINDOW_QUICK = {"warmup_ms": 500, "window_ms": 1000}
TOKENS_PARAMS = {"tokens": 100, "moving": 10, **_WINDOW}
TOKENS_QUICK = {"tokens": 100, "moving": 10, **_WINDOW_QUICK}
STROKES_PARAMS = {
    "strokes": 1000,
    "draw_per_frame": 20,
    "tokens": 100,
    **_WINDOW,
    "limit_counts": [1000, 3000, 10000],
    "limit_window_ms": 3000,
    "limit_refine": 1,
}
STROKES_QUICK = {
    "strokes": 200,
    "draw_per_frame": 20,
    "tokens": 100,
    **_WINDOW_QUICK,
    "limit_counts": [],
    "limit_window_ms": 1000,
    "limit_refine": 0,
}
STATE_PARAMS = {"state_mb": 10, **_WINDOW}
STATE_QUICK = {"state_mb": 10, **_WINDOW_QUICK}
ANIMATION_PARAMS = {
    "counts": [100, 300, 1000, 3000],
    "sweep_window_ms": 3000,
    "warmup_ms": 1000,
    "refine_steps": 2,
    "headroom": True,
    "probe_window_ms": 3000,
}
ANIMATION_QUICK = {
    "counts": [100, 1000, 3000],
    "sweep_window_ms": 1000,
    "warmup_ms": 500,
    "refine_steps": 0,
    "headroom": False,
    "probe_window_ms": 1000,
}
BAD_PARAMS = {"window_ms": 300, "warmup_ms": 200}


def _ms_per_frame(seconds: float, frames: int) -> float:
    return 1000 * seconds / frames if frames else math.nan


def step_measurements(out: ScenarioOutput, run: page.PageRun, step: dict[str, Any], **tags: str) -> None:
    """Store one measured step of the page: raw frame samples, per-frame CPU by process role, memory."""
    iv, sc = step.get("intervals") or [], step.get("script") or []
    if not iv:
        return
    out.add("frame_ms", "ms", iv, **tags)
    out.add("script_ms", "ms", sc, **tags)
    out.add("p95_frame_ms", "ms", [lim.percentile(iv, 95)], **tags)
    out.add("share_over_25ms", "fraction", [lim.share_over(iv, lim.LONG_FRAME_MS)], **tags)
    out.add("share_over_16_7ms", "fraction", [lim.share_late(iv, 1)], **tags)
    out.add("share_over_33ms", "fraction", [lim.share_late(iv, 2)], **tags)
    out.add("fps", "frames/s", [1000 * len(iv) / sum(iv)], better="higher", **tags)
    cpu = run.step_cpu(step)
    if cpu:
        out.add("renderer_cpu_ms_per_frame", "ms", [_ms_per_frame(cpu.get("renderer", 0.0), len(iv))], **tags)
        out.add("gpu_cpu_ms_per_frame", "ms", [_ms_per_frame(cpu.get("gpu-process", 0.0), len(iv))], **tags)
    loaf = step.get("loaf") or []
    out.add("long_frames", "frames", [len(loaf)], **tags)
    if loaf:
        out.add("long_frame_render_ms", "ms", [e["render"] for e in loaf], **tags)
    heap = step.get("heapAfter")
    if heap:
        out.add("js_heap_mb", "MB", [heap["used"] / 1e6], **tags)
    rss = run.step_rss(step)
    if rss:
        out.add("browser_rss_mb", "MB", [rss / 1e6], **tags)


def _label(out: ScenarioOutput, run: page.PageRun, key: str = "browser") -> None:
    out.facts[key] = run.page.to_dict()
    out.facts[f"{key}_label"] = run.page.label()
    out.facts.setdefault("packages", page.package_versions())


def _one(ctx: ScenarioContext, steps: list[dict[str, Any]], args: tuple[str, ...] = ()) -> page.PageRun:
    return page.run_option(ctx.option.key, steps, args=args, workdir=ctx.workdir)


def _check(out: ScenarioOutput, step: dict[str, Any]) -> None:
    if step.get("error"):
        # Never counted as fast: a renderer that did not start stores no frames and says why.
        raise BrowserError(step["error"])
    if step.get("rejected"):
        out.facts.setdefault("rejected", []).append(step["rejected"])


def run_tokens(ctx: ScenarioContext) -> ScenarioOutput:
    """100 tokens on the 4096² map, some moving (players dragging), with the camera panning and zooming."""
    p = ctx.params
    st = {"tokens": p["tokens"], "moving": p["moving"], "camera": True, "warmupMs": p["warmup_ms"], "windowMs": p["window_ms"]}
    run = _one(ctx, [st])
    out = ScenarioOutput()
    s = run.steps[0]
    _check(out, s)
    step_measurements(out, run, s, tokens=str(p["tokens"]))
    out.add("load_ms", "ms", [s["loadMs"]])
    _label(out, run)
    return out


def run_strokes(ctx: ScenarioContext) -> ScenarioOutput:
    """Strokes drawn one after another (``draw_per_frame`` a frame), then the camera pans over them all."""
    p = ctx.params
    st = {
        "tokens": p["tokens"],
        "strokes": p["strokes"],
        "drawStrokes": p["draw_per_frame"],
        "moving": 0,
        "camera": True,
        "warmupMs": p["warmup_ms"],
        "windowMs": p["window_ms"],
    }
    run = _one(ctx, [st])
    out = ScenarioOutput()
    s = run.steps[0]
    _check(out, s)
    out.add("draw_op_ms", "ms", s.get("drawMs") or [math.nan])
    out.add("drawing_frame_ms", "ms", s.get("drawIntervals") or [math.nan])
    step_measurements(out, run, s, strokes=str(p["strokes"]), phase="drawn")
    _label(out, run)
    if p["limit_counts"] and ctx.repeat == 0:  # the limit search is made once, in the first repeat
        _stroke_limit(ctx, out)
    return out


def _stroke_limit(ctx: ScenarioContext, out: ScenarioOutput) -> None:
    """The largest stroke count whose panning keeps < 1% of frames over 25 ms: a sweep, then bisection."""
    p = ctx.params

    def steps(counts: list[int]) -> list[dict[str, Any]]:
        return [
            {"tokens": p["tokens"], "strokes": n, "moving": 0, "camera": True, "warmupMs": p["warmup_ms"], "windowMs": p["limit_window_ms"]}
            for n in counts
        ]

    run = _one(ctx, steps(list(p["limit_counts"])))
    results: dict[int, bool] = {}
    for n, s in zip(p["limit_counts"], run.steps):
        _check(out, s)
        step_measurements(out, run, s, strokes=str(n), phase="limit")
        results[n] = lim.passes_normal(s.get("intervals") or [])
    lo, hi = lim.bracket(results)
    probed: list[int] = []
    if lo is not None and hi is not None and p["limit_refine"]:

        def probe(n: int) -> bool:
            r = _one(ctx, steps([n]))
            _check(out, r.steps[0])
            step_measurements(out, r, r.steps[0], strokes=str(n), phase="limit")
            return lim.passes_normal(r.steps[0].get("intervals") or [])

        lo, hi, probed = lim.bisect_limit(probe, lo, hi, max_steps=p["limit_refine"])
    out.facts["limit_strokes"] = {"passes": lo, "fails": hi, "probed": probed, "swept": {str(k): v for k, v in results.items()}}
    out.add("stroke_limit", "strokes", [float(lo or 0)], better="higher")


def run_state(ctx: ScenarioContext) -> ScenarioOutput:
    """A saved table of ``state_mb`` MB of JSON: parse, first render, then held and panned; heap and process memory."""
    p = ctx.params
    st = {"stateMb": p["state_mb"], "moving": 0, "camera": True, "warmupMs": p["warmup_ms"], "windowMs": p["window_ms"]}
    run = _one(ctx, [st])
    out = ScenarioOutput()
    s = run.steps[0]
    _check(out, s)
    out.add("state_bytes", "bytes", [s["stateBytes"]], better=None)
    out.add("parse_ms", "ms", [s["parseMs"]])
    out.add("first_render_ms", "ms", [s["loadMs"]])
    if s.get("heapBefore") and s.get("heapAfter"):
        out.add("state_heap_mb", "MB", [(s["heapAfter"]["used"] - s["heapBefore"]["used"]) / 1e6])
    step_measurements(out, run, s, state_mb=str(p["state_mb"]))
    out.facts["strokes"] = s["strokes"]
    _label(out, run)
    return out


def _sweep(ctx: ScenarioContext, counts: list[int], window_ms: int, args: tuple[str, ...]) -> page.PageRun:
    steps = [{"tokens": n, "camera": False, "warmupMs": ctx.params["warmup_ms"], "windowMs": window_ms} for n in counts]
    return _one(ctx, steps, args)


def repeat_counts(counts: list[int]) -> list[int]:
    """The counts measured again in the repeats after the first: the smallest and the largest of the sweep.

    They are the two the decision scores (main-thread JS per frame at 100 tokens and at the most tokens
    swept); the counts in between, the bisection and headroom mode are measured in the first repeat only.
    """
    return sorted({min(counts), max(counts)}) if counts else []


def run_animation(ctx: ScenarioContext) -> ScenarioOutput:
    """All tokens animated every frame (the seed's 60 fps test) over a sweep of counts, then the limit by bisection.

    The first repeat sweeps every count and searches the limit (bisection, headroom mode); each later repeat
    measures again, at the normal frame rate, only :func:`repeat_counts` (the scored ones), so the scored
    figures get a spread across launches without repeating the expensive search. Each repeat's facts say
    which counts it measured (``counts_normal``) and whether it searched the limit (``limit_search``).
    """
    p = ctx.params
    out = ScenarioOutput()
    first = ctx.repeat == 0
    modes: list[tuple[str, tuple[str, ...], Any]] = [("normal", (), lim.passes_normal)]
    if p["headroom"] and first:
        modes.append(("headroom", page.HEADROOM_ARGS, lim.passes_headroom))
    for i, (mode, args, judge) in enumerate(modes):
        counts = list(p["counts"]) if first else repeat_counts(list(p["counts"]))
        run = _sweep(ctx, counts, p["sweep_window_ms"], args)
        results: dict[int, bool] = {}
        for n, s in zip(counts, run.steps):
            _check(out, s)
            step_measurements(out, run, s, tokens=str(n), mode=mode)
            results[n] = judge(s.get("intervals") or [])
        _label(out, run, f"browser_{mode}")
        out.facts[f"counts_{mode}"] = counts
        if first:
            lo, hi = lim.bracket(results)
            probed: list[int] = []
            if lo is not None and hi is not None and p["refine_steps"]:

                def probe(n: int, args: tuple[str, ...] = args, judge: Any = judge, mode: str = mode) -> bool:
                    r = _sweep(ctx, [n], p["probe_window_ms"], args)
                    _check(out, r.steps[0])
                    step_measurements(out, r, r.steps[0], tokens=str(n), mode=mode)
                    return bool(judge(r.steps[0].get("intervals") or []))

                lo, hi, probed = lim.bisect_limit(probe, lo, hi, max_steps=p["refine_steps"])
            out.facts[f"limit_{mode}"] = {"passes": lo, "fails": hi, "probed": probed, "swept": {str(k): v for k, v in results.items()}}
            # The limit as a number the decision reads: the largest count seen to pass (0 if even the smallest failed;
            # the largest swept if none failed, a lower bound then).
            out.add(f"token_limit_{mode}", "tokens", [float(lo or 0)], better="higher")
        ctx.advance((i + 1) / len(modes))
    out.facts["limit_search"] = first
    return out


def run_bad_input(ctx: ScenarioContext) -> ScenarioOutput:
    """Bad input, each case detected and reported by the page (never a blank page counted as fast)."""
    p = ctx.params
    w = {"warmupMs": p["warmup_ms"], "windowMs": p["window_ms"]}
    out = ScenarioOutput()
    cases: list[dict[str, Any]] = []

    def case(name: str, steps: list[dict[str, Any]], args: tuple[str, ...] = ()) -> None:
        try:
            run = _one(ctx, steps, args)
            s = run.steps[0]
            cases.append(
                {
                    "case": name,
                    "detected": bool(s.get("error") or s.get("rejected")),
                    "report": s.get("error") or s.get("rejected") or "nothing detected: it drew",
                    "drew": bool(s.get("ok")),
                    "browser": run.page.label(),
                }
            )
        except BrowserError as exc:
            cases.append({"case": name, "detected": False, "report": f"the page failed: {exc}", "drew": False, "browser": ""})

    case("NaN and 1e308 token coordinates", [{"tokens": 100, "bad": "nan", **w}])
    case("a stroke of 100,000 points", [{"tokens": 10, "strokes": 10, "bad": "long-stroke", **w}])
    if ctx.option.key == "canvas2d":
        case("a 16385x16385 canvas (over Chromium's limit)", [{"tokens": 10, "mapSize": 16385, **w}])
    if ctx.option.key == "pixi":
        case("no WebGL context (--disable-gpu --disable-software-rasterizer)", [{"tokens": 10, **w}], page.NO_WEBGL_ARGS)
        case("a 16384x16384 map (over this GPU's maximum texture size)", [{"tokens": 10, "mapSize": 16384, **w}])
    out.facts["cases"] = cases
    out.add("bad_inputs_detected", "cases", [sum(c["detected"] for c in cases)], better="higher")
    out.add("bad_inputs_total", "cases", [len(cases)], better=None)
    return out


ENGINES_PARAMS = {"engines": ["firefox", "webkit"], "tokens": 100, "warmup_ms": 1000, "window_ms": 3000}
ENGINES_QUICK = {"engines": ["firefox", "webkit"], "tokens": 100, "warmup_ms": 300, "window_ms": 1000}


def run_engines(ctx: ScenarioContext) -> ScenarioOutput:
    """The 100 animated tokens in Firefox ESR and WebKitGTK (under Xvfb): the main-thread figures cross-checked."""
    from harness.plugin import NotRunnable

    p = ctx.params
    out = ScenarioOutput()
    seen: dict[str, Any] = {}
    for i, engine in enumerate(p["engines"]):
        st = {"tokens": p["tokens"], "camera": False, "warmupMs": p["warmup_ms"], "windowMs": p["window_ms"]}
        try:
            run = page.run_option(ctx.option.key, [st], engine=engine, workdir=ctx.workdir)
        except NotRunnable as exc:
            seen[engine] = {"not_run": str(exc)}
            continue
        except BrowserError as exc:
            seen[engine] = {"error": str(exc)[:500]}
            continue
        s = run.steps[0]
        if s.get("error"):
            seen[engine] = {"error": s["error"], "label": run.page.label()}
            continue
        step_measurements(out, run, s, tokens=str(p["tokens"]), engine=engine)
        seen[engine] = {"label": run.page.label(), "clock_step_ms": run.page.data.get("clockStepMs"), "browser": run.page.to_dict()}
        ctx.advance((i + 1) / len(p["engines"]))
    out.facts["engines"] = seen
    if not out.measurements:
        raise BrowserError("no engine ran: " + "; ".join(f"{k}: {v.get('not_run') or v.get('error')}" for k, v in seen.items()))
    return out
