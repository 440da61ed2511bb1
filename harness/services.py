"""Ephemeral real services, redis-server and PostgreSQL, owned by the harness.

Each service runs from the machine's own binaries, on a free loopback port, with
its data in a fresh temporary directory that :meth:`stop` removes. Both are
:class:`~harness.process.ServerProcess` objects underneath, so they share its
guarantees: own process group, readiness wait, log capture, no orphans.

PostgreSQL is run as ``postgres -D DATA -p PORT -k SOCKDIR`` directly rather
than through ``pg_ctl``: ``pg_ctl`` daemonises, and the harness would then own
a pid file instead of a process. ``initdb`` and ``postgres`` refuse to run as
root, so under root (CI, containers) both run as the ``postgres`` system user
(or ``nobody``), and the data directory is created and chowned for that user.

Statistics come from the services themselves, with no client library:
redis ``INFO`` over a few lines of RESP, and PostgreSQL's ``pg_stat_database``
through the ``psql`` that ships beside the server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self

from harness import machine
from harness.process import PORT_RACE_ATTEMPTS, LogReady, PortInUse, ServerCrashed, ServerProcess, _lost_port_race

__all__ = [
    "ServiceUnavailable",
    "ServiceError",
    "NginxService",
    "RedisService",
    "PostgresService",
    "parse_redis_info",
    "run_as_user",
]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class ServiceUnavailable(Exception):
    """A service's binary is not installed; the message says what is missing and how to install it."""

    def __init__(self, name: str, install_hint: str, missing: str | None = None):
        self.name, self.install_hint, self.missing = name, install_hint, missing or name
        super().__init__(f"{name} is not available: {self.missing} was not found on this machine. Install it with: {install_hint}")


class ServiceError(Exception):
    """A service is installed but could not be set up (initdb failed, a query failed)."""


#: The programs the services run, registered with the harness's table (see ``machine.register_tool``); a new service
#: registers its own program beside its class.
REDIS_SERVER = machine.register_tool(
    machine.ExternalTool("redis-server", ("redis-server",), ("--version",), "apt-get install -y redis-server")
)
POSTGRES = machine.register_tool(
    machine.ExternalTool("postgres", ("postgres", "/usr/lib/postgresql/*/bin/postgres"), ("--version",), "apt-get install -y postgresql")
)
NGINX = machine.register_tool(machine.ExternalTool("nginx", ("nginx", "/usr/sbin/nginx"), ("-v",), "apt-get install -y nginx"))


def _require(tool: str) -> str:
    """The path of an external tool, or ServiceUnavailable with its install command."""
    path = machine.find_tool(tool)  # looked up through the module, so tests can patch it
    if path is None:
        spec = machine.EXTERNAL_TOOLS[tool]
        raise ServiceUnavailable(tool, spec.install, f"{tool} (looked for {', '.join(spec.binaries)})")
    return path


def _beside(server_binary: str, name: str) -> str | None:
    """A sibling program of ``server_binary`` (initdb beside postgres), following symlinks."""
    for directory in (Path(server_binary).parent, Path(server_binary).resolve().parent):
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def run_as_user() -> str | None:
    """The unprivileged user to run PostgreSQL as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ServiceError("running as root, and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL as")


def _traversable_by(path: Path, user: str) -> bool:
    """Whether ``user`` may reach ``path`` (search permission on it and every parent)."""
    pw = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, pw.pw_gid))
    for p in [path, *path.parents]:
        try:
            st = p.stat()
        except OSError:
            return False
        if st.st_uid == pw.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


class _Service:
    """What redis and postgres share: a temp dir, a ServerProcess, start/stop/kill/restart."""

    name: str
    #: Whether the service writes the port into a config file itself (nginx) rather
    #: than leaving ``{port}`` for the ServerProcess to choose and retry.
    _port_in_config = False

    def __init__(
        self,
        *,
        port: int | None,
        base_dir: str | os.PathLike[str] | None,
        log_path: str | os.PathLike[str] | None,
        cpus: Iterable[int] | None,
        ready_timeout: float,
        grace: float,
    ):
        self.host = LOOPBACK
        self.requested_port = port or None  # None: a free port at each fresh start
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.log_path = Path(log_path) if log_path is not None else None
        self.cpus = frozenset(cpus) if cpus is not None else None
        self.ready_timeout = ready_timeout
        self.grace = grace
        self.dir: Path | None = None
        self.server: ServerProcess | None = None

    # -- state --------------------------------------------------------------
    @property
    def port(self) -> int | None:
        """The port it listens on (kept across kill and restart)."""
        return self.server.port if self.server else self.requested_port

    @property
    def pid(self) -> int | None:
        """The server's main process (redis-server, the postmaster)."""
        return self.server.pid if self.server else None

    @property
    def alive(self) -> bool:
        """Whether the server's main process is running."""
        return self.server is not None and self.server.alive

    def last_log_lines(self, n: int = 20) -> list[str]:
        """The last ``n`` lines of the service's log."""
        return self.server.last_log_lines(n) if self.server else []

    # -- lifetime ------------------------------------------------------------
    def _make_dir(self, base: Path | None) -> Path:
        if base is not None:
            base.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"spike-{self.name}-", dir=base))

    def _build(self) -> ServerProcess:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self) -> Self:
        """Create the data dir (first start) and start the server; wait until it serves."""
        if self.alive:
            return self
        for attempt in range(1, PORT_RACE_ATTEMPTS + 1):
            chose_port = self.requested_port is None
            try:
                if self.server is None:
                    self.server = self._build()
                self.server.start()
            except (ServerCrashed, PortInUse) as e:
                # nginx writes its port into its config, so the service (not the process)
                # chose it: a port taken before nginx bound it gets a fresh one here.
                raced = isinstance(e, PortInUse) or _lost_port_race(self._start_log())
                self._discard()
                if chose_port and self._port_in_config and raced and attempt < PORT_RACE_ATTEMPTS:
                    self.requested_port = None
                    continue
                raise
            except BaseException:
                self._discard()
                raise
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Stop the server gracefully and remove its data directory."""
        if self.server is not None:
            self.server.stop(self.grace)
        self._discard()

    def kill(self) -> None:
        """SIGKILL the server and all its processes (fault injection); the data dir stays."""
        if self.server is not None:
            self.server.kill()

    def restart(self) -> Self:
        """Stop if running, then start again on the same port with the same data dir."""
        if self.server is None:
            return self.start()
        self.server.restart()
        return self

    def _start_log(self) -> str:
        """What the server wrote while starting (where a lost port race would show)."""
        return self.server.log_since_start() if self.server else ""

    def _discard(self) -> None:
        self.server = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- redis ---------------------------------------------------------------------------


def _resp_encode(args: Iterable[str | bytes | int]) -> bytes:
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    out = [f"*{len(parts)}\r\n".encode()]
    for p in parts:
        out += [f"${len(p)}\r\n".encode(), p, b"\r\n"]
    return b"".join(out)


def _resp_read(f: Any) -> Any:
    """Read one RESP2 reply from a binary file object."""
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise ServiceError(f"redis error: {rest.decode()}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise ServiceError(f"unexpected redis reply {line!r}")


def _number(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_redis_info(text: str) -> dict[str, Any]:
    """The ``INFO`` text as a flat dict: numbers as numbers, ``a=1,b=2`` values as dicts."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, value = line.split(":", 1)
        if "=" in value and re.fullmatch(r"[\w.-]+=[^,]*(,[\w.-]+=[^,]*)*", value):
            out[key] = {k: _number(v) for k, v in (kv.split("=", 1) for kv in value.split(","))}
        else:
            out[key] = _number(value)
    return out


class _RedisPing:
    """Ready when redis answers PING with PONG (it accepts TCP while still loading)."""

    def __call__(self, server: ServerProcess) -> bool:
        try:
            reply = _redis_command(server.host, server.port, "PING", timeout=0.5)
            return isinstance(reply, str) and reply == "PONG"
        except (OSError, ServiceError):
            return False

    def __str__(self) -> str:
        return "redis PING"


def _redis_command(host: str, port: int | None, *args: str | bytes | int, timeout: float = 5.0) -> Any:
    with socket.create_connection((host, port), timeout=timeout) as s, s.makefile("rb") as f:
        s.sendall(_resp_encode(args))
        return _resp_read(f)


class RedisService(_Service):
    """An ephemeral ``redis-server`` on a free port: no persistence, data in a temp dir.

    ``args`` are extra ``redis-server`` options (``["--maxmemory", "64mb"]``).
    """

    name = "redis"

    def __init__(
        self,
        *,
        port: int | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        args: Iterable[str] = (),
        cpus: Iterable[int] | None = None,
        ready_timeout: float = 30.0,
        grace: float = 5.0,
    ):
        super().__init__(port=port, base_dir=base_dir, log_path=log_path, cpus=cpus, ready_timeout=ready_timeout, grace=grace)
        self.args = list(args)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, for redis-py and friends."""
        return f"redis://{self.host}:{self.port}/0"

    def _build(self) -> ServerProcess:
        binary = _require("redis-server")
        self.dir = self._make_dir(self.base_dir)
        argv = [
            binary,
            "--port",
            "{port}",
            "--bind",
            self.host,
            "--dir",
            str(self.dir),
            # Ephemeral: no RDB snapshots, no AOF, logs to stdout (the run's log).
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
            *self.args,
        ]
        return ServerProcess(
            "redis-server",
            argv,
            port=self.requested_port,
            host=self.host,
            cwd=self.dir,
            ready=_RedisPing(),
            ready_timeout=self.ready_timeout,
            log_path=self.log_path or self.dir / "redis.log",
            cpus=self.cpus,
            grace=self.grace,
        )

    def command(self, *args: str | bytes | int, timeout: float = 5.0) -> Any:
        """Send one command and return its decoded RESP reply (bulk strings as bytes)."""
        return _redis_command(self.host, self.port, *args, timeout=timeout)

    def info(self, section: str | None = None) -> dict[str, Any]:
        """``INFO`` as a dict (``instantaneous_ops_per_sec``, ``used_memory``, ``connected_clients``...)."""
        raw = self.command("INFO", *([section] if section else []))
        return parse_redis_info(raw.decode() if isinstance(raw, bytes) else str(raw))


# -- postgres -----------------------------------------------------------------------------

#: The pg_stat_database columns :meth:`PostgresService.info` reports, in query order.
PG_STAT_COLUMNS = (
    "numbackends",
    "xact_commit",
    "xact_rollback",
    "blks_read",
    "blks_hit",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "conflicts",
    "temp_files",
    "temp_bytes",
    "deadlocks",
)


class PostgresService(_Service):
    """An ephemeral PostgreSQL cluster: ``initdb`` into a temp dir, ``postgres`` on a free port.

    Authentication is ``trust`` for the superuser ``postgres``, listening on
    127.0.0.1 only. ``settings`` are passed as ``-c name=value`` (the defaults
    are PostgreSQL's own, fsync included, so write costs stay realistic).
    """

    name = "postgres"
    superuser = "postgres"

    def __init__(
        self,
        *,
        port: int | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        settings: Mapping[str, str] | None = None,
        database: str = "postgres",
        user: str | None = None,
        cpus: Iterable[int] | None = None,
        ready_timeout: float = 60.0,
        grace: float = 10.0,
    ):
        super().__init__(port=port, base_dir=base_dir, log_path=log_path, cpus=cpus, ready_timeout=ready_timeout, grace=grace)
        self.settings = dict(settings or {})
        self.database = database
        self.user = user if user is not None else run_as_user()
        self._psql: str | None = None

    @property
    def dsn(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/DB`` (trust auth: no password)."""
        return f"postgresql://{self.superuser}@{self.host}:{self.port}/{self.database}"

    def _env(self) -> dict[str, str]:
        # C locale: English messages (the readiness probe reads one) and no locale surprises.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LC_"))}
        env.update(LC_ALL="C", LANG="C")
        return env

    def _data_root(self) -> Path:
        base = self.base_dir
        if self.user is not None and base is not None:
            base.mkdir(parents=True, exist_ok=True)
            if not _traversable_by(base.resolve(), self.user):
                log.warning("%s is not reachable by user %r; PostgreSQL data goes to %s instead", base, self.user, tempfile.gettempdir())
                base = None
        root = self._make_dir(base)
        if self.user is not None:
            if not _traversable_by(root.parent.resolve(), self.user):
                shutil.rmtree(root, ignore_errors=True)
                raise ServiceError(
                    f"{root.parent} is not reachable by user {self.user!r}, who must run PostgreSQL; set TMPDIR to a directory it can reach"
                )
            pw = pwd.getpwnam(self.user)
            os.chown(root, pw.pw_uid, pw.pw_gid)  # mkdtemp made it 0700 for root
        return root

    def _build(self) -> ServerProcess:
        postgres = _require("postgres")
        hint = machine.EXTERNAL_TOOLS["postgres"].install
        initdb = _beside(postgres, "initdb")
        if initdb is None:
            raise ServiceUnavailable("postgres", hint, "initdb (expected beside postgres)")
        psql = _beside(postgres, "psql")
        if psql is None:
            raise ServiceUnavailable("postgres", "apt-get install -y postgresql-client", "psql (expected beside postgres or on PATH)")
        self._psql = psql
        self.dir = self._data_root()
        data, sock = self.dir / "data", self.dir / "sock"
        sock.mkdir()
        log_path = self.log_path or self.dir / "postgres.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        ids: dict[str, Any] = {}
        if self.user is not None:
            pw = pwd.getpwnam(self.user)
            ids = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
            os.chown(sock, pw.pw_uid, pw.pw_gid)
        self._initdb(initdb, data, log_path, ids)
        argv = [postgres, "-D", str(data), "-p", "{port}", "-k", str(sock), "-c", f"listen_addresses={self.host}"]
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        return ServerProcess(
            "postgres",
            argv,
            port=self.requested_port,
            host=self.host,
            env=self._env(),
            inherit_env=False,
            cwd=self.dir,
            ready=LogReady(r"database system is ready to accept connections"),
            ready_timeout=self.ready_timeout,
            log_path=log_path,
            cpus=self.cpus,
            user=self.user,
            # SIGINT is PostgreSQL's "fast shutdown", sent to the postmaster alone: it stops
            # its own children in order. SIGTERM ("smart") would wait for clients to leave.
            stop_signal=signal.SIGINT,
            signal_group=False,
            grace=self.grace,
        )

    def _initdb(self, initdb: str, data: Path, log_path: Path, ids: dict[str, Any]) -> None:
        argv = [initdb, "-D", str(data), "-U", self.superuser, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]
        with open(log_path, "ab") as logf:
            logf.write(f"[harness] {subprocess.list2cmdline(argv)}{' as ' + self.user if self.user else ''}\n".encode())
            logf.flush()
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=self._env(),
                timeout=max(120.0, self.ready_timeout),
                **ids,
            )
        if proc.returncode != 0:
            tail = "\n".join(f"    {line}" for line in log_path.read_text(errors="replace").splitlines()[-20:])
            raise ServiceError(f"initdb failed with exit code {proc.returncode}; last log lines ({log_path}):\n{tail}")

    def psql(self, sql: str, database: str | None = None, timeout: float = 60.0) -> str:
        """Run SQL (one or more statements) through ``psql``; return its unaligned, tuples-only output."""
        if self._psql is None or self.port is None:
            raise ServiceError("postgres is not started")
        argv = [
            self._psql,
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            self.superuser,
            "-d",
            database or self.database,
            "-f",
            "-",
        ]
        proc = subprocess.run(argv, input=sql, capture_output=True, text=True, env=self._env(), timeout=timeout)
        if proc.returncode != 0:
            raise ServiceError(f"psql failed (exit code {proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def info(self, database: str | None = None) -> dict[str, int]:
        """The database's row of ``pg_stat_database`` (xact_commit, tup_inserted...) and its size in bytes."""
        cols = ", ".join(PG_STAT_COLUMNS)
        out = self.psql(
            f"SELECT {cols}, pg_database_size(datname) FROM pg_stat_database WHERE datname = current_database();",
            database=database,
        ).strip()
        values = out.split("|")
        if len(values) != len(PG_STAT_COLUMNS) + 1:
            raise ServiceError(f"unexpected pg_stat_database row: {out!r}")
        info = {k: int(v) if v else 0 for k, v in zip(PG_STAT_COLUMNS, values, strict=False)}
        info["database_size_bytes"] = int(values[-1])
        return info


# -- nginx ------------------------------------------------------------------------------------


class NginxService(_Service):
    """An ephemeral nginx load balancer: WebSocket upgrades on a free port, proxied to ``upstreams``.

    The configuration, pid file, logs and temp paths all live in a fresh temp
    dir; nginx runs in the foreground (``daemon off``) so the harness owns the
    master process. Connections are spread round-robin (``ip_hash`` with
    ``sticky=True``, for transports that need every request of a session on
    one server, such as Socket.IO long polling; from one loopback address that
    sends everything to one server). Under root the workers run as
    ``nobody``, as a packaged nginx would; otherwise as the calling user.
    """

    name = "nginx"
    _port_in_config = True

    def _start_log(self) -> str:
        return super()._start_log() + "\n".join(self.error_log(50))

    def __init__(
        self,
        upstreams: Iterable[int],
        *,
        port: int | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        workers: int = 1,
        worker_connections: int = 16384,
        sticky: bool = False,
        cpus: Iterable[int] | None = None,
        ready_timeout: float = 30.0,
        grace: float = 5.0,
    ):
        super().__init__(port=port, base_dir=base_dir, log_path=log_path, cpus=cpus, ready_timeout=ready_timeout, grace=grace)
        self.upstreams = [int(p) for p in upstreams]
        if not self.upstreams:
            raise ValueError("nginx needs at least one upstream port")
        if workers < 1 or worker_connections < 16:
            raise ValueError("workers must be >= 1 and worker_connections >= 16")
        self.workers = workers
        self.worker_connections = worker_connections
        self.sticky = sticky

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (use ``ws://`` for WebSocket clients)."""
        return f"http://{self.host}:{self.port}"

    def config(self, port: int, root: Path) -> str:
        """The nginx.conf text for a listen port and a temp dir."""
        user = (
            "user nobody nogroup;\n" if os.geteuid() == 0 and _group_exists("nogroup") else ("user nobody;\n" if os.geteuid() == 0 else "")
        )
        servers = "\n".join(f"        server {self.host}:{p} max_fails=0;" for p in self.upstreams)
        temp = "\n".join(f"    {k}_temp_path {root / (k + '_temp')};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return f"""{user}worker_processes {self.workers};
worker_rlimit_nofile {self.worker_connections * 2 + 64};
pid {root / "nginx.pid"};
error_log {root / "error.log"} warn;
daemon off;
events {{
    worker_connections {self.worker_connections};
}}
http {{
    access_log off;
{temp}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream backends {{
{"        ip_hash;" + chr(10) if self.sticky else ""}{servers}
        keepalive 32;
    }}
    server {{
        listen {self.host}:{port} backlog=4096;
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_buffering off;
        }}
    }}
}}
"""

    def _build(self) -> ServerProcess:
        binary = _require("nginx")
        self.dir = self._make_dir(self.base_dir)
        os.chmod(self.dir, 0o755)  # workers running as nobody read nothing here, but must traverse for temp paths
        port = self.requested_port or _free_port()
        self.requested_port = port
        conf = self.dir / "nginx.conf"
        conf.write_text(self.config(port, self.dir), encoding="utf-8")
        argv = [binary, "-p", str(self.dir), "-c", str(conf), "-e", str(self.dir / "error.log")]
        return ServerProcess(
            "nginx",
            argv,
            port=port,
            host=self.host,
            cwd=self.dir,
            ready_timeout=self.ready_timeout,
            log_path=self.log_path or self.dir / "nginx.out",
            cpus=self.cpus,
            grace=self.grace,
        )  # SIGTERM to the group: nginx's fast shutdown, which does not wait for open WebSocket connections

    def error_log(self, n: int = 20) -> list[str]:
        """The last ``n`` lines of nginx's own error log."""
        if self.dir is None or not (self.dir / "error.log").exists():
            return []
        return (self.dir / "error.log").read_text(errors="replace").splitlines()[-n:]


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    from harness.process import free_port

    return free_port(LOOPBACK)
