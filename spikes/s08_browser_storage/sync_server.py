"""Spike 8's sync server: one pycrdt document (the note as Text, the board as a Map of token positions) over WebSocket.

Run: ``python -m spikes.s08_browser_storage.sync_server --host 127.0.0.1 --port 8765``
(prints ``READY port=N`` once it listens; ``--port 0`` lets the kernel choose).

It is Spike 2's CRDT relay cut down to what the offline scenario needs, plus
the two things that scenario measures (this spike imports no other spike):

- the Yjs sync exchange, as binary frames with a one-byte kind: ``S`` + a state
  vector is answered with ``D`` + the diff the sender lacks and ``S`` + the
  server's own state vector; ``D`` or ``U`` + an update is applied and forwarded
  to the other connections as ``U``; a ``D`` (the end of a client's half of the
  exchange) is answered with ``Y`` (synced: everything the client had, the
  server has);
- replayed outbox actions: ``A`` + a JSON header (``client``, ``seq``, ``id``,
  ``kind``) + ``\\n`` + the action's update. Each ``(client, seq)`` is applied
  once: a second copy (a replay after a lost acknowledgement) is acknowledged
  again and counted, never applied. The acknowledgement is ``K`` + the seq.

Clients are named by the WebSocket path's query (``/sync?client=NAME``), and the
server records per client what it received, whether it applied it, and the bytes
up and down (frame payloads, without WebSocket framing). Edits are tagged
(``<NAME.eN>`` in the note, ``{"id": "NAME.mN"}`` in a token's position), and the
server notes when each tag first became visible in its document, whichever
path brought it: the harness's account of "every offline edit arrived exactly
once" and its time to sync come from these records, not from the client's word.

Plain HTTP GETs on the same port are the harness's controls: ``/state`` (the
text, the board and the records, as JSON), ``/offline?client=NAME`` (close that
client's connections and refuse new ones with 503: the connection is cut and
refused whatever the engine), ``/online?client=NAME`` (accept it again and
restart its since-online counters). :class:`SyncCore` is the sans-I/O logic,
tested without sockets; :func:`run` only wires it to ``websockets``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pycrdt import Doc, Map, Text

__all__ = ["SyncCore", "ClientRecord", "BadFrame", "TAG", "main", "run"]

#: An edit's tag in the note: ``<off.e3>`` (client ``off``'s fourth note edit).
TAG = re.compile(r"<([A-Za-z0-9_-]+\.e\d+)>")

STATE, DIFF, UPDATE, ACTION, ACK, SYNCED = b"S", b"D", b"U", b"A", b"K", b"Y"


class BadFrame(ValueError):
    """A frame the server cannot read (unknown kind, bad header, an update pycrdt cannot decode)."""


@dataclass
class ClientRecord:
    """What one client (by name, across its connections) sent the server and what became of it."""

    received: list[dict[str, Any]] = field(default_factory=list)
    applied_actions: dict[int, str] = field(default_factory=dict)  # seq -> action id, applied once
    duplicate_actions: int = 0  # copies of an action already applied (acknowledged again, not applied)
    bad_frames: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    online_ns: int | None = None  # when the harness last put it online
    online_bytes_up: int = 0
    online_bytes_down: int = 0
    online_frames_up: int = 0
    online_frames_down: int = 0
    connections: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "applied_actions": {str(k): v for k, v in sorted(self.applied_actions.items())},
            "duplicate_actions": self.duplicate_actions,
            "bad_frames": self.bad_frames,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "online_ns": self.online_ns,
            "online_bytes_up": self.online_bytes_up,
            "online_bytes_down": self.online_bytes_down,
            "online_frames_up": self.online_frames_up,
            "online_frames_down": self.online_frames_down,
            "connections": self.connections,
        }


class SyncCore:
    """The server's document and records; fed frames, returns ``(connection, frame)`` pairs to send."""

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self.clock = clock
        self.doc: Doc[Any] = Doc()
        self.note = self.doc.get("note", type=Text)
        self.board = self.doc.get("board", type=Map)
        self.clients: dict[str, ClientRecord] = {}
        self.conns: dict[Hashable, str] = {}
        self.offline: set[str] = set()
        #: Every edit tag seen in the document: ``id -> (first time visible, ns; client whose frame made it visible)``.
        self.seen: dict[str, tuple[int, str]] = {}

    def record(self, client: str) -> ClientRecord:
        return self.clients.setdefault(client, ClientRecord())

    # -- connections ----------------------------------------------------------------
    def connect(self, conn: Hashable, client: str) -> bool:
        """Register a connection of ``client``; False (refuse it) while the harness holds the client offline."""
        if client in self.offline:
            return False
        self.conns[conn] = client
        self.record(client).connections += 1
        return True

    def disconnect(self, conn: Hashable) -> None:
        self.conns.pop(conn, None)

    def set_offline(self, client: str, offline: bool) -> list[Hashable]:
        """Hold ``client`` offline (returns its connections, for the I/O layer to close) or let it back."""
        if offline:
            self.offline.add(client)
            return [c for c, name in self.conns.items() if name == client]
        self.offline.discard(client)
        rec = self.record(client)
        rec.online_ns = self.clock()
        rec.online_bytes_up = rec.online_bytes_down = rec.online_frames_up = rec.online_frames_down = 0
        return []

    # -- frames ----------------------------------------------------------------------------
    def on_message(self, conn: Hashable, frame: bytes) -> list[tuple[Hashable, bytes]]:
        """Handle one frame from ``conn``; raise :class:`BadFrame` (counted) when it cannot be read."""
        client = self.conns[conn]
        rec = self.record(client)
        rec.bytes_up += len(frame)
        rec.online_bytes_up += len(frame)
        rec.online_frames_up += 1
        try:
            out = self._handle(conn, client, rec, frame)
        except BadFrame:
            rec.bad_frames += 1
            raise
        for target, data in out:
            name = self.conns.get(target)
            if name is not None:
                r = self.record(name)
                r.bytes_down += len(data)
                r.online_bytes_down += len(data)
                r.online_frames_down += 1
        return out

    def _handle(self, conn: Hashable, client: str, rec: ClientRecord, frame: bytes) -> list[tuple[Hashable, bytes]]:
        kind, body = frame[:1], frame[1:]
        now = self.clock()
        if kind == STATE:
            rec.received.append({"kind": "state", "bytes": len(frame), "t_ns": now})
            try:
                diff = self.doc.get_update(body)
            except ValueError as exc:
                raise BadFrame(f"bad state vector: {exc}") from None
            return [(conn, DIFF + diff), (conn, STATE + self.doc.get_state())]
        if kind in (DIFF, UPDATE):
            changed = self._apply(body, client)
            rec.received.append({"kind": "diff" if kind == DIFF else "update", "bytes": len(frame), "t_ns": now, "applied": changed})
            out = [(c, UPDATE + body) for c in self.conns if c != conn] if changed else []
            return out + ([(conn, SYNCED)] if kind == DIFF else [])
        if kind == ACTION:
            head, sep, update = body.partition(b"\n")
            if not sep:
                raise BadFrame("an action frame without its header line")
            try:
                meta = json.loads(head)
                seq, action_id = int(meta["seq"]), str(meta["id"])
            except (ValueError, KeyError, TypeError) as exc:
                raise BadFrame(f"bad action header: {exc}") from None
            entry: dict[str, Any] = {"kind": "action", "seq": seq, "id": action_id, "bytes": len(frame), "t_ns": now}
            if seq in rec.applied_actions:
                rec.duplicate_actions += 1
                entry["applied"] = False
                entry["duplicate"] = True
                rec.received.append(entry)
                return [(conn, ACK + str(seq).encode())]
            changed = self._apply(update, client)
            rec.applied_actions[seq] = action_id
            entry["applied"] = True
            rec.received.append(entry)
            out = [(c, UPDATE + update) for c in self.conns if c != conn] if changed else []
            return out + [(conn, ACK + str(seq).encode())]
        raise BadFrame(f"unknown frame kind {kind!r}")

    def _apply(self, update: bytes, client: str) -> bool:
        """Apply an update; True if it changed the document. Notes the tags it made visible."""
        before = self.doc.get_state()
        try:
            self.doc.apply_update(update)
        except ValueError as exc:  # pycrdt: "Cannot decode update: ..."
            raise BadFrame(str(exc)) from None
        if self.doc.get_state() == before:
            return False
        now = self.clock()
        for tag in self.tags():
            self.seen.setdefault(tag, (now, client))
        return True

    # -- the harness's view ---------------------------------------------------------------------
    def tags(self) -> list[str]:
        """Every edit tag in the document, once per occurrence: note tags in text order, then the board's move ids."""
        out = TAG.findall(str(self.note))
        for value in self.board.values():
            if isinstance(value, dict) and isinstance(value.get("id"), str):
                out.append(value["id"])
        return out

    def board_view(self) -> dict[str, list[float]]:
        """Token positions as ``{token: [x, y]}`` (the tags dropped), comparable with a client's."""
        return {k: [float(v["x"]), float(v["y"])] for k, v in sorted((self.board.to_py() or {}).items()) if isinstance(v, dict)}

    def state(self) -> dict[str, Any]:
        return {
            "text": str(self.note),
            "board": self.board_view(),
            "tags": self.tags(),
            "seen": {k: {"t_ns": t, "client": c} for k, (t, c) in self.seen.items()},
            "clients": {name: rec.to_dict() for name, rec in self.clients.items()},
            "offline": sorted(self.offline),
            "doc_bytes": len(self.doc.get_update()),
        }


# -- I/O ----------------------------------------------------------------------------------------


async def run(host: str, port: int, ready: Callable[[int], None] | None = None, stop: asyncio.Future[None] | None = None) -> None:
    """Serve until ``stop`` resolves (or SIGTERM/SIGINT); ``ready`` gets the port once listening."""
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.datastructures import Headers
    from websockets.exceptions import ConnectionClosed
    from websockets.http11 import Request, Response

    core = SyncCore()
    sockets: dict[ServerConnection, asyncio.Queue[bytes]] = {}

    def respond(status: int, body: Any) -> Response:
        data = (json.dumps(body) if not isinstance(body, str) else body).encode()
        ctype = "application/json" if not isinstance(body, str) else "text/plain"
        headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(data))), ("Connection", "close")])
        return Response(status, HTTPStatus(status).phrase, headers, data)

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        client = (parse_qs(url.query).get("client") or [""])[0]
        if url.path == "/sync":
            if not client:
                return respond(400, "name the client: /sync?client=NAME\n")
            if client in core.offline:
                return respond(503, "offline\n")
            return None  # the WebSocket handshake goes on
        if url.path == "/state":
            return respond(200, core.state())
        if url.path in ("/offline", "/online") and client:
            for ws in core.set_offline(client, url.path == "/offline"):
                asyncio.ensure_future(ws.close(1001, "offline"))  # type: ignore[attr-defined]
            return respond(200, {"client": client, "offline": client in core.offline})
        return respond(404, "not found\n")

    async def handler(ws: ServerConnection) -> None:
        client = (parse_qs(urlsplit(ws.request.path if ws.request else "").query).get("client") or [""])[0]
        if not core.connect(ws, client):
            await ws.close(1013, "offline")
            return
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        sockets[ws] = queue
        writer = asyncio.create_task(_writer(ws, queue))
        try:
            async for frame in ws:
                data = frame if isinstance(frame, bytes) else frame.encode()
                try:
                    out = core.on_message(ws, data)
                except BadFrame as exc:
                    await ws.close(1008, f"bad frame: {exc}".encode()[:120].decode("utf-8", "ignore"))
                    return
                for target, payload in out:
                    q = sockets.get(target)  # type: ignore[call-overload]
                    if q is not None:
                        q.put_nowait(payload)
        except ConnectionClosed:
            pass
        finally:
            core.disconnect(ws)
            sockets.pop(ws, None)
            writer.cancel()

    loop = asyncio.get_running_loop()
    if stop is None:
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _resolve, stop)
    async with serve(handler, host, port, process_request=process_request, max_size=None, compression=None) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        if ready is not None:
            ready(bound)
        await stop


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _writer(ws: Any, queue: asyncio.Queue[bytes]) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        while True:
            await ws.send(await queue.get())
    except ConnectionClosed:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(run(args.host, args.port, ready=lambda port: print(f"READY port={port}", flush=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
