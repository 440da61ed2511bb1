"""The intent cases and the peer-to-peer check the intent scenario measures, as behaviour."""

from __future__ import annotations

import random

import pytest

from spikes.s02_state_sync import scenarios


@pytest.mark.parametrize("option", ["ot", "crdt"])
def test_ot_and_crdt_keep_both_words_whole_and_both_far_apart_edits(option):
    cases = scenarios._cases(option)
    typing = cases["same-place typing"]
    assert typing["lost"] == 0 and not typing["interleaved"] and typing["result"] in ("abcxyz", "xyzabc")
    assert cases["note edits far apart"]["lost"] == 0
    assert cases["both extend one stroke"]["lost"] == 0
    # A deleted stroke stays deleted: the concurrent extension is the intent lost.
    assert cases["delete vs extend stroke"]["result"] == "stroke deleted, extension lost"


@pytest.mark.parametrize("option", ["ot", "crdt", "lww"])
def test_every_option_keeps_exactly_one_of_two_concurrent_token_moves(option):
    case = scenarios._cases(option)["same token moved"]
    assert case["converged"] and case["result"] in ("token at [1.0, 1.0]", "token at [2.0, 2.0]")


def test_lww_loses_one_of_two_concurrent_writes_to_one_field():
    cases = scenarios._cases("lww")
    assert cases["same-place typing"]["lost"] == 3 and cases["same-place typing"]["result"] in ("abc", "xyz")
    assert cases["note edits far apart"]["lost"] == 1
    assert cases["both extend one stroke"]["lost"] == 1


def test_peer_to_peer_merge_without_a_server():
    assert scenarios._peer_to_peer("ot", random.Random(3)) is None
    assert scenarios._peer_to_peer("lww", random.Random(3)) == {"converged": True, "updates": 120}
    # Yrs may leave an update pending after random-order delivery; the sync step asks for what is missing.
    crdt = scenarios._peer_to_peer("crdt", random.Random(3))
    assert crdt["converged"] is True and crdt["updates"] == 120 and crdt["sync_bytes"] > 0


@pytest.mark.parametrize("option", ["ot", "crdt", "lww"])
def test_one_edit_of_each_kind_has_a_measured_message_size(option):
    sizes = scenarios._message_bytes(option, 1000)
    assert set(sizes) == set(scenarios.KINDS) and all(v > 0 for v in sizes.values())
    if option == "lww":  # the whole note travels with every note edit
        assert sizes["note text"] > 1000
