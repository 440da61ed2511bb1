"""Spike 6's probes against the harness's reference server: the canary's drain and the room observer's count."""

from __future__ import annotations

import asyncio
import time

from harness.load.clients import get_client_class
from harness.load.protocol import broadcast_message, join_message
from spikes.s06_scalability.scenarios import Canary, RoomObserver
from tests.harness.load.servers import reference_server
from tests.utils import UNIT


def _wait(cond, timeout_s: float) -> None:  # noqa: ANN001 - a predicate
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_canary_probes_queued_behind_a_stalled_server_are_answered_in_the_drain_not_lost():
    # The server blocks its event loop for a long while at its 3rd message: the probes sent meanwhile queue behind it.
    stall_ms = 1500 * UNIT
    with reference_server("ws", "--stall-after", "3", "--stall-ms", str(stall_ms)) as (port, _):
        canary = Canary(f"ws://127.0.0.1:{port}/", "ws", 0.05).start(time.time_ns())
        _wait(lambda: canary.sent >= 6 or canary.error, 20 * UNIT)  # well inside the stall: probes 4 to 6 wait
        canary.stop(drain_s=20 * UNIT)
    assert not canary.error
    assert canary.unanswered_at_stop >= 1
    assert canary.answered_in_drain == canary.unanswered_at_stop and canary.lost == 0
    assert len(canary.points) == canary.sent


def test_room_observer_counts_every_broadcast_and_stops_draining_once_it_has_them():
    with reference_server("ws") as (port, _):
        url = f"ws://127.0.0.1:{port}/"
        observer = RoomObserver(url, "ws", "room-1").start(20 * UNIT)
        assert not observer.error

        async def send(n: int) -> None:
            client = get_client_class("ws")(url, lambda msg: None, lambda reason: None, shared={})
            await client.connect(10 * UNIT)
            client.send(join_message("room-1"))
            for i in range(n):
                client.send(broadcast_message("room-1", i, time.time_ns(), 1, "x"))
            await asyncio.sleep(0.2)
            await client.close(2.0)
            await client.close_shared(client.shared)

        asyncio.run(send(25))
        waited = observer.drain(25, 20 * UNIT)
        assert observer.received == 25 and waited < 20 * UNIT
        # More due than were sent: the drain ends once nothing has arrived for quiet_s, and the shortfall stays counted.
        waited = observer.drain(30, 20 * UNIT, quiet_s=0.3)
        observer.stop()
    assert observer.received == 25 and waited < 20 * UNIT
