"""Distributed load through Locust: the locustfile of the realtime-spikes protocol, and the commands to run it.

``locustfile.py`` (beside this module) holds the users; it imports locust and
gevent, so it is only ever loaded by a ``locust`` process (which
monkey-patches the standard library first), never by the harness. This
module only describes a plan and renders commands, with no gevent import.

Nothing here belongs to one spike. A plan says how many users arrive, how
fast and for how long, and what each one sends (a :class:`MessagePlan`: the
transport, messages sent once after connecting, and the message sent on a
schedule). A spike's own parameters are a dict of named JSON scalars,
``LocustPlan.params``: the master gets them as ``--spike-params JSON`` (or
``--spike-params @FILE``), hands them to every worker, and each user sees
them as ``self.params``; any string in the plan's messages may refer to
one as ``$name`` (``string.Template``), filled in by the user.

A spike offers Locust runs by defining ``locust_plan(scenario, quick, transport)``
returning a :class:`LocustPlan`; ``spike locust N --scenario KEY`` prints
the master and worker commands (or ``--write FILE`` copies the locustfile).
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

__all__ = [
    "LOCUSTFILE",
    "SUMMARY",
    "TRANSPORTS",
    "MessagePlan",
    "LocustPlan",
    "locustfile_text",
    "master_command",
    "worker_command",
    "instructions",
]

#: The locustfile, as shipped with the harness.
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
#: The master's merged summary, by default.
SUMMARY = "locust-summary.json"
TRANSPORTS = ("ws", "socketio")
#: Fields the user sets on every scheduled message (sequence, intended send time in ns, connection id, payload).
STAMPED = ("seq", "t", "c", "d")

Scalar = str | int | float | bool


def _templates(value: Any) -> set[str]:
    """The ``$name`` references in every string of a message."""
    if isinstance(value, str):
        return set(Template(value).get_identifiers())
    if isinstance(value, Mapping):
        return set().union(*(_templates(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(_templates(v) for v in value)) if value else set()
    return set()


def _message(msg: Mapping[str, Any], what: str) -> dict[str, Any]:
    if not isinstance(msg, Mapping) or not isinstance(msg.get("op"), str) or not msg["op"]:
        raise ValueError(f"{what} must be a JSON object with a non-empty string 'op', not {msg!r}")
    try:
        json.dumps(msg)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON: {exc}") from None
    return dict(msg)


@dataclass(frozen=True)
class MessagePlan:
    """What each user sends, in the harness wire protocol (``harness/load/protocol.py``), over ``transport``.

    After connecting, a user sends each ``setup`` message in turn and, when its
    step names a reply op, waits for that reply. Then it sends ``send`` at
    ``rate`` messages per second on a fixed schedule (open model), adding
    ``seq``, ``t`` (intended send time, ns), ``c`` (its id) and ``d`` (a
    ``payload_bytes`` payload). Every received message whose op is in
    ``reply_ops`` (default: the sent op) and carries ``t`` is one latency sample.
    """

    rate: float
    send: Mapping[str, Any] = field(default_factory=lambda: {"op": "echo"})
    transport: str = "ws"
    payload_bytes: int = 64
    setup: tuple[tuple[Mapping[str, Any], str], ...] = ()
    reply_ops: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.rate < 0 or self.payload_bytes < 0:
            raise ValueError("a message plan needs rate >= 0 and payload_bytes >= 0")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {self.transport!r}")
        send = _message(self.send, "the scheduled message")
        if clash := sorted(set(send) & set(STAMPED)):
            raise ValueError(f"the scheduled message may not set {', '.join(clash)}: the user stamps them")
        object.__setattr__(self, "send", send)
        steps = []
        for step in self.setup:
            if not (isinstance(step, tuple | list) and len(step) == 2 and isinstance(step[1], str)):
                raise ValueError(f"a setup step is (message, reply op or ''), not {step!r}")
            steps.append((_message(step[0], "a setup message"), step[1]))
        object.__setattr__(self, "setup", tuple(steps))
        object.__setattr__(self, "reply_ops", tuple(self.reply_ops) or (send["op"],))

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "send": self.send,
            "transport": self.transport,
            "payload_bytes": self.payload_bytes,
            "setup": [[m, r] for m, r in self.setup],
            "reply_ops": list(self.reply_ops),
        }


@dataclass(frozen=True)
class LocustPlan:
    """One scenario as Locust parameters: users, spawn rate, run time, what each user sends, and the spike's own parameters."""

    scenario: str
    users: int
    spawn_rate: float
    run_time_s: float
    messages: MessagePlan
    params: Mapping[str, Scalar] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        if self.users < 1 or self.spawn_rate <= 0 or self.run_time_s <= 0:
            raise ValueError("a Locust plan needs users >= 1, spawn_rate > 0 and run_time_s > 0")
        if not isinstance(self.messages, MessagePlan):
            raise ValueError(f"messages must be a MessagePlan, not {type(self.messages).__name__}")
        params = dict(self.params)
        for k, v in params.items():
            if not (isinstance(k, str) and k.isidentifier()) or not isinstance(v, Scalar):
                raise ValueError(f"a spike parameter is an identifier naming a JSON scalar, not {k!r}: {v!r}")
        msgs = [self.messages.send, *(m for m, _ in self.messages.setup)]
        if missing := sorted(_templates(msgs) - set(params)):
            raise ValueError(f"the messages refer to undeclared spike parameters: {', '.join('$' + m for m in missing)}")
        object.__setattr__(self, "params", params)


def locustfile_text() -> str:
    """The locustfile's source."""
    return LOCUSTFILE.read_text(encoding="utf-8")


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def master_command(
    plan: LocustPlan,
    host: str,
    *,
    locustfile: str = "locustfile.py",
    workers: int = 2,
    bind_port: int = 5557,
    summary: str = SUMMARY,
    locust: tuple[str, ...] = ("locust",),
) -> list[str]:
    """The master's argv: headless, waits for ``workers``, runs the plan, writes the merged summary.

    The message plan and the spike's parameters ride on the master's command
    line; Locust hands them to every worker when the test starts.
    """
    return [
        *locust,
        "-f",
        locustfile,
        "--master",
        "--headless",
        "--expect-workers",
        str(workers),
        "--master-bind-port",
        str(bind_port),
        "-u",
        str(plan.users),
        "-r",
        f"{plan.spawn_rate:g}",
        "--harness-run-time",
        f"{math.ceil(plan.run_time_s)}",
        "--host",
        host,
        "--harness-plan",
        _json(plan.messages.to_json()),
        "--spike-params",
        _json(plan.params),
        "--harness-summary",
        summary,
    ]


def worker_command(
    master_host: str = "127.0.0.1",
    *,
    locustfile: str = "locustfile.py",
    master_port: int = 5557,
    summary_dir: str = "",
    locust: tuple[str, ...] = ("locust",),
) -> list[str]:
    """A worker's argv (the plan and the spike's parameters come from the master)."""
    argv = [*locust, "-f", locustfile, "--worker", "--master-host", master_host, "--master-port", str(master_port)]
    return argv + (["--harness-worker-summary", summary_dir] if summary_dir else [])


def instructions(plan: LocustPlan, host: str, locustfile: str, workers: int = 2) -> str:
    """Human-readable commands for one master and ``workers`` workers, on one machine or several."""
    m = shlex.join(master_command(plan, host, locustfile=locustfile, workers=workers))
    w = shlex.join(worker_command("MASTER_IP", locustfile=locustfile))
    wl = shlex.join(worker_command("127.0.0.1", locustfile=locustfile))
    msgs = plan.messages
    params = ", ".join(f"{k}={v!r}" for k, v in plan.params.items())
    return f"""# Scenario {plan.scenario}: {plan.users} users, spawned at {plan.spawn_rate:g}/s, {msgs.rate:g} {msgs.send["op"]} msg/s each \
over {msgs.transport}, for {math.ceil(plan.run_time_s)} s.
{("# Spike parameters (--spike-params): " + params + chr(10)) if params else ""}\
{("# " + plan.note + chr(10)) if plan.note else ""}# Needs: pip install locust websocket-client hdrhistogram (the harness's venv has them).
# The server under test must be reachable from every worker at {host}.

# 1. On the coordinating machine (the master; it sends no load itself):
{m}

# 2. On each load machine ({workers} in all), pointing at the master:
{w}
#    (all on this machine: {wl})

# The master prints Locust's table and writes {SUMMARY}: messages sent and received per worker,
# and percentiles from the merged HDR histogram of every worker (exact tails, not averaged percentiles).
# Spread --users over more workers when one worker's CPU passes ~90 % (Locust warns).
"""
