"""The ``outbox`` resume adapters end to end: connections reset by the fault proxy send what was not acknowledged again."""

from __future__ import annotations

import threading
import time

import pytest

from harness.faults import FaultLog, FaultProxy
from harness.load import LoadSpec, run_load
from harness.load.spec import ReconnectPolicy
from tests.harness.load.servers import reference_server
from tests.utils import UNIT

pytestmark = pytest.mark.slow


def test_an_outbox_with_last_seq_loses_nothing_across_a_reset_of_every_connection():
    log = FaultLog()
    with reference_server("ws", "--numbered") as (port, _), FaultProxy(port, log=log) as proxy:
        spec = LoadSpec(
            f"ws://127.0.0.1:{proxy.port}/",
            mode="broadcast",
            connections=3,
            rate=40,
            duration_s=2.5 * UNIT,
            reconnect=ReconnectPolicy(base_s=0.05 * UNIT, cap_s=0.2 * UNIT),
            resume="outbox-last-seq",
            connect_timeout_s=5 * UNIT,
            grace_s=1.5 * UNIT,
        )

        def cut() -> None:
            deadline = time.monotonic() + 20 * UNIT
            while proxy.open_connections < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.5 * UNIT)
            proxy.reset_connections()

        t = threading.Thread(target=cut)
        t.start()
        try:
            r = run_load(spec, faults=log)
        finally:
            t.join()
    assert r.account is not None and r.reconnected == 3, r.errors
    total = r.account["total"]
    assert total["delivered"]["count"] + total["lost_after_ack"]["count"] + total["lost_without_ack"]["count"] == total["expected"]
    # Sent into a socket that died: sent again from the outbox; missed while away: replayed after the last seq.
    assert total["lost_after_ack"]["count"] == total["lost_without_ack"]["count"] == 0
    assert total["expected"] == 3 * total["sent"]["count"]
    # This server does not drop a copy it already had, so a message sent again may arrive twice: the account says so.
    assert total["unexpected"]["count"] == 0
