"""Spike 4's proof-of-concept activity-feed servers: one room model (``feed.py``), three transports (SSE, long polling, WebSocket).

:func:`server` is how the plugin declares them (``Option(server=...)``): each
prints ``READY port=<n>`` once it listens and answers ``GET /health``; ``extra``
adds options (``--history``, ``--keepalive-s``, ``--hold-s``, ``--static``...).
``all`` serves the three transports on one port (one origin).
"""

from __future__ import annotations

from harness.poc import PocServer

__all__ = ["MODULES", "URLS", "server"]

#: The server module of each transport (``all``: the three on one port).
MODULES = {"sse": "sse_server", "poll": "longpoll_server", "ws": "ws_server", "all": "all"}
#: The URL a client of each is given: the HTTP base for SSE and long polling (``/sse``, ``/poll``, ``/send`` under it), the socket for WebSocket.
URLS = {"sse": "http://{host}:{port}", "poll": "http://{host}:{port}", "ws": "ws://{host}:{port}/ws", "all": "http://{host}:{port}"}


def server(transport: str, *extra: str) -> PocServer:
    """The :class:`PocServer` declaration of one transport's POC server, with ``extra`` command-line options."""
    argv = ("{python}", "-m", f"spikes.s04_transport.poc.{MODULES[transport]}", "--host", "{host}", "--port", "{port}", *extra)
    return PocServer(argv, url=URLS[transport], ready="log:READY port=")
