"""Bad input to each monitoring library and receiver: every case handled and counted, never a crash.

:func:`run_bad_input` runs each case and returns one record per case: ``{"case", "library",
"outcome", "handled", "detail"}``. ``handled`` is true when the library or receiver did something
defined (refused with an exception the caller can catch, escaped, trimmed, counted) and the next
good input still works; false when it crashed, hung, or produced output a scraper cannot parse.

Cases:

- a label value with a newline (and a quote and a backslash), and one of 10 KB, in prometheus_client
  and in the OTel SDK's Prometheus exporter: what the exposition shows, whether it still parses with
  ``prometheus_client.parser.text_string_to_metric_families`` and the value comes back unchanged;
- a metric name registered twice (prometheus_client: same registry; OTel: same meter, then as another
  instrument kind, then from another meter), and an invalid (dotted) metric name;
- malformed DogStatsD datagrams to a :class:`DogStatsdSink` (garbage, a non-number, an unknown type,
  invalid UTF-8, a good line between bad ones, a name with ``:`` and ``|`` through the real client):
  counted as malformed, the good lines counted, the sink still receiving;
- an oversized Sentry event: sentry-sdk (in a child process, since ``sentry_sdk.init`` is process-wide)
  sends a 2 MB exception message, a 5 MB context, and the 2 MB message with ``max_value_length`` set;
  a :class:`SentryIngest` with a 1 MB limit (Relay's default ``max_event_size``) says what arrived
  (events, their size) and what it refused (413).

(A scrape of a server that is gone is tested with the real Prometheus, elsewhere.)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.poc import REPO_ROOT

__all__ = ["DEFAULT_PARAMS", "QUICK_PARAMS", "run_bad_input", "SENTRY_MODES"]

DEFAULT_PARAMS: dict[str, Any] = {"big_label_bytes": 10_000, "sentry_message_bytes": 2_000_000, "sentry_limit_bytes": 1_000_000}
QUICK_PARAMS: dict[str, Any] = dict(DEFAULT_PARAMS)

NEWLINE_VALUE = 'line1\nline2 "quoted" back\\slash'
SENTRY_MODES = ("big_message", "big_context", "big_message_max_value_length")


def _case(case: str, library: str, outcome: str, handled: bool, **detail: Any) -> dict[str, Any]:
    return {"case": case, "library": library, "outcome": outcome, "handled": handled, "detail": detail}


def _guard(case: str, library: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one case; an exception out of the case itself is a record (handled False), not a crash."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the point: nothing escapes a case
        return _case(case, library, f"unexpected {type(exc).__name__}: {exc}"[:300], False)


def _parse(text: str) -> tuple[bool, str, list[Any]]:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        fams = list(text_string_to_metric_families(text))
    except Exception as exc:  # noqa: BLE001 - a parse failure is the finding
        return False, f"{type(exc).__name__}: {exc}"[:300], []
    return True, "", fams


def _label_values(fams: list[Any], family: str, label: str) -> list[str]:
    return [s.labels[label] for f in fams if f.name == family for s in f.samples if label in s.labels]


def _exposed_line(text: str, needle: str, limit: int = 240) -> str:
    for line in text.splitlines():
        if line.startswith(needle):
            return line[:limit] + (f"... ({len(line)} chars)" if len(line) > limit else "")
    return ""


# -- prometheus_client -------------------------------------------------------------------------------


def _prom_label(case: str, value: str) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry, Counter, generate_latest

    reg = CollectorRegistry()
    c = Counter("bad_labels", "bad label values", ["user"], registry=reg)
    c.labels(value).inc()
    c.labels("next").inc()  # the next good input
    text = generate_latest(reg).decode()
    ok, err, fams = _parse(text)
    back = _label_values(fams, "bad_labels", "user")
    same = value in back
    outcome = "escaped in the exposition; the scrape parses and the value comes back" if ok and same else (err or "changed")
    return _case(
        case,
        "prometheus_client",
        outcome,
        ok and same and "next" in back,
        exposed=_exposed_line(text, "bad_labels_total{"),
        exposition_bytes=len(text),
        parses=ok,
        parse_error=err,
        round_trip=same,
    )


def _prom_clash() -> dict[str, Any]:
    from prometheus_client import CollectorRegistry, Counter, Gauge

    reg = CollectorRegistry()
    Counter("dup", "first", registry=reg)
    refusals = []
    for make in (lambda: Counter("dup", "second", registry=reg), lambda: Gauge("dup_total", "as a gauge", registry=reg)):
        try:
            make()
            refusals.append("accepted")
        except ValueError as exc:
            refusals.append(f"ValueError: {exc}")
    refused = all(r.startswith("ValueError") for r in refusals)
    return _case(
        "metric_name_clash",
        "prometheus_client",
        "the second registration raises ValueError (Duplicated timeseries); the first stays" if refused else "accepted",
        refused,
        attempts=["Counter('dup') again", "Gauge('dup_total')"],
        results=refusals,
    )


def _prom_invalid_name() -> dict[str, Any]:
    from prometheus_client import CollectorRegistry, Counter, generate_latest

    reg = CollectorRegistry()
    try:
        Counter("tabletop.messages", "dotted", registry=reg).inc()
    except ValueError as exc:
        return _case("invalid_metric_name", "prometheus_client", f"refused: ValueError: {exc}", True, name="tabletop.messages")
    text = generate_latest(reg).decode()
    ok, err, fams = _parse(text)
    names = [s.name for f in fams for s in f.samples]
    return _case(
        "invalid_metric_name",
        "prometheus_client",
        f"accepted (UTF-8 names); the classic text format escapes it: {names}" if ok else f"scrape does not parse: {err}",
        ok,
        name="tabletop.messages",
        exported=names,
    )


# -- OpenTelemetry -------------------------------------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname} {record.name}: {record.getMessage()}"[:300])


def _otel() -> tuple[Any, Any, Any]:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry()
    mp = MeterProvider(metric_readers=[PrometheusMetricReader(registry=reg)])
    return reg, mp, mp.get_meter("badinput")


def _otel_label(case: str, value: str) -> dict[str, Any]:
    from prometheus_client import generate_latest

    reg, mp, m = _otel()
    try:
        c = m.create_counter("bad_labels")
        c.add(1, {"user": value})
        c.add(1, {"user": "next"})
        text = generate_latest(reg).decode()
    finally:
        mp.shutdown()
    ok, err, fams = _parse(text)
    back = _label_values(fams, "bad_labels", "user")
    same = value in back
    outcome = "escaped in the exposition; the scrape parses and the value comes back" if ok and same else (err or "changed")
    return _case(
        case,
        "opentelemetry-exporter-prometheus",
        outcome,
        ok and same and "next" in back,
        exposed=_exposed_line(text, "bad_labels_total{"),
        exposition_bytes=len(text),
        parses=ok,
        parse_error=err,
        round_trip=same,
    )


def _otel_clash() -> dict[str, Any]:
    from prometheus_client import generate_latest

    rec = _Records()
    root = logging.getLogger("opentelemetry")
    root.addHandler(rec)
    reg, mp, m = _otel()
    try:
        a = m.create_counter("dup")
        b = m.create_counter("dup")
        h = m.create_histogram("dup")
        other = mp.get_meter("another").create_counter("dup")
        a.add(1)
        h.record(2.0)
        other.add(4)
        text = generate_latest(reg).decode()
    finally:
        mp.shutdown()
        root.removeHandler(rec)
    ok, err, fams = _parse(text)
    families = [(f.name, f.type, len(f.samples)) for f in fams if f.name.startswith("dup")]
    return _case(
        "metric_name_clash",
        "opentelemetry-sdk",
        "no exception: the same name twice returns "
        + ("the same counter" if a is b else "another counter")
        + "; as a histogram too it is a second instrument"
        + (f" (logged: {rec.messages[0][:120]})" if rec.messages else " (nothing logged)")
        + ", both exported"
        + ("; the scrape parses" if ok else f"; the scrape does NOT parse: {err}"),
        ok,
        same_instrument_returned=a is b,
        families=families,
        warnings=rec.messages[:5],
        exposed=[line for line in text.splitlines() if line.startswith("dup")][:8],
    )


def _otel_invalid_name() -> dict[str, Any]:
    from prometheus_client import generate_latest

    rec = _Records()
    logging.getLogger("opentelemetry").addHandler(rec)
    reg, mp, m = _otel()
    try:
        m.create_counter("tabletop.messages").add(1)
        text = generate_latest(reg).decode()
    finally:
        mp.shutdown()
        logging.getLogger("opentelemetry").removeHandler(rec)
    ok, err, fams = _parse(text)
    names = [f.name for f in fams if f.name.startswith("tabletop")]
    return _case(
        "invalid_metric_name",
        "opentelemetry-exporter-prometheus",
        f"accepted; exported as {names}" if ok else f"scrape does not parse: {err}",
        ok,
        name="tabletop.messages",
        exported=names,
        warnings=rec.messages[:3],
    )


# -- DogStatsD -----------------------------------------------------------------------------------------

BAD_DATAGRAMS: tuple[tuple[str, bytes], ...] = (
    ("garbage", b"this is not a metric"),
    ("non_number", b"tabletop.messages:abc|c"),
    ("unknown_type", b"tabletop.messages:1|zz"),
    ("invalid_utf8", b"\xff\xfe\xfd:1|c"),
    ("good_between_bad", b"ok.metric:1|c\nbad line\nok.metric:2|c|#op:echo"),
    ("empty", b""),
    ("huge_line", b"big:" + b"9" * 60_000 + b"|c"),
)


def _dogstatsd() -> dict[str, Any]:
    from datadog.dogstatsd.base import DogStatsd

    from spikes.s10_monitoring.poc.sinks import DogStatsdSink

    with DogStatsdSink() as sink:
        assert sink.port is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _, data in BAD_DATAGRAMS:
                s.sendto(data, (sink.host, sink.port))
        client = DogStatsd(host=sink.host, port=sink.port, disable_telemetry=True, origin_detection_enabled=False)
        client.increment("name:with|pipes")  # the client does not check names: the line it sends is malformed
        client.increment("after.bad")  # the next good input
        client.close_socket()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and "after.bad" not in sink.counts()["by_name"]:
            time.sleep(0.02)
        counts = sink.counts()
        alive = sink._thread is not None and sink._thread.is_alive()
    good = counts["by_name"].get("ok.metric", {}).get("count", 0)
    after = "after.bad" in counts["by_name"]
    handled = alive and after and good == 2 and counts["malformed"] >= 5
    return _case(
        "malformed_dogstatsd_packet",
        "DogStatsdSink (+ datadog client)",
        f"{counts['malformed']} malformed lines counted, {counts['metrics']} good metrics counted, sink alive={alive}",
        handled,
        sent=[name for name, _ in BAD_DATAGRAMS] + ["client increment('name:with|pipes')", "client increment('after.bad')"],
        packets=counts["packets"],
        malformed=counts["malformed"],
        malformed_samples=counts["malformed_samples"],
        good_lines_between_bad=good,
        next_good_arrived=after,
        note="an empty datagram is not counted as a line; invalid UTF-8 in a name is decoded with replacement characters and accepted; a 60 KB line arrives whole (UDP on loopback)",
    )


# -- Sentry ------------------------------------------------------------------------------------------


def sentry_child(dsn: str, mode: str, nbytes: int) -> dict[str, Any]:
    """In a fresh process: init sentry-sdk, capture one oversized error, flush; what the SDK says."""
    import sentry_sdk

    opts: dict[str, Any] = {"dsn": dsn, "traces_sample_rate": None}
    if mode == "big_message_max_value_length":
        opts["max_value_length"] = 1024
    sentry_sdk.init(**opts)
    big = os.urandom(nbytes // 2).hex()  # random: compression does not hide the size
    if mode == "big_context":
        sentry_sdk.set_context("big", {"items": [big[i : i + 1000] for i in range(0, len(big), 1000)], "blob": big})
        msg = "small message, big context"
    else:
        msg = big
    try:
        raise ValueError(msg)
    except ValueError as exc:
        event_id = sentry_sdk.capture_exception(exc)
    sentry_sdk.flush(timeout=10)
    return {"event_id": event_id, "message_bytes": len(msg)}


def _sentry(mode: str, nbytes: int, limit: int) -> dict[str, Any]:
    from spikes.s10_monitoring.poc.sinks import SentryIngest

    with SentryIngest(max_bytes=limit) as ingest:
        argv = [sys.executable, "-m", "spikes.s10_monitoring.badinput", "--sentry-child", ingest.dsn, mode, str(nbytes)]
        proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
        time.sleep(0.1)
        counts = ingest.counts()
    child: dict[str, Any] = {}
    if proc.returncode == 0 and proc.stdout.strip():
        child = json.loads(proc.stdout.strip().splitlines()[-1])
    sample = counts["event_samples"][0] if counts["event_samples"] else {}
    if counts["events"]:
        outcome = f"arrived: one event of {counts['max_event_bytes']} bytes (message {sample.get('value_len')} chars)"
    elif counts["rejected_413"]:
        outcome = f"refused by the ingest with 413 (body {counts['bytes_wire']} bytes on the wire); the event is lost"
    else:
        outcome = "nothing arrived"
    return _case(
        f"oversized_sentry_event_{mode}",
        "sentry-sdk -> SentryIngest",
        outcome,
        proc.returncode == 0 and (counts["events"] + counts["rejected_413"]) >= 1,
        sdk_exit=proc.returncode,
        sdk_stderr_tail=proc.stderr.strip()[-300:],
        message_bytes_sent=child.get("message_bytes"),
        ingest_limit_bytes=limit,
        ingest=counts,
    )


def run_bad_input(params: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Every bad-input case. Returns ``{"params", "cases": [{"case", "library", "outcome", "handled",
    "detail"}...], "handled": n, "total": n, "versions"}``."""
    from spikes.s10_monitoring.bench import library_versions

    p = {**DEFAULT_PARAMS, **params}
    big = "u" * int(p["big_label_bytes"])
    cases = [
        _guard("label_newline", "prometheus_client", lambda: _prom_label("label_newline", NEWLINE_VALUE)),
        _guard("label_10kb", "prometheus_client", lambda: _prom_label("label_10kb", big)),
        _guard("metric_name_clash", "prometheus_client", _prom_clash),
        _guard("invalid_metric_name", "prometheus_client", _prom_invalid_name),
        _guard("label_newline", "opentelemetry", lambda: _otel_label("label_newline", NEWLINE_VALUE)),
        _guard("label_10kb", "opentelemetry", lambda: _otel_label("label_10kb", big)),
        _guard("metric_name_clash", "opentelemetry", _otel_clash),
        _guard("invalid_metric_name", "opentelemetry", _otel_invalid_name),
        _guard("malformed_dogstatsd_packet", "DogStatsdSink", _dogstatsd),
    ]
    for mode in SENTRY_MODES:
        cases.append(
            _guard(
                f"oversized_sentry_event_{mode}",
                "sentry-sdk",
                lambda mode=mode: _sentry(mode, int(p["sentry_message_bytes"]), int(p["sentry_limit_bytes"])),  # type: ignore[misc]
            )
        )
    result = {
        "params": p,
        "cases": cases,
        "handled": sum(1 for c in cases if c["handled"]),
        "total": len(cases),
        "versions": library_versions(),
    }
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "badinput.json").write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="bad input cases")
    ap.add_argument("--sentry-child", nargs=3, metavar=("DSN", "MODE", "BYTES"))
    a = ap.parse_args()
    if a.sentry_child:
        dsn, mode, n = a.sentry_child
        print(json.dumps(sentry_child(dsn, mode, int(n))), flush=True)
    else:
        import tempfile

        res = run_bad_input({}, Path(tempfile.mkdtemp(prefix="s10-bad-")))
        for c in res["cases"]:
            print(f"{c['case']:45s} {c['library']:35s} handled={c['handled']}  {c['outcome'][:120]}")
