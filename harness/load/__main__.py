"""Command line of the load engine: ``python -m harness.load URL --transport ws --connections N --rate R --duration D``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

from harness.load.clients import transports
from harness.load.schedules import ARRIVALS
from harness.load.spec import MODES, LoadResult, LoadSpec

__all__ = ["main", "build_parser", "spec_from_args", "summary_table"]


def _rate(text: str) -> float:
    value = float(text)
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError("rate must be >= 0 (or 'inf' with --closed-loop)")
    return value


def build_parser(prog: str = "python -m harness.load") -> argparse.ArgumentParser:
    """The argument parser (``spike load`` passes its arguments straight to it)."""
    ap = argparse.ArgumentParser(prog=prog, description="Drive a real-time server on this machine and measure it.")
    ap.add_argument("url", help="ws://127.0.0.1:PORT/path (WebSocket) or http://127.0.0.1:PORT (Socket.IO)")
    ap.add_argument("--transport", default="ws", choices=transports(), help="client adapter (default: ws, the lean raw client)")
    ap.add_argument("--connections", "-c", type=int, default=10)
    ap.add_argument(
        "--rate", "-r", type=_rate, default=1.0, help="messages per second per connection (0: idle; inf: back to back, with --closed-loop)"
    )
    ap.add_argument("--duration", "-d", type=float, default=10.0, help="seconds of sending after the last arrival")
    ap.add_argument("--arrival", choices=ARRIVALS, default="instant")
    ap.add_argument("--arrival-s", type=float, default=0.0, help="seconds over which connections arrive (ramp, burst)")
    ap.add_argument("--mode", choices=MODES, default="echo")
    ap.add_argument("--room", default="load")
    ap.add_argument("--senders", type=int, default=None, help="only the first N connections send (fan-out)")
    ap.add_argument("--payload", type=int, default=64, help="payload bytes per message")
    ap.add_argument("--processes", "-p", type=int, default=1, help="generator processes")
    ap.add_argument("--closed-loop", action="store_true", help="send the next message only after the reply")
    ap.add_argument(
        "--window",
        type=int,
        default=1,
        help="requests outstanding per connection (needs --closed-loop --rate inf --mode echo): a throughput run, "
        "its latencies include the wait behind the window",
    )
    ap.add_argument("--connect-timeout", type=float, default=10.0)
    ap.add_argument("--grace", type=float, default=2.0, help="seconds to wait for replies after the last send")
    ap.add_argument("--compression", action="store_true", help="negotiate permessage-deflate (ws-websockets only)")
    ap.add_argument("--cpus", default=None, help="pin generator processes to these CPUs, e.g. 0,1")
    ap.add_argument("--allow-remote", action="store_true", help="allow a server that is not on this machine")
    ap.add_argument("--json", action="store_true", help="print the full result as JSON instead of a table")
    return ap


def spec_from_args(args: argparse.Namespace) -> LoadSpec:
    """A ``LoadSpec`` from parsed arguments (``ValueError`` if inconsistent)."""
    return LoadSpec(
        url=args.url,
        transport=args.transport,
        connections=args.connections,
        rate=args.rate,
        duration_s=args.duration,
        arrival=args.arrival,
        arrival_s=args.arrival_s,
        mode=args.mode,
        room=args.room,
        senders=args.senders,
        payload_bytes=args.payload,
        processes=args.processes,
        closed_loop=args.closed_loop,
        window=args.window,
        connect_timeout_s=args.connect_timeout,
        grace_s=args.grace,
        compression=args.compression,
        cpu_affinity=tuple(int(c) for c in args.cpus.split(",")) if args.cpus else None,
        allow_remote=args.allow_remote,
    )


def _ms(values: dict[str, float | None]) -> str:
    if not values or values.get("p50") is None:
        return "-"
    return "  ".join(f"{k} {v:.3f}" for k, v in values.items() if v is not None)


def summary_table(result: LoadResult):
    """A rich table summarising ``result``."""
    from rich.table import Table

    spec = result.spec
    t = Table(title=f"load: {spec['transport']} {spec['mode']} {spec['url']}", show_header=True)
    t.add_column("metric")
    t.add_column("value")
    t.add_row("connections", f"{result.connected}/{result.connections} connected, {result.connect_failed} failed, {result.dropped} dropped")
    if result.failed_connects:
        t.add_row("failed connects", "; ".join(f"{k} (x{v})" for k, v in result.failed_connects.items()))
    if result.connect_ms:
        xs = sorted(result.connect_ms)
        t.add_row("connect ms", f"p50 {xs[len(xs) // 2]:.2f}  p99 {xs[min(len(xs) - 1, int(len(xs) * 0.99))]:.2f}  max {xs[-1]:.2f}")
    t.add_row(
        "messages",
        f"sent {result.sent}, received {result.received} of {result.expected} expected, lost {result.lost}, unsent {result.unsent}",
    )
    t.add_row("rate msg/s", f"sent {result.achieved_rate:,.0f}, received {result.received_rate:,.0f} over {result.duration_s:.1f} s")
    t.add_row("latency ms (from intended send)", _ms(result.latency_ms))
    t.add_row("service ms (from actual send)", _ms(result.service_ms))
    t.add_row("send lag ms (generator)", _ms(result.send_lag_ms))
    t.add_row("bytes", f"out {result.bytes_out:,}, in {result.bytes_in:,}")
    t.add_row("generator CPU", ", ".join(f"{c:.0%}" for c in result.generator_cpu) or "-")
    bound = "YES: " + "; ".join(result.client_bound_reasons) if result.client_bound else "no"
    t.add_row("client bound", f"[bold red]{bound}[/]" if result.client_bound else bound)
    if result.errors:
        t.add_row("errors", f"{result.error_count}: " + "; ".join(result.errors[:5]))
    return t


def main(argv: Sequence[str] | None = None, prog: str = "python -m harness.load") -> int:
    """Run one load from the command line; 0 on success, 2 on bad arguments, 1 when the run had errors."""
    from rich.console import Console

    from harness.load.engine import run_load

    ap = build_parser(prog)
    args = ap.parse_args(argv)
    try:
        spec = spec_from_args(args)
    except ValueError as exc:
        ap.error(str(exc))
    try:
        result = run_load(spec)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        Console().print(summary_table(result))
    return 1 if result.error_count or result.connect_failed else 0


if __name__ == "__main__":
    sys.exit(main())
