"""Spike 9 in the browser: each wire format's library decodes and encodes every kind in Chromium, and round-trips."""

from __future__ import annotations

import copy

import pytest

from spikes.s09_message_protocol import spike
from spikes.s09_message_protocol.bench import encode_all
from spikes.s09_message_protocol.browser_bench import BROWSER_LIBRARY, BROWSER_OPTIONS, LIBRARIES, MEASURED, measured_by
from spikes.s09_message_protocol.codecs import CODECS
from spikes.s09_message_protocol.messages import MESSAGE_KINDS, MIX_BLOCK, stream
from tests.utils import UNIT, require_program

#: One block of the mix holds every kind (one snapshot); timing as short as the page allows: the test checks results, not speed.
MESSAGES = stream("mixed", MIX_BLOCK)
TIMING = {"rounds": 2, "roundMs": 1, "warmupMs": 0}


def _bench(option: str, reference=None):
    require_program("chromium", "node", "npm")
    from spikes.s09_message_protocol.browser_bench import run_browser_bench

    return run_browser_bench(option, MESSAGES, TIMING, timeout=60 * UNIT, reference=reference)


def test_every_option_maps_to_a_browser_library_and_shares_the_measured_options_bytes():
    assert set(BROWSER_LIBRARY) == {o.key for o in spike.options}
    assert set(MEASURED) == set(LIBRARIES) and set(BROWSER_OPTIONS) == set(MEASURED.values())
    assert spike.scenario("browser").options == BROWSER_OPTIONS
    msgs = stream("mixed", 2 * MIX_BLOCK)
    for option in BROWSER_LIBRARY:
        # An option measured through another's step must send exactly that option's bytes, or its figures would be borrowed.
        assert encode_all(CODECS[option], msgs) == encode_all(CODECS[measured_by(option)], msgs), option


@pytest.mark.slow  # a Chromium launch per wire format
@pytest.mark.parametrize("option", BROWSER_OPTIONS)
def test_the_page_decodes_and_encodes_every_kind_in_chromium_and_round_trips(option):
    page = _bench(option)
    data = page.data
    assert page.engine == "chromium" and page.version[:1].isdigit() and page.label().startswith("Chromium")
    assert data["library"].startswith(LIBRARIES[BROWSER_LIBRARY[option]]["title"].split(" (")[0])
    assert set(data["results"]) == {*MESSAGE_KINDS, "mixed"}
    for kind, r in data["results"].items():
        assert r["messages"] == (len(MESSAGES) if kind == "mixed" else sum(m["type"] == kind for m in MESSAGES))
        for name in ("decode_ns", "encode_ns"):
            assert len(r[name]) == TIMING["rounds"] and all(v > 0 for v in r[name]), (kind, name, r[name])
    # Every message the Python codec wrote decodes to the same object, and the page's own encoding reads back to it.
    assert set(data["roundtrip"]) == set(MESSAGE_KINDS)
    assert all(r["from_python"] == r["own"] == r["messages"] for r in data["roundtrip"].values()), data["roundtrip"]
    assert data["clock_step_us"] > 0


@pytest.mark.slow
def test_the_pages_round_trip_check_fails_on_a_message_that_differs():
    wrong = copy.deepcopy(MESSAGES)
    stroke = next(m for m in wrong if m["type"] == "stroke")
    stroke["points"][-1] += 0.25  # one coordinate of one stroke
    data = _bench("protobuf", reference=wrong).data
    assert data["roundtrip"]["stroke"]["from_python"] == data["roundtrip"]["stroke"]["messages"] - 1
    assert data["roundtrip"]["cursor"]["from_python"] == data["roundtrip"]["cursor"]["messages"]


def test_library_bundle_bytes_json_adds_none_and_each_library_its_gzip_bytes():
    require_program("node", "npm")
    from spikes.s09_message_protocol.browser_bench import library_sizes, package_versions

    sizes = library_sizes()
    assert sizes["json"] == {"min_bytes": 0, "gzip_bytes": 0}
    for family in ("msgpack", "protobuf"):
        assert 1000 < sizes[family]["gzip_bytes"] < sizes[family]["min_bytes"], (family, sizes[family])
        assert all(v[:1].isdigit() for v in package_versions(family).values())
    # protobufjs ships reflection and the schema; its minimal runtime (for pbjs-generated code) is smaller.
    assert sizes["protobuf"]["minimal_runtime_gzip_bytes"] < sizes["protobuf"]["gzip_bytes"]


def test_the_document_shows_the_browser_figures_per_wire_format_with_a_finding_per_option():
    from pathlib import Path

    from harness.results import load

    run = load(Path(__file__).parent / "data" / "tiny-run.json")
    content = spike.report(run)
    tables = {t.title: t for t in content.tables}
    decode = tables["In the browser: decode time per message, median (interquartile range)"]
    assert [r[0] for r in decode.rows] == [*MESSAGE_KINDS, "mixed (the whole stream)"]
    assert len(decode.headers) == 1 + len(BROWSER_OPTIONS) and "JSON (orjson)" in decode.headers[1] and "Chromium" in decode.note
    libs = tables["In the browser: the library each wire format's page would use, and the bytes it adds to the bundle"]
    assert [r[3].split(" ")[0] for r in libs.rows][0] == "0" and all(r[4].split(" / ")[0] == r[4].split(" / ")[1] for r in libs.rows)
    browser_points = {f.option: f for f in content.findings if "to read its frames" in f.text or "reads its frames" in f.text}
    assert set(browser_points) == {o.key for o in spike.options}
    assert browser_points["orjson"].good and "no library in the bundle" in browser_points["orjson"].text
    assert not browser_points["protobuf"].good and "protobufjs" in browser_points["protobuf"].text
