"""The HTTP/2 feed clients through the real load engine: Spike 4's feed server behind nginx's h2 TLS front.

Tests may import a spike (the harness may not): the POC ``all`` server and ``FeedNginx`` in its ``nginx-h2-tls``
variant are the front the clients exist for. Every broadcast must reach every member exactly once (the account),
and nginx's access log must show the streams as HTTP/2.0.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import harness.feed  # noqa: F401 - registers the feed's adapters
from harness.feed.client import Wire
from harness.feed.h2 import CA_ENV, PER_CONNECTION_ENV, FrameTally, H2Pool, LongPollH2Client, h2_pool, tls_context
from harness.load import LoadSpec, run_load
from harness.load.clients import ConnectError
from harness.poc import REPO_ROOT
from harness.process import LogReady, ServerProcess
from spikes.s04_transport.proxies import FeedNginx, make_self_signed_cert
from tests.utils import UNIT, require_program

pytestmark = pytest.mark.slow


@pytest.fixture
def front(tmp_path: Path) -> Iterator[tuple[str, FeedNginx, Path]]:
    """The POC ``all`` feed server behind a throwaway ``nginx-h2-tls``: (its https URL, the nginx, the certificate)."""
    require_program("nginx", "openssl")
    argv = [sys.executable, "-m", "spikes.s04_transport.poc.all", "--host", "{host}", "--port", "{port}", "--keepalive-s", "30"]
    server = ServerProcess(
        "s04 all", argv, cwd=REPO_ROOT, ready=LogReady(r"READY port=\d+"), ready_timeout=30 * UNIT, log_path=tmp_path / "all.log"
    )
    with server:
        cert = make_self_signed_cert(tmp_path / "tls")
        with FeedNginx(server.port, "nginx-h2-tls", cert=cert, base_dir=tmp_path) as nginx:
            yield nginx.url, nginx, cert[0]


def _access_lines(nginx: FeedNginx, path: str, at_least: int) -> list[str]:
    """The access log's lines for ``path``, once there are ``at_least`` (nginx writes a line as its request ends)."""
    deadline = time.monotonic() + 5 * UNIT
    while True:
        lines = [ln for ln in nginx.access_lines() if f"GET {path}?" in ln or f"POST {path} " in ln]
        if len(lines) >= at_least or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


@pytest.mark.parametrize("transport", ["sse-h2", "longpoll-h2"])
def test_every_member_gets_every_broadcast_exactly_once_over_h2(
    transport: str, front: tuple[str, FeedNginx, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, nginx, cert = front
    # Three connections in the pool: 2 clients per connection (the sharing is exercised without 100 clients).
    monkeypatch.setenv(PER_CONNECTION_ENV, "2")
    spec = LoadSpec(
        url=f"{url}?ca={cert}",  # the run's certificate, trusted (not the loopback exception)
        transport=transport,
        mode="broadcast",
        senders=1,
        connections=5,
        rate=30,
        duration_s=1.0,
        connect_timeout_s=5 * UNIT,
        grace_s=1 * UNIT,
        account=True,
    )
    r = run_load(spec)
    assert r.account is not None and r.members == 5 and r.errors == [], r.errors
    total = r.account["total"]
    sent = total["sent"]["count"]
    assert sent > 10
    assert total["expected"] == 5 * sent and total["delivered"]["count"] == 5 * sent
    assert total["duplicated"]["count"] == total["unexpected"]["count"] == 0
    assert total["lost_after_ack"]["count"] == total["lost_without_ack"]["count"] == 0
    assert r.received == 5 * sent and r.unexpected == 0
    # Frame bytes: every delivered payload came in, every POSTed one went out (HPACK keeps the headers small).
    assert r.bytes_in > 5 * sent * 64 and r.bytes_out > sent * 64
    path = "/sse" if transport == "sse-h2" else "/poll"
    streams, posts = _access_lines(nginx, path, 5), _access_lines(nginx, "/send", sent)
    assert len(streams) >= 5 and len(posts) == sent, nginx.access_lines()[-5:]
    assert all("proto=HTTP/2.0" in ln for ln in streams + posts), (streams + posts)[:3]


def test_the_tls_context_trusts_the_given_ca_and_skips_checks_on_loopback_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    require_program("openssl")
    import ssl

    cert, _ = make_self_signed_cert(tmp_path)
    monkeypatch.delenv(CA_ENV, raising=False)
    assert tls_context("https://127.0.0.1:8443").verify_mode == ssl.CERT_NONE
    assert tls_context("https://[::1]:8443").verify_mode == ssl.CERT_NONE
    assert tls_context("https://feed.example:443").verify_mode == ssl.CERT_REQUIRED
    given = tls_context(f"https://127.0.0.1:8443?ca={cert}")
    assert given.verify_mode == ssl.CERT_REQUIRED and given.check_hostname
    monkeypatch.setenv(CA_ENV, str(cert))
    assert tls_context("https://127.0.0.1:8443").verify_mode == ssl.CERT_REQUIRED


async def _polls(url: str, count: int, batch: int) -> tuple[list[int], LongPollH2Client, H2Pool]:
    """``count`` joining polls (answered at once) through one client, ``batch`` at a time on its one connection."""
    shared: dict[str, Any] = {}
    client = LongPollH2Client(url, lambda m: None, lambda r: None, shared=shared)
    await client.connect(5 * UNIT)
    statuses: list[int] = []

    async def one() -> None:
        stream, _ = await client.request("GET", "/poll", {"room": "goaway"})
        await stream.ended
        statuses.append(stream.status)

    try:
        for start in range(0, count, batch):
            await asyncio.gather(*(one() for _ in range(min(batch, count - start))))
        pool = h2_pool(shared, url)
        return statuses, client, pool
    finally:
        await client.close(1)
        await LongPollH2Client.close_shared(shared)


def test_nginx_goaway_after_its_request_limit_moves_the_next_streams_to_a_new_connection(front: tuple[str, FeedNginx, Path]) -> None:
    url, nginx, _ = front
    # nginx's keepalive_requests (1000) ends an HTTP/2 connection with a GOAWAY; streams in flight then either
    # finish on the old connection (covered by the GOAWAY) or go again on a new one (refused): none is lost.
    # 30 at a time: the batch that crosses the 1000th request has streams the GOAWAY refuses (nginx ignores them).
    statuses, client, pool = asyncio.run(_polls(url, 1100, 30))
    assert statuses == [200] * 1100
    assert pool.opened == 2 and client.retried > 0
    assert client.wire.bytes_in > 1100 * 40 and client.wire.bytes_out > 1100 * 9
    lines = [ln for ln in _access_lines(nginx, "/poll", 1100) if "?room=goaway " in ln]
    assert len(lines) == 1100 and all("proto=HTTP/2.0" in ln for ln in lines)


def test_a_certificate_other_than_the_one_trusted_fails_the_connect(
    front: tuple[str, FeedNginx, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _, _ = front
    other, _ = make_self_signed_cert(tmp_path / "other")
    monkeypatch.setenv(CA_ENV, str(other))
    with pytest.raises(ConnectError, match="TLS: CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(_polls(url, 1, 1))


def test_frame_bytes_go_to_the_client_of_their_stream_however_the_chunks_are_cut() -> None:
    from hyperframe.frame import DataFrame, HeadersFrame, SettingsFrame, WindowUpdateFrame

    opener, a, b = Wire(), Wire(), Wire()
    frames = [SettingsFrame(0), HeadersFrame(1, data=b"h" * 20), DataFrame(3, data=b"d" * 100), WindowUpdateFrame(0, window_increment=5)]
    end = DataFrame(1, data=b"e" * 7)
    end.flags.add("END_STREAM")
    wire = b"".join(f.serialize() for f in [*frames, end, DataFrame(1, data=b"late")])
    expect = {"opener": 9 + (9 + 4) + (9 + 4), "a": (9 + 20) + (9 + 7), "b": 9 + 100}  # the frame after END_STREAM: the opener's
    for step in (len(wire), 1, 7):
        opener.bytes_in = a.bytes_in = b.bytes_in = 0
        tally = FrameTally({1: a, 3: b}, opener, outgoing=False)
        for i in range(0, len(wire), step):
            tally.feed(wire[i : i + step])
        assert {"opener": opener.bytes_in, "a": a.bytes_in, "b": b.bytes_in} == expect, step
        assert opener.bytes_in + a.bytes_in + b.bytes_in == len(wire)
    out = FrameTally({}, opener, outgoing=True)
    out.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize())
    assert opener.bytes_out == 24 + 9
