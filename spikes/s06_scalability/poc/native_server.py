"""Spike 6 native WebSocket POC server: Spike 1's ``websockets`` server, plus Redis fan-out and PostgreSQL persistence.

Run: ``python native_server.py --port 8000 --pg DSN [--redis URL] [--server-id N]``.
Speaks ``harness/load/protocol.py``. Every ``echo`` and ``broadcast`` is a chat
message and is persisted (``persist.py``). Without ``--redis`` a broadcast is
delivered to the room's members in this process, as in Spike 1. With
``--redis`` each room is a Redis channel (``room:<name>``): a broadcast is
PUBLISHed, and every process subscribed to the channel (the ones with a member
in the room) delivers it to its own members, the sender's process included, so
a message takes the same path whichever process the members are on.
As in Spike 1, a ``join`` or ``broadcast`` without a string room and an unknown
op get ``{"op": "error", ...}``, and a frame that is not a JSON object with an
op closes the connection with 1007 (found by the hostile-frame battery,
``harness/frames.py``: an unknown op got silence, a number for a room was
joined, or broke the Redis subscription).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal

import orjson
from persist import ChatStore
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

__all__ = ["Server", "main"]

_PREFIX = "room:"


class Server:
    """Rooms of connections, optionally spread over processes through Redis channels."""

    def __init__(self, store: ChatStore | None, redis_url: str | None) -> None:
        self.store = store
        self.rooms: dict[str, set[ServerConnection]] = {}
        self.redis_url = redis_url
        self.redis = None
        self.pubsub = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.redis_url:
            import redis.asyncio as aioredis

            self.redis = aioredis.from_url(self.redis_url)
            self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            await self.pubsub.subscribe("s06:hello")  # listen() needs one subscription to run
            self._reader = asyncio.create_task(self._read_redis())

    async def _read_redis(self) -> None:
        assert self.pubsub is not None
        async for item in self.pubsub.listen():
            if item.get("type") != "message":
                continue
            channel = item["channel"].decode()
            members = self.rooms.get(channel[len(_PREFIX) :])
            if members:
                broadcast(members, item["data"].decode())

    async def join(self, ws: ServerConnection, room: str) -> None:
        members = self.rooms.get(room)
        if members is None:
            members = self.rooms[room] = set()
            if self.pubsub is not None:
                await self.pubsub.subscribe(_PREFIX + room)
        members.add(ws)

    async def leave(self, ws: ServerConnection, room: str) -> None:
        members = self.rooms.get(room)
        if members is None:
            return
        members.discard(ws)
        if not members:
            del self.rooms[room]
            if self.pubsub is not None:
                await self.pubsub.unsubscribe(_PREFIX + room)

    async def handler(self, ws: ServerConnection) -> None:
        """Serve one connection until it closes, then take it out of its rooms."""
        joined: set[str] = set()
        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    await ws.send(frame)
                    continue
                msg = orjson.loads(frame)
                op = msg["op"]
                if op in ("join", "broadcast") and not isinstance(msg["room"], str):
                    await ws.send(orjson.dumps({"op": "error", "reason": "room must be a string"}).decode())
                elif op == "echo":
                    if self.store is not None:
                        self.store.add("echo", msg)
                    await ws.send(frame)
                elif op == "join":
                    await self.join(ws, msg["room"])
                    joined.add(msg["room"])
                    await ws.send(orjson.dumps({"op": "joined", "room": msg["room"]}).decode())
                elif op == "broadcast":
                    if self.store is not None:
                        self.store.add(msg["room"], msg)
                    if self.redis is not None:
                        await self.redis.publish(_PREFIX + msg["room"], frame)
                    else:
                        broadcast(self.rooms.get(msg["room"], ()), frame)
                else:
                    await ws.send(orjson.dumps({"op": "error", "reason": "unknown op"}).decode())
        except ConnectionClosed:
            pass
        except (ValueError, KeyError, TypeError):
            await ws.close(1007, "expected a JSON object with an op")
        finally:
            for room in joined:
                await self.leave(ws, room)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self.pubsub is not None:
            await self.pubsub.aclose()
        if self.redis is not None:
            await self.redis.aclose()


def health(conn: ServerConnection, request):  # noqa: ANN201 - websockets' Response type
    """Answer plain ``GET /health`` without a WebSocket upgrade."""
    if request.path == "/health":
        return conn.respond(200, "ok\n")
    return None


async def main(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT; then close connections, write the buffered rows, and exit."""
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    store = ChatStore(args.pg, args.server_id) if args.pg else None
    if store is not None:
        await store.start()
    app = Server(store, args.redis)
    await app.start()
    async with serve(app.handler, args.host, args.port, process_request=health, backlog=4096) as server:
        print(f"READY port={server.sockets[0].getsockname()[1]}", flush=True)
        await stop.wait()
    await app.close()
    if store is not None:
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--pg", default="", help="PostgreSQL DSN; empty: persist nothing")
    parser.add_argument("--redis", default="", help="Redis URL for cross-process fan-out; empty: one process")
    parser.add_argument("--server-id", type=int, default=0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # every connection is a descriptor
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(args))
    else:
        uvloop.run(main(args))
