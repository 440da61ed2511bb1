"""Spike 6's scenarios as Locust users: its own parameters, handed to the harness's generic Locust support.

The harness (``harness/load/locust/``) knows users, spawn rates, run times and
a message plan; everything about the chat lives here: which scenarios have a
Locust form, the room the busy scenario broadcasts in (the ``room`` spike
parameter, which reaches every user through ``--spike-params`` and fills the
``$room`` of the join and broadcast messages), and what each scenario's
users send. ``ScalabilitySpike.locust_plan`` calls :func:`locust_plan`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.load.locust import LocustPlan, MessagePlan

__all__ = ["LOCUST_SCENARIOS", "ROOM", "SPIKE_PARAMS", "locust_plan"]

#: The load scenarios that have a Locust form (the generator's own capacity has none).
LOCUST_SCENARIOS = ("many-idle", "few-busy", "burst")
#: The room of the few-busy scenario (the same room the harness's own engine uses for it).
ROOM = "table-1"
#: Spike 6's own parameters, as its Locust users receive them (``--spike-params``).
SPIKE_PARAMS: dict[str, str | int | float | bool] = {"room": ROOM}


def _echo(rate: float, transport: str, payload: int) -> MessagePlan:
    return MessagePlan(rate, {"op": "echo"}, transport, payload)


def _broadcast(rate: float, transport: str, payload: int) -> MessagePlan:
    # Join the room first (wait for "joined"), then broadcast to it; the room comes from the spike parameter.
    return MessagePlan(rate, {"op": "broadcast", "room": "$room"}, transport, payload, setup=(({"op": "join", "room": "$room"}, "joined"),))


def locust_plan(scenario: str, resolve: Callable[[str], dict[str, Any]], transport: str = "ws") -> LocustPlan:
    """A load scenario as Locust users (``spike locust 6 --scenario KEY``); ``resolve`` gives a scenario's resolved parameters."""
    if scenario not in LOCUST_SCENARIOS:
        raise ValueError(f"scenario {scenario!r} has no Locust form; choose one of {', '.join(LOCUST_SCENARIOS)}")
    p = resolve(scenario)
    n = p["connections"]
    if scenario == "many-idle":
        return LocustPlan(
            scenario,
            n,
            n / p["ramp_s"],
            p["ramp_s"] + p["hold_s"],
            _echo(p["rate_per_min"] / 60, transport, p["payload_bytes"]),
            SPIKE_PARAMS,
        )
    if scenario == "few-busy":
        return LocustPlan(
            scenario,
            n,
            float(n),
            1 + p["duration_s"],
            _broadcast(p["rate"], transport, p["payload_bytes"]),
            SPIKE_PARAMS,
            note="Each user starts sending once it has joined the room (the harness's engine starts all together).",
        )
    return LocustPlan(
        scenario,
        n,
        n / p["burst_s"],
        p["burst_s"] + p["hold_s"],
        _echo(p["rate"], transport, p["payload_bytes"]),
        SPIKE_PARAMS,
        note="Locust spawns users at a constant rate; the harness's burst arrivals are random (Poisson) within the window.",
    )
