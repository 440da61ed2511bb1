"""Spike 3's scenarios on tiny parameters: what they store, and the stroke limit's sweep."""

from __future__ import annotations

import pytest

from harness.plugin import ScenarioContext
from spikes.s03_canvas_performance import scenarios as sc
from spikes.s03_canvas_performance import spike
from tests.utils import require_program


@pytest.mark.slow  # two Chromium launches
def test_strokes_stores_the_drawn_scene_and_a_stroke_limit(tmp_path):
    require_program("chromium", "node", "npm")
    params = {
        **sc.STROKES_QUICK,
        "strokes": 40,
        "warmup_ms": 100,
        "window_ms": 300,
        "limit_counts": [50, 200],
        "limit_window_ms": 300,
        "limit_refine": 0,
    }
    ctx = ScenarioContext(spike.option("canvas2d"), params, 0, True, tmp_path, log=lambda m: None)
    out = sc.run_strokes(ctx)
    names = {(m.name, m.tags.get("phase"), m.tags.get("strokes")) for m in out.measurements}
    assert ("frame_ms", "drawn", "40") in names
    assert ("frame_ms", "limit", "50") in names and ("frame_ms", "limit", "200") in names
    assert len(next(m for m in out.measurements if m.name == "draw_op_ms").samples) == 40  # one per draw operation
    f = out.facts["limit_strokes"]
    assert set(f["swept"]) == {"50", "200"} and f["probed"] == []
    limit = next(m for m in out.measurements if m.name == "stroke_limit").samples[0]
    assert limit in (0.0, 50.0, 200.0)  # the largest count seen to pass (judged, not timed, by this test)
    assert out.facts["browser_label"].startswith("Chromium")
