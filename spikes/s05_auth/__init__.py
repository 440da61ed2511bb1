"""Spike 5: authentication for real-time connections, with an attack battery.

The plugin (``plugin.py``) declares the four options (POC servers under
``poc/``, logic in ``core.py``), the scenarios (``scenarios.py``) and the
document. This package file stays light on purpose: a POC server started as
``python -m spikes.s05_auth.poc.server`` imports it, and must not pull in the
harness's process, service and browser modules; ``spike``, ``AuthSpike`` and
``WEIGHTS`` are loaded from ``plugin.py`` when first asked for.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AuthSpike", "spike", "WEIGHTS"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from spikes.s05_auth import plugin

        return getattr(plugin, name)
    raise AttributeError(f"module 'spikes.s05_auth' has no attribute {name!r}")
