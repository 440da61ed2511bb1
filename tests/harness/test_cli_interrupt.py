"""Ctrl-C at the command level: `spike run` in its own process, interrupted mid-measurement as a terminal would.

The command runs a fake spike (the real CLI, runner, results store and renderer) whose second scenario starts a
real server and then measures until stopped. The terminal's Ctrl-C is a SIGINT to the command's whole process
group, sent once that scenario has said it is measuring. The command must exit 130, store what it measured
marked interrupted, render a document that says so, and leave no process behind: neither in its own group nor
the server, which the harness started in a group of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.utils import UNIT, as_from_a_terminal

pytestmark = pytest.mark.slow  # a whole run of the command, with a real server

ROOT = Path(__file__).resolve().parents[2]

#: The child: the real `spike` command with a registry of one fake spike; its `slow` scenario starts a server
#: (not in a `with`: the harness must stop it by itself), says MEASURING with the pids, and measures until stopped.
CHILD = """
import os, sys, time
from harness import cli
from harness.plugin import Scenario, ScenarioOutput
from harness.process import LogReady, ServerProcess
from tests.harness.fakes import FakeSpike, _ok

def _slow(ctx):
    server = ServerProcess("sleepy", [sys.executable, "-c", "print('READY', flush=True); import time; time.sleep(600)"],
                           ready=LogReady("READY"), log_path=ctx.workdir / "server.log")
    server.start()
    print(f"MEASURING {os.getpid()} {server.pid}", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(0.05)
            ctx.advance(0.5)
    finally:
        if os.environ.get("CLEANUP_FAILS"):  # a clean-up that fails once the servers are gone (Spike 6's Redis INFO did)
            raise ConnectionRefusedError(111, "Connection refused")

class Interruptible(FakeSpike):
    scenarios = (FakeSpike.scenarios[0], Scenario("slow", "Slow", "Measures until stopped.", _slow, options=("a",)))

cli._spikes = lambda: {42: Interruptible()}
sys.argv = ["spike", *sys.argv[1:]]
cli.main()
"""


def _group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes in process group ``pgid``."""
    out = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
    return out


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "sigterm-cleanup-fails"])
def test_ctrl_c_during_a_run_exits_130_stores_the_partial_run_and_leaves_no_process(tmp_path, how):
    out = tmp_path / "results"
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    if how == "sigterm-cleanup-fails":
        env["CLEANUP_FAILS"] = "1"
    argv = [sys.executable, "-c", CHILD, "run", "42", "--quick", "--repeat", "1", "--out", str(out), "--author", "ctrl-c test"]
    stdout_path = tmp_path / "stdout.txt"
    with stdout_path.open("w") as stdout_file:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=stdout_file,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=as_from_a_terminal,
        )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    seen: list[str] = []
    server_pid = None
    try:
        # Wait for the slow scenario to start measuring (the first scenario has then been stored in memory).
        deadline = time.monotonic() + 60 * UNIT
        while server_pid is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5 * UNIT)
            except queue.Empty:
                if proc.poll() is not None:
                    break
                continue
            seen.append(line)
            if line.startswith("MEASURING "):
                server_pid = int(line.split()[2])
        assert server_pid is not None, f"the slow scenario never started: exit {proc.poll()}\n{''.join(seen)}"
        assert not _gone(server_pid)

        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the foreground group, not the servers' own
        else:
            os.kill(proc.pid, signal.SIGTERM)  # `kill PID`, a CI timeout or a supervisor: the command alone
        proc.wait(timeout=60 * UNIT)
        reader.join(timeout=10 * UNIT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if server_pid is not None and not _gone(server_pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server_pid, signal.SIGKILL)
            pytest.fail(f"the server (pid {server_pid}) outlived the interrupted command")
    while not lines.empty():
        seen.append(lines.get())
    stderr = "".join(seen)

    output = stdout_path.read_text() + stderr
    assert proc.returncode == 130, output
    assert "Traceback" not in output, output
    assert "interrupted" in stderr, output

    # The partial run is stored, marked interrupted, with what was measured before the Ctrl-C.
    runs = [p for p in out.rglob("*.json") if p.parent.name == "runs"]
    assert len(runs) == 1, (runs, output)
    data = json.loads(runs[0].read_text(encoding="utf-8"))
    assert data["completion"] == "interrupted"  # results format 2
    assert data["parameters"]["interrupted"] is True
    status = {(s["scenario"], s["option"]): s["status"] for s in data["scenarios"]}
    assert status[("works", "a")] == status[("works", "b")] == "ok"
    assert status[("slow", "a")] == "interrupted"
    reason = next(s["reason"] for s in data["scenarios"] if s["scenario"] == "slow")
    assert reason.startswith("interrupted by the user" if how == "ctrl-c" else f"terminated by signal {int(signal.SIGTERM)}"), reason

    # Its document says so, wherever the harness puts documents of runs that do not replace the full one.
    docs = list(out.rglob("spike-42-*.md"))
    assert docs and all("**Interrupted.**" in d.read_text(encoding="utf-8") for d in docs), (docs, output)

    # No orphan: nothing left in the command's process group, the server gone, the runner's temp dir removed.
    deadline = time.monotonic() + 10 * UNIT
    while (_group_members(proc.pid) or not _gone(server_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _group_members(proc.pid) == [] and _gone(server_pid)
    assert not list(tmp_path.glob("spike-42-*")), "the run's temporary directory was left behind"
