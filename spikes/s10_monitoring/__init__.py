"""Spike 10: monitoring and observability, with real back ends, measured overhead and alerts that fire on real faults.

The plugin (``plugin.py``) declares the four back ends compared (Prometheus, OpenTelemetry, DataDog's DogStatsD,
Sentry), the scenarios (``scenarios.py``) and the document; the custom dashboard and the DevTools integration are
measured beside them. This package file stays light on purpose: the POC server started as
``python -m spikes.s10_monitoring.poc.server`` imports it; ``spike`` and ``MonitoringSpike`` are loaded from
``plugin.py`` when first asked for.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MonitoringSpike", "spike", "WEIGHTS"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from spikes.s10_monitoring import plugin

        return getattr(plugin, name)
    raise AttributeError(f"module 'spikes.s10_monitoring' has no attribute {name!r}")
