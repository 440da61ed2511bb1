"""Which of the seed's five signals each back end carries, seen at the back end itself after a scripted session.

For each instrument, the real server runs with its back end live (a scrape of ``/metrics`` for prometheus and
otel, the DogStatsD sink for datadog, the Sentry ingest for sentry); a scripted session then opens
``connections`` WebSocket connections, sends ``echo`` messages, a join and a broadcast, ``fails`` failing
messages (real exceptions in the handler), closes one connection cleanly and drops one without a close frame.
A signal counts as carried when the back end received it with the values the session implies (for example
at least as many ``echo`` messages as were sent), so a name that is exposed but never moves is not credited.
The evidence (the series or metric names and their values) is kept for the document.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import connect

from harness.process import ServerProcess

__all__ = [
    "SIGNALS",
    "INSTRUMENTS",
    "DEFAULT_PARAMS",
    "QUICK_PARAMS",
    "run_signals",
    "carried_in_prometheus",
    "carried_in_dogstatsd",
    "families",
]

#: The seed's five signals, in its order.
SIGNALS = ("lifecycle", "flow", "errors", "latency", "resources")
INSTRUMENTS = ("prometheus", "otel", "datadog", "sentry")
DEFAULT_PARAMS: dict[str, Any] = {"instruments": list(INSTRUMENTS), "connections": 3, "echoes": 10, "fails": 4, "settle_s": 2.5}
QUICK_PARAMS: dict[str, Any] = DEFAULT_PARAMS | {"settle_s": 2.0}


def _families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> labels -> value, from a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = float(s.value)
    return out


def _total(fams: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    return sum(v for lab, v in fams.get(name, {}).items() if all((k, want) in lab for k, want in labels.items()))


def families(text: str) -> list[dict[str, Any]]:
    """Every metric family of an exposition: name, type, help text and label names (the list of metrics to export)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for fam in text_string_to_metric_families(text):
        labels = sorted({k for s in fam.samples for k in s.labels if k not in ("le", "quantile")})
        out.append({"name": fam.name, "type": fam.type, "help": fam.documentation, "labels": labels})
    return out


def carried_in_prometheus(text: str, session: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per signal: carried or not, and the values that say so, from one scrape after the session."""
    f = _families(text)
    echo = _total(f, "tabletop_messages_total", op="echo")
    opened = _total(f, "tabletop_connections_opened_total")
    closed_n = _total(f, "tabletop_connections_closed_total", code_class="normal")
    closed_a = _total(f, "tabletop_connections_closed_total", code_class="abnormal")
    errors = _total(f, "tabletop_errors_total")
    handled = _total(f, "tabletop_handle_seconds_count")
    buckets = len(f.get("tabletop_handle_seconds_bucket", {}))
    rss = _total(f, "process_resident_memory_bytes")
    cpu = _total(f, "process_cpu_seconds_total")
    fds = _total(f, "process_open_fds")
    return {
        "lifecycle": {
            "carried": opened == session["connections"] and closed_n >= 1 and closed_a >= 1 and "tabletop_connections" in f,
            "evidence": f"opened {opened:g}, closed normally {closed_n:g}, abnormally {closed_a:g}, open now {_total(f, 'tabletop_connections'):g}",
        },
        "flow": {
            "carried": echo == session["echoes"] and _total(f, "tabletop_message_bytes_total") > 0,
            "evidence": f"echo messages {echo:g} (sent {session['echoes']}), bytes {_total(f, 'tabletop_message_bytes_total'):g}",
        },
        "errors": {"carried": errors == session["fails"], "evidence": f"errors {errors:g} (raised {session['fails']})"},
        "latency": {
            "carried": handled >= session["echoes"] and buckets > 1,
            "evidence": f"histogram count {handled:g}, {buckets} bucket series",
        },
        "resources": {"carried": rss > 0 and cpu > 0 and fds > 0, "evidence": f"RSS {rss / 1048576:.1f} MiB, CPU {cpu:g} s, fds {fds:g}"},
    }


def carried_in_dogstatsd(counts: dict[str, Any], session: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per signal, from what the DogStatsD sink received (values summed per metric name)."""
    by = counts.get("by_name") or {}

    def seen(name: str) -> float:
        return float((by.get(name) or {}).get("count", 0))

    def total(name: str) -> float:
        return float((by.get(name) or {}).get("sum", 0.0))

    return {
        "lifecycle": {
            "carried": total("tabletop.connections.opened") >= session["connections"] and seen("tabletop.connections.closed") >= 2,
            "evidence": f"opened {total('tabletop.connections.opened'):g}, closed packets {seen('tabletop.connections.closed'):g}, "
            f"gauge packets {seen('tabletop.connections'):g}",
        },
        "flow": {
            "carried": total("tabletop.messages") >= session["echoes"],
            "evidence": f"messages {total('tabletop.messages'):g} (echoes sent {session['echoes']})",
        },
        "errors": {"carried": total("tabletop.errors") >= session["fails"], "evidence": f"errors {total('tabletop.errors'):g}"},
        "latency": {
            "carried": seen("tabletop.handle_seconds") >= session["echoes"],
            "evidence": f"histogram packets {seen('tabletop.handle_seconds'):g}",
        },
        "resources": {
            "carried": seen("process.resident_memory_bytes") > 0 and seen("process.open_fds") > 0,
            "evidence": f"RSS gauge packets {seen('process.resident_memory_bytes'):g}, fds {seen('process.open_fds'):g}",
        },
    }


def carried_in_sentry(counts: dict[str, Any], session: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Sentry carries errors (one event per exception); the other signals are not what it is for."""
    events = int(counts.get("events") or 0)
    out = {s: {"carried": False, "evidence": "not sent: sentry-sdk is set up for errors only"} for s in SIGNALS}
    out["errors"] = {"carried": events >= session["fails"], "evidence": f"error events received {events} (raised {session['fails']})"}
    return out


async def _session(url: str, p: dict[str, Any]) -> dict[str, int]:
    """The scripted session; returns what it did."""
    conns = [await connect(url) for _ in range(p["connections"])]
    sent = 0
    for i in range(p["echoes"]):
        ws = conns[i % len(conns)]
        await ws.send(orjson.dumps({"op": "echo", "seq": i, "t": time.time_ns(), "c": 0, "d": "x" * 16}).decode())
        await ws.recv()
        sent += 1
    await conns[0].send(orjson.dumps({"op": "join", "room": "r"}).decode())
    await conns[0].recv()
    await conns[0].send(orjson.dumps({"op": "broadcast", "room": "r", "seq": 0, "t": time.time_ns(), "c": 0, "d": "b"}).decode())
    await conns[0].recv()
    for _ in range(p["fails"]):
        await conns[-1].send(orjson.dumps({"op": "fail", "kind": "value"}).decode())
        await conns[-1].recv()
    await conns[0].close()  # a clean close (1000)
    transport = conns[1].transport
    transport.abort()  # dropped without a close frame: abnormal (1006)
    with contextlib.suppress(Exception):
        await conns[1].wait_closed()
    for ws in conns[2:]:
        await ws.close()
    return {"connections": p["connections"], "echoes": sent, "fails": p["fails"]}


@contextlib.contextmanager
def _server(instrument: str, workdir: Path, extra: list[str]) -> Iterator[ServerProcess]:
    from spikes.s10_monitoring.poc import launch

    server = launch.server_process(
        instrument, workdir, extra=extra, name=f"s10-{instrument}", log_name=f"signals-{instrument}.log", grace=5.0
    )
    with server:
        yield server


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:  # noqa: S310 - loopback only
        body: bytes = r.read()
    return body.decode()


def run_signals(params: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Per instrument: each signal carried or not, with its evidence, and the session that was run."""
    from spikes.s10_monitoring.poc.sinks import DogStatsdSink, SentryIngest

    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    for instrument in params["instruments"]:
        with contextlib.ExitStack() as stack:
            extra: list[str] = []
            sink = ingest = None
            if instrument == "datadog":
                sink = stack.enter_context(DogStatsdSink())
                extra = ["--dogstatsd", sink.address]
            elif instrument == "sentry":
                ingest = stack.enter_context(SentryIngest())
                extra = ["--sentry-dsn", ingest.dsn]
            server = stack.enter_context(_server(instrument, workdir, extra))
            assert server.port is not None
            session = asyncio.run(_session(f"ws://127.0.0.1:{server.port}/", params))
            time.sleep(params["settle_s"])  # DogStatsD gauges go once a second; sentry-sdk sends from its own thread
            exposed: list[dict[str, Any]] = []
            if instrument in ("prometheus", "otel"):
                text = _scrape(server.port)
                carried = carried_in_prometheus(text, session)
                exposed = families(text)
            elif sink is not None:
                carried = carried_in_dogstatsd(sink.counts(), session)
            elif ingest is not None:
                carried = carried_in_sentry(ingest.counts(), session)
            else:  # pragma: no cover - INSTRUMENTS lists the four above
                raise ValueError(f"no back end to read for {instrument!r}")
            out[instrument] = {"session": session, "signals": carried, "families": exposed}
    return {"instruments": out, "signals": list(SIGNALS)}
