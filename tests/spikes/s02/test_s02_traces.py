"""The editing traces replayed through each option end exactly where the trace says."""

from __future__ import annotations

import pytest

from spikes.s02_state_sync import traces


@pytest.fixture(scope="module")
def paper():
    return traces.load("automerge-paper")


@pytest.fixture(scope="module")
def friends():
    return traces.load("friendsforever")


def test_the_traces_and_their_credit_are_in_the_repository():
    readme = (traces.DATA / "README.md").read_text()
    assert "CC BY 4.0" in readme and "Joseph Gentle" in readme
    assert "CC BY 4.0" in traces.CREDIT


def test_a_missing_trace_is_a_clear_error():
    with pytest.raises(traces.TraceError, match="no trace 'nope'"):
        traces.load("nope")


@pytest.mark.parametrize("option", ["ot", "crdt", "lww"])
def test_a_prefix_replays_to_the_reference_text(paper, option):
    seq = traces.patches(paper, 3000)
    r = traces.replay(option, seq, paper["startContent"])
    assert r.final_text == traces.apply_patches(paper["startContent"], seq)
    assert r.messages >= len(seq) and r.message_bytes > 0


@pytest.mark.slow  # 259,778 edits: about two minutes on a busy 2-core machine
def test_crdt_replays_the_whole_paper_to_its_end_content(paper):
    seq = traces.patches(paper)
    assert len(paper["txns"]) == 259_778
    assert traces.replay("crdt", seq, paper["startContent"]).final_text == paper["endContent"]


def test_crdt_batches_and_the_direct_baseline_reach_the_same_text(paper):
    seq = traces.patches(paper, 2000)
    ref = traces.apply_patches(paper["startContent"], seq)
    sizes = set()
    for batch in (1, 10, 1000):
        r = traces.replay("crdt", seq, paper["startContent"], batch=batch)
        assert r.final_text == ref
        sizes.add(r.message_bytes)
    assert len(sizes) == 3  # batching changes what goes over the wire
    assert traces.replay_pycrdt_direct(seq, paper["startContent"]).final_text == ref
    with pytest.raises(ValueError):
        traces.replay("ot", seq, batch=10)


@pytest.mark.parametrize("replay", [traces.replay_concurrent_crdt, traces.replay_concurrent_ot])
def test_friendsforever_ends_exactly_at_end_content(friends, replay):
    r = replay(friends)
    assert r.extra["mapping_failures"] == 0 and r.extra["replicas_equal"]
    assert r.final_text == friends["endContent"]


@pytest.mark.parametrize("replay", [traces.replay_concurrent_crdt, traces.replay_concurrent_ot])
def test_a_parent_that_is_not_earlier_is_a_clear_error(replay):
    bad = {
        "numAgents": 2,
        "endContent": "ab",
        "txns": [
            {"agent": 0, "parents": [1], "patches": [[0, 0, "a"]]},
            {"agent": 1, "parents": [], "patches": [[0, 0, "b"]]},
        ],
    }
    with pytest.raises(traces.TraceError, match="parent 1 .* not earlier"):
        replay(bad)
