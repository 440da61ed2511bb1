"""Each option renders the 100-token scene: the probe token's colour is read back where it must be drawn."""

from __future__ import annotations

import pytest

from harness.plugin import ScenarioOutput
from spikes.s03_canvas_performance import page
from spikes.s03_canvas_performance.scenarios import step_measurements
from tests.utils import require_program

STEP = {"tokens": 100, "probe": True, "camera": False, "moving": 0, "warmupMs": 100, "windowMs": 300}


@pytest.mark.slow  # one Chromium launch each
@pytest.mark.parametrize("option", page.OPTIONS)
def test_each_option_draws_the_probe_token_at_its_position(option, tmp_path):
    require_program("chromium", "node", "npm")
    run = page.run_option(option, [STEP], workdir=tmp_path)
    s = run.steps[0]
    assert s["ok"], s.get("error")
    r, g, b, a = s["probe"]["token"]
    assert (r, g, b) == (255, 0, 255) and a == 255, s["probe"]  # token 0 (magenta) sits at the view's centre
    assert s["probe"]["away"][:3] != [255, 0, 255]  # and the map, not the token, is drawn elsewhere
    assert run.page.renderer  # the WebGL renderer string labels every figure
    out = ScenarioOutput()
    step_measurements(out, run, s, tokens="100")
    names = {m.name for m in out.measurements}
    assert {"frame_ms", "script_ms", "p95_frame_ms", "js_heap_mb"} <= names


@pytest.mark.slow
def test_without_webgl_pixi_says_not_supported_rather_than_drawing_nothing(tmp_path):
    require_program("chromium", "node", "npm")
    run = page.run_option("pixi", [STEP], args=page.NO_WEBGL_ARGS, workdir=tmp_path)
    s = run.steps[0]
    assert not s["ok"] and "not supported" in s["error"]
    assert not s.get("intervals")  # no frames to be counted as fast


@pytest.mark.slow
def test_a_canvas_over_the_browsers_limit_is_detected_not_drawn_blank(tmp_path):
    require_program("chromium", "node", "npm")
    run = page.run_option("canvas2d", [{**STEP, "tokens": 10, "mapSize": 16385}], workdir=tmp_path)
    s = run.steps[0]
    assert not s["ok"] and "16385x16385" in s["error"]


@pytest.mark.slow
@pytest.mark.parametrize("engine,program", [("firefox", "firefox-esr"), ("webkit", "webkitgtk")])
def test_the_page_renders_and_measures_in_firefox_and_webkit_too(engine, program, tmp_path):
    require_program("node", "npm", program, "xvfb")
    run = page.run_option("canvas2d", [STEP], engine=engine, workdir=tmp_path)
    s = run.steps[0]
    assert s["ok"], s.get("error")
    assert s["probe"]["token"][:3] == [255, 0, 255]
    assert len(s["script"]) == len(s["intervals"]) > 0
    assert run.page.label().startswith(("Firefox", "WebKitGTK"))
