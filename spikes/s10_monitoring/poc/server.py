"""The instrumented tabletop server of Spike 10: websockets, one of five instrumentation back ends.

Run (cwd = repo root)::

    python -m spikes.s10_monitoring.poc.server --host 127.0.0.1 --port 0 --instrument prometheus \
        [--dogstatsd HOST:PORT] [--dogstatsd-unbuffered] [--sentry-dsn DSN] [--redis HOST:PORT] [--user-labels]

Prints ``READY port=N`` when listening. Speaks ``harness/load/protocol.py`` (echo, join, broadcast;
binary frames echoed), plus ``{"op": "fail", "kind": "K"}``: the handler raises a real ``ValueError``,
the instrumentation records it as an error of kind K (bounded, see ``instruments.ERROR_KINDS``), the
server answers ``{"op": "failed", "kind": "K"}`` and keeps the connection. A frame that is not a JSON
object is an error of kind ``decode``, answered ``{"op": "error"}``; the connection stays.

HTTP on the same port: ``GET /health`` -> 200 ``ok``; ``GET /metrics`` -> the Prometheus text
exposition (prometheus and otel; 404 for the others).

With ``--redis``: a ping every 0.5 s sets ``tabletop_dependency_up{dep="redis"}``, every broadcast is
appended to a capped Redis list (``tabletop:broadcasts``, last 1000) by one writer task; a Redis
failure is an error of kind ``redis``, never a crash. SIGTERM/SIGINT: close every connection (1001),
flush the back end (sentry, dogstatsd, spans), print ``STOPPED ...`` with its counts, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from spikes.s10_monitoring.poc import instruments as ins

__all__ = ["Tabletop", "main", "REDIS_LIST", "REDIS_CAP"]

REDIS_LIST = "tabletop:broadcasts"
REDIS_CAP = 1000
REDIS_PING_S = 0.5
REDIS_TIMEOUT_S = 1.0
REDIS_QUEUE = 10_000
#: The event-loop lag probe's timer.
LAG_PROBE_S = 0.1


class Tabletop:
    """The server's state: rooms, the instrumentation, the optional Redis dependency."""

    def __init__(self, inst: ins.Instruments, user_labels: bool = False, redis_addr: str | None = None) -> None:
        self.inst = inst
        self.user_labels = user_labels
        self.rooms: dict[str, set[ServerConnection]] = {}
        self.redis_addr = redis_addr
        self.redis: Any = None
        self.queue: asyncio.Queue[bytes] | None = None
        self.redis_errors = 0

    # -- WebSocket ------------------------------------------------------------------
    async def handler(self, ws: ServerConnection) -> None:
        """Serve one connection until it closes; count it opened and closed (normal or abnormal)."""
        inst = self.inst
        inst.conn_opened()
        joined: set[str] = set()
        try:
            async for frame in ws:
                t0 = time.perf_counter()
                await self._one(ws, frame, joined)
                inst.handled(time.perf_counter() - t0)
        except ConnectionClosed:
            pass
        finally:
            for room in joined:
                members = self.rooms.get(room)
                if members is not None:
                    members.discard(ws)
                    if not members:
                        del self.rooms[room]
            inst.conn_closed(ins.code_class(ws.close_code) == "abnormal")

    async def _one(self, ws: ServerConnection, frame: str | bytes, joined: set[str]) -> None:
        inst = self.inst
        if isinstance(frame, bytes):
            with inst.span("echo"):
                inst.message("echo", len(frame))
                await ws.send(frame)
            return
        nbytes = len(frame.encode())
        try:
            msg = orjson.loads(frame)
            if not isinstance(msg, dict):
                raise ValueError("expected a JSON object")
        except ValueError as exc:
            inst.message("other", nbytes)
            inst.error(exc, "decode")
            await ws.send('{"op":"error","reason":"expected a JSON object with an op"}')
            return
        op = ins.bound_op(msg.get("op"))
        user = str(msg.get("c")) if self.user_labels and "c" in msg else None
        with inst.span(op):
            inst.message(op, nbytes, user)
            if op == "echo":
                await ws.send(frame)
            elif op in ("join", "broadcast") and not isinstance(msg.get("room"), str):
                await ws.send('{"op":"error","reason":"room must be a string"}')
            elif op == "join":
                self.rooms.setdefault(msg["room"], set()).add(ws)
                joined.add(msg["room"])
                await ws.send(orjson.dumps({"op": "joined", "room": msg["room"]}).decode())
            elif op == "broadcast":
                broadcast(self.rooms.get(msg["room"], ()), frame)
                if self.queue is not None:
                    self._enqueue(frame.encode())
            elif op == "fail":
                kind = msg.get("kind")
                try:
                    raise ValueError(f"fail requested by the client: kind={kind!r}")
                except ValueError as exc:
                    inst.error(exc, ins.bound_kind(kind))
                await ws.send(orjson.dumps({"op": "failed", "kind": kind}).decode())
            else:
                await ws.send('{"op":"error","reason":"unknown op"}')

    # -- HTTP -----------------------------------------------------------------------
    def process_request(self, conn: ServerConnection, request: Any) -> Any:
        """``/health`` and ``/metrics`` without a WebSocket upgrade; anything else upgrades."""
        path = request.path.split("?", 1)[0]
        if path == "/health":
            return conn.respond(200, "ok\n")
        if path == "/metrics":
            text = self.inst.metrics_text()
            if text is None:
                return conn.respond(404, f"no metrics endpoint for instrument {self.inst.name}\n")
            resp = conn.respond(200, "")
            resp.body = text
            del resp.headers["Content-Type"]
            del resp.headers["Content-Length"]
            resp.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
            resp.headers["Content-Length"] = str(len(text))
            return resp
        return None

    # -- Redis ----------------------------------------------------------------------
    def _redis_failed(self, exc: BaseException) -> None:
        self.redis_errors += 1
        self.inst.error(exc, "redis")

    def _enqueue(self, data: bytes) -> None:
        assert self.queue is not None
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull as exc:  # the writer is stuck (Redis slow or down): drop, count
            self._redis_failed(exc)

    async def redis_pinger(self) -> None:
        """Ping every 0.5 s; the gauge follows; a failure is an error of kind ``redis``."""
        while True:
            up = False
            try:
                up = bool(await asyncio.wait_for(self.redis.ping(), REDIS_TIMEOUT_S))
            except Exception as exc:  # noqa: BLE001 - any Redis or network failure is counted, never fatal
                self._redis_failed(exc)
            self.inst.dependency("redis", up)
            await asyncio.sleep(REDIS_PING_S)

    async def redis_writer(self) -> None:
        """Append queued broadcasts to the capped list, a pipeline per batch."""
        assert self.queue is not None
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < 500:
                batch.append(self.queue.get_nowait())
            try:
                pipe = self.redis.pipeline(transaction=False)
                pipe.rpush(REDIS_LIST, *batch)
                pipe.ltrim(REDIS_LIST, -REDIS_CAP, -1)
                await asyncio.wait_for(pipe.execute(), REDIS_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - counted, the batch is lost
                self._redis_failed(exc)

    async def start_redis(self) -> list[asyncio.Task[None]]:
        if not self.redis_addr:
            return []
        import redis.asyncio as aredis

        host, _, port = self.redis_addr.rpartition(":")
        self.redis = aredis.Redis(
            host=host or "127.0.0.1",
            port=int(port),
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            retry_on_timeout=False,
        )
        self.queue = asyncio.Queue(REDIS_QUEUE)
        return [asyncio.create_task(self.redis_pinger()), asyncio.create_task(self.redis_writer())]

    async def lag_probe(self, interval_s: float = LAG_PROBE_S) -> None:
        """Time a ``interval_s`` sleep again and again: how late it wakes is how long every message waited for the loop
        (a long handler, a blocking call, a frozen or starved process)."""
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(interval_s)
            self.inst.loop_lag(max(0.0, time.perf_counter() - t0 - interval_s))

    async def ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self.inst.tick()
            except Exception as exc:  # noqa: BLE001 - a failed push (ENOBUFS...) is counted, never fatal
                self.inst.error(exc, "other")


async def main(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT, then close every connection with 1001 and flush the back end."""
    inst = ins.make(
        args.instrument,
        dogstatsd=args.dogstatsd,
        sentry_dsn=args.sentry_dsn,
        user_labels=args.user_labels,
        redis=bool(args.redis),
        buffered=not args.dogstatsd_unbuffered,
    )
    app = Tabletop(inst, user_labels=args.user_labels, redis_addr=args.redis)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    tasks = await app.start_redis()
    tasks.append(asyncio.create_task(app.ticker()))
    tasks.append(asyncio.create_task(app.lag_probe()))
    try:
        async with serve(app.handler, args.host, args.port, process_request=app.process_request) as server:
            print(f"READY port={server.sockets[0].getsockname()[1]} instrument={inst.name}", flush=True)
            await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if app.redis is not None:
            with contextlib.suppress(Exception):
                await app.redis.aclose()
        inst.close()
        stats = " ".join(f"{k}={v}" for k, v in {**inst.stats(), "redis_errors": app.redis_errors}.items())
        print(f"STOPPED instrument={inst.name} {stats}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--instrument", choices=ins.BACKENDS, default="none")
    p.add_argument("--dogstatsd", default=None, help="HOST:PORT of the DogStatsD listener (instrument datadog)")
    p.add_argument("--dogstatsd-unbuffered", action="store_true", help="one datagram per metric (library default)")
    p.add_argument("--sentry-dsn", default=None, help="the Sentry DSN (instrument sentry)")
    p.add_argument("--redis", default=None, help="HOST:PORT of Redis: ping + capped list of broadcasts")
    p.add_argument("--user-labels", action="store_true", help="tabletop_user_messages_total{user} by the `c` field")
    return p.parse_args(argv)


if __name__ == "__main__":
    ns = parse_args()
    try:
        import uvloop
    except ImportError:  # uvloop is optional: the stdlib loop works, only slower
        asyncio.run(main(ns))
    else:
        uvloop.run(main(ns))
    sys.exit(0)
