"""Spike 7 end to end: a 1 s cut through the fault proxy, and the account of every message it must give."""

from __future__ import annotations

import pytest

from harness.plugin import ScenarioContext
from spikes.s07_error_recovery import spike
from tests.utils import UNIT, require_program

pytestmark = pytest.mark.slow


def _cut(key: str, tmp_path, cut: float = 1.0):
    s = spike.scenario("network-reset")
    p = s.resolved_params(True)
    p.update({"cuts_s": [cut], "connections": 3, "grace_s": 2 * UNIT})
    out = s.run(ScenarioContext(spike.option(key), p, 0, True, tmp_path))
    (run,) = out.facts["runs"]
    return out, run


def _invariants(t: dict) -> None:
    assert t["delivered"]["count"] + t["lost_after_ack"]["count"] + t["lost_without_ack"]["count"] == t["expected"]
    assert t["delivered"]["count"] + t["duplicated"]["count"] + t["unexpected"]["count"] == t["arrivals"]


def test_a_1s_reset_with_outbox_and_log_loses_nothing_and_the_account_is_exact(tmp_path):
    """Every message a client handed over reached the server exactly once and every member exactly once."""
    require_program("redis-server")
    out, run = _cut("queue-reconstruct", tmp_path)
    t = run["account"]
    _invariants(t)
    (fault,) = run["faults"]
    # The proxy reset every open connection: the 3 load connections and the watcher.
    assert fault["kind"] == "proxy-reset" and fault["details"]["connections"] == 4
    assert run["reconnected"] >= 3 and t["reconnects"] >= 3  # every connection was cut and came back
    sent = t["sent"]["count"]
    # Exact: members = the 3 load connections; each must hold every sent message once.
    assert t["expected"] == 3 * sent
    assert t["delivered"]["count"] == t["expected"]
    assert t["lost_after_ack"]["count"] == t["lost_without_ack"]["count"] == 0
    assert t["duplicated"]["count"] == t["unexpected"]["count"] == t["reordered"]["count"] == 0
    assert run["server"]["applied"] == sent  # the server applied each sent message once: nothing lost before it
    assert run["server"]["store_errors"] == 0
    assert run["watcher_hash"] == run["server_hash"]


def test_a_1s_reset_without_recovery_shows_its_loss_in_the_account(tmp_path):
    out, run = _cut("reconnect", tmp_path)
    t = run["account"]
    _invariants(t)
    assert run["reconnected"] >= 3
    lost = t["lost_after_ack"]["count"] + t["lost_without_ack"]["count"]
    # Whatever was broadcast while a member was away never reaches it: the account and the replicas say so together.
    assert (lost == 0) == (run["watcher_hash"] == run["server_hash"]) or lost > 0
    assert t["duplicated"]["count"] == 0 and t["unexpected"]["count"] == 0
    assert out.facts["mode"] == "reset"


def test_a_reconnect_storm_brings_every_connection_back_with_and_without_jitter(tmp_path):
    require_program("redis-server")
    s = spike.scenario("storm")
    p = s.resolved_params(True)
    p.update({"connections": 20, "after_s": 3 * UNIT})
    out = s.run(ScenarioContext(spike.option("queue-reconstruct"), p, 0, True, tmp_path))
    by = {(m.name, m.tags["jitter"]): m.samples for m in out.measurements}
    for j in ("with", "without"):
        assert by[("connections_back", j)] == [20.0]
        assert by[("all_back_ms", j)][0] > 0 and by[("reconnects_per_s", j)][0] > 0
        assert by[("lost", j)] == [0.0]
    assert [r["reconnected"] for r in out.facts["runs"]] == [20, 20]


def test_postgres_shut_down_under_the_checkpoint_option_loses_no_message(tmp_path):
    require_program("redis-server", "postgres")
    s = spike.scenario("db-failure")
    p = s.resolved_params(True)
    p.update({"connections": 3, "down_s": 1.5 * UNIT, "after_s": 2 * UNIT})
    out = s.run(ScenarioContext(spike.option("checkpoint"), p, 0, True, tmp_path))
    (run,) = out.facts["runs"]
    t = run["account"]
    _invariants(t)
    assert t["lost_after_ack"]["count"] == t["lost_without_ack"]["count"] == 0
    assert run["watcher_hash"] == run["server_hash"]
    assert run["faults"][0]["kind"] == "postgres-crash"
    assert run["server"]["checkpoints"] >= 1  # it checkpointed again once PostgreSQL was back
