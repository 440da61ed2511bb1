"""A tiny real run of Spike 3 (one option, the 100-token and animation scenarios, quick) stores its samples and renders its document."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.results import load
from spikes.s03_canvas_performance import spike
from tests.utils import require_program

runner = CliRunner()


def test_the_plugin_declares_four_options_and_the_seeds_scenarios():
    assert [o.key for o in spike.options] == ["canvas2d", "konva", "pixi", "svg"]
    assert {s.key for s in spike.scenarios} == {"tokens", "strokes", "state", "animation", "bad-input", "engines"}
    spike.validate()
    for o in spike.options:  # every option's code exists, so complexity counts it and the document links it
        for p in o.code_paths:
            assert (spike.package_dir / p).is_file(), p


@pytest.mark.slow  # starts Chromium
def test_a_tiny_run_renders_its_document_naming_the_renderer(tmp_path):
    require_program("chromium", "node", "npm")
    res = runner.invoke(
        app,
        [
            "run",
            "3",
            "--quick",
            "--scenario",
            "tokens",
            "--scenario",
            "animation",
            "--option",
            "canvas2d",
            "--out",
            str(tmp_path),
            "--author",
            "CI",
        ],
    )
    assert res.exit_code == 0, res.output
    run = load(next((tmp_path / "runs").glob("*.json")))
    sr = run.ok("tokens", "canvas2d")
    assert sr is not None
    assert len(sr.measurement("frame_ms", tokens="100").samples) > 10  # raw samples, not a summary
    label = sr.fact["browser_label"]
    assert label.startswith("Chromium ")
    doc = (tmp_path / "spike-03-canvas-performance.md").read_text()
    assert doc.startswith("## Spike: 3 Canvas Performance Limits")
    assert "The seed's four questions" in doc
    assert label in doc  # the renderer is named with the figures
    content = spike.report(run)
    assert content.charts  # frame time vs object count
    for chart in content.charts:  # every figure names its renderer, in its title (short) and caption (whole)
        assert chart.title.endswith("]") and "WebGL" in chart.title and label in chart.caption
    if sr.fact["browser"]["software_rendering"]:
        assert "cannot be answered on software rendering" in doc
