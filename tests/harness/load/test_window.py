"""Closed loop with a window of requests outstanding per connection: the spec, the result, and real runs."""

from __future__ import annotations

import math

import pytest

from harness.load import LoadResult, LoadSpec, run_load
from harness.load.engine import merge_results
from harness.load.histogram import LatencyRecorder
from harness.load.report import GeneratorReport
from harness.load.spec import SAMPLE_UNITS
from tests.harness.load.servers import reference_server
from tests.utils import UNIT

URL = "ws://127.0.0.1:9/"


def test_a_window_needs_back_to_back_echo():
    assert LoadSpec(URL, rate=math.inf, closed_loop=True, window=8).window == 8
    for bad in (
        dict(rate=math.inf, closed_loop=True, window=0),
        dict(rate=math.inf, closed_loop=True, window=True),
        dict(rate=math.inf, closed_loop=True, window=2.0),
        dict(rate=10, window=2),  # open model: the schedule sets the rate, not a window
        dict(rate=10, closed_loop=True, window=2),  # paced closed loop
        dict(rate=math.inf, closed_loop=True, mode="broadcast", window=2),
    ):
        with pytest.raises(ValueError, match="window"):
            LoadSpec(URL, **bad)


def test_the_window_round_trips_and_old_specs_read_as_one():
    spec = LoadSpec(URL, rate=math.inf, closed_loop=True, window=16)
    assert LoadSpec.from_dict(spec.to_dict()) == spec
    old = spec.to_dict()
    del old["window"]
    assert LoadSpec.from_dict(old).window == 1


def _part(index: int, received: int, cpu_s: float) -> GeneratorReport:
    empty = LatencyRecorder().encode()
    return GeneratorReport(
        index=index,
        pid=0,
        latency=empty,
        service=empty,
        lag=empty,
        clamped=0,
        sent=received,
        received=received,
        unexpected=0,
        outstanding=0,
        unsent=0,
        connected=1,
        members=0,
        connect_ms=(1.0,),
        failed_connects={},
        dropped=0,
        bytes_in=0,
        bytes_out=0,
        cpu_s=cpu_s,
        wall_s=1.0,
        cpu=cpu_s,
        window_s=1.0,
        errors={},
    )


def test_generator_cpu_time_per_message_is_summed_over_processes():
    spec = LoadSpec(URL, connections=2, processes=2, rate=math.inf, closed_loop=True, window=4)
    r = merge_results(spec, [_part(0, 1000, 0.002), _part(1, 3000, 0.004)], [], 0, 1.0)
    assert r.generator_cpu_s == [0.002, 0.004]
    assert r.generator_us_per_msg == pytest.approx(1.5)  # 6 ms of CPU for 4000 echoes
    samples = r.to_samples()
    assert samples["generator_us_per_msg"] == [pytest.approx(1.5)] and "generator_us_per_msg" in SAMPLE_UNITS
    assert LoadResult.from_dict(r.to_dict()).generator_us_per_msg == pytest.approx(1.5)
    # Nothing received: no cost figure rather than a division by zero.
    assert merge_results(spec, [_part(0, 0, 0.01)], [], 0, 1.0).generator_us_per_msg is None


def _spec(port: int, **kw) -> LoadSpec:
    base = dict(
        url=f"ws://127.0.0.1:{port}/", connect_timeout_s=5 * UNIT, grace_s=2 * UNIT, rate=math.inf, closed_loop=True, duration_s=0.5
    )
    base.update(kw)
    return LoadSpec(**base)


@pytest.mark.slow
@pytest.mark.parametrize("server", ["raw-echo", "ws"])
def test_a_pipelined_run_accounts_for_every_request(server):
    with reference_server(server) as (port, _):
        r = run_load(_spec(port, connections=3, window=8, payload_bytes=100))
    assert r.connected == 3 and r.error_count == 0
    assert r.sent >= 3 * 8 and r.sent == r.received == r.expected  # each connection filled its window at least once
    assert r.lost == 0 and r.unexpected == 0
    assert r.generator_us_per_msg is not None and r.generator_us_per_msg > 0
    # Every request went out masked (4 bytes more than its unmasked echo); a closing handshake adds at most 8 bytes a connection.
    assert 4 * r.sent <= r.bytes_out - r.bytes_in <= 4 * r.sent + 8 * r.connected
    assert r.latency_ms["p50"] is not None and r.latency_ms["max"] >= r.service_ms["max"] * 0.999


@pytest.mark.slow
@pytest.mark.parametrize(("server", "transport"), [("ws", "ws-websockets"), ("socketio", "socketio-raw")])
def test_a_window_on_adapters_without_a_pipeline_keeps_that_many_in_flight(server, transport):
    with reference_server(server) as (port, _):
        url = f"http://127.0.0.1:{port}" if server == "socketio" else f"ws://127.0.0.1:{port}/"
        r = run_load(_spec(port, url=url, transport=transport, connections=2, window=4))
    assert r.connected == 2 and r.error_count == 0
    assert r.sent >= 2 * 4 and r.sent == r.received and r.lost == 0 and r.unexpected == 0


def test_the_command_line_takes_a_window(monkeypatch):
    from typer.testing import CliRunner

    from harness import cli
    from harness.load import engine

    specs: list[LoadSpec] = []
    monkeypatch.setattr(engine, "run_load", lambda spec: specs.append(spec) or LoadResult(spec=spec.to_dict(), connections=1, connected=1))
    runner = CliRunner()
    assert runner.invoke(cli.app, ["load", URL, "-c", "1", "--closed-loop", "--rate", "inf", "--window", "16"]).exit_code == 0
    assert runner.invoke(cli.app, ["load", URL, "-c", "1"]).exit_code == 0
    assert [s.window for s in specs] == [16, 1]
    res = runner.invoke(cli.app, ["load", URL, "--window", "4"])  # open model: no window
    assert res.exit_code == 2 and "--window 4 needs --closed-loop --rate inf --mode echo" in res.output
