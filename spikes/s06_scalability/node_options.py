"""Spike 6's Node options: Spike 1's SvelteKit adapter-node server with `ws`, as one process and as two behind nginx with Redis.

The server (``node/server.js``) is a copy of Spike 1's design, not an import of it: the SvelteKit app's
adapter-node handler on a Node HTTP server, with a ``ws`` WebSocketServer on that server's upgrade event at
``/ws``. It speaks the load engine's protocol exactly as ``poc/native_server.py`` does, persists every chat
message to PostgreSQL the way ``poc/persist.py`` does (a buffer written with ``COPY`` every 50 ms or 1,000
rows, one transaction per batch: ``pg`` with ``pg-copy-streams``, ``node/persist.js``), and with ``--redis``
relays each broadcast through a Redis channel per room as the native-redis option does.

The Redis client is node-redis (``@redis/client``, the core the ``redis`` package re-exports, without the
RedisJSON/Search/TimeSeries/Bloom command sets this server has no use for), rather than ioredis: it is the
client the Redis project develops and documents, it is the one Spike 7's socket.io anchor already runs (one
Node Redis client in the project, not two), and its subscriber hands messages over as Buffers, which the
server sends on unchanged. Both pipeline a connection's commands in order, which is what keeps one sender's
broadcasts in order across processes.

SvelteKit serves no WebSocket frame: after the upgrade the bytes go from the socket to ``ws``. What the
framework adds to the measurement is its handler's memory and start-up, which is what a tabletop built on
SvelteKit would carry.

The app is built by :func:`harness.npm.vite_build` from the committed ``node/package-lock.json`` (``npm ci``
into the npm cache, then ``vite build``, once per source hash); nothing is written into the source tree.
"""

from __future__ import annotations

from pathlib import Path

from harness import npm
from harness.plugin import Option
from harness.poc import PocServer

__all__ = ["NODE_DIR", "NPM_NAME", "PACKAGES", "NODE_OPTIONS", "node_server", "versions"]

NODE_DIR = Path(__file__).resolve().parent / "node"
#: The name of the install and build in the npm cache (``<cache>/s06-node-<hash>``, ``<cache>/s06-node-build-<hash>``).
NPM_NAME = "s06-node"
#: The npm packages the server runs on, pinned by ``node/package-lock.json``.
PACKAGES = ("@sveltejs/kit", "@sveltejs/adapter-node", "ws", "pg", "pg-copy-streams", "@redis/client")
#: The server's own files (linked from the document, counted for the complexity criterion).
CODE = (
    "node/server.js",
    "node/persist.js",
    "node/src/routes/health/+server.js",
    "node/svelte.config.js",
    "node/vite.config.js",
)


def versions() -> dict[str, str]:
    """The versions the lock pins for :data:`PACKAGES` (empty when the lock is not there to read)."""
    try:
        return npm.locked_versions(NODE_DIR, PACKAGES)
    except (OSError, KeyError, ValueError):
        return {}


def _pinned(names: tuple[str, ...]) -> str:
    pins = versions()
    return ", ".join(f"{n} {pins[n]}" if n in pins else n for n in names)


def node_server() -> PocServer:
    """The Node server's :class:`PocServer`: build the app (cached), then ``node server.js`` in the build's directory.

    Placeholders the caller fills: ``{pg}`` (the PostgreSQL DSN), ``{redis}`` (the Redis URL; empty: no fan-out)
    and ``{server_id}`` (the number written with each row). Raises :class:`harness.plugin.NotRunnable` with the
    install command when ``node`` (20 or newer) or ``npm`` is missing; an ``npm ci`` or ``vite build`` that fails
    raises :class:`harness.npm.NpmError` (a broken lock or no registry is a failure, not a missing program).
    """
    node = npm.require_program("node")
    npm.require_program("npm")
    build = npm.vite_build(NODE_DIR, NPM_NAME)
    return PocServer(
        argv=(
            node,
            "server.js",
            "--host",
            "{host}",
            "--port",
            "{port}",
            "--pg",
            "{pg}",
            "--redis",
            "{redis}",
            "--server-id",
            "{server_id}",
        ),
        url="ws://{host}:{port}/ws",
        ready=r"log:READY port=\d+",
        env={"NODE_ENV": "production"},
        cwd=str(build.parent),  # server.js and persist.js sit next to build/ and the link to node_modules
    )


_RUNTIME = ("node", "npm")

NODE_OPTIONS = (
    Option(
        "node",
        "Node ws (SvelteKit adapter-node), 1 process",
        "Spike 1's SvelteKit server: the adapter-node handler on Node's HTTP server with a `ws` WebSocketServer on its upgrade "
        "event (rooms in a Map of Sets), one process, clients connect directly; every chat message persisted to PostgreSQL in "
        f"batches with COPY, as the native server does ({_pinned(('@sveltejs/kit', 'ws', 'pg', 'pg-copy-streams'))})",
        CODE,
        ("@sveltejs/kit", "@sveltejs/adapter-node", "ws", "pg", "pg-copy-streams"),
        requires=_RUNTIME,
        server=node_server,
        client="ws",
    ),
    Option(
        "node-redis",
        "Node ws, 2 processes + Redis",
        "the same server as two processes behind nginx (round-robin over WebSocket upgrades); a Redis channel per room carries "
        f"each broadcast to the processes with members in it, through node-redis ({_pinned(('@redis/client',))})",
        CODE,
        ("@sveltejs/kit", "@sveltejs/adapter-node", "ws", "pg", "pg-copy-streams", "@redis/client", "redis-server", "nginx"),
        requires=(*_RUNTIME, "redis-server", "nginx"),
        server=node_server,
        client="ws",
    ),
)
