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
