"""Spike 4's published browser matrix: generated from the pinned @mdn/browser-compat-data, marked as data.

The known values are what the pinned version (8.1.9, see ANCHORS.md "Spike 4") says; a new pin that changes one
fails here on purpose, so the table's figures are re-read before they are published again.
"""

from __future__ import annotations

import json

import pytest

from spikes.s04_transport import compat
from spikes.s04_transport.compat import BROWSERS, beside_markdown, beside_measured, compat_table, first_version, to_markdown
from tests.utils import require_program


def test_the_lock_pins_the_package_exactly_and_node_modules_stay_out_of_the_tree():
    pkg = json.loads((compat.COMPAT_DIR / "package.json").read_text())
    assert pkg["dependencies"][compat.PACKAGE] == "8.1.9"  # an exact version, no range
    assert compat.pinned_version() == "8.1.9"
    assert compat.source_label("8.1.9") == "data: @mdn/browser-compat-data 8.1.9"
    assert not (compat.COMPAT_DIR / "node_modules").exists()


# -- the reading of support statements, on small statements of the package's shape ----------------------------


def test_the_first_plain_version_wins_and_the_other_statements_become_notes():
    cell = first_version(
        [
            {"version_added": "11"},
            {"version_added": "7", "version_last": "10", "version_removed": "11", "prefix": "Moz", "notes": "<b>16 MB</b>"},
        ]
    )
    assert cell["version"] == "11" and cell["supported"] is True
    assert cell["notes"] == ["7-10: prefix Moz, removed in 11 (16 MB)"]


def test_unsupported_unknown_and_partial_only_support_are_told_apart():
    assert first_version({"version_added": False}) == {"version": None, "supported": False, "notes": []}
    assert first_version({"version_added": None})["supported"] is None
    assert first_version(None)["supported"] is None
    partial = first_version({"version_added": "12", "partial_implementation": True, "notes": "aborts nothing"})
    assert partial["supported"] is False and partial["notes"] == ["12: partial (aborts nothing)"]
    assert first_version({"version_added": "≤37"})["version"] == "≤37"


def test_beside_measured_never_shows_a_mobile_or_edge_cell_as_measured():
    table = {
        "source": "data: x 1",
        "browsers": list(BROWSERS),
        "rows": [
            {
                "key": "api.EventSource",
                "label": "EventSource",
                "cells": {b: {"version": "1", "supported": True, "notes": []} for b in BROWSERS},
            }
        ],
    }
    measured = {
        "engines": {
            e: {"version": "1", "transports": {"sse": {"opened": True, "resumed_without_loss": True}}}
            for e in ("chromium", "firefox", "webkit")
        }
    }
    row = beside_measured(table, measured)["rows"][0]["cells"]
    assert {b for b in BROWSERS if row[b]["measured"]} == {"chrome", "firefox", "safari"}
    assert row["safari"]["measured"]["engine"] == "webkit" and "not Safari" in row["safari"]["measured"]["note"]
    for b in ("edge", "chrome_android", "safari_ios"):
        assert row[b]["measured"] is None and row[b]["data"]["source"] == "data: x 1"
    assert beside_measured(table, None)["rows"][0]["cells"]["chrome"]["measured"] is None
    measured["engines"]["firefox"] = {"status": "not run", "reason": "not installed"}
    for e in ("chromium", "webkit"):
        measured["engines"][e]["status"] = "measured"
    text = beside_markdown(table, measured)
    header = next(line for line in text.splitlines() if line.startswith("| transport"))
    assert header.count("(measured here)") == 3 and "Chrome Android (data)" in header and "Safari on iOS (data)" in header
    assert "| sse (EventSource) | works | not run | works | 1 | 1 | 1 | 1 | 1 | 1 |" in text


# -- the pinned data itself ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table() -> dict:
    require_program("node", "npm")
    return compat_table()


def _versions(table: dict, key: str) -> dict[str, str | None]:
    row = next(r for r in table["rows"] if r["key"] == key)
    return {b: row["cells"][b]["version"] for b in BROWSERS}


def test_the_table_is_generated_from_the_pinned_data_and_says_so(table):
    assert table["source"] == "data: @mdn/browser-compat-data 8.1.9" and table["version"] == "8.1.9"
    assert table["measured"] is False and table["mobile_measured"] is False
    assert table["browsers"] == ["chrome", "firefox", "safari", "edge", "chrome_android", "safari_ios"]
    assert [r["key"] for r in table["rows"]] == [f.key for f in compat.FEATURES]


def test_known_first_versions(table):
    assert _versions(table, "api.EventSource") == {
        "chrome": "6", "firefox": "6", "safari": "5", "edge": "79", "chrome_android": "18", "safari_ios": "5",
    }  # fmt: skip
    assert _versions(table, "api.WebSocket") == {
        "chrome": "5", "firefox": "11", "safari": "5", "edge": "12", "chrome_android": "18", "safari_ios": "4.2",
    }  # fmt: skip
    assert _versions(table, "api.fetch") == {
        "chrome": "42", "firefox": "39", "safari": "10.1", "edge": "14", "chrome_android": "42", "safari_ios": "10.3",
    }  # fmt: skip
    assert _versions(table, "api.EventSource.withCredentials")["safari"] == "7"


def test_notes_and_unsupported_cells_come_through(table):
    ws = next(r for r in table["rows"] if r["key"] == "api.WebSocket")
    assert any("16 MB" in n for n in ws["cells"]["firefox"]["notes"])  # the prefixed Firefox 7-10 statement's note
    stream = next(r for r in table["rows"] if r["key"] == "api.WebSocketStream")
    assert stream["experimental"] and stream["cells"]["safari_ios"]["supported"] is False
    text = to_markdown(table)
    assert text.startswith("Source: data: @mdn/browser-compat-data 8.1.9 (published data, not measured here)")
    assert "| EventSource | 6 | 6 | 5 | 79 | 18 | 5 |" in text and "Safari on iOS (data)" in text
