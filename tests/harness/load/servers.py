"""Reference servers for the load-engine tests, each in its own process on a free loopback port."""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.utils import UNIT

__all__ = ["reference_server"]

ROOT = Path(__file__).resolve().parents[3]


@contextlib.contextmanager
def reference_server(transport: str = "ws", *args: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """Start ``harness.load.reference_server`` on port 0; yield its port and process; stop it afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.load.reference_server", "--transport", transport, "--port", "0", *args],
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
