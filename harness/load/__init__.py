"""The load engine: schedules, client adapters per transport, HDR latency from intended send times.

``run_load(LoadSpec(...))`` drives a server from separate generator
processes and returns a ``LoadResult``; ``hold_idle`` keeps many idle
connections open for memory measurements; ``protocol`` documents the wire
protocol every POC server speaks. ``python -m harness.load URL ...`` runs
a load from the command line; ``python -m harness.load.selftest`` measures
the generator itself.

Transports (``LoadSpec.transport``): ``ws`` (native WebSocket, a lean raw
client: the default), ``ws-websockets`` (the ``websockets`` library client;
the one that can negotiate compression), ``socketio`` (python-socketio's
AsyncClient, websocket transport) and ``socketio-raw`` (the same Socket.IO
protocol on the raw client, for loading a server without the client being
the bottleneck). More register through ``harness.load.clients.register``.

Choices worth knowing: sends are timed with a Linux timerfd (uvloop's own
timers have millisecond resolution); ``burst`` arrivals are random within
the window (a Poisson process), ``ramp`` arrivals evenly spaced; broadcast
runs start sending only once every connection has joined the room; a result
is ``client_bound`` when a generator process used 90 % of a core or fell
more than 10 ms (p99) behind its send schedule.

By role: ``engine`` is the parent (deal the connections, supervise the
generator processes, merge their reports), ``generator`` one generator
process, ``report`` the typed messages between them. ``LoadSpec.reconnect``
(a ``ReconnectPolicy``: exponential backoff, full jitter) brings dropped
connections back, resuming through the ``LoadSpec.resume`` adapter
(``clients.resume``); ``LoadSpec.account`` (on with ``reconnect``) counts
every message into ``account.Account``, the one definition of sent,
delivered, lost after and without acknowledgement, duplicated, unexpected
and reordered.
"""

from __future__ import annotations

from harness.load.account import Account, ConnLog, FaultWindow
from harness.load.clients import Client, ConnectError, get_client_class, register, transports
from harness.load.clients.resume import Resume, register_resume, resume_adapters
from harness.load.engine import run_load
from harness.load.idle import ConnectStats, IdleConnections, hold_idle
from harness.load.spec import MODES, LoadResult, LoadSpec, ReconnectPolicy

__all__ = [
    "LoadSpec",
    "LoadResult",
    "ReconnectPolicy",
    "Account",
    "ConnLog",
    "FaultWindow",
    "Resume",
    "register_resume",
    "resume_adapters",
    "MODES",
    "run_load",
    "hold_idle",
    "IdleConnections",
    "ConnectStats",
    "Client",
    "ConnectError",
    "register",
    "get_client_class",
    "transports",
]
