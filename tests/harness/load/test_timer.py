from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from harness.load.timer import PreciseTimer
from tests.utils import MS, UNIT


@pytest.mark.parametrize("use_timerfd", [True, False])
def test_sleeps_never_end_early_and_callbacks_run_in_time_order(use_timerfd):
    async def main():
        timer = PreciseTimer(use_timerfd=use_timerfd)
        try:
            for i in range(30):
                target = time.time_ns() + int((0.3 + (i % 5) * 0.4) * MS * 1e9)
                await timer.sleep_until(target)
                assert time.time_ns() >= target
            order = []
            now = time.time_ns()
            for k in (3, 1, 2):
                timer.call_at(now + int(k * MS * 1e9), lambda k=k: order.append(k))
            cancelled = timer.call_at(now + int(2 * MS * 1e9), lambda: order.append("x"))
            cancelled.cancel()
            await asyncio.wait_for(timer.sleep_until(now + int(5 * MS * 1e9)), 5 * UNIT)
            assert order == [1, 2, 3]
        finally:
            timer.close()

    uvloop.run(main())
