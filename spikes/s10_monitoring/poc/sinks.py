"""Local stand-ins for the push back ends' receivers, which only count what arrives.

- :class:`DogStatsdSink`: a UDP listener on 127.0.0.1 (port 0) in a thread, parsing each datagram
  as DogStatsD does (several metrics per datagram, newline-separated, ``name:value|type[|@rate][|#tags]``).
  It counts datagrams, metrics by name (count, sum, last value, types, a few tag sets) and malformed
  lines (the first few kept as samples); a malformed line never stops it.
- :class:`SentryIngest`: a threaded stdlib HTTP server on 127.0.0.1 (port 0) accepting sentry-sdk's
  envelope POSTs (``/api/<project>/envelope/``, gzip/deflate/br bodies), parsing each envelope
  (header line, then items with their headers), counting envelopes, items by type, error events and
  bytes, and answering 413 above ``max_bytes`` (of the body as sent, or decoded). :meth:`SentryIngest.stop`
  and :meth:`SentryIngest.start` again on the same port simulate a back end that goes down and returns.

Both run in threads of the calling (harness) process, work as context managers, and
``counts()`` may be read at any time (a snapshot dict).
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["DogStatsdSink", "SentryIngest", "parse_dogstatsd_line", "parse_envelope", "MALFORMED_SAMPLES"]

LOOPBACK = "127.0.0.1"
#: How many malformed lines (or bad envelopes) are kept as samples.
MALFORMED_SAMPLES = 5
_TYPES = frozenset({"c", "g", "ms", "h", "s", "d"})
_MAX_TAGSETS = 20


def parse_dogstatsd_line(line: str) -> dict[str, Any]:
    """One DogStatsD metric line as a dict (name, values, type, rate, tags); ``ValueError`` if malformed.

    Events (``_e{...}``) and service checks (``_sc|...``) parse as ``{"kind": "event"|"service_check"}``.
    """
    if line.startswith("_e{"):
        return {"kind": "event"}
    if line.startswith("_sc|"):
        return {"kind": "service_check"}
    head, sep, rest = line.partition("|")
    if not sep:
        raise ValueError("no '|' (type) in the line")
    name, colon, value_text = head.partition(":")
    if not colon or not name or not value_text:
        raise ValueError("no 'name:value' before the first '|'")
    if any(c in name for c in " \t\r\x00"):
        raise ValueError("whitespace or NUL in the metric name")
    fields = rest.split("|")
    mtype = fields[0]
    if mtype not in _TYPES:
        raise ValueError(f"unknown metric type {mtype!r}")
    values: list[float] = []
    for v in value_text.split(":"):  # protocol v1.1: several values packed in one line
        if mtype == "s":
            values.append(0.0)
            continue
        values.append(float(v))  # ValueError if not a number
    rate = 1.0
    tags: list[str] = []
    for f in fields[1:]:
        if f.startswith("@"):
            rate = float(f[1:])
        elif f.startswith("#"):
            tags = [t for t in f[1:].split(",") if t]
        elif f[:2] in ("c:", "e:", "T", "card:"):
            continue  # container id, external data, timestamp, cardinality: ignored
    return {"kind": "metric", "name": name, "values": values, "type": mtype, "rate": rate, "tags": tags}


class DogStatsdSink:
    """A DogStatsD UDP listener that counts and parses what arrives (see the module doc)."""

    def __init__(self, host: str = LOOPBACK, port: int = 0, rcvbuf: int = 4 * 1024 * 1024) -> None:
        self.host = host
        self._want_port = port
        self.rcvbuf = rcvbuf
        self.port: int | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.reset()

    @property
    def address(self) -> str:
        """``host:port``, what ``--dogstatsd`` takes."""
        return f"{self.host}:{self.port}"

    def reset(self) -> None:
        """Forget every count (the socket stays)."""
        with self._lock:
            self.packets = 0
            self.bytes = 0
            self.lines = 0
            self.metrics = 0
            self.events = 0
            self.malformed = 0
            self.malformed_samples: list[dict[str, str]] = []
            self.by_name: dict[str, dict[str, Any]] = {}

    def start(self) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        except OSError:
            pass
        sock.bind((self.host, self.port or self._want_port))
        sock.settimeout(0.1)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"dogstatsd-sink-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.feed(data)

    def feed(self, data: bytes) -> None:
        """Count and parse one datagram (what the listener thread does with each)."""
        with self._lock:
            self.packets += 1
            self.bytes += len(data)
            text = data.decode("utf-8", errors="replace")
            for line in text.split("\n"):
                if not line:
                    continue
                self.lines += 1
                try:
                    parsed = parse_dogstatsd_line(line)
                except ValueError as exc:
                    self.malformed += 1
                    if len(self.malformed_samples) < MALFORMED_SAMPLES:
                        self.malformed_samples.append({"line": line[:200], "error": str(exc)})
                    continue
                if parsed["kind"] != "metric":
                    self.events += 1
                    continue
                self.metrics += 1
                entry = self.by_name.setdefault(parsed["name"], {"count": 0, "sum": 0.0, "last": None, "types": [], "tagsets": []})
                entry["count"] += len(parsed["values"])
                entry["sum"] += sum(parsed["values"])
                entry["last"] = parsed["values"][-1]
                if parsed["type"] not in entry["types"]:
                    entry["types"].append(parsed["type"])
                tags = sorted(parsed["tags"])
                if tags and tags not in entry["tagsets"] and len(entry["tagsets"]) < _MAX_TAGSETS:
                    entry["tagsets"].append(tags)

    def counts(self) -> dict[str, Any]:
        """A snapshot: packets, bytes, lines, metrics, events, malformed, malformed_samples, by_name."""
        with self._lock:
            return {
                "packets": self.packets,
                "bytes": self.bytes,
                "lines": self.lines,
                "metrics": self.metrics,
                "events": self.events,
                "malformed": self.malformed,
                "malformed_samples": [dict(s) for s in self.malformed_samples],
                "by_name": {
                    k: {**v, "types": list(v["types"]), "tagsets": [list(t) for t in v["tagsets"]]} for k, v in self.by_name.items()
                },
            }


# -- Sentry -----------------------------------------------------------------------------------------


def parse_envelope(body: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    """A Sentry envelope: its header and its items as (item header, payload); ``ValueError`` if malformed."""
    pos = body.find(b"\n")
    first = body if pos < 0 else body[:pos]
    header = json.loads(first) if first.strip() else {}
    if not isinstance(header, dict):
        raise ValueError("envelope header is not a JSON object")
    items: list[tuple[dict[str, Any], bytes]] = []
    i = len(body) if pos < 0 else pos + 1
    while i < len(body):
        end = body.find(b"\n", i)
        line = body[i:] if end < 0 else body[i:end]
        i = len(body) if end < 0 else end + 1
        if not line.strip():
            continue
        ih = json.loads(line)
        if not isinstance(ih, dict) or "type" not in ih:
            raise ValueError("item header without a type")
        length = ih.get("length")
        if isinstance(length, int):
            payload = body[i : i + length]
            if len(payload) < length:
                raise ValueError("item shorter than its length")
            i += length
            if i < len(body) and body[i : i + 1] == b"\n":
                i += 1
        else:
            end = body.find(b"\n", i)
            payload = body[i:] if end < 0 else body[i:end]
            i = len(body) if end < 0 else end + 1
        items.append((ih, payload))
    return header, items


def _decode_body(raw: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding == "deflate":
        return zlib.decompress(raw)
    if encoding == "br":
        import brotli  # type: ignore[import-untyped,import-not-found,unused-ignore]

        return bytes(brotli.decompress(raw))
    raise ValueError(f"unknown Content-Encoding {encoding!r}")


class SentryIngest:
    """A local Sentry envelope endpoint that counts what arrives (see the module doc)."""

    def __init__(self, host: str = LOOPBACK, port: int = 0, max_bytes: int = 1_000_000, project: str = "1") -> None:
        self.host = host
        self.port: int | None = port or None
        self.max_bytes = max_bytes
        self.project = project
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.starts = 0
        self.reset()

    @property
    def dsn(self) -> str:
        """The DSN sentry-sdk takes: ``http://public@127.0.0.1:PORT/1``."""
        return f"http://public@{self.host}:{self.port}/{self.project}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.envelopes = 0
            self.events = 0
            self.items_by_type: Counter[str] = Counter()
            self.bytes_wire = 0
            self.bytes_decoded = 0
            self.rejected_413 = 0
            self.malformed = 0
            self.malformed_samples: list[str] = []
            self.event_samples: list[dict[str, Any]] = []
            self.max_event_bytes = 0
            self.discarded: Counter[str] = Counter()  # sentry-sdk's client reports: "reason:category" -> events

    def start(self) -> Self:
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                pass

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body = ingest._receive(self.path, raw, self.headers.get("Content-Encoding", ""))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer((self.host, self.port or 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.starts += 1
        return self

    def stop(self) -> None:
        """Stop listening (the port is kept: :meth:`start` binds it again)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _receive(self, path: str, raw: bytes, encoding: str) -> tuple[int, bytes]:
        with self._lock:
            self.requests += 1
            self.bytes_wire += len(raw)
        if not path.rstrip("/").endswith("/envelope"):
            return 404, b'{"detail":"not an envelope endpoint"}'
        if len(raw) > self.max_bytes:
            with self._lock:
                self.rejected_413 += 1
            return 413, b'{"detail":"envelope exceeded size limits"}'
        try:
            body = _decode_body(raw, encoding)
            header, items = parse_envelope(body)
        except Exception as exc:  # noqa: BLE001 - any malformed body is counted, the server stays
            with self._lock:
                self.malformed += 1
                if len(self.malformed_samples) < MALFORMED_SAMPLES:
                    self.malformed_samples.append(f"{type(exc).__name__}: {exc}"[:200])
            return 400, b'{"detail":"invalid envelope"}'
        if len(body) > self.max_bytes:
            with self._lock:
                self.rejected_413 += 1
            return 413, b'{"detail":"envelope exceeded size limits"}'
        with self._lock:
            self.envelopes += 1
            self.bytes_decoded += len(body)
            for ih, payload in items:
                kind = str(ih.get("type"))
                self.items_by_type[kind] += 1
                if kind == "event":
                    self.events += 1
                    self.max_event_bytes = max(self.max_event_bytes, len(payload))
                    if len(self.event_samples) < MALFORMED_SAMPLES:
                        self.event_samples.append(_event_summary(payload))
                elif kind == "client_report":
                    self._count_discarded(payload)
        return 200, json.dumps({"id": header.get("event_id")}).encode()

    def _count_discarded(self, payload: bytes) -> None:
        """A client report's discarded events (what the SDK says it dropped, by reason and category); the lock is held."""
        try:
            report = json.loads(payload)
            for d in report.get("discarded_events") or []:
                self.discarded[f"{d.get('reason')}:{d.get('category')}"] += int(d.get("quantity") or 0)
        except (ValueError, TypeError, AttributeError):
            self.malformed += 1

    def counts(self) -> dict[str, Any]:
        """A snapshot: requests, envelopes, events, items_by_type, bytes_wire, bytes_decoded, rejected_413,
        malformed, malformed_samples, event_samples, max_event_bytes, discarded (client reports), running, starts."""
        with self._lock:
            return {
                "requests": self.requests,
                "envelopes": self.envelopes,
                "events": self.events,
                "items_by_type": dict(self.items_by_type),
                "bytes_wire": self.bytes_wire,
                "bytes_decoded": self.bytes_decoded,
                "rejected_413": self.rejected_413,
                "malformed": self.malformed,
                "malformed_samples": list(self.malformed_samples),
                "event_samples": [dict(s) for s in self.event_samples],
                "max_event_bytes": self.max_event_bytes,
                "discarded": dict(self.discarded),
                "running": self.running,
                "starts": self.starts,
            }


def _event_summary(payload: bytes) -> dict[str, Any]:
    """Type, message (first 200 characters), tags and size of one error event."""
    try:
        ev = json.loads(payload)
    except ValueError:
        return {"bytes": len(payload), "parsed": False}
    values = (ev.get("exception") or {}).get("values") or [{}]
    last = values[-1] if isinstance(values, list) and values else {}
    tags = ev.get("tags")
    return {
        "bytes": len(payload),
        "parsed": True,
        "type": last.get("type"),
        "value": str(last.get("value"))[:200],
        "value_len": len(str(last.get("value") or "")),
        "tags": tags if isinstance(tags, dict) else {},
        "meta": bool(ev.get("_meta")),
    }
