"""How much load the generator itself can make: ``python -m harness.load.selftest``.

Starts the cheapest echo server there is (``reference_server --transport
raw-echo``: a WebSocket server on a bare asyncio protocol that returns each
frame without parsing it) in its own process, pinned to its own core when
the machine has two or more, then drives it twice: back to back (closed
loop, as fast as replies come, once per ``--window``: requests outstanding
per connection) and with an open-model ladder of offered rates. For each
run it reports the generator's CPU per message, the server's CPU, and
whether the generator was the bottleneck. The figure to quote is the
generator's CPU time per echoed message (one send plus one receive,
latency recorded: user + system time of the generator processes, which
stays honest on a busy machine where a wall-clock rate does not) and the
rate one generator core sustains. With a window, the raw client answers
every reply of a received chunk with one write of pre-built frames, so
its cost per echo falls far below a server's, which handles each message.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from harness.load.engine import run_load
from harness.load.spec import LoadResult, LoadSpec

__all__ = ["SelftestRow", "start_server", "measure", "main"]


@dataclass
class SelftestRow:
    """One measured run of the self-test."""

    label: str
    offered: float | None
    sent_rate: float
    received_rate: float
    generator_cpu: float
    server_cpu: float
    us_per_msg: float | None
    p50_ms: float | None
    p99_ms: float | None
    lag_p99_ms: float | None
    lost: int
    client_bound: bool


def start_server(kind: str = "raw-echo", cpus: Sequence[int] | None = None) -> tuple[subprocess.Popen[str], int]:
    """Start a reference server in its own process (pinned to ``cpus``); return it and its port."""
    cmd = [sys.executable, "-m", "harness.load.reference_server", "--transport", kind]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"reference server did not start: {line!r}")
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(proc.pid, set(cpus))
    return proc, int(line.split()[1])


def measure(label: str, spec: LoadSpec, server_pid: int, offered: float | None = None) -> tuple[SelftestRow, LoadResult]:
    """Run ``spec`` and measure the server's CPU over the same time."""
    server = psutil.Process(server_pid)
    t0 = server.cpu_times()
    result = run_load(spec)
    t1 = server.cpu_times()
    # The server is idle outside the send window (generator start-up, grace), so its CPU over the
    # whole call divided by the window is its busy share during the window (handshakes included).
    server_cpu = ((t1.user + t1.system) - (t0.user + t0.system)) / max(result.duration_s, 1e-9)
    us = result.generator_us_per_msg
    row = SelftestRow(
        label=label,
        offered=offered,
        sent_rate=result.achieved_rate,
        received_rate=result.received_rate,
        generator_cpu=sum(result.generator_cpu),
        server_cpu=server_cpu,
        us_per_msg=us,
        p50_ms=result.latency_ms.get("p50"),
        p99_ms=result.latency_ms.get("p99"),
        lag_p99_ms=result.send_lag_ms.get("p99"),
        lost=result.lost,
        client_bound=result.client_bound,
    )
    return row, result


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the self-test and print a table (or JSON)."""
    ap = argparse.ArgumentParser(prog="python -m harness.load.selftest", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--server", default="raw-echo", choices=["raw-echo", "ws", "socketio"], help="reference server (raw-echo is the cheapest)"
    )
    ap.add_argument("--transport", default=None, help="client adapter to test (default: ws, or socketio for the socketio server)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--processes", type=int, default=1, help="generator processes")
    ap.add_argument(
        "--window", default="1,16", help="requests outstanding per connection in the closed-loop runs (comma-separated, one run each)"
    )
    ap.add_argument("--rates", default="1000,2000,5000,10000,20000,40000,80000", help="offered total msg/s of the open-model ladder")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        windows = [int(w) for w in args.window.split(",")]
        if any(w < 1 for w in windows):
            raise ValueError
    except ValueError:
        ap.error(f"--window: expected comma-separated integers >= 1, got {args.window!r}")

    ncpu = os.cpu_count() or 1
    # Server on the last core, generators on the others, so neither steals the other's CPU.
    server_cpus = [ncpu - 1] if ncpu >= 2 else None
    gen_cpus = tuple(range(ncpu - 1)) if ncpu >= 2 else None
    if args.transport is None:
        args.transport = "socketio" if args.server == "socketio" else "ws"
    proc, port = start_server(args.server, server_cpus)
    url = f"http://127.0.0.1:{port}" if args.server == "socketio" else f"ws://127.0.0.1:{port}/"
    rows: list[SelftestRow] = []
    try:
        base = dict(
            url=url,
            transport=args.transport,
            connections=args.connections,
            duration_s=args.duration,
            processes=args.processes,
            grace_s=2.0,
            cpu_affinity=gen_cpus,
        )
        for w in windows:
            row, _ = measure(f"closed loop, window {w}", LoadSpec(rate=float("inf"), closed_loop=True, window=w, **base), proc.pid)
            rows.append(row)
        for total in (float(r) for r in args.rates.split(",")):
            row, result = measure(
                f"open model {total:,.0f} msg/s", LoadSpec(rate=total / args.connections, **base), proc.pid, offered=total
            )
            rows.append(row)
            if result.client_bound or result.received < 0.95 * total * result.duration_s:
                break
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()

    sustained = [r for r in rows if r.offered is not None and not r.client_bound and r.lost == 0]
    best = max(sustained, key=lambda r: r.received_rate, default=None)
    costs = [r.us_per_msg for r in rows if r.us_per_msg]
    cost = min(costs) if costs else None
    summary: dict[str, Any] = {
        "cpus": ncpu,
        "server": args.server,
        "transport": args.transport,
        "connections": args.connections,
        "processes": args.processes,
        "generator_cpus": list(gen_cpus) if gen_cpus else None,
        "server_cpus": server_cpus,
        "max_sustained_msg_s": best.received_rate if best else None,
        "generator_cpu_at_max": best.generator_cpu if best else None,
        "us_cpu_per_echoed_msg": cost,
        "msgs_per_core_s": 1e6 / cost if cost else None,
        "rows": [r.__dict__ for r in rows],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0

    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"generator self-test: {args.transport} client -> {args.server} server, {args.connections} connections, {args.processes} generator process(es), {ncpu} CPUs"
    )
    for col in ("run", "sent/s", "recv/s", "gen CPU", "server CPU", "us CPU/msg", "p50 ms", "p99 ms", "lag p99 ms", "lost", "client bound"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r.label,
            f"{r.sent_rate:,.0f}",
            f"{r.received_rate:,.0f}",
            f"{r.generator_cpu:.0%}",
            f"{r.server_cpu:.0%}",
            _fmt(r.us_per_msg, ".1f"),
            _fmt(r.p50_ms, ".3f"),
            _fmt(r.p99_ms, ".3f"),
            _fmt(r.lag_p99_ms, ".3f"),
            str(r.lost),
            "YES" if r.client_bound else "no",
        )
    console = Console()
    console.print(t)
    if best:
        console.print(
            f"Highest open-model rate with the generator not the bottleneck: {best.received_rate:,.0f} msg/s at {best.generator_cpu:.0%} generator CPU."
        )
    if cost:
        console.print(
            f"Generator cost: {cost:.1f} us CPU per echoed message (send + receive + latency record), about {1e6 / cost:,.0f} msg/s per generator core."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
