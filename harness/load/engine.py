"""The load engine's parent: deal connections to generator processes, supervise them, merge their reports.

``run_load(spec)`` starts ``spec.processes`` generator processes (the
``spawn`` context: a clean interpreter, no inherited event loop or sockets;
each runs ``harness.load.generator.generator_main``), deals the connections
to them round-robin, and tells them one common start time on the
``time.time_ns()`` clock, so arrivals and send schedules line up across
processes. Each process runs its connections on one uvloop event loop and
answers with a ``GeneratorReport`` (counts, encoded HDR histograms, its own
CPU use); the parent merges them into one ``LoadResult``. Every wait is
bounded: a server that dies or stalls costs errors and lost messages, never
a hang. The messages between the parent and its generators are typed
(``harness.load.report``).

A counting run (``LoadSpec.counting``: ``account``, or ``reconnect``) also
merges each connection's log into the run's ``Account``
(``harness.load.account``), with the recovery after each fault passed as
``run_load(spec, faults=...)``.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection as mpc
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, TypeVar

from harness.load.account import Account, FaultWindow
from harness.load.clients import adapter_path
from harness.load.clients.resume import resume_path
from harness.load.generator import CLOSE_TIMEOUT_S, STARTUP_TIMEOUT_S, generator_main, reporting_to
from harness.load.histogram import merge_encoded, percentiles_ms
from harness.load.report import Failed, GeneratorReport, Go, Joined, Ready, Share, Start
from harness.load.schedules import arrival_offsets, interval_ns, random_phases, split_round_robin
from harness.load.spec import CLIENT_BOUND_CPU, CLIENT_BOUND_LAG_MS, LoadResult, LoadSpec
from harness.load.system import raise_nofile_limit

__all__ = [
    "run_load",
    "merge_results",
    "make_shares",
    "reporting_to",
    "Share",
    "STARTUP_TIMEOUT_S",
    "CLOSE_TIMEOUT_S",
    "MAX_ERRORS",
]

#: Distinct error messages kept in a result (all are counted).
MAX_ERRORS = 50
#: Lead time between telling processes the start time and the start itself.
_START_LEAD_NS = 100_000_000

_R = TypeVar("_R", Ready, Joined, GeneratorReport)


def make_shares(spec: LoadSpec) -> list[Share]:
    """Deal the connections of ``spec`` to its generator processes."""
    n = spec.connections
    arrivals = arrival_offsets(n, spec.arrival, spec.arrival_s, spec.seed)
    phases = random_phases(n, interval_ns(spec.rate), spec.seed + 1)
    parts = split_round_robin(list(zip(range(n), arrivals, phases)), spec.effective_processes)
    return [Share(i, tuple(c for c, _, _ in p), tuple(a for _, a, _ in p), tuple(ph for _, _, ph in p)) for i, p in enumerate(parts)]


class _Process:
    """The parent's handle on one generator process."""

    def __init__(self, ctx: Any, spec: LoadSpec, share: Share) -> None:
        self.share = share
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=generator_main,
            args=(spec.to_dict(), share, child, adapter_path(spec.transport), resume_path(spec.resume)),
            name=f"load-generator-{share.index}",
            daemon=True,
        )
        self.proc.start()
        child.close()  # so the parent sees EOF when the child dies
        self.alive = True
        self.error: str | None = None
        self.error_detail = ""

    def fail(self, reason: str) -> None:
        if self.alive:
            self.alive = False
            self.error = reason


def _collect(procs: list[_Process], expect: type[_R], timeout: float) -> dict[int, _R]:
    """Wait for a message of type ``expect`` from every live process; mark the silent, dead or failing ones."""
    what = expect.__name__
    got: dict[int, _R] = {}
    deadline = time.monotonic() + timeout
    pending = {p.pipe: p for p in procs if p.alive}
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for pipe in mpc.wait(list(pending), remaining):
            p = pending.pop(pipe)
            try:
                msg = p.pipe.recv()
            except (EOFError, OSError):
                p.proc.join(1)
                p.fail(f"generator process {p.share.index} exited (code {p.proc.exitcode}) before sending {what!r}")
                continue
            if isinstance(msg, expect):
                got[p.share.index] = msg
            elif isinstance(msg, Failed):
                p.fail(f"generator process {p.share.index} failed: {msg.last_line}")
                p.error_detail = msg.traceback
            else:
                p.fail(f"generator process {p.share.index} sent {type(msg).__name__!r} instead of {what!r}")
    for p in pending.values():
        p.fail(f"generator process {p.share.index} sent no {what!r} within {timeout:g} s")
    return got


def run_load(spec: LoadSpec, faults: Iterable[Any] | None = None) -> LoadResult:
    """Run ``spec`` from separate generator processes and return the merged measurements.

    Blocking: from async code call it through ``asyncio.to_thread``. The
    generator processes are spawned, which re-imports the caller's main
    module: a script calling this needs the ``if __name__ == "__main__":``
    guard, as with any ``multiprocessing`` spawn.

    ``faults``: for a counting run, the faults injected meanwhile (a
    ``harness.faults.FaultLog``, ``Fault`` objects or ``FaultWindow`` s), read
    once the generators have reported; the account gives the time from each
    one's end to the first delivery after it.
    """
    raise_nofile_limit()
    ctx = mp.get_context("spawn")
    wall0 = time.perf_counter()
    procs = [_Process(ctx, spec, share) for share in make_shares(spec)]
    try:
        _collect(procs, Ready, STARTUP_TIMEOUT_S)
        start_ns = time.time_ns() + _START_LEAD_NS
        _broadcast_to(procs, Start(start_ns))
        span = spec.arrival_s if spec.arrival != "instant" else 0.0
        if spec.mode == "broadcast":
            joined = _collect(procs, Joined, span + 2 * spec.connect_timeout_s + 30)
            members = sum(m.members for m in joined.values())
            go_ns = time.time_ns() + _START_LEAD_NS
            _broadcast_to(procs, Go(go_ns))
            end_ns = go_ns + int(spec.duration_s * 1e9)
        else:
            members = 0
            end_ns = start_ns + int((span + spec.duration_s) * 1e9)
        # Results are due after the window, the grace, the close, and a margin for slow machines.
        due_s = (end_ns - time.time_ns()) / 1e9 + spec.grace_s + 2 * CLOSE_TIMEOUT_S + spec.connect_timeout_s + 30
        reports = _collect(procs, GeneratorReport, max(due_s, 1.0))
    except BaseException:
        _stop(procs, grace_s=0)  # Ctrl-C or a bug: no waiting for generators
        raise
    _stop(procs, grace_s=5)
    windows = [f if isinstance(f, FaultWindow) else FaultWindow.from_fault(f) for f in (faults or ())]
    return merge_results(
        spec, list(reports.values()), [p.error for p in procs if p.error], members, time.perf_counter() - wall0, faults=windows
    )


def _stop(procs: list[_Process], grace_s: float) -> None:
    """Let each generator process exit; terminate, then kill, the ones that do not."""
    for p in procs:
        p.proc.join(grace_s)
        if p.proc.is_alive():
            p.proc.terminate()
            p.proc.join(5)
        if p.proc.is_alive():
            p.proc.kill()
            p.proc.join()
        p.pipe.close()


def _broadcast_to(procs: list[_Process], msg: Start | Go) -> None:
    for p in procs:
        if p.alive:
            try:
                p.pipe.send(msg)
            except (BrokenPipeError, OSError):
                p.fail(f"generator process {p.share.index} is gone")


def merge_results(
    spec: LoadSpec,
    parts: list[GeneratorReport],
    process_errors: list[str],
    members: int,
    wall_s: float,
    faults: Iterable[FaultWindow] = (),
) -> LoadResult:
    """One ``LoadResult`` from the per-process reports (pure: no processes, no sockets).

    A counting run's ``account`` is built from every connection's log, with the recovery after each of ``faults``.
    """
    parts = sorted(parts, key=lambda r: r.index)
    latency = merge_encoded(r.latency for r in parts)
    service = merge_encoded(r.service for r in parts)
    lag = merge_encoded(r.lag for r in parts)
    sent = sum(r.sent for r in parts)
    received = sum(r.received for r in parts)
    if spec.mode == "broadcast":
        members = members or sum(r.members for r in parts)
        expected = sent * members
        lost = max(0, expected - received)
    else:
        expected = sent
        lost = sum(r.outstanding for r in parts)
    errors: Counter[str] = Counter()
    for r in parts:
        errors.update(r.errors)
    for e in process_errors:
        errors[e] += 1
    failed: Counter[str] = Counter()
    for r in parts:
        failed.update(r.failed_connects)
    connected = sum(r.connected for r in parts)
    # Connections of a generator process that never reported are failed connects too.
    missing = spec.connections - connected - sum(failed.values())
    if missing > 0 and process_errors:
        failed["generator process failed"] += missing
    window_s = max((r.window_s for r in parts), default=0.0)
    cpu = [round(r.cpu, 4) for r in parts]
    lag_ms = percentiles_ms(lag)
    reasons = [f"generator process {r.index} used {r.cpu:.0%} of a core" for r in parts if r.cpu >= CLIENT_BOUND_CPU]
    if not spec.closed_loop and lag_ms["p99"] is not None and lag_ms["p99"] > CLIENT_BOUND_LAG_MS:
        reasons.append(f"the generator fell behind its schedule: p99 send lag {lag_ms['p99']:.1f} ms")
    return LoadResult(
        spec=spec.to_dict(),
        histogram=_encode(latency),
        service_histogram=_encode(service),
        latency_ms=percentiles_ms(latency),
        service_ms=percentiles_ms(service),
        send_lag_ms=lag_ms,
        sent=sent,
        received=received,
        expected=expected,
        lost=lost,
        unsent=sum(r.unsent for r in parts),
        unexpected=sum(r.unexpected for r in parts),
        clamped=sum(r.clamped for r in parts),
        connections=spec.connections,
        connected=connected,
        connect_failed=sum(failed.values()),
        dropped=sum(r.dropped for r in parts),
        members=members if spec.mode == "broadcast" else 0,
        connect_ms=[round(x, 3) for r in parts for x in r.connect_ms],
        failed_connects=dict(failed),
        bytes_out=sum(r.bytes_out for r in parts),
        bytes_in=sum(r.bytes_in for r in parts),
        duration_s=window_s,
        wall_s=wall_s,
        achieved_rate=sent / window_s if window_s else 0.0,
        received_rate=received / window_s if window_s else 0.0,
        generator_cpu=cpu,
        generator_cpu_s=[round(r.cpu_s, 6) for r in parts],
        client_bound=bool(reasons),
        client_bound_reasons=reasons,
        error_count=sum(errors.values()),
        errors=[f"{msg} (x{n})" for msg, n in errors.most_common(MAX_ERRORS)],
        reconnected=sum(r.reconnected for r in parts),
        reconnect_window_over=sum(r.window_over for r in parts),
        account=Account.of((log for r in parts for log in r.logs), spec.mode, faults).to_dict() if spec.counting else None,
    )


def _encode(h: Any) -> str:
    raw = h.encode()
    return raw.decode() if isinstance(raw, bytes) else raw
