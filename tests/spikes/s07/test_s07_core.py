"""Spike 7's logic without sockets: the room's state, the log and its trimming, resume requests, the outbox."""

from __future__ import annotations

import itertools
import random

import pytest

from harness.load.clients.resume import OutboxLastSeqResume, OutboxResume, get_resume_class
from spikes.s07_error_recovery import core


def _ops(n: int) -> list[tuple[int, int, int]]:
    return [(c, seq, 1000 + seq * 10 + c) for seq in range(n) for c in range(3)]


def test_replicas_that_applied_the_same_operations_hash_the_same_in_any_order():
    ops = _ops(30)
    shuffled = ops[:]
    random.Random(7).shuffle(shuffled)
    a, b = core.Room("r"), core.Room("r")
    for op in ops:
        a.apply(*op)
    for op in shuffled:
        b.apply(*op)
    assert a.state_hash() == b.state_hash()
    assert a.state() == b.state()
    assert len(a.state()["chat"]) == 30 and str(a.note).count("[") == 30


def test_applying_is_idempotent_by_sender_and_seq_and_a_missing_operation_changes_the_hash():
    ops = _ops(9)
    a = core.Room("r")
    assert all(a.apply(*op) for op in ops)
    h = a.state_hash()
    assert not any(a.apply(*op) for op in ops)  # every copy dropped
    assert a.state_hash() == h
    assert core.hash_of("r", ops[:-1]) != h


def test_the_log_numbers_entries_and_answers_a_resume_with_what_came_after():
    log = core.RoomLog(max_len=100, max_age_s=60)
    for i in range(5):
        assert log.append({"i": i}, now=0.0) == i + 1
    assert [m["n"] for m in log.since(2)] == [3, 4, 5]
    assert log.since(5) == []
    with pytest.raises(ValueError):
        log.since(6)


def test_the_log_is_trimmed_by_length_and_age_and_an_older_resume_is_a_gap():
    log = core.RoomLog(max_len=3, max_age_s=10)
    for i in range(5):
        log.append({"i": i}, now=float(i))
    assert log.first == 3 and log.head == 5 and log.trimmed == 2
    assert [m["n"] for m in log.since(2)] == [3, 4, 5]  # exactly what it holds: no gap
    with pytest.raises(core.Gap) as gap:
        log.since(1)
    assert gap.value.first == 3
    log.trim(now=13.5)  # entries 3 and 4 (appended at 2 and 3) are older than 10 s, 5 (at 4) is not
    assert log.first == 5 and [m["n"] for m in log.since(4)] == [5]
    log.trim(now=100.0)
    assert log.first == log.head + 1 == 6 and log.since(5) == []
    with pytest.raises(core.Gap):
        log.since(4)


def test_a_log_with_no_room_is_refused():
    with pytest.raises(ValueError):
        core.RoomLog(max_len=0)


@pytest.mark.parametrize(
    ("msg", "code", "close"),
    [
        ({"op": "join", "room": "r", "after": 99}, "future-after", core.CLOSE_FUTURE_SEQ),
        ({"op": "join", "room": "r", "after": -1}, "bad-after", core.CLOSE_BAD_RESUME),
        ({"op": "join", "room": "r", "after": "3"}, "bad-after", core.CLOSE_BAD_RESUME),
        ({"op": "join", "room": "r", "after": 2.5}, "bad-after", core.CLOSE_BAD_RESUME),
        ({"op": "join", "room": "r", "after": True}, "bad-after", core.CLOSE_BAD_RESUME),
        ({"op": "join", "room": "nowhere", "after": 0}, "unknown-room", core.CLOSE_UNKNOWN_ROOM),
        ({"op": "join", "room": 5}, "bad-room", core.CLOSE_BAD_RESUME),
    ],
)
def test_malformed_resume_requests_are_named_with_a_close_code(msg, code, close):
    with pytest.raises(core.ResumeError) as err:
        core.parse_resume(msg, {"r": 10})
    assert err.value.code == code and err.value.close == close
    assert err.value.frame()["op"] == "error" and err.value.close in core.CLOSE_CODES


def test_a_valid_resume_and_a_plain_join():
    assert core.parse_resume({"room": "r", "after": 10}, {"r": 10}) == ("r", 10)
    assert core.parse_resume({"room": "r", "after": 0}, {"r": 10}) == ("r", 0)
    assert core.parse_resume({"room": "new"}, {}) == ("new", None)


def test_the_outbox_keeps_messages_until_acknowledged_and_resends_them_in_order():
    box = core.Outbox()
    sent = [box.add({"op": "broadcast", "d": str(i)}) for i in range(5)]
    assert [m["seq"] for m in sent] == [0, 1, 2, 3, 4]
    assert box.ack(1) and box.ack(3) and not box.ack(3)
    assert [m["seq"] for m in box.to_resend()] == [0, 2, 4]
    assert box.resent == 3


class _FakeClient:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, msg: dict) -> None:
        self.sent.append(msg)


@pytest.mark.parametrize("name", ["outbox", "outbox-last-seq"])
def test_the_outbox_resume_adapter_resends_unacknowledged_messages_after_the_rejoin_only(name):
    adapter = get_resume_class(name)()
    assert isinstance(adapter, OutboxResume)
    first = _FakeClient()
    adapter.after_connect(first)
    for seq in range(4):
        adapter.sent({"op": "broadcast", "room": "r", "c": 2, "seq": seq, "t": seq})
    adapter.seen({"op": "joined", "room": "r"})  # the first join: nothing to resend
    adapter.seen({"op": "ack", "c": 2, "seq": 0})
    adapter.seen({"op": "broadcast", "c": 2, "seq": 1, "n": 7})  # own copy: acknowledged
    adapter.seen({"op": "broadcast", "c": 5, "seq": 2, "n": 8})  # another sender's: not ours
    assert first.sent == []
    second = _FakeClient()
    adapter.after_connect(second)
    join = adapter.join("r")
    assert ("after" in join) == (name == "outbox-last-seq")
    if name == "outbox-last-seq":
        assert join["after"] == 8
    assert second.sent == []  # nothing before the server answers the join
    adapter.seen({"op": "joined", "room": "r"})
    assert [(m["c"], m["seq"]) for m in second.sent] == [(2, 2), (2, 3)]
    assert adapter.resent == 2
    assert isinstance(get_resume_class("outbox-last-seq")(), OutboxLastSeqResume)


def test_op_kinds_cover_the_tabletop_workload():
    assert {core.op_kind(s) for s in itertools.islice(itertools.count(), 3)} == {"move", "chat", "edit"}


def test_a_room_rebuilt_from_its_checkpoint_hashes_the_same_and_goes_on_applying_alike():
    ops = _ops(40)
    a = core.Room("r")
    for op in ops[:60]:
        a.apply(*op)
    import json

    b = core.Room.restore("r", json.loads(json.dumps(a.checkpoint())))
    assert b.state_hash() == a.state_hash()
    assert not b.apply(*ops[0])  # already applied: the ids came back too
    for op in ops[60:]:
        a.apply(*op)
        b.apply(*op)
    assert b.state_hash() == a.state_hash()


def test_a_member_that_saw_no_broadcast_resumes_from_where_its_join_started():
    """The storm's lesson: without the joined frame's ``n``, a member cut before its first broadcast rejoined with no ``after``."""
    adapter = get_resume_class("outbox-last-seq")()
    adapter.after_connect(_FakeClient())
    adapter.seen({"op": "joined", "room": "r", "n": 2})
    assert adapter.join("r") == {"op": "join", "room": "r", "after": 2}
