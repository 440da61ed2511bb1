"""End to end: `spike run 9 --quick` into a temp dir gives a complete outcome document."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from harness import machine
from harness.cli import app
from harness.results import load
from tests.utils import in_ci

runner = CliRunner()
OPTIONS = (
    "JSON (stdlib json)",
    "JSON (orjson)",
    "JSON (msgspec schemas)",
    "MessagePack (positional)",
    "Protocol Buffers",
    "MessagePack (msgspec schemas)",
)


@pytest.mark.slow  # a whole run of Spike 9
def test_quick_run_writes_the_outcome_document_and_matrix(tmp_path):
    res = runner.invoke(app, ["run", "9", "--quick", "--repeat", "1", "--out", str(tmp_path), "--author", "CI"])
    assert res.exit_code == 0, res.output
    runs = list((tmp_path / "runs").glob("*.json"))
    assert len(runs) == 1
    run = load(runs[0])
    # The browser step needs Chromium, Node and npm: where one is missing (never under CI) it is "not run", saying which.
    browser_ok = in_ci() or all(machine.find_tool(t) for t in ("chromium", "node", "npm"))
    assert run.profile == "quick" and all(sr.status == "ok" or (sr.scenario == "browser" and not browser_ok) for sr in run.scenarios)
    assert {sr.scenario for sr in run.scenarios} == {"size", "speed", "type-safety", "debugging", "browser"}
    assert {sr.option for sr in run.scenarios if sr.scenario == "browser"} == {"json", "msgpack", "protobuf"}

    doc = (tmp_path / "spike-09-message-protocol.md").read_text()
    assert doc.startswith("## Spike: 9 Message Protocol Design\n**Date:** ")
    assert "**Developer:** CI" in doc and "**Quick run.**" in doc
    header = "| Criterion | Weight | " + " | ".join(OPTIONS) + " |"
    assert header in doc
    for crit, weight in (("Performance", 30), ("Complexity", 20), ("Maintenance", 20), ("Scalability", 15), ("Cost", 15)):
        row = re.search(rf"^\| {crit} \| {weight}% \|(.*)\|$", doc, re.M)
        assert row, crit
        cells = [c.strip().split(" (")[0] for c in row.group(1).split("|")]  # "7.1 (best)": the score, then its tie mark
        assert len(cells) == len(OPTIONS) and all(0 <= float(c) <= 10 for c in cells)
    totals = re.search(r"^\| \*\*Weighted total\*\* \| 100% \|(.*)\|$", doc, re.M).group(1)
    values = [float(c.strip().strip("*")) for c in totals.split("|")]
    best = OPTIONS[values.index(max(values))]
    assert f"Chosen option: **{best}**" in doc or f"Tie within noise: **{best}**" in doc
    assert "Good, because" in doc and "Bad, because" in doc
    # Every chart the document links exists.
    for link in re.findall(r"\]\((charts/[^)]+\.svg)\)", doc):
        assert (tmp_path / link).is_file()
    if browser_ok:  # the browser figures are in the document and in the decision
        assert "In the browser: decode time per message" in doc and "@msgpack/msgpack 3.1.3" in doc
        assert "browser decode of the tabletop mix" in doc and "library bytes the page downloads (gzip)" in doc
    index = (tmp_path / "README.md").read_text()
    assert "[Message Protocol Design](spike-09-message-protocol.md)" in index and "quick run only" in index
