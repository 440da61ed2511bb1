"""A minimal Socket.IO server with connection state recovery, for the ``socketio-recovery`` resume adapter's tests.

``python -m tests.harness.load.sio_recovery_server [--kick-after N]`` prints
``PORT <n>`` once it listens. It speaks engine.io v4 over WebSocket and
Socket.IO v5 packets as Socket.IO 4.6+ does with ``connectionStateRecovery``
on: the CONNECT reply carries the session's ``sid`` and private ``pid``;
every broadcast event carries a string offset as its last argument; a
CONNECT packet with ``{"pid", "offset"}`` of a known session restores that
session (its rooms, the same ``pid``) and replays the room broadcasts after
the offset. ``--kick-after N`` closes one member other than the sender once,
after the N-th broadcast. Events: ``join`` -> ``joined`` and ``broadcast``
to the room, the sender included (``harness.load.protocol``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from dataclasses import dataclass, field

import orjson
from websockets.asyncio.server import ServerConnection, serve


@dataclass
class Session:
    pid: str
    rooms: set[str] = field(default_factory=set)
    ws: ServerConnection | None = None


async def main(kick_after: int) -> None:
    sessions: dict[str, Session] = {}
    log: list[tuple[int, str, str]] = []  # (offset, room, packet)
    ids = itertools.count(1)
    kicks: set[asyncio.Task[None]] = set()

    def send(session: Session, text: str) -> None:
        if session.ws is not None:
            asyncio.get_running_loop().create_task(session.ws.send(text))

    async def handler(ws: ServerConnection) -> None:
        await ws.send(
            "0"
            + orjson.dumps(
                {"sid": f"e{next(ids)}", "upgrades": [], "pingInterval": 25000, "pingTimeout": 60000, "maxPayload": 10**6}
            ).decode()
        )
        session: Session | None = None
        try:
            async for raw in ws:
                text = raw if isinstance(raw, str) else raw.decode()
                if text.startswith("40"):
                    auth = orjson.loads(text[2:]) if len(text) > 2 else {}
                    old = sessions.get(auth.get("pid", ""))
                    if old is not None:  # recovered: same pid, same rooms, the missed broadcasts
                        session = old
                        after = int(auth.get("offset") or 0)
                        missed = [p for off, room, p in log if off > after and room in session.rooms]
                    else:
                        session = Session(f"p{next(ids)}")
                        sessions[session.pid] = session
                        missed = []
                    session.ws = ws
                    await ws.send("40" + orjson.dumps({"sid": f"s{next(ids)}", "pid": session.pid}).decode())
                    for packet in missed:
                        await ws.send(packet)
                elif text.startswith("42") and session is not None:
                    event, data = orjson.loads(text[2:])[:2]
                    if event == "join":
                        session.rooms.add(data["room"])
                        await ws.send("42" + orjson.dumps(["joined", {"room": data["room"]}]).decode())
                    elif event == "broadcast":
                        offset = len(log) + 1
                        packet = "42" + orjson.dumps(["broadcast", data, str(offset)]).decode()
                        log.append((offset, data["room"], packet))
                        members = [s for s in sessions.values() if data["room"] in s.rooms and s.ws is not None]
                        for member in members:
                            send(member, packet)
                        if offset == kick_after:
                            others = [m for m in members if m is not session]
                            if others and others[0].ws is not None:
                                kicks.add(task := asyncio.get_running_loop().create_task(others[0].ws.close()))
                                task.add_done_callback(kicks.discard)
                elif text == "3":  # pong
                    pass
        except Exception:
            pass
        finally:
            if session is not None and session.ws is ws:
                session.ws = None

    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None, max_size=None) as server:
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--kick-after", type=int, default=0)
    asyncio.run(main(ap.parse_args().kick_after))
