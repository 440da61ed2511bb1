"""NginxService: a real nginx in a temp dir, proxying WebSocket upgrades to several upstreams."""

from __future__ import annotations

import asyncio

import pytest

from harness.poc import server_process
from harness.services import NginxService
from tests.harness.test_services import need
from tests.utils import UNIT

pytestmark = pytest.mark.slow


def test_config_has_everything_in_the_temp_dir(tmp_path):
    svc = NginxService([7001, 7002], sticky=True)
    text = svc.config(8080, tmp_path)
    assert "daemon off;" in text and f"pid {tmp_path / 'nginx.pid'};" in text
    assert "server 127.0.0.1:7001" in text and "server 127.0.0.1:7002" in text and "ip_hash;" in text
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{kind}_temp_path {tmp_path / (kind + '_temp')};" in text
    assert "ip_hash" not in NginxService([7001]).config(8080, tmp_path)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        NginxService([])
    with pytest.raises(ValueError):
        NginxService([1], workers=0)


def _established(pid: int, port: int) -> int:
    import psutil

    return sum(1 for c in psutil.Process(pid).net_connections("tcp") if c.status == "ESTABLISHED" and c.laddr.port == port)


def test_proxies_websocket_upgrades_round_robin(tmp_path):
    need("nginx")
    from spikes.s06_scalability import spike

    # Spike 6's native POC server as its option declares it (Option.server), persisting nothing, without Redis.
    servers = [
        server_process(
            spike.option("native"),
            tmp_path,
            name=f"poc-{i}",
            values={"pg": "", "redis": "", "server_id": 0},
            log_name=f"s{i}.log",
            ready_timeout=20 * UNIT,
        )[0]
        for i in range(2)
    ]
    for s in servers:
        s.start()
    try:
        with NginxService([s.port for s in servers], base_dir=tmp_path) as nginx:
            assert nginx.alive and nginx.port not in [s.port for s in servers]

            async def talk() -> tuple[list[str], list[int]]:
                from websockets.asyncio.client import connect

                conns = [await connect(f"ws://127.0.0.1:{nginx.port}/") for _ in range(4)]
                replies = []
                for i, ws in enumerate(conns):
                    await ws.send(f'{{"op":"echo","seq":{i},"t":0,"c":{i},"d":"x"}}')
                    replies.append(await asyncio.wait_for(ws.recv(), 10 * UNIT))
                held = [_established(s.pid, s.port) for s in servers]  # while the four are open
                for ws in conns:
                    await ws.close()
                return replies, held

            replies, held = asyncio.run(talk())
            assert [f'"seq":{i}' in r for i, r in enumerate(replies)] == [True] * 4
            assert held == [2, 2], f"round-robin should put two upgrades on each upstream, got {held}"
            conf_dir = nginx.dir
        assert nginx.server is None and not conf_dir.exists()  # stopped, temp dir removed
    finally:
        for s in servers:
            s.stop()


def test_a_port_taken_before_nginx_binds_it_is_replaced(tmp_path, monkeypatch):
    need("nginx")
    import socket

    from harness import services

    with socket.create_server(("127.0.0.1", 0)) as taken, socket.create_server(("127.0.0.1", 0)) as upstream:
        stolen = taken.getsockname()[1]
        offers = iter([stolen])
        real = services._free_port
        monkeypatch.setattr(services, "_free_port", lambda: next(offers, None) or real())
        with NginxService([upstream.getsockname()[1]], base_dir=tmp_path) as nginx:
            assert nginx.alive and nginx.port != stolen


def test_a_port_the_user_asked_for_is_not_swapped(tmp_path):
    need("nginx")
    import socket

    from harness.process import PortInUse

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse):
            NginxService([port], port=port, base_dir=tmp_path).start()
