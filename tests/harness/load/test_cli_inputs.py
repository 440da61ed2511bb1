"""``spike load`` with bad input: one line naming the flag, the right exit status, nothing started, no traceback."""

from __future__ import annotations

import math
import os
import socket

import pytest
from typer.testing import CliRunner

from harness import cli
from harness.cli import EXIT_DATA, EXIT_FAILED_STEPS, EXIT_USAGE
from harness.cli import load_outcome as outcome
from harness.load import engine
from harness.load.spec import LoadResult, LoadSpec
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
        (["-c", "two"], ["--connections 'two' is not a whole number"]),
        (["--bogus"], ["No such option: --bogus", "`spike load --help` lists every option"]),
        (["--json", "extra-argument"], ["unexpected extra argument"]),
        (["--room"], ["--room", "requires an argument"]),
        (["--connections", "-3"], ["--connections -3: expected at least 1"]),
        (["--connections", "100000000"], ["--connections 100000000:", "RLIMIT_NOFILE", "--processes"]),
        (["--processes", "0"], ["--processes 0: expected at least 1"]),
        (["--arrival", "trickle"], ["--arrival 'trickle' is not one of instant, ramp, burst"]),
        (["--arrival", "ramp"], ["--arrival ramp needs --arrival-s > 0"]),
        (["--arrival-s", "5"], ["--arrival-s 5 has no effect with --arrival instant"]),
        (["--arrival", "burst", "--arrival-s", "nan"], ["--arrival-s nan: expected a finite number of seconds >= 0"]),
        (["--grace", "inf"], ["--grace inf: expected a finite number of seconds >= 0"]),
        (["--connect-timeout", "0"], ["--connect-timeout 0: expected a finite number of seconds > 0"]),
        (["--transport", "foo"], ["--transport 'foo' is not one of", "socketio-raw", "ws-websockets"]),
        (["--mode", "gossip"], ["--mode 'gossip' is not one of echo, broadcast"]),
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


#: Every option ``spike load`` has, as ``--help`` must list it.
OPTIONS = (
    "--transport", "--connections", "--rate", "--duration", "--arrival", "--arrival-s", "--mode", "--room", "--senders", "--payload",
    "--processes", "--closed-loop", "--window", "--connect-timeout", "--grace", "--compression", "--cpus", "--allow-remote", "--json",
)  # fmt: skip


def test_help_lists_every_option_with_its_help_and_the_exit_statuses():
    res = load("--help")
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.replace("│", " ").split())  # the help as one line, whatever the terminal width
    for option in OPTIONS:
        assert f" {option} " in text, option
    for words in ("Connections to open", "Messages per second per connection", "Seconds of sending after the last arrival",
                  "Payload bytes per message", "Pin the generator processes", "Allow a server that is not on this machine",
                  "instant|ramp|burst", "echo|broadcast", "socketio-raw"):  # fmt: skip
        assert words in text, words
    assert "argparse" not in text and "usage:" not in text
    assert "Exit status: 0 " in text and "http://127.0.0.1:PORT" in text and "--transport socketio" in text
    for code in (
        "; 2 a usage error",
        "; 3 the run finished",
        "messages were lost",
        "; 4 the load engine itself failed",
        "; 130 interrupted",
    ):
        assert code in text, code


def test_python_m_harness_load_is_the_same_command():
    import subprocess
    import sys

    from tests.harness.load.servers import ROOT

    res = subprocess.run([sys.executable, "-m", "harness.load", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60 * UNIT)
    assert res.returncode == 0, res.stderr
    assert "python -m harness.load" in res.stdout and all(option in res.stdout for option in OPTIONS)
    bad = subprocess.run(
        [sys.executable, "-m", "harness.load", URL, "--bogus"], capture_output=True, text=True, cwd=ROOT, timeout=60 * UNIT
    )
    assert bad.returncode == EXIT_USAGE and bad.stdout == ""
    (line,) = bad.stderr.strip().splitlines()
    assert line.startswith("python -m harness.load: error: No such option: --bogus")
    assert line.endswith("; `python -m harness.load --help` lists every option")


def test_a_closed_port_is_a_failed_run_not_a_success():
    port = _closed_port()
    res = load(f"ws://127.0.0.1:{port}/", "-c", "1", "--duration", str(1 * UNIT), "--grace", "0", "--connect-timeout", str(5 * UNIT))
    assert res.exit_code == EXIT_FAILED_STEPS, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert res.output.strip() == f"spike load: error: 0/1 connected: connection refused at 127.0.0.1:{port}"


@pytest.fixture
def specs(monkeypatch) -> list[LoadSpec]:
    """The specs ``spike load`` hands the engine, which answers with a run where everything worked."""
    seen: list[LoadSpec] = []

    def fake_run_load(spec: LoadSpec) -> LoadResult:
        seen.append(spec)
        return LoadResult(spec=spec.to_dict(), connections=spec.connections, connected=spec.connections)

    monkeypatch.setattr(engine, "run_load", fake_run_load)
    return seen


def test_the_engine_gets_typed_values(specs):
    res = load(URL, "-c", "3", "-r", "2.5", "-d", "4", "--arrival", "ramp", "--arrival-s", "1", "--mode", "broadcast", "--room", "r")
    assert res.exit_code == 0, res.output
    assert specs == [
        LoadSpec(url=URL, connections=3, rate=2.5, duration_s=4.0, arrival="ramp", arrival_s=1.0, mode="broadcast", room="r", processes=1)
    ]


def test_defaults_are_declared_once(specs):
    assert load(URL, "--json").exit_code == 0
    (spec,) = specs
    assert (spec.transport, spec.connections, spec.rate, spec.duration_s, spec.payload_bytes, spec.window) == ("ws", 10, 1.0, 10.0, 64, 1)
    assert (spec.arrival, spec.mode, spec.room, spec.senders, spec.grace_s, spec.connect_timeout_s) == (
        "instant",
        "echo",
        "load",
        None,
        2.0,
        10.0,
    )
    assert not (spec.closed_loop or spec.compression or spec.allow_remote) and spec.cpu_affinity is None


def test_infinite_rate_is_a_closed_loop_throughput_run(specs):
    assert load(URL, "--rate", "inf", "--closed-loop", "--window", "8").exit_code == 0
    (spec,) = specs
    assert math.isinf(spec.rate) and spec.closed_loop and spec.window == 8


def test_cpus_take_lists_and_ranges(specs):
    allowed = sorted(os.sched_getaffinity(0))
    assert load(URL, "--cpus", f"{allowed[0]}-{allowed[-1]},{allowed[0]}").exit_code == 0
    assert set(specs[0].cpu_affinity or ()) == set(range(allowed[0], allowed[-1] + 1))


def test_lost_messages_are_a_failed_run_exit_3_never_1(monkeypatch):
    def lossy(spec: LoadSpec) -> LoadResult:
        return LoadResult(spec=spec.to_dict(), connections=2, connected=2, sent=10, received=7, expected=10, lost=3)

    monkeypatch.setattr(engine, "run_load", lossy)
    res = load(URL, "-c", "2", "--grace", "0.5")
    assert res.exit_code == EXIT_FAILED_STEPS, res.output
    assert "latency ms" in res.output  # the table is still printed
    assert res.output.strip().splitlines()[-1] == (
        "spike load: error: 3 of 10 expected message(s) lost: no reply or delivery within --grace 0.5 s of the last send"
    )


def test_a_failure_of_the_engine_itself_is_exit_4_in_one_line(monkeypatch):
    def broken(spec: LoadSpec) -> LoadResult:
        raise RuntimeError("generator pipe closed")

    monkeypatch.setattr(engine, "run_load", broken)
    monkeypatch.delenv("SPIKE_DEBUG", raising=False)
    assert_one_line_error(load(URL), EXIT_DATA, "the load engine failed: RuntimeError: generator pipe closed")


def test_ctrl_c_is_exit_130(monkeypatch):
    def interrupted(spec: LoadSpec) -> LoadResult:
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "run_load", interrupted)
    res = load(URL)
    assert res.exit_code == 130 and "interrupted" in res.output and "Traceback" not in res.output


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
    assert outcome(_result(expected=40, lost=4, spec={"url": "ws://127.0.0.1:4000/", "grace_s": 2.0})) == (
        "4 of 40 expected message(s) lost: no reply or delivery within --grace 2 s of the last send"
    )
    assert (
        outcome(_result(error_count=2, errors=["join: no 'joined' reply in 10 s (x2)"]))
        == "2 error(s): join: no 'joined' reply in 10 s (x2)"
    )


# -- the account and reconnecting clients -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--reconnect", "fast"], ["--reconnect 'fast': expected BASE[,CAP[,MAX_ATTEMPTS]]"]),
        (["--reconnect", "0,1"], ["--reconnect", "base_s must be > 0"]),
        (["--resume", "telepathy"], ["--resume 'telepathy' is not one of", "last-seq"]),
        (["--resume", "last-seq"], ["--resume last-seq needs --reconnect"]),
        (["--reconnect", "on", "--closed-loop"], ["--reconnect needs the open model"]),
    ],
)
def test_bad_reconnect_options_are_one_line_exit_2(args, needles, monkeypatch):
    monkeypatch.setattr(engine, "run_load", lambda spec: pytest.fail("the engine must not start"))
    assert_one_line_error(load(URL, *args), EXIT_USAGE, *needles)


def test_the_engine_gets_the_reconnect_policy_and_the_resume_adapter(specs):
    from harness.load.spec import ReconnectPolicy

    assert load(URL, "--reconnect", "0.05,2,9", "--resume", "last-seq").exit_code == 0
    assert load(URL, "--account").exit_code == 0
    reconnecting, counting = specs
    assert reconnecting.reconnect == ReconnectPolicy(0.05, 2.0, 9) and reconnecting.resume == "last-seq" and reconnecting.counting
    assert counting.account and counting.reconnect is None and counting.resume == "none"


def _account(**counts: int) -> dict:
    names = ("sent", "delivered", "lost_after_ack", "lost_without_ack", "duplicated", "unexpected", "reordered")
    total = {n: {"count": counts.get(n, 0), "fraction": None} for n in names}
    total.update(expected=counts.get("expected", 0), arrivals=0, unsent=0, reconnects=0)
    return {"mode": "echo", "total": total, "connections": {}, "recovery": []}


def test_with_reconnect_a_drop_that_came_back_is_no_failure_but_loss_is():
    spec = {"url": "ws://127.0.0.1:4000/", "reconnect": {"base_s": 0.1, "cap_s": 5.0, "max_attempts": 0}, "grace_s": 1.0}
    errors = ["dropped: connection lost (x2)", "reconnect: connection refused (x5)"]
    clean = _result(spec=spec, dropped=2, reconnected=2, error_count=7, errors=errors, account=_account(expected=10, delivered=10))
    assert outcome(clean) is None
    assert outcome(_result(spec=spec, dropped=2, reconnected=1, account=_account())) == "1 of 2 dropped connection(s) did not come back"
    # A drop in the grace period (or a backoff past the sending window) had no time to come back: not a failure.
    assert outcome(_result(spec=spec, dropped=2, reconnected=1, reconnect_window_over=1, account=_account())) is None
    lossy = _result(spec=spec, dropped=1, reconnected=1, account=_account(expected=10, delivered=7, lost_after_ack=1, lost_without_ack=2))
    assert outcome(lossy) == "3 of 10 expected deliveries lost (1 after acknowledgement, 2 without) within --grace 1 s of the last send"
    assert outcome(_result(spec=spec, account=_account(duplicated=2, unexpected=1))) == "2 duplicated and 1 unexpected message(s) arrived"
    other = _result(spec=spec, error_count=3, errors=["dropped: x (x1)", "cleanup: boom (x2)"], account=_account())
    assert outcome(other) == "2 error(s): dropped: x (x1); cleanup: boom (x2)"


def test_the_table_and_json_carry_the_account(monkeypatch):
    import json

    from harness.load.spec import ReconnectPolicy

    def run(spec: LoadSpec) -> LoadResult:
        account = _account(sent=10, expected=10, delivered=10)
        account["recovery"] = [
            {"kind": "kill", "first_delivery_ms": 12.5, "connections": 2, "connections_recovered": 2, "slowest_connection_ms": 30.0}
        ]
        return LoadResult(spec=spec.to_dict(), connections=2, connected=2, dropped=2, reconnected=2, account=account)

    monkeypatch.setattr(engine, "run_load", run)
    res = load(URL, "-c", "2", "--reconnect", "on")
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.replace("│", " ").split())
    assert "account (total)" in text and "lost after ack 0" in text and "reconnections 2 after 2 drop(s)" in text
    assert "recovery after kill first delivery 12.5 ms after its end; 2/2 connections, the slowest after 30.0 ms" in text
    res = load(URL, "-c", "2", "--reconnect", "on", "--json")
    data = json.loads(res.output)
    assert data["account"]["total"]["delivered"]["count"] == 10 and data["reconnected"] == 2
    assert LoadSpec.from_dict(data["spec"]).reconnect == ReconnectPolicy()
