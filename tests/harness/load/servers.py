"""Reference servers for the load-engine tests, each in its own process on a free loopback port."""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.utils import UNIT

__all__ = ["reference_server", "faulty_server", "sio_recovery_server"]

ROOT = Path(__file__).resolve().parents[3]


@contextlib.contextmanager
def reference_server(transport: str = "ws", *args: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """Start ``harness.load.reference_server`` on port 0; yield its port and process; stop it afterwards."""
    argv = [sys.executable, "-m", "harness.load.reference_server", "--transport", transport, "--port", "0", *args]
    with _server(argv, transport) as got:
        yield got


@contextlib.contextmanager
def _server(argv: list[str], transport: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """Run ``argv`` (a server printing ``PORT <n>`` once it listens); yield its port and process; stop it afterwards."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20 * UNIT)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("PORT "), f"reference server ({transport}) did not start: {line!r}"
        yield int(line.split()[1]), proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5 * UNIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()


@contextlib.contextmanager
def faulty_server(plan: dict[str, list[int]]) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """Start ``tests.harness.load.faulty_server`` with ``plan`` (action -> seqs); yield its port and process; stop it afterwards."""
    import json

    with _server([sys.executable, "-m", "tests.harness.load.faulty_server", "--plan", json.dumps(plan)], "faulty") as got:
        yield got


@contextlib.contextmanager
def sio_recovery_server(*args: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """Start ``tests.harness.load.sio_recovery_server`` (Socket.IO with connection state recovery); yield its port and process."""
    with _server([sys.executable, "-m", "tests.harness.load.sio_recovery_server", *args], "sio-recovery") as got:
        yield got
