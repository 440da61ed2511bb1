"""The frame-time collector (the app's collector.js) against a page whose frames cost a known, busy-waited time."""

from __future__ import annotations

import statistics

from harness.browser import run_page
from spikes.s03_canvas_performance import limit as lim
from spikes.s03_canvas_performance.page import APP_DIR, BASE_ARGS
from tests.utils import UNIT, require_program

PAGE = """<!doctype html><html><head><script src="/__harness.js"></script></head><body>
<script type="module">
import { measure, observeLongFrames, heap } from '/collector.js';
const longFrames = observeLongFrames();
function busy(ms) { const end = performance.now() + ms; while (performance.now() < end) {} }
const out = {longFrames};
out.cheap = await measure({warmupMs: 200, windowMs: 500, onFrame: () => {}});
out.costly = await measure({warmupMs: 200, windowMs: 1500, onFrame: () => busy(60)});
out.heap = heap();
harnessReport(out);
</script></body></html>"""


def test_the_collector_sees_the_frame_costs_it_is_given(tmp_path):
    require_program("chromium")
    js = (APP_DIR / "src" / "lib" / "collector.js").read_text()
    res = run_page("chromium", PAGE, files={"collector.js": js}, timeout=60 * UNIT, workdir=tmp_path, chromium_args=BASE_ARGS)
    d = res.data
    cheap, costly = d["cheap"], d["costly"]
    assert len(cheap["intervals"]) == len(cheap["script"]) > 0
    # A frame that busy-waits 60 ms takes at least 60 ms of script and at least 60 ms from frame to frame.
    assert min(costly["script"]) >= 59.9
    assert statistics.median(costly["intervals"]) >= 59
    assert lim.share_over(costly["intervals"], 33.4) > 0.9
    assert statistics.median(cheap["script"]) < statistics.median(costly["script"])
    # Chromium reports each such frame as a long animation frame (over 50 ms) with the script inside it.
    assert d["longFrames"] is True
    assert len(costly["loaf"]) >= 1 and all(e["duration"] >= 50 for e in costly["loaf"])
    assert costly["wallEnd"] > costly["wallStart"] > 0
    assert d["heap"]["used"] > 0  # precise memory info is on
