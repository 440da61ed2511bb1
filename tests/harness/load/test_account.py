"""The account (pure), the reconnect policy, the resume adapters and the typed generator messages, without sockets."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from harness.faults import Fault
from harness.load import LoadSpec
from harness.load.account import NO_SENDER, OUTCOMES, Account, ConnLog, FaultWindow, Tally
from harness.load.clients.resume import LastSeqResume, Resume, get_resume_class, resume_adapters
from harness.load.engine import merge_results
from harness.load.report import Failed, GeneratorReport, Go, Joined, Ready, Start
from harness.load.spec import ReconnectPolicy

URL = "ws://127.0.0.1:9/"


def _counts(t: Tally) -> dict[str, int]:
    return {name: getattr(t, name) for name in (*OUTCOMES, "expected", "arrivals")}


def test_echo_account_names_every_fate_of_a_message():
    log = ConnLog(
        conn=0,
        sent=tuple(range(10)),
        acked=(0, 1, 2, 4, 5, 6, 8, 9, 3),  # 3: acknowledged (an explicit ack), never echoed
        # 0, 1, 2 in order; 4 twice; 6 before 5 (5 reordered); 7 never; 8, 9; a seq never sent; a frame naming nothing.
        arrivals=(
            (0, 0, 1),
            (0, 1, 2),
            (0, 2, 3),
            (0, 4, 4),
            (0, 4, 5),
            (0, 6, 6),
            (0, 5, 7),
            (0, 8, 8),
            (0, 9, 9),
            (0, 99, 10),
            (NO_SENDER, -1, 11),
        ),
    )
    a = Account.of([log], "echo")
    t = a.per_connection[0]
    assert _counts(t) == {
        "sent": 10,
        "delivered": 8,
        "lost_after_ack": 1,  # 3 (7 was never acknowledged: its echo is the acknowledgement)
        "lost_without_ack": 1,  # 7
        "duplicated": 1,
        "unexpected": 2,
        "reordered": 1,
        "expected": 10,
        "arrivals": 11,
    }
    assert _counts(a.total) == _counts(t)
    assert t.fraction("delivered") == 0.8 and t.fraction("duplicated") == pytest.approx(1 / 11)
    assert t.fraction("sent") == 1.0


def test_an_ack_is_only_counted_for_a_message_that_was_sent():
    a = Account.of([ConnLog(0, sent=(0,), acked=(0, 5))], "echo")
    assert a.total.lost_after_ack == 1 and a.total.lost_without_ack == 0


def test_echo_replies_to_another_connection_are_unexpected_there():
    a = Account.of([ConnLog(0, sent=(0,), arrivals=((1, 0, 5),)), ConnLog(1, sent=(0,), arrivals=((1, 0, 6),))], "echo")
    assert a.per_connection[0].unexpected == 1 and a.per_connection[0].lost_without_ack == 1
    assert a.per_connection[1].delivered == 1 and a.total.delivered == 1 and a.total.expected == 2


def test_broadcast_account_expects_every_message_at_every_member():
    logs = [
        ConnLog(0, sent=(0, 1, 2), acked=(0, 1), arrivals=((0, 0, 1), (0, 1, 2)), member=True),  # its own 2: lost, never acked
        ConnLog(1, sent=(0,), acked=(0,), arrivals=((0, 0, 1), (1, 0, 2), (0, 2, 3)), member=True),  # missed 0:1 (acked)
        ConnLog(2, arrivals=((0, 0, 1),), member=False),  # not in the room: anything arriving is unexpected
    ]
    a = Account.of(logs, "broadcast")
    c0, c1, c2 = (a.per_connection[i] for i in range(3))
    assert (c0.expected, c0.delivered, c0.lost_after_ack, c0.lost_without_ack) == (4, 2, 1, 1)  # 1:0 was acked by its sender
    assert (c1.expected, c1.delivered, c1.lost_after_ack, c1.lost_without_ack) == (4, 3, 1, 0)
    assert (c2.expected, c2.unexpected) == (0, 1)
    assert a.total.sent == 4 and a.total.expected == 8 and a.total.delivered == 5
    for t in (*a.per_connection.values(), a.total):
        assert t.delivered + t.lost_after_ack + t.lost_without_ack == t.expected
        assert t.delivered + t.duplicated + t.unexpected == t.arrivals


def test_reordering_is_per_sender():
    # Two senders interleaved arrive in each one's own order: nothing is reordered.
    arrivals = ((0, 0, 1), (1, 0, 2), (0, 1, 3), (1, 1, 4), (1, 3, 5), (1, 2, 6))
    a = Account.of([ConnLog(0, sent=(0, 1), member=True, arrivals=arrivals), ConnLog(1, sent=(0, 1, 2, 3), member=True)], "broadcast")
    assert a.per_connection[0].reordered == 1  # 1:2 after 1:3
    # A duplicate is a duplicate, not a reordering too.
    b = Account.of([ConnLog(0, sent=(0, 1), arrivals=((0, 0, 1), (0, 1, 2), (0, 0, 3)))], "echo")
    assert b.total.duplicated == 1 and b.total.reordered == 0


def test_the_account_matches_a_brute_force_count_on_random_histories():
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(0, 30)
        sent = tuple(range(n))
        acked = tuple(s for s in sent if rng.random() < 0.5)
        arrivals = [(0, rng.randint(-2, n + 2), i) for i in range(rng.randint(0, 40))]
        t = Account.of([ConnLog(0, sent=sent, acked=acked, arrivals=tuple(arrivals))], "echo").total
        got = [seq for _, seq, _ in arrivals if seq in sent]
        firsts = list(dict.fromkeys(got))
        assert t.delivered == len(firsts)
        assert t.duplicated == len(got) - len(firsts)
        assert t.unexpected == len(arrivals) - len(got)
        missing = set(sent) - set(firsts)
        assert t.lost_after_ack == len(missing & set(acked)) and t.lost_without_ack == len(missing - set(acked))
        assert t.reordered == sum(1 for i, s in enumerate(firsts) if any(p > s for p in firsts[:i]))


def test_fractions_have_named_denominators_and_none_when_there_is_nothing():
    t = Tally(sent=8, unsent=2, expected=8, delivered=6, lost_after_ack=1, lost_without_ack=1, duplicated=1, arrivals=7)
    d = t.to_dict()
    assert list(d)[: len(OUTCOMES)] == list(OUTCOMES)
    assert d["sent"] == {"count": 8, "fraction": 0.8}
    assert d["delivered"]["fraction"] == 0.75 and d["duplicated"]["fraction"] == round(1 / 7, 6)
    assert Tally().fraction("delivered") is None and Tally().to_dict()["reordered"] == {"count": 0, "fraction": None}


def test_recovery_runs_from_each_fault_end_to_the_first_delivery_after_it():
    logs = [
        ConnLog(0, sent=(0, 1, 2), arrivals=((0, 0, 1_000_000), (0, 1, 5_000_000), (0, 2, 9_000_000))),
        ConnLog(1, sent=(0, 1), arrivals=((1, 0, 2_000_000), (1, 0, 4_000_000), (1, 1, 12_000_000))),  # the duplicate is no delivery
    ]
    faults = [FaultWindow(2_500_000, 3_000_000, "kill", "srv"), FaultWindow(10_000_000, 20_000_000), FaultWindow(1, None)]
    a = Account.of(logs, "echo", faults)
    first, late, open_ = a.recoveries
    assert first.first_delivery_ms == 2.0 and dict(first.per_connection_ms) == {0: 2.0, 1: 9.0}
    assert first.to_dict()["slowest_connection_ms"] == 9.0 and first.to_dict()["connections_recovered"] == 2
    assert late.first_delivery_ms is None and late.to_dict()["connections_recovered"] == 0
    assert open_.first_delivery_ms is None
    assert a.to_dict()["recovery"][0]["kind"] == "kill"


def test_recovery_counts_only_connections_that_expect_messages():
    # A connection that sends nothing (echo: beyond --senders) or is not in the room (broadcast) has nothing to recover:
    # counting it would show a run where every connection that could recover did as "1/3 connections".
    fault = [FaultWindow(1_000_000, 2_000_000)]
    echo = Account.of([ConnLog(0, sent=(0,), arrivals=((0, 0, 3_000_000),)), ConnLog(1), ConnLog(2)], "echo", fault)
    assert echo.recoveries[0].to_dict()["connections"] == 1 and echo.recoveries[0].to_dict()["connections_recovered"] == 1
    room = [
        ConnLog(0, sent=(0,), arrivals=((0, 0, 3_000_000),), member=True),
        ConnLog(1, arrivals=((0, 0, 4_000_000),), member=True),
        ConnLog(2, member=False),
    ]
    rec = Account.of(room, "broadcast", fault).recoveries[0]
    assert rec.to_dict()["connections"] == 2 and rec.to_dict()["connections_recovered"] == 2
    assert dict(rec.per_connection_ms) == {0: 1.0, 1: 2.0}


def test_a_fault_of_the_fault_log_becomes_a_window_on_the_engine_clock():
    f = Fault("kill", "srv", started_mono=1.0, ended_mono=2.0, started_wall=1700000000.25, ended_wall=1700000001.5)
    w = FaultWindow.from_fault(f)
    assert (w.start_ns, w.end_ns, w.kind, w.target) == (1_700_000_000_250_000_000, 1_700_000_001_500_000_000, "kill", "srv")
    assert FaultWindow.from_fault(Fault("kill", "srv", 1.0, started_wall=5.0)).end_ns is None


def test_full_jitter_stays_under_the_exponential_ceiling():
    p = ReconnectPolicy(base_s=0.1, cap_s=1.0, max_attempts=3)
    assert [p.ceiling_s(k) for k in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    rng = random.Random(1)
    delays = [p.delay_s(k, rng) for k in range(6) for _ in range(200)]
    assert all(0 <= d <= 1.0 for d in delays) and min(delays) < 0.01  # full jitter: down to zero
    assert max(p.delay_s(0, rng) for _ in range(200)) <= 0.1
    assert not p.gives_up_after(1) and p.gives_up_after(2)
    assert not ReconnectPolicy().gives_up_after(10_000)
    assert p.ceiling_s(10_000) == 1.0  # no overflow however long it tries


def test_without_jitter_every_client_sleeps_the_whole_ceiling():
    p = ReconnectPolicy(base_s=0.1, cap_s=1.0, jitter=False)
    rng = random.Random(1)
    assert [p.delay_s(k, rng) for k in range(5)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert ReconnectPolicy(**{"base_s": 0.1, "cap_s": 1.0, "jitter": False}) == p  # as a spec crosses to a generator process


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("on", ReconnectPolicy()),
        ("0.2", ReconnectPolicy(0.2, 5.0)),
        ("0.1,2", ReconnectPolicy(0.1, 2.0)),
        ("0.1,2,7", ReconnectPolicy(0.1, 2.0, 7)),
    ],
)
def test_the_reconnect_option_parses(text, policy):
    assert ReconnectPolicy.parse(text) == policy


@pytest.mark.parametrize("text", ["", "x", "0.1,x", "1,2,3,4", "0,1", "2,1", "0.1,1,-1", "nan", "0.1,inf"])
def test_a_bad_reconnect_option_says_what_it_expects(text):
    with pytest.raises(ValueError):
        ReconnectPolicy.parse(text)


def test_spec_reconnect_and_resume_checks_and_round_trip():
    spec = LoadSpec(URL, reconnect=ReconnectPolicy(0.1, 1.0, 5), resume="last-seq")
    assert spec.counting and LoadSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["reconnect"] == {"base_s": 0.1, "cap_s": 1.0, "max_attempts": 5}
    assert LoadSpec(URL, account=True).counting and not LoadSpec(URL).counting
    # A run that does not count stores the spec it always stored.
    assert not {"account", "reconnect", "resume"} & set(LoadSpec(URL).to_dict())
    with pytest.raises(ValueError, match="needs reconnect"):
        LoadSpec(URL, resume="last-seq")
    with pytest.raises(ValueError, match="unknown resume"):
        LoadSpec(URL, reconnect=ReconnectPolicy(), resume="telepathy")
    with pytest.raises(ValueError, match="open model"):
        LoadSpec(URL, reconnect=ReconnectPolicy(), closed_loop=True, rate=math.inf)


def test_resume_adapters_say_how_to_rejoin():
    assert {"none", "last-seq", "socketio-recovery"} <= set(resume_adapters())
    none = get_resume_class("none")()
    none.seen({"op": "broadcast", "n": 4})
    assert none.join("r") == {"op": "join", "room": "r"} and none.url(URL) == URL
    last = get_resume_class("last-seq")()
    assert isinstance(last, LastSeqResume) and isinstance(last, Resume)
    assert last.join("r") == {"op": "join", "room": "r"}  # nothing seen yet: a plain join
    for msg in ({"op": "broadcast", "n": 4}, {"op": "joined"}, {"op": "broadcast", "n": True}, {"op": "broadcast", "n": 5}):
        last.seen(msg)
    assert last.join("r") == {"op": "join", "room": "r", "after": 5}
    with pytest.raises(ValueError, match="unknown resume"):
        get_resume_class("nope")


def test_socketio_recovery_reconnects_with_the_session_and_the_last_offset():
    from harness.load.clients.sio_raw import RawSocketIOClient

    def client() -> RawSocketIOClient:
        return RawSocketIOClient("http://127.0.0.1:9", lambda msg: None, lambda reason: None)

    adapter = get_resume_class("socketio-recovery")()
    first = client()
    adapter.before_connect(first)
    assert first.auth is None  # a first connection asks for nothing
    first._on_connected(b'{"sid": "s1", "pid": "p1"}')
    adapter.after_connect(first)
    first._on_text(b'42["broadcast",{"c":0,"seq":0},"17"]')
    assert (first.pid, first.offset) == ("p1", "17")
    failed = client()  # an attempt that never connected learns nothing; the next one still knows the session
    adapter.before_connect(failed)
    nxt = client()
    adapter.before_connect(nxt)
    assert failed.auth == nxt.auth == {"pid": "p1", "offset": "17"}
    assert get_resume_class("socketio-recovery").transports == ("socketio-raw",)


def test_messages_between_processes_are_typed_and_pickle():
    for msg in (Ready(), Start(1), Joined(3), Go(2), Failed("Traceback...\nRuntimeError: boom\n")):
        assert pickle.loads(pickle.dumps(msg)) == msg
    assert Failed("Traceback...\nRuntimeError: boom\n").last_line == "RuntimeError: boom"
    with pytest.raises(AttributeError):
        Start(1).start_ns = 2  # type: ignore[misc]


def _report(index: int, logs: tuple[ConnLog, ...] = (), reconnected: int = 0) -> GeneratorReport:
    from harness.load.histogram import LatencyRecorder

    empty = LatencyRecorder().encode()
    return GeneratorReport(
        index=index, pid=1, latency=empty, service=empty, lag=empty, clamped=0, sent=2, received=2, unexpected=0,
        outstanding=0, unsent=0, connected=1, members=0, connect_ms=(1.0,), failed_connects={}, dropped=1, bytes_in=0,
        bytes_out=0, cpu_s=0.1, wall_s=1.0, cpu=0.1, window_s=1.0, errors={}, reconnected=reconnected, logs=logs,
    )  # fmt: skip


def test_merge_builds_the_account_of_a_counting_run_across_processes():
    spec = LoadSpec(URL, connections=2, processes=2, reconnect=ReconnectPolicy())
    parts = [
        _report(0, (ConnLog(0, sent=(0, 1), arrivals=((0, 0, 5), (0, 1, 6)), reconnects=1),), reconnected=1),
        _report(1, (ConnLog(1, sent=(0, 1), arrivals=((1, 0, 5),)),)),
    ]
    r = merge_results(spec, parts, [], 0, 1.0, faults=[FaultWindow(0, 5)])
    assert r.reconnected == 1
    assert r.account is not None and r.account["total"]["delivered"]["count"] == 3
    assert r.account["total"]["lost_without_ack"]["count"] == 1 and r.account["total"]["reconnects"] == 1
    assert r.account["recovery"][0]["first_delivery_ms"] == 0.0
    # A run that does not count has no account, and its stored samples are the ones it always had.
    plain = merge_results(LoadSpec(URL, connections=2, processes=2), [_report(0), _report(1)], [], 0, 1.0)
    assert plain.account is None and plain.reconnected == 0
    assert set(plain.to_samples()) == set(merge_results(LoadSpec(URL, connections=2, processes=2), [_report(0)], [], 0, 1.0).to_samples())
