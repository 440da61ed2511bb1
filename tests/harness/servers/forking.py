"""A tiny TCP server that forks a grandchild first: for process-group tests."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

GRANDCHILD = (
    "import signal, sys, time\nif '--stubborn' in sys.argv: signal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(1)\n"
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--stubborn", action="store_true", help="ignore SIGTERM (server and grandchild)")
    ap.add_argument("--escape", action="store_true", help="the grandchild leaves the process group (setsid)")
    ap.add_argument("--crash-after", type=float, default=None, help="exit with code 7 this long after listening")
    args = ap.parse_args()
    if args.stubborn:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(
        [sys.executable, "-c", GRANDCHILD, *(["--stubborn"] if args.stubborn else [])],
        start_new_session=args.escape,
    )
    print(f"grandchild {child.pid}", flush=True)
    srv = socket.create_server(("127.0.0.1", args.port))
    print(f"listening on {args.port}", flush=True)
    if args.crash_after is not None:
        time.sleep(args.crash_after)
        print("crashing", flush=True)
        os._exit(7)  # the grandchild stays behind in the group
    while True:
        conn, _ = srv.accept()
        conn.sendall(b"hello\n")
        conn.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
