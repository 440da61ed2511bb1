"""One option deployed for one repeat: PostgreSQL, Redis, N POC server processes and nginx, all real and local.

``Deployment`` starts what the option needs, in order (PostgreSQL with the chat
table, its data directory copied from one ``initdb`` per process (:class:`TemplatePostgres`), then Redis for the multi-process options, then the server processes,
then nginx in front of them), gives the URL and load-engine transport a
client uses, and stops everything on exit, the servers first so they write
their buffered rows before the database statistics are read.

The server processes are the option's declared POC server (``Option.server`` in
the plugin, started through :mod:`harness.poc` with ``{pg}``, ``{redis}`` and
``{server_id}`` filled in) and the transport is its declared client adapter
(``Option.client``): this module says only how many processes and whether Redis.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import machine
from harness.plugin import NotRunnable, Option
from harness.poc import server_process
from harness.process import ServerProcess
from harness.services import NginxService, PostgresService, RedisService, ServiceUnavailable

__all__ = ["OptionSetup", "SETUPS", "Deployment", "missing_tools", "TemplatePostgres"]


@dataclass(frozen=True)
class OptionSetup:
    """How an option is deployed: how many server processes, Redis or not (the server and its client are the option's own)."""

    processes: int
    redis: bool

    @property
    def tools(self) -> tuple[str, ...]:
        """External programs the deployment needs."""
        return ("postgres",) + (("redis-server", "nginx") if self.processes > 1 else ())


#: Two processes for the scaled-out options: one per core of the 2-core machine the seed's budget assumes.
SETUPS: dict[str, OptionSetup] = {
    "native": OptionSetup(1, False),
    "native-redis": OptionSetup(2, True),
    "socketio": OptionSetup(1, False),
    "socketio-redis": OptionSetup(2, True),
    "node": OptionSetup(1, False),
    "node-redis": OptionSetup(2, True),
}


def missing_tools(option: str) -> list[str]:
    """The programs this option needs that are not installed."""
    return [t for t in SETUPS[option].tools if machine.find_tool(t) is None]


def _declared(option: Option | str) -> Option:
    """The option as the plugin declares it (its ``server`` and ``client``)."""
    if isinstance(option, Option):
        return option
    from spikes.s06_scalability import spike  # imported here: the plugin imports this module (through scenarios.py)

    return spike.option(option)


class TemplatePostgres(PostgresService):
    """The harness's PostgreSQL, its data directory a copy of one ``initdb`` this process ran with the same arguments.

    Spike 6 starts a fresh cluster for every step (about 40 in a quick run). ``initdb`` was most of a cluster's
    start here (about 1 s of 1.7, up to 15 s with the disk busy), a copy of its output about 0.1 s; the copy is
    the same files (the cluster's system identifier included), so what runs on it is the same database. The
    template is made once per process, beside the cluster's own directory (so the PostgreSQL user reaches it),
    and removed at exit; the cluster's log says where its data came from.
    """

    _templates: dict[tuple[str, str | None], Path] = {}
    _lock = threading.Lock()

    def _initdb(self, initdb: str, data: Path, log_path: Path, ids: dict[str, Any]) -> None:
        assert self.dir is not None
        with self._lock:
            key = (initdb, self.user)
            template = self._templates.get(key)
            if template is None or not template.is_dir():
                root = Path(tempfile.mkdtemp(prefix="s06-pg-template-", dir=self.dir.parent))
                atexit.register(shutil.rmtree, root, True)
                if self.user is not None:
                    pw = pwd.getpwnam(self.user)
                    os.chown(root, pw.pw_uid, pw.pw_gid)
                super()._initdb(initdb, root / "data", log_path, ids)
                template = self._templates[key] = root / "data"
        with open(log_path, "ab") as logf:
            logf.write(f"[harness] data directory: a copy of {template} (initdb run once in this process)\n".encode())
        # cp -a keeps owners and modes (PostgreSQL wants its data directory 0700 and its own).
        subprocess.run(["cp", "-a", str(template), str(data)], check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)


class Deployment:
    """The option's whole stack on loopback; a context manager. ``option`` is the option or its key."""

    def __init__(
        self, option: Option | str, workdir: Path, *, processes: int | None = None, front: bool = True, log=lambda s: None
    ) -> None:
        self.spec = _declared(option)
        self.option = self.spec.key
        self.setup = SETUPS[self.option]
        self.processes = processes or self.setup.processes
        self.front = front  # nginx in front of several processes (off: clients connect to each process's own port)
        self.workdir = Path(workdir)
        self.log = log
        self.pg: PostgresService | None = None
        self.redis: RedisService | None = None
        self.nginx: NginxService | None = None
        self.servers: list[ServerProcess] = []
        self._url = ""  # the declared URL, {host} and {port} still to fill
        self._stack = contextlib.ExitStack()

    @property
    def transport(self) -> str:
        """The load engine's client adapter for this option: the one it declares (``Option.client``)."""
        return self.spec.client

    @property
    def url(self) -> str:
        """The URL clients connect to (the option's declared one): nginx's with several processes, else the server's."""
        port = self.nginx.port if self.nginx else self.servers[0].port
        return self._url.replace("{host}", self.servers[0].host).replace("{port}", str(port))

    def server_urls(self) -> list[str]:
        """Each server process's own URL (what clients use without the front)."""
        return [self._url.replace("{host}", s.host).replace("{port}", str(s.port)) for s in self.servers]

    @property
    def components(self) -> dict[str, int]:
        """What runs, by kind: the operational footprint of the option."""
        out = {"server process(es)": len(self.servers), "postgresql": 1}
        if self.redis:
            out["redis"] = 1
        if self.nginx:
            out["nginx"] = 1
        return out

    def pids(self) -> dict[str, list[int]]:
        """Main pids by component (a sampler includes each one's children)."""
        out: dict[str, list[int]] = {"server": [s.pid for s in self.servers if s.pid]}
        for name, svc in (("nginx", self.nginx), ("redis", self.redis), ("postgres", self.pg)):
            if svc is not None and svc.pid:
                out[name] = [svc.pid]
        return out

    def __enter__(self) -> Deployment:
        missing = missing_tools(self.option)
        if self.processes > 1 and self.front and "nginx" not in missing and machine.find_tool("nginx") is None:
            missing.append("nginx")
        if missing:
            raise NotRunnable("; ".join(f"{t} is not installed (install: {machine.EXTERNAL_TOOLS[t].install})" for t in missing))
        try:
            self._start()
        except ServiceUnavailable as exc:
            self._stack.close()
            raise NotRunnable(str(exc)) from None
        except BaseException:
            self._stack.close()
            raise
        return self

    def _start(self) -> None:
        from spikes.s06_scalability.poc.persist import SCHEMA

        # Independent parts start in parallel (each start waits for readiness): a quicker setup, the same stack.
        self.pg = TemplatePostgres(log_path=self.workdir / "postgres.log")  # its own temp dir: the PostgreSQL user must reach it
        self.redis = RedisService(base_dir=self.workdir, log_path=self.workdir / "redis.log") if self.setup.redis else None
        self._parallel([s for s in (self.pg, self.redis) if s is not None])
        self.pg.psql(SCHEMA)
        redis_url = self.redis.url if self.redis else ""
        declared = [
            server_process(
                self.spec,
                self.workdir,
                name=f"{self.option} server {i}",
                values={"pg": self.pg.dsn, "redis": redis_url, "server_id": i},
                log_name=f"server-{i}.log",
                grace=20.0,  # a saturated server needs time to close its connections and write the rows it buffered
            )
            for i in range(self.processes)
        ]
        self.servers = [server for server, _ in declared]
        self._url = declared[0][1]
        self._parallel(self.servers)
        if self.processes > 1 and self.front:
            self.nginx = self._stack.enter_context(
                NginxService([s.port for s in self.servers], base_dir=self.workdir, log_path=self.workdir / "nginx.log")
            )
        self.log(
            f"{self.option}: {self.processes} server process(es) {[s.port for s in self.servers]}, front {self.url}, postgres {self.pg.port}"
            + (f", redis {self.redis.port}" if self.redis else "")
        )

    def _parallel(self, parts: list[Any]) -> None:
        """Start ``parts`` (services or servers) at once; each is stopped on exit, even if another failed to start."""
        for part in parts:
            self._stack.callback(part.stop)
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            for future in [pool.submit(part.start) for part in parts]:
                future.result()

    def check_alive(self) -> None:
        """Raise if a server process died during the scenario."""
        for s in self.servers:
            if not s.alive:
                raise RuntimeError(
                    f"{s.name} exited during the scenario (code {s.returncode}); last log lines: {' | '.join(s.last_log_lines(5))}"
                )

    def stop_servers(self) -> list[str]:
        """Stop the front and the server processes (they write their buffered rows); return their last log lines."""
        if self.nginx is not None:
            self.nginx.stop()
        tails = []
        for s in self.servers:
            s.stop()
            tails += [line for line in s.last_log_lines(5) if line.startswith("persist:")]
        return tails

    def redis_stats(self) -> dict[str, Any]:
        """Commands processed, PUBLISH calls, memory: from Redis INFO."""
        if self.redis is None:
            return {}
        info = self.redis.info("all")
        publish = info.get("cmdstat_publish", {})
        return {
            "commands": int(info.get("total_commands_processed", 0)),
            "publish": int(publish.get("calls", 0)) if isinstance(publish, dict) else 0,
            "used_memory": int(info.get("used_memory", 0)),
            "used_memory_peak": int(info.get("used_memory_peak", 0)),
            "net_in": int(info.get("total_net_input_bytes", 0)),
            "net_out": int(info.get("total_net_output_bytes", 0)),
            "clients": int(info.get("connected_clients", 0)),
            "pubsub_channels": int(info.get("pubsub_channels", 0)),
        }

    def pg_stats(self) -> dict[str, int]:
        """pg_stat_database's counters, the chat table's inserted tuples, and its exact row count."""
        assert self.pg is not None
        info = dict(self.pg.info())
        out = self.pg.psql(
            "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'chat_messages'; SELECT count(*) FROM chat_messages;"
        ).split()
        info["table_tup_ins"] = int(out[0]) if out else 0
        info["rows"] = int(out[1]) if len(out) > 1 else 0
        return info

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
