"""The WebSocket server of every option: the option's sans-I/O server core behind the ``websockets`` library.

Run: ``python -m spikes.s02_state_sync.poc.relay --option crdt --port 8765``.
Each connection is a client; every binary frame goes to the core's
``on_message``, and each ``(target, frame)`` it returns is sent to that
client. The OT core transforms and acknowledges, the CRDT core forwards
updates and answers state vectors, the LWW core merges and forwards the
writes that won. A frame the core cannot read (not the option's message: not
JSON, the wrong shape, an unknown kind, an update pycrdt rejects) closes that
connection with 1008 and the core's reason, instead of a traceback and 1011
(the hostile-frame battery, ``harness/frames.py``). The server prints one line
when it listens, for the harness's readiness probe.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import sys

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from spikes.s02_state_sync.tabletop import OPTIONS, make_server

__all__ = ["main", "run", "BAD_MESSAGE"]

#: What a core raises on a message it cannot read (OTError is a ValueError; pycrdt raises ValueError on a bad update).
BAD_MESSAGE = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError)


async def run(option: str, host: str, port: int) -> None:
    core = make_server(option)
    conns: dict[int, asyncio.Queue[bytes]] = {}
    ids = itertools.count()

    def send(out: list[tuple[int, bytes]]) -> None:
        for target, frame in out:
            queue = conns.get(target)
            if queue is not None:
                queue.put_nowait(frame)

    async def handler(ws: ServerConnection) -> None:
        cid = next(ids)
        # One queue and one writer per connection: frames leave in the order the core made them (OT needs FIFO).
        conns[cid] = queue = asyncio.Queue()
        writer = asyncio.create_task(_writer(ws, queue))
        try:
            send(core.on_connect(cid))
            async for frame in ws:
                data = frame if isinstance(frame, bytes) else frame.encode()
                try:
                    out = core.on_message(cid, data, list(conns))
                except BAD_MESSAGE as exc:
                    reason = f"bad {option} message: {type(exc).__name__}: {exc}"
                    await ws.close(1008, reason.encode()[:120].decode("utf-8", "ignore"))  # a close reason: 123 bytes at most
                    return
                send(out)
        except ConnectionClosed:
            pass
        finally:
            conns.pop(cid, None)
            writer.cancel()

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(handler, host, port, max_size=None, compression=None):
        print(f"{option} relay listening on {host}:{port}", flush=True)
        await stop


async def _writer(ws: ServerConnection, queue: asyncio.Queue[bytes]) -> None:
    try:
        while True:
            await ws.send(await queue.get())
    except ConnectionClosed:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--option", required=True, choices=OPTIONS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(run(args.option, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
