"""Native WebSocket POC server: echo and room broadcast with the ``websockets`` library.

Run: ``python server.py --host 127.0.0.1 --port 8000`` (port 0: the kernel picks one).
Speaks the protocol of ``harness/load/protocol.py``: JSON text frames with an
``op`` of ``echo``, ``join`` or ``broadcast``; binary frames are echoed as binary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

__all__ = ["handler", "main"]

#: Room name -> its members; a room disappears with its last member.
rooms: dict[str, set[ServerConnection]] = {}


async def handler(ws: ServerConnection) -> None:
    """Serve one connection until it closes, then take it out of its rooms."""
    joined: set[str] = set()
    try:
        async for frame in ws:
            if isinstance(frame, bytes):
                await ws.send(frame)
                continue
            msg = json.loads(frame)
            if msg["op"] in ("join", "broadcast") and not isinstance(msg["room"], str):
                await ws.send(json.dumps({"op": "error", "reason": "room must be a string"}))
            elif msg["op"] == "echo":
                await ws.send(frame)  # the frame as received: unchanged, and no re-encoding
            elif msg["op"] == "join":
                rooms.setdefault(msg["room"], set()).add(ws)
                joined.add(msg["room"])
                await ws.send(json.dumps({"op": "joined", "room": msg["room"]}))
            elif msg["op"] == "broadcast":
                # No await: broadcast() writes to every member now; a slow member's buffer grows.
                broadcast(rooms.get(msg["room"], ()), frame)
            else:
                await ws.send(json.dumps({"op": "error", "reason": "unknown op"}))
    except ConnectionClosed:
        pass  # the peer went away; nothing to answer
    except (ValueError, KeyError, TypeError, RecursionError):
        await ws.close(1007, "expected a JSON object with an op")
    finally:
        for room in joined:
            members = rooms[room]
            members.discard(ws)
            if not members:
                del rooms[room]


def health(conn: ServerConnection, request):  # noqa: ANN201 - websockets' Response type
    """Answer plain ``GET /health`` without a WebSocket upgrade."""
    if request.path == "/health":
        return conn.respond(200, "ok\n")
    return None


async def main(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then close every connection with 1001 (going away)."""
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with serve(handler, host, port, process_request=health) as server:
        print(f"READY port={server.sockets[0].getsockname()[1]}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # uvloop is optional: the stdlib loop works, only slower
        asyncio.run(main(args.host, args.port))
    else:
        uvloop.run(main(args.host, args.port))
