"""The local DogStatsD listener and Sentry ingest: they parse and count what arrives, survive bad input, restart."""

from __future__ import annotations

import gzip
import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from spikes.s10_monitoring.poc.sinks import DogStatsdSink, SentryIngest, parse_dogstatsd_line, parse_envelope
from tests.utils import UNIT


def test_parse_dogstatsd_lines() -> None:
    m = parse_dogstatsd_line("tabletop.messages:1|c|@0.5|#op:echo,env:x")
    assert m == {"kind": "metric", "name": "tabletop.messages", "values": [1.0], "type": "c", "rate": 0.5, "tags": ["op:echo", "env:x"]}
    assert parse_dogstatsd_line("h:1:2:3|h")["values"] == [1.0, 2.0, 3.0]
    assert parse_dogstatsd_line("_e{1,1}:a|b")["kind"] == "event"
    for bad in ("garbage", "x:abc|c", "x:1|zz", ":1|c", "x:|c"):
        with pytest.raises(ValueError):
            parse_dogstatsd_line(bad)


def test_dogstatsd_feed_counts_without_a_socket() -> None:
    sink = DogStatsdSink()
    sink.feed(b"a:1|c\na:2|c|#op:echo\nbad\n")
    sink.feed(b"g:5|g")
    c = sink.counts()
    assert (c["packets"], c["lines"], c["metrics"], c["malformed"]) == (2, 4, 3, 1)
    assert c["by_name"]["a"]["count"] == 2 and c["by_name"]["a"]["sum"] == 3.0 and c["by_name"]["a"]["tagsets"] == [["op:echo"]]
    assert c["by_name"]["g"]["last"] == 5.0
    assert c["malformed_samples"][0]["line"] == "bad"


def test_parse_envelope_with_and_without_lengths() -> None:
    event = json.dumps({"exception": {"values": [{"type": "ValueError", "value": "x"}]}}).encode()
    body = b'{"event_id":"abc"}\n' + json.dumps({"type": "event", "length": len(event)}).encode() + b"\n" + event + b"\n"
    body += b'{"type":"client_report"}\n{"discarded_events":[]}\n'
    header, items = parse_envelope(body)
    assert header == {"event_id": "abc"}
    assert [ih["type"] for ih, _ in items] == ["event", "client_report"]
    assert items[0][1] == event
    with pytest.raises(ValueError):
        parse_envelope(b'{}\n{"type":"event","length":100}\nshort')


@pytest.mark.slow  # real sockets and threads
def test_dogstatsd_sink_over_udp() -> None:
    with DogStatsdSink() as sink:
        assert sink.port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"x:1|c\ny:2|g", (sink.host, sink.port))
            s.sendto(b"\xff\xff not a metric", (sink.host, sink.port))
            s.sendto(b"x:1|c", (sink.host, sink.port))
        deadline = time.monotonic() + 3 * UNIT
        while sink.counts()["packets"] < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        c = sink.counts()
        assert c["packets"] == 3 and c["by_name"]["x"]["count"] == 2 and c["malformed"] == 1


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5 * UNIT) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


@pytest.mark.slow  # a real HTTP server
def test_sentry_ingest_counts_refuses_and_restarts() -> None:
    event = json.dumps({"exception": {"values": [{"type": "ValueError", "value": "boom"}]}, "tags": {"kind": "value"}}).encode()
    body = b'{"event_id":"e1"}\n{"type":"event"}\n' + event + b"\n"
    with SentryIngest(max_bytes=10_000) as ingest:
        assert ingest.dsn == f"http://public@127.0.0.1:{ingest.port}/1"
        url = f"http://127.0.0.1:{ingest.port}/api/1/envelope/"
        assert _post(url, body) == (200, {"id": "e1"})
        assert _post(url, gzip.compress(body), {"Content-Encoding": "gzip"})[0] == 200
        assert _post(url, b"not json\n")[0] == 400
        big = b'{"event_id":"e2"}\n{"type":"event"}\n' + b'{"x":"' + b"y" * 20_000 + b'"}\n'
        assert _post(url, big)[0] == 413
        assert _post(url, gzip.compress(big), {"Content-Encoding": "gzip"})[0] == 413  # small on the wire, big decoded
        c = ingest.counts()
        assert (c["envelopes"], c["events"], c["rejected_413"], c["malformed"]) == (2, 2, 2, 1)
        assert c["event_samples"][0]["type"] == "ValueError" and c["event_samples"][0]["tags"] == {"kind": "value"}
        port = ingest.port
        ingest.stop()
        assert not ingest.counts()["running"]
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=2 * UNIT)
        ingest.start()
        assert ingest.port == port and ingest.counts()["starts"] == 2
        assert _post(url, body)[0] == 200
        assert ingest.counts()["events"] == 3


def test_sentry_ingest_adds_up_what_client_reports_say_was_discarded() -> None:
    def report(*discarded: dict[str, Any]) -> bytes:
        return b'{}\n{"type":"client_report"}\n' + json.dumps({"discarded_events": list(discarded)}).encode() + b"\n"

    with SentryIngest() as ingest:
        url = f"http://127.0.0.1:{ingest.port}/api/1/envelope/"
        assert _post(url, report({"reason": "queue_overflow", "category": "error", "quantity": 70}))[0] == 200
        assert (
            _post(
                url,
                report(
                    {"reason": "queue_overflow", "category": "error", "quantity": 3},
                    {"reason": "network_error", "category": "error", "quantity": 2},
                ),
            )[0]
            == 200
        )
        assert _post(url, b'{}\n{"type":"client_report"}\n[1, 2]\n')[0] == 200  # a report that is not an object: counted malformed
        c = ingest.counts()
        assert c["discarded"] == {"queue_overflow:error": 73, "network_error:error": 2}
        assert c["items_by_type"]["client_report"] == 3 and c["malformed"] == 1 and c["events"] == 0
