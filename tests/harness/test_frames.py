"""The hostile-frame battery (harness/frames.py) against a well-behaved server and a broken one, both real processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from harness import frames
from harness.frames import (
    CASE_NAMES,
    TABLE_HEADER,
    Answer,
    Probe,
    default_is_error,
    hostile_cases,
    run_battery,
    run_battery_sync,
    wrong_type,
)
from harness.plugin import Option, ScenarioContext
from harness.results import MeasurementRecord, RunResult, ScenarioResult
from tests.utils import UNIT

SERVER = r'''
import asyncio, json, logging, os, sys, traceback
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

logging.basicConfig(level=logging.WARNING)
MODE = sys.argv[1]


async def error(ws, text):
    await ws.send(json.dumps({"type": "error", "error": text}))


async def good(ws):
    """Validates every message: a JSON object with a string type, known types, typed fields."""
    try:
        async for msg in ws:
            if isinstance(msg, bytes):
                await ws.close(1003, "binary frames are not accepted")
                return
            try:
                data = json.loads(msg)
            except (ValueError, RecursionError):
                await error(ws, "not JSON")
                continue
            if not isinstance(data, dict):
                await error(ws, "not a JSON object")
                continue
            kind = data.get("type")
            if not isinstance(kind, str):
                await error(ws, "type must be a string")
            elif kind == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif kind == "move":
                if all(type(data.get(k)) is int for k in ("x", "y")):
                    await ws.send(json.dumps({"type": "moved"}))
                else:
                    await error(ws, "x and y must be integers")
            else:
                await error(ws, f"unknown type {kind!r}")
    except ConnectionClosed:
        pass  # 1007, 1009: websockets closed it with the right code


async def broken(ws):
    """Trusts its input: msg.get on a list raises, a deep nesting raises, a binary frame kills the process."""
    try:
        async for msg in ws:
            if isinstance(msg, bytes):
                print("a binary frame: exiting", flush=True)
                os._exit(3)
            try:
                data = json.loads(msg)
            except json.JSONDecodeError:
                await error(ws, "not JSON")
                continue
            kind = data.get("type")
            if kind.startswith("ping"):
                await ws.send(json.dumps({"type": "pong"}))
            elif kind == "move":
                await ws.send(json.dumps({"type": "moved"}))
            # any other type: ignored, no answer
    except ConnectionClosed:
        pass
    except Exception:
        traceback.print_exc()
        sys.stderr.flush()
        ws.transport.abort()  # the connection is dropped, no close frame


async def main():
    handler = good if MODE == "good" else broken
    async with serve(handler, "127.0.0.1", 0, max_size=1024 * 1024, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on {port}", flush=True)
        await asyncio.Future()

asyncio.run(main())
'''

BASE = {"type": "move", "x": 1, "y": 2}
PROBE = Probe({"type": "ping"}, expect=lambda frame: json.loads(frame).get("type") == "pong")


@dataclass
class Server:
    url: str
    log_path: Path
    proc: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _start(mode: str, tmp_path: Path) -> Server:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    log_path = tmp_path / f"{mode}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-u", str(script), mode], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10 * UNIT
    while time.monotonic() < deadline:
        text = log_path.read_text()
        if "listening on" in text:
            port = int(text.split("listening on", 1)[1].split()[0])
            return Server(f"ws://127.0.0.1:{port}/", log_path, proc)
        if proc.poll() is not None:
            break
        time.sleep(0.05 * UNIT)
    proc.kill()
    raise AssertionError(f"the {mode} test server did not start: {log_path.read_text()}")


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    srv = _start(request.param, tmp_path)
    try:
        yield srv
    finally:
        srv.proc.kill()
        srv.proc.wait()


def test_the_battery_has_every_case_and_builds_wrong_types_from_the_base_message():
    cases = {c.name: c for c in hostile_cases(BASE)}
    assert tuple(cases) == CASE_NAMES
    assert cases["json-array"].payload == "[1,2,3]"
    assert cases["null"].payload == "null"
    assert json.loads(cases["type-not-string"].payload)["type"] == 12345
    assert json.loads(cases["wrong-field-types"].payload) == {"type": "move", "x": "not-a-number", "y": "not-a-number"}
    assert cases["big-text"].size() >= 10 * 1024 * 1024 and json.loads(cases["big-text"].payload)["type"] == "move"
    assert cases["deep-nesting"].payload.count("{") == 10_000
    bad = cases["bad-utf8"].payload
    assert isinstance(bad, bytes)
    with pytest.raises(UnicodeDecodeError):
        bad.decode()
    assert cases["fragmented"].kind == "fragments" and "".join(cases["fragmented"].payload) == '{"type": "no-such-type"}'
    # Without fields besides type there is no wrong-field-types case; wrong_type always changes the JSON type.
    assert "wrong-field-types" not in {c.name for c in hostile_cases({"type": "ping"})}
    for value in (1, 1.5, True, "s", [1], {"a": 1}, None):
        assert type(wrong_type(value)) is not type(value)
    assert default_is_error('{"type":"error"}') and default_is_error(b'{"error": 1}') and not default_is_error('{"type":"pong"}')


@pytest.mark.parametrize("server", ["good"], indirect=True)
def test_a_well_behaved_server_passes_every_case(server: Server):
    report = run_battery_sync(server.url, PROBE, base_message=BASE, server_log=server.log, timeout=UNIT)
    got = report.by_case()
    assert report.passed, report.markdown()
    assert [r.case for r in report.results] == list(CASE_NAMES)
    assert got["big-text"].answer is Answer.CLOSE and got["big-text"].close_code == 1009
    assert got["bad-utf8"].answer is Answer.CLOSE and got["bad-utf8"].close_code == 1007
    assert got["binary"].answer is Answer.CLOSE and got["binary"].close_code == 1003
    assert got["binary"].close_reason == "binary frames are not accepted"
    for name in (
        "not-json",
        "json-array",
        "number",
        "null",
        "deep-nesting",
        "fragmented",
        "unknown-type",
        "type-not-string",
        "wrong-field-types",
    ):
        assert got[name].answer is Answer.ERROR_MESSAGE, got[name]
        assert got[name].still_serving is True and not got[name].traceback
    assert "unknown type 'no-such-type'" in got["fragmented"].replies[0]  # the fragments were put back together
    assert got["big-text"].answer_text() == "close 1009 (message too big)"
    assert report.table()[0] == ("not-json", "error message", "yes", "pass")
    stored = json.loads(json.dumps(report.to_dict()))
    assert stored["passed"] is True and stored["log_checked"] is True
    assert [r["case"] for r in stored["results"]] == list(CASE_NAMES)
    assert report.markdown().splitlines()[0] == "| " + " | ".join(TABLE_HEADER) + " |"


@pytest.mark.parametrize("server", ["broken"], indirect=True)
def test_a_broken_server_fails_the_cases_it_drops_and_dies_on(server: Server):
    report = run_battery_sync(server.url, PROBE, base_message=BASE, server_log=server.log, timeout=UNIT)
    got = report.by_case()
    assert not report.passed
    assert got["not-json"].passed
    for name in ("json-array", "number", "null", "deep-nesting"):
        r = got[name]
        assert r.answer is Answer.DROP and r.closed and r.close_code is None, r
        assert r.still_serving is True  # the process survived; the connection did not
        assert "Traceback" in r.traceback and ("AttributeError" in r.traceback or "RecursionError" in r.traceback)
        assert not r.passed and "a traceback in the server log" in r.failures()
        assert report.table()[report.results.index(r)] == (name, "dropped without a close frame", "yes", "FAIL")
    assert "RecursionError" in got["deep-nesting"].traceback
    # Each case sees only its own part of the log: the traceback of json-array is not blamed on the next cases.
    assert got["big-text"].passed and got["big-text"].close_code == 1009
    assert got["bad-utf8"].passed and got["bad-utf8"].close_code == 1007
    # The binary frame kills the process: dropped, and the probe on a fresh connection finds nobody.
    dead = got["binary"]
    assert dead.answer is Answer.DROP and dead.still_serving is False and not dead.passed
    assert server.proc.wait(timeout=5 * UNIT) == 3
    assert any("no longer serving" in f for f in dead.failures())
    after = report.results[report.results.index(dead) + 1 :]
    assert [r.case for r in after] == ["fragmented", "unknown-type", "type-not-string", "wrong-field-types"]
    assert all(r.answer is Answer.NOT_RUN and r.still_serving is None and r.row()[3] == "not run" for r in after)
    assert "stopped serving after binary" in after[0].detail
    stored = report.to_dict()
    assert stored["passed"] is False
    json.dumps(stored)


@pytest.mark.parametrize("server", ["broken"], indirect=True)
def test_silence_a_non_error_reply_and_a_dead_server_without_stopping(server: Server):
    # A probe as an async function of the URL, not a Probe.
    async def ping(url: str) -> bool:
        async with connect(url, proxy=None) as ws:
            await ws.send('{"type":"ping"}')
            return json.loads(await ws.recv())["type"] == "pong"

    async def run():
        return await run_battery(
            server.url,
            ping,
            base_message=BASE,
            cases=["unknown-type", "type-not-string", "wrong-field-types", "binary", "not-json"],
            server_log=server.log,
            timeout=UNIT,
            stop_when_down=False,
        )

    report = asyncio.run(run())
    got = report.by_case()
    assert got["unknown-type"].answer is Answer.SILENCE and not got["unknown-type"].closed
    assert got["unknown-type"].still_serving is True and not got["unknown-type"].traceback and not got["unknown-type"].passed
    assert got["type-not-string"].answer is Answer.DROP and "AttributeError" in got["type-not-string"].traceback
    assert got["wrong-field-types"].answer is Answer.REPLY and got["wrong-field-types"].replies == ('{"type": "moved"}',)
    assert got["wrong-field-types"].failures() == ["no clear answer (a reply that is not an error)"]
    assert got["binary"].still_serving is False
    # Run anyway after the server died: the case could not connect, and the server is still not serving.
    gone = got["not-json"]
    assert gone.answer is Answer.NO_CONNECTION and gone.still_serving is False and gone.detail
    assert gone.row()[0] == "not-json" and gone.row()[2:] == ("no", "FAIL")


def test_an_unknown_case_name_is_refused():
    with pytest.raises(ValueError, match="no-such-case"):
        run_battery_sync("ws://127.0.0.1:9/", PROBE, cases=["no-such-case"])


def test_the_fragmented_case_reaches_the_server_as_a_text_frame_and_continuation_frames():
    from websockets.asyncio.server import serve

    from harness.frames import _send

    async def count(ws):
        sizes = [len(fragment) async for fragment in ws.recv_streaming()]
        await ws.send(json.dumps(sizes))

    async def run() -> list[int]:
        case = {c.name: c for c in hostile_cases()}["fragmented"]
        async with serve(count, "127.0.0.1", 0) as srv:
            port = srv.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/", proxy=None, compression=None) as ws:
                await _send(ws, case)
                return json.loads(await asyncio.wait_for(ws.recv(), 5 * UNIT))

    sizes = asyncio.run(run())
    # websockets ends an iterated message with an empty final continuation frame: three parts, then that.
    assert len(sizes) >= 3 and all(sizes[:3]) and sum(sizes) == len('{"type": "no-such-type"}')


# -- Socket.IO framing -------------------------------------------------------------------------------

SIO_BASE = {"type": "join", "room": "table-1"}
SIO_EXTRAS = ["eio-unknown-packet", "eio-empty-packet", "sio-unknown-packet", "sio-unknown-namespace"]


def test_the_socketio_framing_puts_every_case_in_an_event_packet_and_adds_raw_packets():
    framing = frames.socketio_framing()
    cases = {c.name: c for c in framing.cases(SIO_BASE)}
    assert list(cases) == [*CASE_NAMES, *SIO_EXTRAS]
    assert framing.encode({"type": "echo", "n": 1}) == '42["echo", {"n": 1}]' and framing.encode({"type": "ping"}) == '42["ping"]'
    # JSON values become the data of the base message's event; text that is not JSON follows "42" as it is.
    assert cases["not-json"].payload == "42this is not JSON {"
    assert cases["json-array"].payload == '42["join",[1,2,3]]'
    assert cases["number"].payload == '42["join",42]' and cases["null"].payload == '42["join",null]'
    deep = cases["deep-nesting"].payload
    assert isinstance(deep, str) and deep.startswith('42["join",{"a":') and deep.endswith("}]") and deep.count("{") == 10_000
    assert json.loads(cases["unknown-type"].payload[2:]) == ["no-such-type"]
    assert json.loads(cases["type-not-string"].payload[2:]) == [12345, {"room": "table-1"}]
    assert json.loads(cases["wrong-field-types"].payload[2:]) == ["join", {"room": 12345}]
    big = cases["big-text"]
    assert big.size() >= 10 * 1024 * 1024 and json.loads(big.payload[2:])[0] == "join"
    bad = cases["bad-utf8"].payload
    assert cases["bad-utf8"].kind == "text-bytes" and isinstance(bad, bytes) and bad.startswith(b"42[")
    with pytest.raises(UnicodeDecodeError):
        bad.decode()
    assert cases["binary"].kind == "binary" and cases["binary"].payload == bytes(range(256))
    assert cases["fragmented"].kind == "fragments" and "".join(cases["fragmented"].payload) == cases["unknown-type"].payload
    assert cases["eio-empty-packet"].payload == "" and cases["eio-unknown-packet"].payload == "9"
    assert cases["sio-unknown-namespace"].payload.startswith("42/no-such-namespace,")
    # A namespace other than / goes in every packet.
    assert frames.socketio_framing("/game").encode({"type": "echo"}) == '42/game,["echo"]'
    # Its answers: an error event, a disconnect, a connect error, an Engine.IO close; its heartbeat is no answer.
    assert all(framing.is_error(f) for f in ('42["error",{"error":"x"}]', "41", '44{"message":"no"}', "1"))
    assert not framing.is_error('42["echo",{}]') and framing.is_noise("2") and not framing.is_noise('42["echo"]')
    assert frames.socketio_url("http://127.0.0.1:5/x") == "ws://127.0.0.1:5/socket.io/?EIO=4&transport=websocket"
    assert framing.endpoint("ws://h:1/") == "ws://h:1/socket.io/?EIO=4&transport=websocket"


async def _engineio_server(ws, refuse: bool = False):
    """A small Socket.IO server: the handshakes, an echo event, an error event for anything else, close 1008 for no packet."""
    from websockets.exceptions import ConnectionClosed

    await ws.send('0{"sid":"e1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}')
    try:
        async for frame in ws:
            if frame == "40":
                await ws.send('44{"message":"refused"}' if refuse else '40{"sid":"s1"}')
                continue
            if isinstance(frame, str) and (not frame or frame[0] not in "0123456"):
                await ws.close(1008, "not an Engine.IO packet")
                return
            await ws.send("2")  # a heartbeat first: no answer
            try:
                event = json.loads(frame[2:]) if isinstance(frame, str) and frame.startswith("42[") else None
            except (ValueError, RecursionError):
                event = None
            if isinstance(event, list) and event and event[0] == "echo":
                await ws.send(frame)
            else:
                await ws.send('42["error",{"error":"bad packet"}]')
    except ConnectionClosed:
        pass


def _sio_battery(refuse: bool = False, **kwargs) -> frames.FrameReport:
    from websockets.asyncio.server import serve

    async def run() -> frames.FrameReport:
        async with serve(lambda ws: _engineio_server(ws, refuse), "127.0.0.1", 0, max_size=1024 * 1024) as srv:
            port = srv.sockets[0].getsockname()[1]
            framing = frames.socketio_framing()
            probe = Probe({"type": "echo", "n": 1}, expect=lambda f: isinstance(f, str) and f.startswith('42["echo"'))
            return await run_battery(framing.endpoint(f"http://127.0.0.1:{port}"), probe, base_message=SIO_BASE, framing=framing, **kwargs)

    return asyncio.run(run())


def test_a_socketio_battery_connects_first_sends_each_case_in_packets_and_ignores_the_heartbeat():
    report = _sio_battery(timeout=UNIT)
    got = report.by_case()
    assert report.passed, report.markdown()
    assert [r.case for r in report.results] == [*CASE_NAMES, *SIO_EXTRAS]
    assert got["not-json"].answer is Answer.ERROR_MESSAGE and got["not-json"].replies == ('42["error",{"error":"bad packet"}]',)
    assert got["big-text"].close_code == 1009 and got["bad-utf8"].close_code == 1007
    assert got["eio-empty-packet"].close_code == 1008 and got["eio-unknown-packet"].answer_text() == "close 1008 (policy violation)"
    assert all("2" not in r.replies for r in report.results)


def test_a_refused_socketio_connect_is_no_connection_and_the_server_not_serving():
    report = _sio_battery(refuse=True, timeout=UNIT, cases=["not-json", "sio-unknown-packet"])
    first = report.results[0]
    assert first.answer is Answer.NO_CONNECTION and "refused" in first.detail and first.still_serving is False
    assert report.results[1].answer is Answer.NOT_RUN


def test_a_close_frame_without_a_status_code_is_not_a_clear_answer():
    from websockets.asyncio.server import serve

    async def close_bare(ws):
        await ws.recv()
        async with ws.send_context():
            ws.protocol.send_close()  # a close frame with no status code
        await ws.wait_closed()

    async def run() -> frames.FrameReport:
        async with serve(close_bare, "127.0.0.1", 0) as srv:
            port = srv.sockets[0].getsockname()[1]
            return await run_battery(f"ws://127.0.0.1:{port}/", lambda url: asyncio.sleep(0, True), cases=["not-json"], timeout=UNIT)

    r = asyncio.run(run()).results[0]
    assert r.answer is Answer.CLOSE and r.close_code == 1005 and not r.passed
    assert r.answer_text() == "a close frame without a status code" and r.failures() == [
        "no clear answer (a close frame without a status code)"
    ]


def test_the_load_protocol_plans():
    ws = frames.protocol_plan("ws")
    assert ws.framing is None and ws.cases is not None and set(ws.cases) == set(CASE_NAMES) - {"binary", "type-not-string"}
    assert set(ws.left_out) == {"binary", "type-not-string"} and isinstance(ws.probe, Probe) and ws.probe.expect('{"op": "echo"}')
    sio = frames.protocol_plan("socketio-raw")
    assert sio.framing is not None and sio.framing.name == "socketio" and sio.cases is None
    assert isinstance(sio.probe, Probe) and sio.probe.encoded(sio.framing).startswith('42["echo", {')


def test_a_server_of_several_processes_has_each_log_read_for_its_own_growth():
    logs = [["a\n", "b\n"]]
    assert frames._grown(["a\n", "b\n"], ["a\nTraceback x\n", "b\n"]) == "Traceback x\n"
    assert frames._grown(["a\n"], ["a\n", "new\n"]) == "new\n"  # a process that started later
    assert frames._logs(lambda: logs[0]) == ["a\n", "b\n"] and frames._logs(lambda: "one") == ["one"] and frames._logs(None) == []


# -- the scenario, the table and the findings -------------------------------------------------------


def _scenario_output(mode: str, tmp_path: Path):
    import contextlib

    workdir = tmp_path / mode
    workdir.mkdir()

    @contextlib.contextmanager
    def start(ctx):
        srv = _start(mode, ctx.workdir)
        try:
            yield frames.BatteryTarget(srv.url, srv.log)
        finally:
            srv.proc.kill()
            srv.proc.wait()

    plan = frames.BatteryPlan(
        PROBE, base_message=BASE, cases=["not-json", "json-array", "big-text"], left_out={"binary": "a test's reason"}
    )
    scenario = frames.robustness_scenario(plan=lambda option: plan, start=start, timeout_s=UNIT)
    assert scenario.key == "robustness" and scenario.max_repeats == 1 and scenario.params == {"timeout_s": UNIT}
    ctx = ScenarioContext(Option(mode, mode.title()), scenario.resolved_params(True), 0, True, workdir, log=lambda s: None)
    return scenario.run(ctx)


def _run_of(outputs: dict[str, object], not_run: str = "") -> RunResult:
    scenarios = []
    for option, out in outputs.items():
        ms = [MeasurementRecord(m.name, m.unit, m.tags, m.better, [m.samples]) for m in out.measurements]
        scenarios.append(ScenarioResult("robustness", option, "ok", "", {"timeout_s": UNIT}, ms, [out.facts], [1.0]))
    if not_run:
        scenarios.append(ScenarioResult("robustness", not_run, "not_run", "postgres is not installed", {}, [], [], []))
    options = [*outputs, *([not_run] if not_run else [])]
    return RunResult(
        run_id="t",
        spike={"number": 77, "slug": "t", "title": "T", "source_hash": "x"},
        profile="quick",
        author="test",
        started_at="2026-12-01T00:00:00+00:00",
        finished_at="2026-12-01T00:01:00+00:00",
        duration_s=60.0,
        machine={},
        parameters={"repeat": 1, "options": options, "scenarios": ["robustness"], "weights": {}},
        complexity={},
        scenarios=scenarios,
    )


def test_the_robustness_scenario_stores_each_case_and_the_table_and_findings_read_it_back(tmp_path: Path):
    good, broken = _scenario_output("good", tmp_path), _scenario_output("broken", tmp_path)
    stored = good.facts[frames.FACT]
    assert stored["passed"] is True and stored["log_checked"] is True and good.facts["framing"] == "plain"
    assert good.facts["left_out"] == {"binary": "a test's reason"}
    passed = {m.tags["case"]: m.samples for m in good.measurements if m.name == "case_passed"}
    assert passed == {"not-json": [1.0], "json-array": [1.0], "big-text": [1.0]}
    assert [m.samples for m in good.measurements if m.name == "close_code"] == [[1009.0]]
    assert [m.samples for m in broken.measurements if m.name == "cases_failed"] == [[1.0]]
    json.dumps(good.facts)
    json.dumps(broken.facts)

    run = _run_of({"good": good, "broken": broken}, not_run="absent")
    table = frames.robustness_table(run, {"good": "Good server", "broken": "Broken server"})
    assert table is not None and table.headers == ["Case", "Good server", "Broken server", "absent"]
    rows = {row[0]: row[1:] for row in table.rows}
    assert rows["not-json"][:2] == ["pass: error message", "pass: error message"]
    assert rows["json-array"][0] == "pass: error message"
    assert rows["json-array"][1].startswith("**FAIL**: dropped without a close frame") and "traceback" in rows["json-array"][1]
    assert rows["big-text"][:2] == ["pass: close 1009 (message too big)"] * 2
    assert rows["not-json"][2] == "not run"  # the option whose step did not run
    assert rows["**passed**"] == ["3 of 3", "2 of 3", "-"]
    assert "binary for Good server, Broken server (a test's reason)" in table.note
    findings = frames.robustness_findings(run)
    assert [(f.option, f.good) for f in findings] == [("broken", False)]
    assert "1 of 3 hostile-frame cases" in findings[0].text and "json-array" in findings[0].text
    assert frames.robustness_table(run, scenario="no-such-scenario") is None


def test_a_finding_counts_cases_not_run_after_a_server_stopped_serving_apart_from_the_failed_ones():
    from harness.frames import Answer, CaseResult, FrameReport

    results = (
        CaseResult("not-json", "", Answer.ERROR_MESSAGE, still_serving=True),
        CaseResult("binary", "", Answer.DROP, closed=True, still_serving=False),
        CaseResult("fragmented", "", Answer.NOT_RUN, detail="the server stopped serving after binary"),
        CaseResult("unknown-type", "", Answer.NOT_RUN, detail="the server stopped serving after binary"),
    )
    out = frames.robustness_output(FrameReport(url="ws://127.0.0.1:9/", results=results, timeout_s=1.0, log_checked=False))
    (finding,) = frames.robustness_findings(_run_of({"dies": out}))
    # One case failed (and took the server down); two were never tried: not "failed 3 of 4".
    assert "failed 1 of 4 hostile-frame cases" in finding.text and "binary" in finding.text
    assert "2 more not run" in finding.text and "fragmented" not in finding.text
