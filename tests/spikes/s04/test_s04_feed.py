"""Spike 4's room model (``poc/feed.py``) without a server: numbering, history, resume points, bounded subscribers, validation."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest

from spikes.s04_transport.poc.feed import (
    Feed,
    ProtocolError,
    activity_broadcast,
    activity_event,
    new_epoch,
    parse_epoch,
    parse_point,
    parse_resume,
    validate_broadcast,
)
from spikes.s04_transport.poc.longpoll_server import parse_hold
from tests.spikes.s04.conftest import event


def _publish(feed: Feed, room: str, count: int, start: int = 1) -> list[int]:
    return [feed.publish(event(room, i)) for i in range(start, start + count)]


def test_broadcasts_are_numbered_per_room_from_one():
    feed = Feed(history=10)
    assert _publish(feed, "a", 3) == [1, 2, 3]
    assert _publish(feed, "b", 2) == [1, 2]
    assert feed.rooms["a"].head == 3


@pytest.mark.parametrize(
    ("history", "published", "after", "start", "replayed", "reset"),
    [
        (10, 5, None, 5, [], None),  # a new client starts at the head
        (10, 5, 5, 5, [], None),  # up to date
        (10, 5, 2, 2, [3, 4, 5], None),
        (10, 5, 0, 0, [1, 2, 3, 4, 5], None),
        (3, 6, 3, 3, [4, 5, 6], None),  # exactly what the history holds
        (3, 6, 2, 6, [], "history"),  # 3 is gone
        (0, 2, 1, 2, [], "history"),  # no history at all
        (10, 5, 6, 5, [], "future"),
        (10, 0, 7, 0, [], "future"),  # a restarted server: the room is new
    ],
)
@pytest.mark.parametrize("named", [False, True], ids=["plain-n", "same-epoch"])
def test_resume_replays_what_the_history_holds_or_says_reset(history, published, after, start, replayed, reset, named):
    """A resume point of this server's epoch, or with none (a plain N), under the same rules."""
    feed = Feed(history=history)
    _publish(feed, "r", published)
    sub = feed.subscriber()
    resume = feed.join(sub, "r", after, feed.epoch if named else None)
    assert (resume.start, [n for n, _ in resume.replay], resume.reset) == (start, replayed, reset)
    assert resume.joined() == {"op": "joined", "room": "r", "n": start, "e": feed.epoch}
    assert resume.point() == f"{feed.epoch}-{start}"
    if reset:
        assert resume.reset_msg() == {"op": "reset", "room": "r", "n": published, "e": feed.epoch, "reason": reset}
    # Nothing falls between the replay and the live events.
    feed.publish(event("r", 99))
    assert [n for n, _ in sub.take()] == [published + 1]


@pytest.mark.parametrize("after", [0, 3, 5, 6, 12])
def test_a_resume_point_of_another_epoch_is_reset_whatever_its_n(after):
    """A restarted server (another epoch) that has numbered past the client's N, or not yet: a reset either way."""
    feed = Feed(history=10, epoch="0a0a0a0a")
    _publish(feed, "r", 5)
    sub = feed.subscriber()
    resume = feed.join(sub, "r", after, "ffffffff")
    assert (resume.start, resume.replay, resume.reset) == (5, [], "epoch")
    assert resume.joined() == {"op": "joined", "room": "r", "n": 5, "e": "0a0a0a0a"}
    assert resume.reset_msg() == {"op": "reset", "room": "r", "n": 5, "e": "0a0a0a0a", "reason": "epoch"}
    assert resume.point() == "0a0a0a0a-5"
    feed.publish(event("r", 99))
    assert [n for n, _ in sub.take()] == [6]
    assert feed.join(feed.subscriber(), "r", None, "ffffffff").reset is None  # no resume point: a new member, whatever it names


def test_each_feed_draws_its_own_epoch():
    a, b = new_epoch(), new_epoch()
    assert len(a) == 8 and int(a, 16) >= 0 and a != b
    assert Feed().epoch != Feed().epoch and Feed(epoch="x_1").epoch == "x_1"
    with pytest.raises(ProtocolError, match="epoch"):
        Feed(epoch="no spaces")


def test_text_resume_points_are_epoch_dash_n_or_a_plain_n():
    assert parse_point(None) is None
    assert parse_point("0a0a0a0a-42") == ("0a0a0a0a", 42) and parse_point("42") == (None, 42) and parse_point("E_1-0") == ("E_1", 0)
    for bad in ("", "-1", "abc", "a-b", "0a-", "0a--1", "0a-1.5", "a b-1", "x" * 33 + "-1", "0a-" + "9" * 31, "ä-1"):
        with pytest.raises(ProtocolError, match="EPOCH-N or a non-negative integer"):
            parse_point(bad)


@pytest.mark.parametrize("value", ["", "a b", "x" * 33, 5, True, [], "ä"])
def test_a_malformed_join_epoch_is_an_error(value):
    with pytest.raises(ProtocolError, match="epoch must be"):
        parse_epoch(value)
    assert parse_epoch(None) is None and parse_epoch("0a0a0a0a") == "0a0a0a0a"


def test_the_delivered_object_is_the_broadcast_plus_n_and_e():
    feed = Feed()
    sub = feed.subscriber()
    feed.join(sub, "r", None)
    sent = event("r", 7)
    feed.publish(dict(sent))
    [(n, text)] = sub.take()
    assert n == 1 and orjson.loads(text) == {**sent, "n": 1, "e": feed.epoch}


def test_a_slow_subscriber_is_dropped_with_a_reason_and_holds_no_more():
    dropped: list[str] = []
    feed = Feed(history=100, queue_limit=5)
    slow, fast = feed.subscriber(dropped.append), feed.subscriber()
    feed.join(slow, "r", None)
    feed.join(fast, "r", None)
    for i in range(1, 21):
        feed.publish(event("r", i))
        fast.take()
    assert slow.dropped is not None and "slow consumer" in slow.dropped and dropped == [slow.dropped]
    assert not slow.queue and slow not in feed.rooms["r"].subscribers
    assert fast.dropped is None and feed.dropped == 1
    feed.leave(fast)
    assert "r" in feed.rooms  # a room with broadcasts keeps its numbering


def test_an_idle_room_is_forgotten_and_the_number_of_rooms_is_bounded():
    feed = Feed(max_rooms=2)
    sub = feed.subscriber()
    feed.join(sub, "a", None)
    feed.join(sub, "b", None)
    with pytest.raises(ProtocolError, match="rooms"):
        feed.join(feed.subscriber(), "c", None)
    feed.leave(sub)
    assert feed.rooms == {}


@pytest.mark.parametrize("value", ["", "-1", "1.5", "abc", "0x10", "1e3", " 3", "+3", "9" * 31])
def test_malformed_text_resume_points_are_errors(value):
    with pytest.raises(ProtocolError, match="non-negative integer"):
        parse_resume(value)


@pytest.mark.parametrize("value", [-1, 1.5, True, "5", [], {}])
def test_malformed_json_resume_points_are_errors(value):
    with pytest.raises(ProtocolError, match="non-negative integer"):
        parse_resume(value, text=False)


def test_good_resume_points():
    assert parse_resume(None) is None
    assert parse_resume("0") == 0 and parse_resume("42") == 42 and parse_resume(42, text=False) == 42


@pytest.mark.parametrize(
    ("msg", "fault"),
    [
        ([1], "JSON object"),
        (None, "JSON object"),
        ({"type": "x"}, "op must be a string"),
        ({"op": "no-such-op"}, "unknown op"),
        ({**event("r", 1), "room": 5}, "room must be a string"),
        ({**event("r", 1), "room": ""}, "room must be"),
        ({**event("r", 1), "seq": "1"}, "seq must be an integer"),
        ({**event("r", 1), "t": True}, "t must be an integer"),
        ({**event("r", 1), "c": None}, "c must be an integer"),
        ({**event("r", 1), "d": 12345}, "d must be a string"),
    ],
)
def test_a_publisher_message_is_validated(msg, fault):
    with pytest.raises(ProtocolError, match=fault):
        validate_broadcast(msg)


def test_activity_events_are_what_a_publisher_sends():
    rng = random.Random(4)
    kinds = {activity_event(rng)["k"] for _ in range(200)}
    assert kinds == {"join", "roll", "move", "chat"}
    msg = activity_broadcast("table-1", 3, 9, {"k": "roll", "who": "Mira", "expr": "1d20+5", "total": 17})
    assert validate_broadcast(msg) is msg and orjson.loads(msg["d"])["total"] == 17


def test_hold_is_capped_and_checked():
    assert parse_hold(None, 25) == 25 and parse_hold("3", 25) == 3 and parse_hold("600", 25) == 25
    for bad in ("x", "-1", "nan", "inf"):
        with pytest.raises(ProtocolError):
            parse_hold(bad, 25)


def test_closing_the_feed_drops_subscribers_and_wakes_pollers():
    async def go() -> None:
        feed = Feed()
        sub = feed.subscriber()
        feed.join(sub, "r", None)
        changed = feed.rooms["r"].changed
        feed.close()
        assert sub.dropped == "server shutting down" and changed.is_set()

    asyncio.run(go())
