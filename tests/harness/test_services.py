"""Real redis-server and PostgreSQL, started and owned by the harness."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from harness import machine, services
from harness.services import PostgresService, RedisService, ServiceUnavailable, parse_redis_info
from tests.utils import UNIT, require_program

pytestmark = pytest.mark.slow


def need(tool: str) -> None:
    """Skip without the tool, except in CI, which installs it: there a missing tool fails."""
    require_program(tool)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return True


def tree(pid: int) -> list[int]:
    return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]


def eventually(check, timeout: float = 5 * UNIT):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05 * UNIT)


def test_parse_redis_info():
    text = (
        "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:12\r\n\r\n"
        "# Stats\r\ninstantaneous_ops_per_sec:3\r\nmem_fragmentation_ratio:1.5\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n"
    )
    info = parse_redis_info(text)
    assert info["redis_version"] == "7.0.15" and info["uptime_in_seconds"] == 12
    assert info["instantaneous_ops_per_sec"] == 3 and info["mem_fragmentation_ratio"] == 1.5
    assert info["db0"] == {"keys": 2, "expires": 0, "avg_ttl": 0}


class RawClient:
    """SET/GET/PING over the service's own RESP helper, where redis-py is not installed."""

    def __init__(self, svc: RedisService):
        self.svc = svc

    def set(self, key, value):
        return self.svc.command("SET", key, value) == "OK"

    def get(self, key):
        return self.svc.command("GET", key)

    def ping(self):
        return self.svc.command("PING") == "PONG"

    def close(self):
        pass


def client_for(svc: RedisService):
    try:
        import redis
    except ImportError:  # redis-py is the spikes' client; the harness does not need it
        return RawClient(svc)
    return redis.Redis.from_url(svc.url, socket_timeout=5 * UNIT)


def test_redis_serves_reports_survives_a_kill_and_stops_clean(tmp_path):
    need("redis-server")
    svc = RedisService(base_dir=tmp_path, log_path=tmp_path / "redis.log")
    with svc:
        client = client_for(svc)
        assert client.set("greeting", "hello") and client.get("greeting") == b"hello"
        info = svc.info()
        assert info["used_memory"] > 0 and "instantaneous_ops_per_sec" in info
        assert info["db0"]["keys"] == 1 and info["tcp_port"] == svc.port
        port, pid = svc.port, svc.pid
        data_dir = svc.dir
        assert data_dir is not None and data_dir.parent == tmp_path

        svc.kill()
        assert not svc.alive and gone(pid)
        client.close()
        svc.restart()
        assert svc.alive and svc.port == port and svc.pid != pid and svc.dir == data_dir
        client = client_for(svc)
        assert client.ping() and client.set("again", "1") and client.get("again") == b"1"
        client.close()
        pid = svc.pid
    assert gone(pid) and not data_dir.exists()
    assert "Ready to accept connections" in (tmp_path / "redis.log").read_text()


def test_postgres_runs_sql_reports_stats_and_survives_a_kill(tmp_path):
    need("postgres")
    svc = PostgresService(base_dir=tmp_path, log_path=tmp_path / "postgres.log")
    with svc:
        if os.geteuid() == 0:  # postgres refuses root: it runs as an unprivileged user
            assert psutil.Process(svc.pid).username() == services.run_as_user()
        assert svc.dsn == f"postgresql://postgres@127.0.0.1:{svc.port}/postgres"
        before = svc.info()
        svc.psql("CREATE TABLE moves (id serial PRIMARY KEY, x int); INSERT INTO moves (x) SELECT generate_series(1, 250);")
        assert svc.psql("SELECT count(*) FROM moves").strip() == "250"
        after = eventually(lambda: (i := svc.info())["tup_inserted"] - before["tup_inserted"] >= 250 and i)
        assert after, f"pg_stat_database did not count the inserts: {svc.info()}"
        assert after["xact_commit"] > before["xact_commit"] and after["database_size_bytes"] > 0

        port, pids = svc.port, tree(svc.pid)
        assert len(pids) > 1  # postmaster and its background processes
        svc.kill()
        assert all(gone(p) for p in pids)
        svc.restart()  # crash recovery on the same data dir and port
        assert svc.port == port and svc.alive
        assert svc.psql("SELECT count(*) FROM moves").strip() == "250"
        pids, data_dir = tree(svc.pid), svc.dir
    assert all(gone(p) for p in pids) and not data_dir.exists()
    log = (tmp_path / "postgres.log").read_text()
    assert "automatic recovery" in log or "not properly shut down" in log


def test_postgres_sql_errors_are_reported(tmp_path):
    need("postgres")
    with PostgresService(base_dir=tmp_path) as svc, pytest.raises(services.ServiceError, match="no_such_table"):
        svc.psql("SELECT * FROM no_such_table")


@pytest.mark.parametrize("cls, tool", [(RedisService, "redis-server"), (PostgresService, "postgres")])
def test_a_missing_binary_raises_service_unavailable_with_the_install_command(monkeypatch, tmp_path, cls, tool):
    monkeypatch.setattr(machine, "find_tool", lambda name: None)
    svc = cls(base_dir=tmp_path)
    with pytest.raises(ServiceUnavailable) as exc:
        svc.start()
    assert exc.value.name == tool and exc.value.install_hint == machine.EXTERNAL_TOOLS[tool].install
    assert tool in str(exc.value) and machine.EXTERNAL_TOOLS[tool].install in str(exc.value)
    assert not svc.alive and list(tmp_path.iterdir()) == []  # nothing was left behind
