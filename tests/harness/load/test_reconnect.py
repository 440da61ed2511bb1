"""The account and reconnecting clients end to end, over real sockets, against servers that misbehave on purpose."""

from __future__ import annotations

import sys

import pytest

from harness.faults import FaultLog, kill_and_restart
from harness.load import LoadSpec, run_load
from harness.load.spec import ReconnectPolicy
from harness.process import ServerProcess
from tests.harness.load.servers import ROOT, faulty_server, reference_server, sio_recovery_server
from tests.utils import UNIT

pytestmark = pytest.mark.slow

#: Each action on its own sequence numbers, none adjacent to another (a reordered echo waits for the next one).
PLAN = {"drop": [3, 17], "ack-drop": [6], "dup": [9, 20], "reorder": [12], "bogus": [15]}


def _spec(port: int, **kw) -> LoadSpec:
    base = dict(url=f"ws://127.0.0.1:{port}/", connect_timeout_s=5 * UNIT, grace_s=1 * UNIT)
    base.update(kw)
    return LoadSpec(**base)


def _invariants(t: dict) -> None:
    assert t["delivered"]["count"] + t["lost_after_ack"]["count"] + t["lost_without_ack"]["count"] == t["expected"]
    assert t["delivered"]["count"] + t["duplicated"]["count"] + t["unexpected"]["count"] == t["arrivals"]


def test_the_account_is_exact_against_a_server_that_drops_duplicates_and_reorders_known_messages():
    conns = 2
    with faulty_server(PLAN) as (port, _):
        r = run_load(_spec(port, connections=conns, rate=40, duration_s=1.0, account=True))
    assert r.account is not None and r.connected == conns
    total = r.account["total"]
    for conn in r.account["connections"].values():
        assert conn["sent"]["count"] > max(s for seqs in PLAN.values() for s in seqs)  # every planned seq was sent
        _invariants(conn)
        assert conn["lost_without_ack"]["count"] == 2
        assert conn["lost_after_ack"]["count"] == 1
        assert conn["duplicated"]["count"] == 2
        assert conn["reordered"]["count"] == 1
        assert conn["unexpected"]["count"] == 1
        assert conn["delivered"]["count"] == conn["sent"]["count"] - 3
    assert total["sent"]["count"] == r.sent and total["unsent"] == r.unsent
    assert total["sent"]["fraction"] == pytest.approx(r.sent / (r.sent + r.unsent))
    assert total["lost_without_ack"]["count"] == 2 * conns and total["lost_after_ack"]["count"] == conns
    assert total["duplicated"]["count"] == 2 * conns and total["reordered"]["count"] == conns and total["unexpected"]["count"] == conns
    assert total["lost_after_ack"]["fraction"] == pytest.approx(conns / total["expected"], abs=1e-6)
    _invariants(total)
    # The engine's own counters agree: three echoes never came back per connection.
    assert r.lost == 3 * conns


def test_a_plain_run_takes_an_acknowledgement_as_protocol_not_as_an_unexpected_message():
    # The protocol lets any server acknowledge; a run that does not count must not call the ack unexpected (exit 3).
    # Through the generic message path (the raw client's echo pipeline expects replies in order and nothing else).
    with faulty_server({"ack-drop": [3]}) as (port, _):
        r = run_load(_spec(port, connections=1, rate=40, duration_s=0.5, transport="ws-websockets"))
    assert r.account is None and r.sent > 3
    assert r.unexpected == 0 and r.lost == 1  # the acknowledged echo never came: lost, but the ack itself is no stray


@pytest.mark.parametrize(
    ("plan", "lost", "unexpected"),
    [
        ({"drop": [3]}, 1, 0),
        ({"drop": [3, 4, 10]}, 3, 0),
        ({"dup": [5]}, 0, 1),
        ({"reorder": [5]}, 0, 0),
        ({"reorder": [5], "drop": [9]}, 1, 0),
    ],
)
def test_the_raw_echo_pipeline_counts_a_lost_or_late_reply_as_the_generic_path_does(plan, lost, unexpected):
    # The raw client's bulk echo path expected replies strictly in order: one lost echo made it take every later reply
    # for a stranger (17 lost and 16 unexpected for one drop in 20). It now skips the missing reply and takes a late one.
    for transport in ("ws", "ws-websockets"):
        with faulty_server(plan) as (port, _):
            r = run_load(_spec(port, connections=2, rate=40, duration_s=0.5, transport=transport))
        assert r.sent > 2 * (max(s for seqs in plan.values() for s in seqs) + 1), (transport, r)
        assert (r.lost, r.unexpected, r.received) == (2 * lost, 2 * unexpected, r.sent - 2 * lost), (transport, r.errors)


def test_broadcast_loss_after_and_without_acknowledgement():
    # 4 members, 1 sender: seq 4 reaches the sender only (acknowledged, lost at 3 members); seq 6 reaches nobody.
    with faulty_server({"drop-others": [4], "drop-all": [6]}) as (port, _):
        r = run_load(_spec(port, mode="broadcast", connections=4, senders=1, rate=40, duration_s=0.5, processes=2, account=True))
    assert r.account is not None and r.members == 4
    total = r.account["total"]
    sent = total["sent"]["count"]
    assert sent > 6 and total["expected"] == 4 * sent
    assert total["lost_after_ack"]["count"] == 3
    assert total["lost_without_ack"]["count"] == 4
    assert total["delivered"]["count"] == 4 * sent - 7
    assert total["duplicated"]["count"] == total["unexpected"]["count"] == total["reordered"]["count"] == 0
    _invariants(total)
    sender = r.account["connections"]["0"]
    assert sender["lost_after_ack"]["count"] == 0 and sender["lost_without_ack"]["count"] == 1


def test_a_dropped_connection_reconnects_and_keeps_its_sequence_numbers():
    policy = ReconnectPolicy(base_s=0.05 * UNIT, cap_s=0.2 * UNIT)
    with faulty_server({"close": [5]}) as (port, _):
        r = run_load(_spec(port, connections=2, rate=40, duration_s=1.0, reconnect=policy))
    assert r.account is not None
    assert r.dropped == 2 and r.reconnected == 2
    for conn in r.account["connections"].values():
        _invariants(conn)
        assert conn["reconnects"] == 1
        assert conn["lost_without_ack"]["count"] >= 1  # seq 5, and whatever was in flight when the close came
        assert conn["delivered"]["count"] > 5  # delivered again after the reconnect, numbering on from where it was
        assert conn["duplicated"]["count"] == conn["unexpected"]["count"] == 0


@pytest.mark.parametrize("resume", ["last-seq", "none"])
def test_a_resuming_client_gets_back_what_it_missed(resume):
    policy = ReconnectPolicy(base_s=0.2 * UNIT, cap_s=0.2 * UNIT)
    with reference_server("ws", "--numbered", "--kick-after", "10") as (port, _):
        r = run_load(_spec(port, mode="broadcast", connections=3, senders=1, rate=40, duration_s=1.5, reconnect=policy, resume=resume))
    assert r.account is not None and r.reconnected == 1
    total = r.account["total"]
    _invariants(total)
    assert total["reconnects"] == 1 and total["duplicated"]["count"] == 0
    assert total["expected"] == 3 * total["sent"]["count"]
    # The sender's own copy acknowledged every broadcast: whatever the kicked member missed was lost after acknowledgement.
    assert total["lost_without_ack"]["count"] == 0
    if resume == "last-seq":  # ... and came back in the replay
        assert total["lost_after_ack"]["count"] == 0 and total["delivered"]["count"] == total["expected"]
    else:  # without a replay the kicked member missed what was sent while it was away: what last-seq's 0 above proves
        assert total["lost_after_ack"]["count"] > 0 and total["delivered"]["count"] < total["expected"]


@pytest.mark.parametrize("resume", ["socketio-recovery", "none"])
def test_socketio_connection_state_recovery_replays_what_a_dropped_member_missed(resume):
    policy = ReconnectPolicy(base_s=0.2 * UNIT, cap_s=0.2 * UNIT)
    with sio_recovery_server("--kick-after", "10") as (port, _):
        r = run_load(
            _spec(
                port,
                url=f"http://127.0.0.1:{port}",
                transport="socketio-raw",
                mode="broadcast",
                connections=3,
                senders=1,
                rate=40,
                duration_s=1.5,
                reconnect=policy,
                resume=resume,
            )
        )
    assert r.account is not None and r.reconnected == 1, r.errors
    total = r.account["total"]
    _invariants(total)
    assert total["lost_without_ack"]["count"] == 0 and total["duplicated"]["count"] == 0
    if resume == "socketio-recovery":  # the session came back with its room, and the events after its last offset
        assert total["lost_after_ack"]["count"] == 0 and total["delivered"]["count"] == total["expected"]
    else:  # without recovery the dropped member missed what was sent while it was away
        assert total["lost_after_ack"]["count"] > 0 and total["delivered"]["count"] < total["expected"]


def test_socketio_recovery_needs_the_raw_socketio_client():
    with pytest.raises(ValueError, match="needs transport socketio-raw"):
        LoadSpec("http://127.0.0.1:9", transport="socketio", reconnect=ReconnectPolicy(), resume="socketio-recovery")


def _wait_for_clients(pid: int, port: int, n: int, timeout: float) -> None:
    """Wait until the server process ``pid`` holds ``n`` established connections on ``port``."""
    import time

    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conns = psutil.Process(pid).net_connections("tcp")
        if sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"the server never held {n} connections")


def test_a_killed_and_restarted_server_shows_reconnections_loss_and_recovery(tmp_path):
    import threading
    import time

    server = ServerProcess(
        "numbered",
        [sys.executable, "-m", "harness.load.reference_server", "--numbered", "--port", "{port}"],
        cwd=ROOT,
        log_path=tmp_path / "server.log",
        ready_timeout=20 * UNIT,
    )
    log = FaultLog()
    policy = ReconnectPolicy(base_s=0.05 * UNIT, cap_s=0.2 * UNIT)
    errors: list[BaseException] = []
    with server:
        assert server.pid is not None and server.port is not None
        pid, port = server.pid, server.port
        # Long enough for the restart (a fresh interpreter) and for deliveries after it, on a busy machine too.
        spec = LoadSpec(
            f"ws://127.0.0.1:{port}/",
            mode="broadcast",
            connections=3,
            rate=40,
            duration_s=4.0 * UNIT,
            reconnect=policy,
            resume="last-seq",
            connect_timeout_s=5 * UNIT,
            grace_s=1 * UNIT,
        )

        def fault() -> None:
            try:
                _wait_for_clients(pid, port, 3, 30 * UNIT)
                time.sleep(0.3 * UNIT)  # some broadcasts first
                kill_and_restart(server, down_for=0.3 * UNIT, log=log)
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)

        t = threading.Thread(target=fault)
        t.start()
        try:
            r = run_load(spec, faults=log)
        finally:
            t.join()
    assert not errors, errors
    assert r.account is not None and r.connected == 3
    assert r.dropped == 3 and r.reconnected == 3, r.errors
    total = r.account["total"]
    _invariants(total)
    assert total["reconnects"] == 3
    # The sends due while the server was down were skipped, not sent: the account says how many.
    assert total["unsent"] > 0 and total["sent"]["fraction"] < 1.0
    (rec,) = r.account["recovery"]
    assert rec["kind"] == "kill" and rec["connections_recovered"] == 3 and rec["first_delivery_ms"] is not None
    assert rec["first_delivery_ms"] >= 0
