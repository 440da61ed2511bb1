from __future__ import annotations

import math

import pytest

from harness.load import LoadResult, LoadSpec
from harness.load.engine import make_shares, merge_results
from harness.load.histogram import LatencyRecorder
from harness.load.report import GeneratorReport
from harness.load.spec import SAMPLE_UNITS
from harness.plugin import ScenarioOutput


@pytest.mark.parametrize("url", ["ws://127.0.0.1:9/", "ws://127.8.9.10:9/x", "ws://[::1]:9/", "http://localhost:9", "ws://LOCALHOST:9/"])
def test_loopback_urls_are_accepted(url):
    LoadSpec(url)


@pytest.mark.parametrize("url", ["ws://10.0.0.1:9/", "ws://192.0.2.7/", "wss://example.com/", "http://[2001:db8::1]:80"])
def test_load_to_another_machine_is_refused(url):
    with pytest.raises(ValueError, match="only targets servers on this machine"):
        LoadSpec(url)
    LoadSpec(url, allow_remote=True)  # a user's own server, said explicitly


def test_inconsistent_specs_are_refused():
    url = "ws://127.0.0.1:9/"
    for bad in (
        dict(rate=math.inf),  # an open model needs a finite rate
        dict(connections=0),
        dict(rate=-1),
        dict(arrival="trickle"),
        dict(mode="gossip"),
        dict(transport="carrier-pigeon"),
        dict(processes=0),
    ):
        with pytest.raises(ValueError):
            LoadSpec(url, **bad)
    assert LoadSpec(url, rate=math.inf, closed_loop=True).sending_connections == 1


def test_spec_round_trips_through_json_data():
    spec = LoadSpec("ws://127.0.0.1:9/", rate=math.inf, closed_loop=True, cpu_affinity=(0,), senders=2, connections=5)
    assert LoadSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["rate"] == "inf"


def test_connections_are_dealt_to_processes_with_their_arrivals():
    spec = LoadSpec("ws://127.0.0.1:9/", connections=10, processes=3, arrival="ramp", arrival_s=10, rate=10)
    shares = make_shares(spec)
    assert [len(s.conn_ids) for s in shares] == [4, 3, 3]
    assert sorted(c for s in shares for c in s.conn_ids) == list(range(10))
    assert shares[1].arrivals_s == (1.0, 4.0, 7.0)
    assert all(0 <= p < 100_000_000 for s in shares for p in s.phases_ns)
    assert len(make_shares(LoadSpec("ws://127.0.0.1:9/", connections=2, processes=8))) == 2


def _part(index, sent, received, cpu=0.2, members=0, outstanding=0, lag_us=50):
    lat, lag = LatencyRecorder(), LatencyRecorder()
    for _ in range(received):
        lat.record(300)
    for _ in range(sent):
        lag.record(lag_us)
    return GeneratorReport(
        index=index,
        pid=0,
        latency=lat.encode(),
        service=lat.encode(),
        lag=lag.encode(),
        clamped=0,
        sent=sent,
        received=received,
        unexpected=0,
        outstanding=outstanding,
        unsent=0,
        connected=2,
        members=members,
        connect_ms=(1.0, 2.0),
        failed_connects={},
        dropped=0,
        bytes_in=100,
        bytes_out=120,
        cpu_s=cpu,
        wall_s=1.0,
        cpu=cpu,
        window_s=2.0,
        errors={},
    )


def test_merge_counts_broadcast_deliveries_per_room_member():
    spec = LoadSpec("ws://127.0.0.1:9/", connections=4, processes=2, mode="broadcast")
    r = merge_results(spec, [_part(0, 10, 35, members=2), _part(1, 10, 40, members=2)], [], members=4, wall_s=3)
    assert r.expected == 80 and r.received == 75 and r.lost == 5
    assert r.achieved_rate == 10.0 and r.connect_ms == [1.0, 2.0, 1.0, 2.0]
    assert r.latency_ms["p50"] == 0.3 and not r.client_bound


def test_a_busy_generator_marks_the_result_client_bound():
    spec = LoadSpec("ws://127.0.0.1:9/", connections=4, processes=2)
    r = merge_results(spec, [_part(0, 10, 10, cpu=0.95), _part(1, 10, 10)], [], 0, 3)
    assert r.client_bound and "generator process 0 used 95% of a core" in r.client_bound_reasons
    late = merge_results(spec, [_part(0, 10, 10, lag_us=50_000)], [], 0, 3)
    assert late.client_bound and "fell behind its schedule" in late.client_bound_reasons[0]


def test_a_lost_generator_process_shows_as_errors_and_failed_connects():
    spec = LoadSpec("ws://127.0.0.1:9/", connections=4, processes=2)
    r = merge_results(spec, [_part(0, 10, 10)], ["generator process 1 exited (code 1) before sending 'result'"], 0, 3)
    assert r.error_count == 1 and r.connect_failed == 2 and r.connected == 2


def test_samples_have_units_and_facts_carry_the_histogram():
    spec = LoadSpec("ws://127.0.0.1:9/", connections=2)
    r = merge_results(spec, [_part(0, 10, 10)], [], 0, 3)
    samples = r.to_samples()
    assert set(samples) <= set(SAMPLE_UNITS)
    assert samples["latency_p99_ms"] == [0.3] and samples["sent"] == [10.0]
    assert all(isinstance(x, float) for xs in samples.values() for x in xs)
    out = ScenarioOutput()
    r.add_to(out, prefix="ws_", option="x")
    names = {m.name for m in out.measurements}
    assert "ws_latency_p50_ms" in names and out.facts["ws_latency_hdr"] == r.histogram
    assert LoadResult.from_dict(r.to_dict()) == r


def test_a_counting_run_keeps_its_account_when_added_to_a_scenario_output():
    spec = LoadSpec("ws://127.0.0.1:9/", connections=2)
    plain = merge_results(spec, [_part(0, 10, 10)], [], 0, 3)
    out = ScenarioOutput()
    plain.add_to(out)
    assert "account" not in out.facts and "reconnected" not in out.facts  # a plain run stores what it always did
    import dataclasses

    counted = dataclasses.replace(plain, account={"lost_after_ack": {"count": 2, "fraction": 0.2}}, reconnected=3)
    out = ScenarioOutput()
    counted.add_to(out, prefix="cut_")
    assert out.facts["cut_account"] == counted.account and out.facts["cut_reconnected"] == 3
