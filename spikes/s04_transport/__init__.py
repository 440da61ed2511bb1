"""Spike 4: SSE vs long polling vs WebSocket for the activity feed, through real proxies and three browser engines.

The plugin (``plugin.py``) declares the three options (POC servers under ``poc/``), the scenarios
(``scenarios.py``, ``proxies.py``, ``browsers.py``, ``compat.py``, ``badinput.py``, ``robustness.py``) and
the document. This package file stays light on purpose: a POC server started as ``python -m
spikes.s04_transport.poc.sse_server`` imports it, and must not pull in the harness's load, service and
browser modules; ``spike``, ``TransportSpike`` and ``WEIGHTS`` are loaded from ``plugin.py`` when first asked for.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TransportSpike", "spike", "WEIGHTS"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from spikes.s04_transport import plugin

        return getattr(plugin, name)
    raise AttributeError(f"module 'spikes.s04_transport' has no attribute {name!r}")
