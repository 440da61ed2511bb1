"""Spike 2's declared criteria and gates, checked against values computed by hand from a small stored run."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.report.render import decide
from harness.results import load
from spikes.s02_state_sync import spike
from tests.spikes import handcheck as h

STORED = Path(__file__).parent / "data" / "tiny-run.json"


def _cases_kept(data, option: str) -> float:
    cases = [
        m["tags"]["case"]
        for sr in data["scenarios"]
        if sr["scenario"] == "intent" and sr["option"] == option
        for m in sr["measurements"]
        if m["name"] == "case_lost"
    ]
    kept = [
        c
        for c in cases
        if h.value(data, "intent", option, "case_lost", case=c) == 0 and h.value(data, "intent", option, "case_interleaved", case=c) == 0
    ]
    return len(kept) / len(cases)


def test_criteria_and_gates_match_hand_computed_values_from_the_stored_run():
    data = h.load_json(STORED)
    run = load(STORED)
    d = decide(spike, run)
    assert d.options == ["ot", "crdt", "lww"] and not d.left_out
    for o in d.options:
        n = h.largest(data, "session", o, "convergence_s", "clients")
        expected = {
            "Performance": (
                h.logu(h.value(data, "trace-replay", o, "prefix_ops_per_s"), 10_000, 500)
                + h.logu(h.value(data, "session", o, "convergence_s", clients=n), 0.1, 2.0)
            )
            / 2,
            "Maintenance": h.lin(_cases_kept(data, o), 1.0, 0.0),
            "Scalability": (
                h.logu(h.value(data, "session", o, "bytes_per_client_per_s", clients=n), 2_000, 100_000)
                + h.logu(h.value(data, "session", o, "server_cpu_percent", clients=n), 10, 100)
            )
            / 2,
            "Cost": (
                h.money_score(  # the money part is one value from the whole run (all samples), as the cost table
                    h.money(
                        h.pooled(data, "session", o, "server_cpu_percent", clients=n) / 100,
                        max(0.0, h.pooled(data, "session", o, "server_rss_growth_bytes", clients=n)),
                        h.pooled(data, "session", o, "bytes_per_client_per_s", clients=n) * int(n),
                        int(n),
                    )
                )
                + h.logu(h.value(data, "offline", o, "merge_bytes"), 4_000, 1_000_000)
            )
            / 2,
            "Complexity": h.complexity(data, o),
        }
        for crit, v in expected.items():
            assert d.cells[o][crit].score == pytest.approx(v), (o, crit)
        # Gates, on the worst repeat: lost intents in the largest live session, the workload's worst round.
        session_lost = max(sum(r) for r in h.repeats(data, "session", o, "lost_intents", clients=n))
        workload_lost = max(max(r) for r in h.repeats(data, "intent", o, "workload_lost_fraction"))
        gates = {g.gate.name: g for g in d.gates[o]}
        assert gates["no intent lost in live sessions"].value == session_lost
        assert gates["no intent lost in the random concurrent workload"].value == workload_lost
        assert (o in d.blocked) == (session_lost > 0 or workload_lost > 0 or gates["every correctness check passes"].status == "fail")
    # Last-Write-Wins keeps one of two concurrent edits by design: it cannot be recommended for state that must not be lost.
    assert "lww" in d.blocked and "lww" not in d.ranking
