"""A load-protocol server that mistreats known messages on purpose, so a test can check the account against the plan.

``python -m tests.harness.load.faulty_server --plan JSON`` prints ``PORT <n>``
once it listens on a free loopback port. The plan maps an action to the
sequence numbers it applies to, on every connection (``c``)::

    {"drop": [3], "ack-drop": [5], "dup": [7], "reorder": [9], "bogus": [11], "close": [13],
     "drop-others": [4], "drop-all": [6]}

Echo requests: ``drop`` never answers; ``ack-drop`` answers ``{"op": "ack"}``
but never echoes; ``dup`` echoes twice; ``reorder`` holds the echo and sends
it right after the next one on the same connection; ``bogus`` echoes, then
sends an echo of a ``seq`` a million higher, which was never sent; ``close``
closes the connection without answering. Broadcasts (to every member of the
room, the sender included): ``drop-others`` goes to the sender only;
``drop-all`` to nobody. Everything else is served as the reference server does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import defaultdict
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve


def _plan(text: str) -> dict[str, set[int]]:
    return {action: set(seqs) for action, seqs in orjson.loads(text).items()}


async def main(plan: dict[str, set[int]]) -> None:
    rooms: dict[str, set[ServerConnection]] = defaultdict(set)

    def acts(action: str, seq: Any) -> bool:
        return seq in plan.get(action, ())

    async def handler(ws: ServerConnection) -> None:
        held: list[str] = []  # a reordered echo, sent after the next one
        joined: list[str] = []
        try:
            async for raw in ws:
                msg = orjson.loads(raw)
                op, seq, c = msg.get("op"), msg.get("seq"), msg.get("c")
                if op == "echo":
                    if acts("drop", seq):
                        continue
                    if acts("close", seq):
                        await ws.close()
                        return
                    if acts("ack-drop", seq):
                        await ws.send(orjson.dumps({"op": "ack", "c": c, "seq": seq}).decode())
                        continue
                    if acts("reorder", seq):
                        held.append(raw)
                        continue
                    await ws.send(raw)
                    if acts("dup", seq):
                        await ws.send(raw)
                    if acts("bogus", seq):
                        await ws.send(orjson.dumps({**msg, "seq": seq + 1_000_000}).decode())
                    while held:
                        await ws.send(held.pop(0))
                elif op == "broadcast":
                    members = rooms.get(str(msg.get("room")), set())
                    if acts("drop-all", seq):
                        continue
                    broadcast([ws] if acts("drop-others", seq) else members, raw)
                elif op == "join":
                    room = str(msg.get("room"))
                    rooms[room].add(ws)
                    joined.append(room)
                    await ws.send(orjson.dumps({"op": "joined", "room": room}).decode())
        except Exception:
            pass
        finally:
            for room in joined:
                rooms[room].discard(ws)

    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None, max_size=None) as server:
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--plan", default="{}")
    args = ap.parse_args()
    try:
        asyncio.run(main(_plan(args.plan)))
    except KeyboardInterrupt:
        sys.exit(0)
