"""A stand-in harness: starts a ServerProcess, reports its pids, then waits for a signal or crashes."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from harness.process import LogReady, ServerProcess  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    log_path, mode = sys.argv[1], sys.argv[2]  # mode: "wait" for a signal, "thread" (start from a worker thread), or "raise"
    if mode == "thread":
        from harness.process import install_signal_handlers

        install_signal_handlers()  # what the runner does first
    srv = ServerProcess(
        "driven",
        [sys.executable, str(HERE / "forking.py"), "--port", "{port}", *sys.argv[3:]],
        ready=LogReady(r"listening on \d+"),
        log_path=log_path,
        grace=1.0,
    )
    if mode == "thread":  # as Spike 6's deployment starts its parts from a thread pool
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            pool.submit(srv.start).result()
    else:
        srv.start()
    grandchild = re.search(r"grandchild (\d+)", srv.log_since_start()).group(1)
    print(f"server {srv.pid} grandchild {grandchild}", flush=True)
    if mode == "raise":
        time.sleep(0.2)  # let the test see both processes alive first
        raise RuntimeError("the harness crashed")  # uncaught: only atexit is left to clean up
    while True:
        time.sleep(0.1)


if __name__ == "__main__":
    main()
