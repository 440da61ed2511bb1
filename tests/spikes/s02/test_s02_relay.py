"""The relay servers over real sockets: sessions converge, an offline client merges back in."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.process import LogReady, ServerProcess
from spikes.s02_state_sync import session
from tests.utils import UNIT

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def relay(tmp_path):
    started = []

    def start(option: str) -> str:
        proc = ServerProcess(
            f"s02-{option}",
            [sys.executable, "-m", "spikes.s02_state_sync.poc.relay", "--option", option, "--port", "{port}"],
            cwd=ROOT,
            ready=LogReady("listening"),
            ready_timeout=20 * UNIT,
            log_path=tmp_path / f"{option}.log",
            grace=5 * UNIT,
        )
        started.append(proc)
        proc.start()
        return f"ws://127.0.0.1:{proc.port}"

    yield start
    for p in started:
        p.stop()


@pytest.mark.slow
@pytest.mark.parametrize("option", ["ot", "crdt", "lww"])
def test_clients_of_the_real_server_converge_and_an_offline_one_merges(relay, option):
    url = relay(option)
    res = session.run_session(option, url, n=4, rate=10.0, duration=0.5, latency=0.005, timeout=30 * UNIT)
    assert res.errors == [] and res.convergence_s is not None
    assert res.edits == 20 and all(b > 0 for b in res.bytes_per_client)
    if option != "lww":
        assert res.lost["note_insert"] == res.lost["stroke_add"] == res.lost["stroke_extend"] == 0
    off = session.run_offline(option, relay(option), offline_s=0.5, rate=20.0, latency=0.005, timeout=30 * UNIT)
    assert off.errors == [] and off.merge_s is not None and off.merge_bytes > 0
    assert off.offline_edits == 10


def test_the_relay_refuses_an_unknown_option(capsys):
    from spikes.s02_state_sync.poc import relay

    with pytest.raises(SystemExit):
        relay.main(["--option", "nope", "--port", "1"])
    assert "invalid choice" in capsys.readouterr().err
