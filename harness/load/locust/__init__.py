"""Distributed load through Locust: the locustfile of the realtime-spikes protocol, and the commands to run it.

``locustfile.py`` (beside this module) holds the users; it imports locust and
gevent, so it is only ever loaded by a ``locust`` process (which
monkey-patches the standard library first), never by the harness. This
module only describes a plan and renders commands, with no gevent import.

A spike offers Locust runs by defining ``locust_plan(scenario, quick)``
returning a :class:`LocustPlan`; ``spike locust N --scenario KEY`` prints
the master and worker commands (or ``--write FILE`` copies the locustfile).
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOCUSTFILE", "LocustPlan", "locustfile_text", "master_command", "worker_command", "instructions"]

#: The locustfile, as shipped with the harness.
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


@dataclass(frozen=True)
class LocustPlan:
    """One scenario as Locust parameters: users, spawn rate, run time, and what each user sends."""

    scenario: str
    users: int
    spawn_rate: float
    run_time_s: float
    rate: float
    mode: str = "echo"
    transport: str = "ws"
    payload_bytes: int = 64
    room: str = "table-1"
    note: str = ""

    def __post_init__(self) -> None:
        if self.users < 1 or self.spawn_rate <= 0 or self.run_time_s <= 0 or self.rate < 0:
            raise ValueError("a Locust plan needs users >= 1, spawn_rate > 0, run_time_s > 0 and rate >= 0")
        if self.mode not in ("echo", "broadcast") or self.transport not in ("ws", "socketio"):
            raise ValueError(f"mode must be echo or broadcast and transport ws or socketio, not {self.mode!r}/{self.transport!r}")


def locustfile_text() -> str:
    """The locustfile's source."""
    return LOCUSTFILE.read_text(encoding="utf-8")


def _user_args(plan: LocustPlan) -> list[str]:
    return [
        "--s06-transport",
        plan.transport,
        "--s06-mode",
        plan.mode,
        "--s06-rate",
        f"{plan.rate:g}",
        "--s06-payload",
        str(plan.payload_bytes),
        "--s06-room",
        plan.room,
    ]


def master_command(
    plan: LocustPlan,
    host: str,
    *,
    locustfile: str = "locustfile.py",
    workers: int = 2,
    bind_port: int = 5557,
    summary: str = "s06-summary.json",
    locust: tuple[str, ...] = ("locust",),
) -> list[str]:
    """The master's argv: headless, waits for ``workers``, runs the plan, writes the merged summary."""
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
        "--s06-run-time",
        f"{math.ceil(plan.run_time_s)}",
        "--host",
        host,
        *_user_args(plan),
        "--s06-summary",
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
    """A worker's argv (the user options come from the master)."""
    argv = [*locust, "-f", locustfile, "--worker", "--master-host", master_host, "--master-port", str(master_port)]
    return argv + (["--s06-worker-summary", summary_dir] if summary_dir else [])


def instructions(plan: LocustPlan, host: str, locustfile: str, workers: int = 2) -> str:
    """Human-readable commands for one master and ``workers`` workers, on one machine or several."""
    m = shlex.join(master_command(plan, host, locustfile=locustfile, workers=workers))
    w = shlex.join(worker_command("MASTER_IP", locustfile=locustfile))
    wl = shlex.join(worker_command("127.0.0.1", locustfile=locustfile))
    return f"""# Scenario {plan.scenario}: {plan.users} users, spawned at {plan.spawn_rate:g}/s, {plan.rate:g} {plan.mode} msg/s each, for {math.ceil(plan.run_time_s)} s.
{("# " + plan.note + chr(10)) if plan.note else ""}# Needs: pip install locust websocket-client hdrhistogram (the harness's venv has them).
# The server under test must be reachable from every worker at {host}.

# 1. On the coordinating machine (the master; it sends no load itself):
{m}

# 2. On each load machine ({workers} in all), pointing at the master:
{w}
#    (all on this machine: {wl})

# The master prints Locust's table and writes s06-summary.json: messages sent and received per worker,
# and percentiles from the merged HDR histogram of every worker (exact tails, not averaged percentiles).
# Spread --users over more workers when one worker's CPU passes ~90 % (Locust warns).
"""
