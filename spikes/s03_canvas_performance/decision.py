"""Spike 3's decision, declared as data for ``harness.decide``: what the renderers are judged on and must pass.

Not part of the source hash. Only figures that carry from this machine to a player's are scored: the
main-thread (JavaScript) time a renderer spends per frame, its memory, and how it meets bad input.
Frame rates and the limit by object count depend on the rasteriser, which here is SwiftShader (a CPU
rasteriser standing in for a GPU): they are shown, labelled with their renderer, and not scored, so a
software rasteriser's verdict on WebGL never decides the matrix.
"""

from __future__ import annotations

from harness.decide import Criterion, Derived, Gate, Metric, NotMeasured, Part, Utility
from harness.results import RunResult
from harness.stats import fmt_num

#: No server runs in this spike (rendering is the player's machine's work), so there is no Cost criterion.
WEIGHTS = {"Performance": 40, "Complexity": 20, "Maintenance": 20, "Scalability": 20}


def _ms(v: float) -> str:
    return f"{fmt_num(v)} ms"


def _detected(run: RunResult, option: str) -> float:
    d, t = run.median("bad-input", option, "bad_inputs_detected"), run.median("bad-input", option, "bad_inputs_total")
    if d is None or not t:
        raise NotMeasured("the bad-input step did not run")
    return d / t


def _largest_swept(run: RunResult, option: str) -> float:
    sr = run.ok("animation", option)
    if sr is None:
        raise NotMeasured("the animation step did not run")
    # Each repeat's own counts (``counts_normal``; a later repeat measures only the smallest and largest), else the
    # first repeat's sweep (runs stored before repeats measured fewer counts).
    counts = [int(n) for n in sr.fact.get("counts_normal") or (sr.fact.get("limit_normal") or {}).get("swept", {})]
    if not counts:
        raise NotMeasured("the animation sweep stored no counts")
    v = run.median("animation", option, "script_ms", tokens=str(max(counts)), mode="normal")
    if v is None:
        raise NotMeasured("no script time at the largest count")
    return v


CRITERIA = (
    Criterion(
        "Performance",
        (
            Part(
                "main-thread JS per frame, 100 tokens all animated",
                Metric("animation", "script_ms", {"tokens": "100", "mode": "normal"}),
                "ms",
                Utility(
                    0.5,
                    8,
                    "a 60 Hz frame is 16.7 ms: the renderer's own JS should leave the app (input, network, Svelte) most of it",
                    log=True,
                ),
                min_diff=0.3,
                fmt=_ms,
            ),
            Part(
                "main-thread JS per frame, the most tokens swept",
                Derived(_largest_swept, "median `script_ms` of scenario `animation` at the largest count of its sweep, normal frame rate"),
                "ms",
                Utility(2, 16.7, "past 16.7 ms of JS a frame no GPU can keep 60 fps: the main thread is the limit", log=True),
                min_diff=0.5,
                fmt=_ms,
            ),
            Part(
                "main-thread JS per frame, panning over the drawn strokes",
                Metric("strokes", "script_ms", {"phase": "drawn"}),
                "ms",
                Utility(0.5, 8, "the map's drawings must not cost more than tokens: a busy session draws hundreds of strokes", log=True),
                min_diff=0.3,
                fmt=_ms,
            ),
        ),
        "main-thread cost per frame (JavaScript in the frame's callback), which carries from this machine's software rasteriser "
        "to a hardware GPU; frame rates and limits are shown per renderer and not scored",
    ),
    Criterion(
        "Scalability",
        (
            Part(
                "JS heap holding the 10 MB table",
                Metric("state", "state_heap_mb"),
                "MB",
                Utility(
                    40, 400, "a phone tab is killed past a few hundred MB; the table's state should cost a few times its JSON", log=True
                ),
                min_diff=10,
                fmt=lambda v: f"{fmt_num(v)} MB",
            ),
            Part(
                "first render of the 10 MB table",
                Metric("state", "first_render_ms"),
                "ms",
                Utility(300, 5000, "joining a session: under a third of a second feels immediate, 5 s looks broken", log=True),
                min_diff=100,
                fmt=_ms,
            ),
        ),
        "how the renderer grows with the table: memory held and time to show a large saved session",
    ),
    Criterion(
        "Maintenance",
        (
            Part(
                "bad inputs detected and reported",
                Derived(_detected, "bad inputs the page detected and reported / cases run (`bad-input`)", exact=True),
                "of the cases",
                Utility(1.0, 0.0, "each case not detected is a blank or frozen board a player reports and a developer must reproduce"),
                min_diff=0.2,
                fmt=lambda v: f"{v:.0%}",
            ),
        ),
        "failures a team must handle: no WebGL, textures and canvases past the device's limits, malformed coordinates",
    ),
)

GATES = (
    Gate(
        "100 animated tokens within half a frame of main-thread JS",
        "scale",
        Metric("animation", "script_ms", {"tokens": "100", "mode": "normal"}, stat="p99"),
        "ms",
        "the seed's 100 tokens at 60 fps: past 8 ms of the renderer's own JS in a frame, the app's work no longer fits on any GPU",
        at_most=8.0,
        fmt=_ms,
    ),
)


#: The scenario a :class:`Derived` part reads (a :class:`Metric` names its own).
_DERIVED_SCENARIO = {_largest_swept: "animation", _detected: "bad-input"}


def parts_read() -> list[tuple[str, str, bool]]:
    """Every scored part as ``(label, scenario it reads, exact)``: what the document's caveat on repeats names."""
    out = []
    for c in CRITERIA:
        for p in c.parts:
            src = p.source
            scenario = src.scenario if isinstance(src, Metric) else _DERIVED_SCENARIO[src.fn]
            out.append((p.label, scenario, bool(src.exact)))
    return out


#: The name the report (``__init__.py``) imports. It lists what the criteria read; the harness does all the scoring.
#: Kept as an alias so the report's code, which the stored run's source hash covers, stays as it was measured.
scored_parts = parts_read
