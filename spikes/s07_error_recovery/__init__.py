"""Spike 7: error recovery, measured with real faults and the harness's loss account.

The plugin (``plugin.py``) declares the recovery strategies (one POC server, ``poc/server.py --strategy KEY``,
its logic in ``core.py``), the scenarios (``scenarios.py``) and the document. This package file stays light
on purpose: the POC server imports ``core`` and must not pull in the harness's process and fault modules;
``spike`` and ``RecoverySpike`` load from ``plugin.py`` when first asked for.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RecoverySpike", "spike"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from spikes.s07_error_recovery import plugin

        return getattr(plugin, name)
    raise AttributeError(f"module 'spikes.s07_error_recovery' has no attribute {name!r}")
