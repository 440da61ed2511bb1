"""Spike 10's tabletop server as a process: one declaration, started one way.

Each option declares the server with its own instrumentation (``Option.server``: :func:`declared`), and every
scenario starts it through the harness's :func:`harness.poc.server_process` with :func:`server_process` here:
the instrument's option (or :data:`BASELINE`, the server with no instrumentation that overhead is measured
against), the flags a scenario adds (a Redis address, a DogStatsD or Sentry address, per-user labels), its log
in the scenario's work directory. The server prints ``READY port=N`` once it listens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

from harness import poc
from harness.plugin import Option
from harness.process import ServerProcess

__all__ = ["MODULE", "declared", "BASELINE", "option_for", "server_process"]

MODULE = "spikes.s10_monitoring.poc.server"


def declared(instrument: str) -> poc.PocServer:
    """The server instrumented with ``instrument`` (``prometheus``, ``otel``, ``datadog``, ``sentry`` or ``none``)."""
    return poc.PocServer(
        ("{python}", "-m", MODULE, "--host", "{host}", "--port", "{port}", "--instrument", instrument), ready=r"log:READY port=\d+"
    )


#: The uninstrumented server: not an option of the spike, the baseline its overhead is measured against.
BASELINE = Option("none", "No instrumentation", "the same server with no instrumentation", server=declared("none"))


def option_for(instrument: str) -> Option:
    """The spike's option for ``instrument``, or :data:`BASELINE` for ``none``."""
    if instrument == BASELINE.key:
        return BASELINE
    from spikes.s10_monitoring.plugin import spike  # here: the plugin imports the scenarios, which import this

    return spike.option(instrument)


def server_process(
    instrument: str,
    workdir: Path,
    *,
    extra: Sequence[str] = (),
    name: str | None = None,
    log_name: str | None = None,
    cpus: Iterable[int] | None = None,
    grace: float = 3.0,
    ready_timeout: float = 30.0,
) -> ServerProcess:
    """The server with ``instrument`` and the ``extra`` flags, on a free loopback port (not started)."""
    option = option_for(instrument)
    spec = poc.resolve(option)
    if extra:
        spec = dataclasses.replace(spec, argv=(*spec.argv, *extra))
    server, _url = poc.server_process(
        option,
        workdir,
        name=name or f"s10-server-{instrument}",
        log_name=log_name or f"server-{instrument}.log",
        cpus=cpus,
        grace=grace,
        ready_timeout=ready_timeout,
        spec=spec,
    )
    return server
