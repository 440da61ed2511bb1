"""Spike 8: browser storage for offline play, measured in three engines with a real offline-to-online sync.

The plugin (``plugin.py``) declares the six stores, the scenarios (``scenarios.py`` running ``bench.py``,
``lifecycle.py`` and ``sync.py``) and the document. This package file stays light on purpose: the sync server
started as ``python -m spikes.s08_browser_storage.sync_server`` imports it; ``spike``, ``BrowserStorageSpike``,
``WEIGHTS`` and ``KINDS`` are loaded from ``plugin.py`` when first asked for.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BrowserStorageSpike", "spike", "WEIGHTS", "KINDS"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from spikes.s08_browser_storage import plugin

        return getattr(plugin, name)
    raise AttributeError(f"module 'spikes.s08_browser_storage' has no attribute {name!r}")
