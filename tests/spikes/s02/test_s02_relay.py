"""The relay servers over real sockets: sessions converge, an offline client merges back in."""

from __future__ import annotations

import pytest

from harness.poc import server_process, url_of
from spikes.s02_state_sync import session, spike
from tests.utils import UNIT


@pytest.fixture
def relay(tmp_path):
    started = []

    def start(option: str) -> str:
        # The option's declared relay (Option.server), started as the scenarios start it.
        proc, url = server_process(
            spike.option(option),
            tmp_path,
            name=f"s02-{option}",
            log_name=f"{option}.log",
            ready_timeout=20 * UNIT,
            grace=5 * UNIT,
        )
        started.append(proc)
        proc.start()
        return url_of(proc, url)

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
