"""Command line of the load engine: ``python -m harness.load URL --transport ws --connections N --rate R --duration D``.

``spike load`` hands its arguments straight to ``main``. Every bad input is
caught here, before a generator process starts, and answered with one line
naming the flag (``LoadSpec`` checks the same things again for library
callers, in its own API terms). Exit status: 0 every connection connected
and nothing failed; 2 a usage error; 3 the run finished but a connection
did not connect or was dropped, a generator process failed, or errors were
counted (one line on stderr says which; the table or JSON is still printed
when anything connected); 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

from harness.load.clients import get_client_class, transports
from harness.load.schedules import ARRIVALS
from harness.load.spec import MODES, LoadResult, LoadSpec
from harness.load.system import is_loopback_host

if TYPE_CHECKING:
    from rich.table import Table

__all__ = [
    "main",
    "build_parser",
    "check_args",
    "spec_from_args",
    "summary_table",
    "outcome",
    "parse_cpus",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_FAILED",
]

EXIT_OK = 0
EXIT_USAGE = 2
#: The run finished, but not everything worked: the same code ``spike run`` uses for failed steps.
EXIT_FAILED = 3
EXIT_INTERRUPTED = 130

#: The largest payload the command line accepts: far above any real-time message, and small enough that building it cannot exhaust memory.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

#: Descriptors a generator process needs besides its connections (interpreter, pipes, event loop, timer).
_OWN_DESCRIPTORS = 64

#: Transports that speak plain WebSocket, so an http:// URL is a mistake (it belongs to Socket.IO).
_WS_TRANSPORTS = ("ws", "ws-websockets")

_EPILOG = """\
URLs: ws://127.0.0.1:PORT/PATH for --transport ws or ws-websockets; http://127.0.0.1:PORT
for --transport socketio or socketio-raw. Only servers on this machine, unless --allow-remote.

exit status:
  0    every connection connected and nothing failed
  2    a usage error (one line on stderr names the flag)
  3    the run finished but not every connection connected, one was dropped, a generator
       process failed or errors were counted (one line on stderr says which; the table or
       JSON is printed too when anything connected)
  130  interrupted by Ctrl-C
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, without the usage block before it."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("the following arguments are required: url"):
            message = (
                f"no URL given: {self.prog} ws://127.0.0.1:PORT/ (WebSocket) or http://127.0.0.1:PORT (Socket.IO); "
                f"`{self.prog} --help` lists every option"
            )
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _number(text: str) -> float:
    """A float for ``--rate`` and the durations; range checks come later, in ``check_args``, to name the flag."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def build_parser(prog: str = "python -m harness.load") -> argparse.ArgumentParser:
    """The argument parser (``spike load`` passes its arguments straight to it)."""
    ap = _Parser(
        prog=prog,
        description="Drive a real-time server on this machine and measure it.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("url", help="ws://127.0.0.1:PORT/path (WebSocket) or http://127.0.0.1:PORT (Socket.IO)")
    ap.add_argument("--transport", default="ws", choices=transports(), help="client adapter (default: ws, the lean raw client)")
    ap.add_argument("--connections", "-c", type=int, default=10, help="connections to open (>= 1)")
    ap.add_argument(
        "--rate",
        "-r",
        type=_number,
        default=1.0,
        help="messages per second per connection (0: idle; inf: back to back, with --closed-loop only)",
    )
    ap.add_argument("--duration", "-d", type=_number, default=10.0, help="seconds of sending after the last arrival (> 0)")
    ap.add_argument("--arrival", choices=ARRIVALS, default="instant", help="how connections arrive (ramp and burst need --arrival-s)")
    ap.add_argument("--arrival-s", type=_number, default=0.0, help="seconds over which connections arrive (ramp, burst)")
    ap.add_argument("--mode", choices=MODES, default="echo")
    ap.add_argument("--room", default="load")
    ap.add_argument("--senders", type=int, default=None, help="only the first N connections send (fan-out)")
    ap.add_argument("--payload", type=int, default=64, help=f"payload bytes per message (0 to {MAX_PAYLOAD_BYTES})")
    ap.add_argument("--processes", "-p", type=int, default=1, help="generator processes")
    ap.add_argument("--closed-loop", action="store_true", help="send the next message only after the reply")
    ap.add_argument(
        "--window",
        type=int,
        default=1,
        help="requests outstanding per connection (needs --closed-loop --rate inf --mode echo): a throughput run, "
        "its latencies include the wait behind the window",
    )
    ap.add_argument("--connect-timeout", type=_number, default=10.0, help="seconds one connect may take (> 0)")
    ap.add_argument("--grace", type=_number, default=2.0, help="seconds to wait for replies after the last send")
    ap.add_argument("--compression", action="store_true", help="negotiate permessage-deflate (ws-websockets only)")
    ap.add_argument("--cpus", default=None, help="pin generator processes to these CPUs, e.g. 0,1 or 0-3")
    ap.add_argument("--allow-remote", action="store_true", help="allow a server that is not on this machine")
    ap.add_argument("--json", action="store_true", help="print the full result as JSON instead of a table")
    return ap


def _cpu_list(cpus: Sequence[int]) -> str:
    """``0-3,6`` for {0, 1, 2, 3, 6}: the notation ``taskset -c`` and ``--cpus`` use."""
    xs = sorted(set(cpus))
    runs: list[str] = []
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        runs.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    return ",".join(runs)


def parse_cpus(text: str) -> tuple[int, ...]:
    """``--cpus`` as CPU numbers: ``0,1`` or ``0-3`` ranges; ``ValueError`` naming the flag for anything else.

    A CPU this process may not run on is refused here: the kernel would
    otherwise fail the generator with a bare EINVAL, or quietly pin to the
    valid subset of the list.
    """
    out: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"--cpus {text!r}: expected CPU numbers such as 0,1 or 0-3")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise ValueError(f"--cpus {text!r}: the range {part.strip()} runs backwards")
        out.extend(range(first, last + 1))
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    unknown = sorted(set(out) - set(allowed))
    if unknown:
        where = "this machine has" if allowed == list(range(os.cpu_count() or 0)) else "this process may run on"
        raise ValueError(f"--cpus {_cpu_list(unknown)}: {where} CPUs {_cpu_list(allowed)}")
    return tuple(dict.fromkeys(out))


def _descriptor_ceiling() -> int:
    """The most descriptors one generator process can open: the hard RLIMIT_NOFILE (or ``nr_open`` when unlimited)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        return int(hard)
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def _check_url(url: str, transport: str, allow_remote: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss", "http", "https") or not parts.netloc:
        raise ValueError(f"URL {url!r}: expected ws://HOST:PORT/PATH (WebSocket) or http://HOST:PORT (Socket.IO)")
    if not parts.hostname:
        raise ValueError(f"URL {url!r} names no host; expected e.g. ws://127.0.0.1:8000/")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"URL {url!r}: the port must be a number from 1 to 65535") from None
    if port == 0:
        raise ValueError(f"URL {url!r}: port 0 is not a server's port; use the port the server listens on (1 to 65535)")
    if transport in _WS_TRANSPORTS and parts.scheme in ("http", "https"):
        secure = "s" if parts.scheme == "https" else ""
        raise ValueError(
            f"URL {url!r} with --transport {transport}: {parts.scheme}:// URLs are for --transport socketio (Socket.IO); "
            f"a WebSocket server takes ws{secure}://{parts.netloc}{parts.path or '/'}"
        )
    if not allow_remote and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"refusing to send load to {parts.hostname}: not this machine (localhost, 127.0.0.0/8, ::1); "
            "pass --allow-remote to load a server of your own elsewhere"
        )


def _check_seconds(flag: str, value: float, *, zero_ok: bool) -> None:
    if math.isfinite(value) and (value > 0 or (zero_ok and value == 0)):
        return
    raise ValueError(f"{flag} {value:g}: expected a finite number of seconds {'>= 0' if zero_ok else '> 0'}")


def check_args(args: argparse.Namespace) -> None:
    """Refuse every inconsistent or impossible combination with a ``ValueError`` naming the flag, before anything starts."""
    _check_url(args.url, args.transport, args.allow_remote)
    if args.connections < 1:
        raise ValueError(f"--connections {args.connections}: expected at least 1")
    ceiling = _descriptor_ceiling()
    if args.processes < 1:
        raise ValueError(f"--processes {args.processes}: expected at least 1")
    per_process = math.ceil(args.connections / min(args.processes, args.connections))
    if per_process + _OWN_DESCRIPTORS > ceiling:
        raise ValueError(
            f"--connections {args.connections}: {per_process} per generator process, but a process may open only {ceiling} "
            "descriptors here (RLIMIT_NOFILE); spread them with --processes or raise the limit"
        )
    rate = args.rate
    if math.isnan(rate) or rate < 0:
        raise ValueError(f"--rate {rate:g}: expected messages per second >= 0 (0: idle connections; inf: back to back, with --closed-loop)")
    if math.isinf(rate) and not args.closed_loop:
        raise ValueError(
            "--rate inf needs --closed-loop (each connection sends its next message when the reply arrives); "
            "the open model sends on a schedule, which needs a finite rate"
        )
    _check_seconds("--duration", args.duration, zero_ok=False)
    _check_seconds("--arrival-s", args.arrival_s, zero_ok=True)
    _check_seconds("--grace", args.grace, zero_ok=True)
    _check_seconds("--connect-timeout", args.connect_timeout, zero_ok=False)
    if args.arrival == "instant" and args.arrival_s > 0:
        raise ValueError(f"--arrival-s {args.arrival_s:g} has no effect with --arrival instant; add --arrival ramp or --arrival burst")
    if args.arrival != "instant" and args.arrival_s == 0:
        raise ValueError(f"--arrival {args.arrival} needs --arrival-s > 0, the seconds over which connections arrive")
    if args.senders is not None and args.senders < 0:
        raise ValueError(f"--senders {args.senders}: expected 0 or more")
    if not 0 <= args.payload <= MAX_PAYLOAD_BYTES:
        raise ValueError(f"--payload {args.payload}: expected 0 to {MAX_PAYLOAD_BYTES} bytes")
    if args.window < 1:
        raise ValueError(f"--window {args.window}: expected at least 1")
    if args.window > 1 and not (args.closed_loop and math.isinf(rate) and args.mode == "echo"):
        raise ValueError(f"--window {args.window} needs --closed-loop --rate inf --mode echo (a throughput run)")
    if args.compression and not get_client_class(args.transport).supports_compression:
        raise ValueError(f"--compression: the {args.transport} client does not negotiate permessage-deflate; use --transport ws-websockets")
    if args.cpus is not None:
        parse_cpus(args.cpus)


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
        cpu_affinity=parse_cpus(args.cpus) if args.cpus else None,
        allow_remote=args.allow_remote,
    )


def _ms(values: dict[str, float | None]) -> str:
    if not values or values.get("p50") is None:
        return "-"
    return "  ".join(f"{k} {v:.3f}" for k, v in values.items() if v is not None)


def summary_table(result: LoadResult) -> Table:
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


def outcome(result: LoadResult) -> str | None:
    """One line saying what went wrong in a finished run, or ``None`` when every connection connected and nothing failed.

    Connections still connecting when the sending window closed are not
    counted as failed by the engine, but they did not connect either: a run
    that measured nothing must never look like a success.
    """
    addr = urlsplit(str(result.spec.get("url", ""))).netloc
    n = result.connections
    problems: list[str] = []
    if result.connected < n:
        reasons = [
            (reason if reason.startswith("generator process") else f"{reason} at {addr}") + (f" (x{k})" if k > 1 else "")
            for reason, k in result.failed_connects.items()
        ]
        pending = n - result.connected - result.connect_failed
        if pending > 0:
            reasons.append(f"{pending} still connecting when the run ended (a longer --duration or a faster server helps)")
        process = [e for e in result.errors if e.startswith("generator process")]
        problems.append(f"{result.connected}/{n} connected: " + "; ".join(reasons + process[:1]))
    if result.dropped:
        problems.append(f"{result.dropped} connection(s) dropped by the server")
    if result.error_count and not problems:
        problems.append(f"{result.error_count} error(s): " + "; ".join(result.errors[:3]))
    return "; ".join(problems) or None


def main(argv: Sequence[str] | None = None, prog: str = "python -m harness.load") -> int:
    """Run one load from the command line; the exit status is in the module docstring (0, 2, 3 or 130)."""
    from rich.console import Console

    from harness.load.engine import run_load

    ap = build_parser(prog)
    args = ap.parse_args(argv)
    try:
        check_args(args)
        spec = spec_from_args(args)
    except ValueError as exc:
        ap.error(str(exc))
    try:
        result = run_load(spec)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    problem = outcome(result)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    elif result.connected or problem is None:  # a table of zeros says less than the one line below
        Console().print(summary_table(result))
    if problem is not None:
        print(f"{prog}: error: {problem}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
