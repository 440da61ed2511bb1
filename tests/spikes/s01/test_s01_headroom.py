"""Spike 1's generator-headroom note, computed from stored measurements (the generator scenario vs the echo runs).

It lives here because it tests what reads the load generator's ceiling; it
belongs with tests/spikes/s01 (its stored run is used as the base).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.results import RunResult, load
from spikes.s01_websocket_impl import spike

STORED = Path(__file__).parent / "data" / "quick-run.json"


def _m(name: str, value: float, **tags: str) -> dict:
    return {"name": name, "unit": "", "tags": tags, "better": None, "repeats": [[value]]}


def _run(times_fastest: float, gen_window: int, echo_window: int, cpu: float = 0.61, us: float = 1.25) -> tuple[RunResult, str]:
    """The stored run plus a generator run at ``times_fastest`` x the fastest server's closed-loop rate at 50 connections."""
    data = load(STORED).to_dict()
    echo = [s for s in data["scenarios"] if s["scenario"] == "echo"]
    for s in echo:
        s["params"]["window"] = echo_window
    rates = {
        s["option"]: next(
            m["repeats"][0][0] for m in s["measurements"] if m["name"] == "closed_received_rate" and m["tags"] == {"connections": "50"}
        )
        for s in echo
    }
    fastest = max(rates, key=rates.__getitem__)
    data["scenarios"].append(
        {
            "scenario": "generator",
            "option": "native",
            "status": "ok",
            "reason": None,
            "params": {"connections": 50, "duration_s": 3.0, "window": gen_window},
            "measurements": [
                _m("generator_received_rate", times_fastest * rates[fastest]),
                _m("generator_generator_cpu", cpu),
                _m("generator_generator_us_per_msg", us),
                _m("generator_server_cpu", 0.97),
            ],
            "facts": [{}],
            "durations_s": [3.0],
        }
    )
    return RunResult.from_dict(data), fastest


def _note(run: RunResult) -> str:
    notes = [n for n in spike.report(run).notes if n.startswith("**Generator headroom.**")]
    assert len(notes) == 1
    return notes[0]


def test_the_note_compares_the_ceiling_with_the_fastest_server_at_the_same_window():
    run, fastest = _run(3, gen_window=16, echo_window=16)
    note = _note(run)
    titles = {o.key: o.title for o in spike.options}
    assert "16 requests outstanding per connection" in note and titles[fastest] in note
    assert "1.25 us of generator CPU per echo" in note and "echo server at 0.97 of a core" in note and "0.61 of a core" in note
    assert "drove 3.0x the fastest server's throughput: at least 2x, so the echo results are the servers' limits." in note


def _us_for(times_fastest_per_core: float) -> float:
    """Generator CPU us per echo at which one generator core sustains ``times_fastest_per_core`` x the fastest server's rate."""
    data = load(STORED)
    fastest = max(data.ok("echo", o).median("closed_received_rate", connections="50") for o in data.options)
    return 1e6 / (times_fastest_per_core * fastest)


def test_below_twice_with_the_generator_busy_the_note_says_the_results_may_be_the_generators():
    for cpu, us in ((0.95, _us_for(5)), (0.5, _us_for(1.9))):  # saturated; or idle but too costly per echo to reach 2x on one core
        run, _ = _run(1.5, gen_window=16, echo_window=16, cpu=cpu, us=us)
        note = _note(run)
        assert "drove 1.5x" in note and "may be partly the generator's limit" in note and "servers' limits" not in note


def test_below_twice_because_the_echo_server_was_the_limit_the_generators_cost_decides():
    run, _ = _run(1.5, gen_window=16, echo_window=16, cpu=0.4, us=_us_for(3))
    note = _note(run)
    assert "drove 1.5x" in note and "using only 0.40 of a core: the bare echo server, not the generator, limited this run" in note
    assert "one generator core sustains 3.0x the fastest server's throughput, so the echo results are the servers' limits." in note


@pytest.mark.parametrize(("gen_window", "echo_window"), [(16, 1), (1, 16)])
def test_different_windows_are_not_compared(gen_window, echo_window):
    run, _ = _run(10, gen_window=gen_window, echo_window=echo_window)
    note = _note(run)
    assert "not comparable" in note and "servers' limits" not in note and "x the fastest" not in note
