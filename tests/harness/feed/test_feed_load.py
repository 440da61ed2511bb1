"""The SSE and long-polling clients through the real load engine, against the test feed server: exact accounts."""

from __future__ import annotations

import pytest

import harness.feed  # noqa: F401 - registers the feed's adapters
from harness.load import LoadSpec, ReconnectPolicy, run_load
from tests.harness.feed.feed_server import FeedServer
from tests.utils import UNIT

pytestmark = pytest.mark.slow

TRANSPORTS = ["sse", "longpoll"]


def _spec(server: FeedServer, transport: str, **kw: object) -> LoadSpec:
    base: dict[str, object] = dict(
        url=server.base,
        transport=transport,
        mode="broadcast",
        senders=1,
        rate=40,
        duration_s=1.0,
        connect_timeout_s=5 * UNIT,
        grace_s=1 * UNIT,
    )
    base.update(kw)
    return LoadSpec(**base)  # type: ignore[arg-type]


def _invariants(t: dict) -> None:
    assert t["delivered"]["count"] + t["lost_after_ack"]["count"] + t["lost_without_ack"]["count"] == t["expected"]
    assert t["delivered"]["count"] + t["duplicated"]["count"] + t["unexpected"]["count"] == t["arrivals"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_listener_gets_every_broadcast_exactly_once(transport):
    with FeedServer() as server:
        r = run_load(_spec(server, transport, connections=4, processes=2, account=True))
    assert r.account is not None and r.members == 4, r.errors
    total = r.account["total"]
    _invariants(total)
    sent = total["sent"]["count"]
    assert sent > 10 and server.stats.accepted == sent
    assert total["expected"] == 4 * sent and total["delivered"]["count"] == 4 * sent
    assert total["duplicated"]["count"] == total["unexpected"]["count"] == 0
    assert r.received == 4 * sent and r.unexpected == 0 and r.errors == []
    assert r.bytes_in > 4 * sent * 64 and r.bytes_out > sent * 64  # every delivered payload, every POSTed one


@pytest.mark.parametrize(("transport", "kick_mode"), [("sse", "close"), ("longpoll", "status"), ("longpoll", "close")])
@pytest.mark.parametrize("resume", ["last-event-id", "none"])
def test_a_dropped_member_resumes_from_its_last_event(transport, kick_mode, resume):
    policy = ReconnectPolicy(base_s=0.2 * UNIT, cap_s=0.2 * UNIT)
    with FeedServer(kick_after=10, kick_mode=kick_mode) as server:
        r = run_load(_spec(server, transport, connections=3, duration_s=1.5, reconnect=policy, resume=resume))
    assert r.account is not None and server.stats.kicked == 1, r.errors
    total = r.account["total"]
    _invariants(total)
    assert total["duplicated"]["count"] == total["unexpected"]["count"] == 0
    assert total["lost_without_ack"]["count"] == 0  # the sender had an ack for every broadcast
    if kick_mode == "close" and transport == "longpoll":
        # aiohttp retries a GET whose kept-alive connection was closed: the poll may come back without a drop at all.
        assert r.reconnected <= 1
    else:
        assert r.reconnected == 1 and r.dropped == 1
    if resume == "last-event-id" or r.reconnected == 0:
        assert total["lost_after_ack"]["count"] == 0 and total["delivered"]["count"] == total["expected"]
    else:
        # Rejoined at the HEAD: what came while it was away is lost, and the account says so. Unless the server
        # dropped the sender (it cannot tell which member sends): nothing is sent while the sender is away.
        (kicked,) = [c for c, t in r.account["connections"].items() if t["reconnects"]]
        if kicked != "0":
            assert r.account["connections"][kicked]["lost_after_ack"]["count"] > 0


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("epoch", "refill"), [(True, 0), (False, 0), (True, 200)], ids=["epoch", "no-epoch", "epoch-numbered-past"])
def test_a_restart_that_lost_the_history_shows_as_resets_and_loss(transport, epoch, refill):
    """Every member resumes after the restart and gets a reset: ``epoch`` from a server with one (the id it sends
    back is of the old epoch), ``future`` from one without (the new server has not reached its number yet).
    ``epoch-numbered-past``: the new server numbers 200 foreign broadcasts before anyone is back, past every
    member's number: without an epoch that is the silent gap (a replay of the new server's tail, no reset); with
    one, a reset with reason ``epoch``, in the account as every reset is."""
    policy = ReconnectPolicy(base_s=0.05 * UNIT, cap_s=0.1 * UNIT)
    with FeedServer(restart_after=30, down_s=0.05 * UNIT, epoch=epoch, refill=refill) as server:
        r = run_load(_spec(server, transport, connections=3, rate=50, duration_s=1.6, reconnect=policy, resume="last-event-id"))
    assert r.account is not None and server.stats.restarts == 1, r.errors
    stats = server.stats
    total = r.account["total"]
    _invariants(total)
    # Every member resumed after a number of the old server: each got a reset, and each reset is in the account.
    assert len(stats.resets) >= 1 and all(reason == ("epoch" if epoch else "future") for *_, reason in stats.resets)
    assert total["unexpected"]["count"] == len(stats.resets)
    assert total["duplicated"]["count"] == 0
    if refill:  # numbered past every member's point: only the epoch told them
        assert all(after < head for _, after, head, _ in stats.resets)
    # What the account calls lost is exactly what the resets skipped (the old server's unsent tail, the new one's
    # numbers before the member came back, the refill's foreign ones excepted), plus, at every member, broadcasts no
    # server ever numbered. No refill broadcast arrived: each would be one more unexpected arrival (its sender,
    # REFILL_SENDER, is no connection of the run).
    (old_head,) = stats.heads_before_restart
    skipped = sum((old_head - after) + head - refill for _, after, head, _ in stats.resets)
    never_numbered = total["sent"]["count"] - stats.accepted
    assert total["lost_after_ack"]["count"] + total["lost_without_ack"]["count"] == skipped + 3 * never_numbered
    assert total["delivered"]["count"] > 0
    if transport == "sse":  # a poll cut by the restart may come back through aiohttp's retry of a GET, without a drop
        assert r.reconnected >= 3


@pytest.mark.slow  # starts a real server
@pytest.mark.parametrize(("transport", "kick_mode"), [("sse", "close"), ("longpoll", "status")])
def test_spike_load_drives_a_feed_and_resumes_a_dropped_member(transport, kick_mode, capfd):
    """``spike load`` knows the feed's clients and resume adapter: a member kicked mid-run comes back with its Last-Event-ID
    (or cursor) and the account shows nothing lost or repeated."""
    import json

    from typer.testing import CliRunner

    from harness import cli

    with FeedServer(kick_after=10, kick_mode=kick_mode) as server:
        res = CliRunner().invoke(
            cli.app,
            ["load", f"http://127.0.0.1:{server.port}", "--transport", transport, "--mode", "broadcast", "--senders", "1"]
            + ["-c", "3", "-r", "20", "-d", str(1.0 * UNIT), "--reconnect", "on", "--resume", "last-event-id", "--json"],
        )
    assert res.exit_code == 0, res.output
    printed = capfd.readouterr().out or res.output
    out = json.loads(printed[printed.index("{") : printed.rindex("}") + 1])
    total = out["account"]["total"]
    assert total["delivered"]["count"] == total["expected"] > 0
    assert total["lost_after_ack"]["count"] == total["duplicated"]["count"] == 0
    assert out["reconnected"] >= 1
