"""``spike load`` with bad input: one line naming the flag, the right exit status, nothing started, no traceback."""

from __future__ import annotations

import math
import os
import socket

import pytest
from typer.testing import CliRunner

from harness import cli
from harness.load.__main__ import EXIT_FAILED, EXIT_USAGE, build_parser, check_args, outcome, spec_from_args
from harness.load.spec import LoadResult
from tests.utils import UNIT

runner = CliRunner()
URL = "ws://127.0.0.1:9/"


def load(*args: str):
    return runner.invoke(cli.app, ["load", *args])


def assert_one_line_error(res, code: int, *needles: str) -> str:
    assert res.exit_code == code, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output and "usage:" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    assert lines[0].startswith("spike load: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _cpu_list(cpus: set[int]) -> str:
    xs = sorted(cpus)
    return f"{xs[0]}-{xs[-1]}" if xs == list(range(xs[0], xs[-1] + 1)) else ",".join(map(str, xs))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--duration", "nan"], ["--duration nan: expected a finite number of seconds > 0"]),
        (["--duration", "inf"], ["--duration inf: expected a finite number of seconds > 0"]),
        (["--duration", "0"], ["--duration 0: expected a finite number of seconds > 0"]),
        (["--duration", "-1"], ["--duration -1:"]),
        (["--rate", "nan"], ["--rate nan: expected messages per second >= 0"]),
        (["--rate", "-2"], ["--rate -2: expected messages per second >= 0"]),
        (["--rate", "inf"], ["--rate inf needs --closed-loop"]),
        (["--rate", "fast"], ["'fast' is not a number"]),
        (["--connections", "0"], ["--connections 0: expected at least 1"]),
        (["--connections", "-3"], ["--connections -3: expected at least 1"]),
        (["--connections", "100000000"], ["--connections 100000000:", "RLIMIT_NOFILE", "--processes"]),
        (["--processes", "0"], ["--processes 0: expected at least 1"]),
        (["--arrival", "trickle"], ["--arrival", "invalid choice: 'trickle'", "ramp"]),
        (["--arrival", "ramp"], ["--arrival ramp needs --arrival-s > 0"]),
        (["--arrival-s", "5"], ["--arrival-s 5 has no effect with --arrival instant"]),
        (["--arrival", "burst", "--arrival-s", "nan"], ["--arrival-s nan: expected a finite number of seconds >= 0"]),
        (["--grace", "inf"], ["--grace inf: expected a finite number of seconds >= 0"]),
        (["--connect-timeout", "0"], ["--connect-timeout 0: expected a finite number of seconds > 0"]),
        (["--transport", "foo"], ["--transport", "invalid choice: 'foo'", "socketio"]),
        (["--mode", "gossip"], ["--mode", "invalid choice: 'gossip'"]),
        (["--senders", "-1"], ["--senders -1: expected 0 or more"]),
        (["--payload", "-1"], ["--payload -1: expected 0 to"]),
        (["--payload", str(10**12)], [f"--payload {10**12}: expected 0 to"]),
        (["--window", "0"], ["--window 0: expected at least 1"]),
        (["--window", "4"], ["--window 4 needs --closed-loop --rate inf --mode echo"]),
        (["--compression"], ["--compression: the ws client does not negotiate permessage-deflate", "ws-websockets"]),
        (["--cpus", "a,b"], ["--cpus 'a,b': expected CPU numbers such as 0,1 or 0-3"]),
        (["--cpus", "1-0"], ["--cpus '1-0': the range 1-0 runs backwards"]),
        (["--cpus", ""], ["--cpus '': expected CPU numbers"]),
    ],
)
def test_a_bad_flag_is_a_one_line_usage_error(args, needles):
    assert_one_line_error(load(URL, *args), EXIT_USAGE, *needles)


def test_a_cpu_this_machine_lacks_is_named_with_the_cpus_it_has():
    allowed = os.sched_getaffinity(0)
    beyond = max(allowed) + 1
    line = assert_one_line_error(load(URL, "--cpus", f"0,{beyond}"), EXIT_USAGE, f"--cpus {beyond}: ")
    assert line.endswith(f"CPUs {_cpu_list(allowed)}"), line
    assert ("this machine has" in line) == (allowed == set(range(os.cpu_count() or 0)))


@pytest.mark.parametrize(
    ("url", "args", "needles"),
    [
        ("http://127.0.0.1:9", [], ["http:// URLs are for --transport socketio", "takes ws://127.0.0.1:9/"]),
        ("https://localhost:9/x", ["--transport", "ws-websockets"], ["https:// URLs are for --transport socketio", "wss://localhost:9/x"]),
        ("ws://127.0.0.1:99999/", [], ["the port must be a number from 1 to 65535"]),
        ("ws://127.0.0.1:0/", [], ["port 0 is not a server's port"]),
        ("127.0.0.1:8000", [], ["expected ws://HOST:PORT/PATH (WebSocket) or http://HOST:PORT (Socket.IO)"]),
        ("ftp://127.0.0.1:21/", [], ["expected ws://HOST:PORT/PATH"]),
        ("ws:///path", [], ["expected ws://HOST:PORT/PATH"]),
    ],
)
def test_a_bad_url_is_a_one_line_usage_error_with_a_hint(url, args, needles):
    assert_one_line_error(load(url, *args), EXIT_USAGE, *needles)


@pytest.mark.parametrize("url", ["ws://192.0.2.1:9/", "http://example.com:80", "ws://[2001:db8::1]:9/"])
def test_a_remote_server_is_refused_naming_the_flag_not_the_api(url):
    line = assert_one_line_error(load(url, "--transport", "socketio" if url.startswith("http") else "ws"), EXIT_USAGE, "--allow-remote")
    assert "refusing to send load to" in line and "allow_remote" not in line


def test_no_url_says_what_a_url_looks_like():
    assert_one_line_error(load(), EXIT_USAGE, "no URL given", "ws://127.0.0.1:PORT/", "http://127.0.0.1:PORT", "spike load --help")


def test_help_documents_the_exit_statuses():
    res = load("--help")
    assert res.exit_code == 0
    assert "exit status:" in res.output
    for code in ("0 ", "2 ", "3 ", "130"):
        assert f"  {code}" in res.output
    assert "http://127.0.0.1:PORT" in res.output and "--transport socketio" in res.output


def test_a_closed_port_is_a_failed_run_not_a_success():
    port = _closed_port()
    res = load(f"ws://127.0.0.1:{port}/", "-c", "1", "--duration", str(1 * UNIT), "--grace", "0", "--connect-timeout", str(5 * UNIT))
    assert res.exit_code == EXIT_FAILED, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert res.output.strip() == f"spike load: error: 0/1 connected: connection refused at 127.0.0.1:{port}"


def test_infinite_rate_is_a_closed_loop_throughput_run():
    args = build_parser().parse_args([URL, "--rate", "inf", "--closed-loop", "--window", "8"])
    check_args(args)
    spec = spec_from_args(args)
    assert math.isinf(spec.rate) and spec.closed_loop and spec.window == 8


def test_cpus_take_lists_and_ranges():
    allowed = sorted(os.sched_getaffinity(0))
    args = build_parser().parse_args([URL, "--cpus", f"{allowed[0]}-{allowed[-1]},{allowed[0]}"])
    check_args(args)
    assert set(spec_from_args(args).cpu_affinity or ()) == set(range(allowed[0], allowed[-1] + 1))


def _result(**kw) -> LoadResult:
    base = dict(spec={"url": "ws://127.0.0.1:4000/"}, connections=3, connected=3)
    base.update(kw)
    return LoadResult(**base)


def test_outcome_names_what_failed_in_a_finished_run():
    assert outcome(_result()) is None
    assert outcome(_result(connected=1, connect_failed=2, failed_connects={"connection refused": 2})) == (
        "1/3 connected: connection refused at 127.0.0.1:4000 (x2)"
    )
    # The engine does not count connects cut short by the end of the run as failed; they did not connect all the same.
    assert (
        outcome(_result(connected=0))
        == "0/3 connected: 3 still connecting when the run ended (a longer --duration or a faster server helps)"
    )
    process = "generator process 0 failed: OSError: [Errno 22] Invalid argument (x1)"
    line = outcome(
        _result(
            connected=0,
            connect_failed=3,
            failed_connects={"generator process failed": 3},
            error_count=1,
            errors=[process],
        )
    )
    assert line == f"0/3 connected: generator process failed (x3); {process}"
    assert outcome(_result(dropped=1, error_count=1, errors=["closed by the server (x1)"])) == "1 connection(s) dropped by the server"
    assert (
        outcome(_result(error_count=2, errors=["join: no 'joined' reply in 10 s (x2)"]))
        == "2 error(s): join: no 'joined' reply in 10 s (x2)"
    )
