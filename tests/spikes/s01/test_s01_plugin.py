"""Spike 1's plugin: scoring and the document from a stored run, and a real (small) run end to end."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.report.render import decision_matrix, render_spike
from harness.results import RunResult, load
from spikes.s01_websocket_impl import spike

STORED = Path(__file__).parent / "data" / "quick-run.json"
runner = CliRunner()


@pytest.fixture
def stored_run() -> RunResult:
    return load(STORED)


def test_scores_come_from_the_stored_measurements(stored_run):
    scores = spike.score(stored_run).scores
    # Cost: the smallest gzipped bundle scores 10, the others in proportion.
    gz = {o: stored_run.ok("bundle", o).measurement("bundle_gzip_bytes").median for o in stored_run.options}
    best = min(gz, key=gz.get)
    assert scores[best]["Cost"].score == pytest.approx(10)
    for o in stored_run.options:
        assert scores[o]["Cost"].score == pytest.approx(10 * gz[best] / gz[o])
        assert f"{gz[o]:,.0f} B" in scores[o]["Cost"].basis
    # Maintenance counts the probed features.
    feats = stored_run.ok("features", "socketio").fact["features"]
    present = sum(1 for f in feats.values() if f["value"])
    assert scores["socketio"]["Maintenance"].basis.startswith(f"{present} of {len(feats)} features present")


def test_a_missing_scenario_leaves_scores_incomplete_not_invented(stored_run):
    data = stored_run.to_dict()
    data["scenarios"] = [s for s in data["scenarios"] if not (s["scenario"] == "bundle" and s["option"] == "sveltekit")]
    partial = RunResult.from_dict(data)
    matrix = decision_matrix(spike, partial)
    assert matrix.scores["sveltekit"]["Cost"] is None and matrix.totals["sveltekit"] is None
    assert "sveltekit" not in matrix.ranking


def test_document_renders_every_section_from_the_stored_run(stored_run, tmp_path):
    text = render_spike(spike, stored_run, tmp_path).read_text()
    for table in (
        "Echo: throughput and latency by connections",
        "Features, probed against the running server",
        "Reconnection of each option's browser client (Chromium)",
        "Fan-out, memory and bundle size",
        "| Criterion | Weight | Native WebSocket (websockets) | Socket.IO (python-socketio) | SvelteKit (adapter-node + ws) |",
    ):
        assert table in text
    assert "Chosen option: **" in text and "**Quick run.**" in text
    for link in re.findall(r"\]\((charts/[^)]+\.svg)\)", text):
        assert (tmp_path / link).is_file()


@pytest.mark.slow  # a real run: POC servers and load
def test_a_small_real_run_end_to_end(tmp_path):
    res = runner.invoke(
        app,
        [
            "run",
            "1",
            "--quick",
            "--scenario",
            "memory",
            "--scenario",
            "broadcast",
            "--option",
            "native",
            "--option",
            "socketio",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    run = load(next((tmp_path / "runs").glob("*.json")))
    for o in ("native", "socketio"):
        mem = run.ok("memory", o)
        assert mem is not None and mem.measurement("idle_connected").median == 100
        assert mem.measurement("memory_per_connection_bytes").median > 0
        # Every server's two readings were taken once RSS held still, not when the wait gave up.
        assert mem.facts and not any(f["unsettled"] for f in mem.facts), mem.facts
        # The repeat's figure is the median of the servers measured side by side, each with its own connections.
        per_server = mem.measurement("server_memory_per_connection_bytes").samples
        assert len(per_server) == mem.params["servers"] == 2 and min(per_server) > 0
        assert mem.measurement("memory_per_connection_bytes").samples == [statistics.median(per_server)]
        bc = run.ok("broadcast", o)
        assert bc.measurement("lost", room="10").median == 0
        assert bc.measurement("received", room="10").median == bc.measurement("sent", room="10").median * 10
    doc = (tmp_path / "spike-01-websocket-impl.md").read_text()
    assert "| memory per idle connection, median |" in doc
    assert "each RSS reading once it held within 256 KiB for 1 s; each repeat is the median of 2 fresh servers" in doc
    assert "| memory per idle connection, range of single servers |" in doc


def test_sveltekit_missing_node_is_not_run_with_the_install_command(tmp_path, monkeypatch):
    from spikes.s01_websocket_impl import build

    def no_node(name: str) -> str:
        raise build.ToolMissing(name)

    monkeypatch.setattr(build, "require_tool", no_node)
    res = runner.invoke(app, ["run", "1", "--quick", "--scenario", "memory", "--option", "sveltekit", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    sr = load(next((tmp_path / "runs").glob("*.json"))).result("memory", "sveltekit")
    assert sr.status == "not_run" and "apt-get install" in sr.reason


@pytest.mark.slow  # a real run: reference server and load
def test_generator_headroom_runs_against_the_reference_echo_server(tmp_path):
    res = runner.invoke(app, ["run", "1", "--quick", "--scenario", "generator", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    gen = load(next((tmp_path / "runs").glob("*.json"))).ok("generator", "native")
    assert gen is not None, res.output
    assert gen.measurement("generator_received_rate").median > 0 and gen.measurement("generator_generator_cpu").median > 0
