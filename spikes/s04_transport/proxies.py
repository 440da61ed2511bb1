"""Spike 4's proxy matrix: each feed transport (SSE, long polling, WebSocket) through each proxy path in front of it.

A *cell* is one transport through one path. :func:`run_cell` starts the path (a throwaway nginx with one config per
variant, a throwaway Debian squid as a corporate forward proxy, or the harness's fault proxy in its buffering mode)
in front of a feed server it is given, connects a real client through it, publishes a few timestamped broadcasts
straight to the server (never through the proxy), and says whether the events came through: ``works``,
``delayed`` (by how much) or ``fails`` (how: status, close code, exception, bytes received in the window). A cell
counts only when the proxy's own log shows the client's request (nginx's access log, squid's access.log, the fault
proxy's accepted-connection counter and fault log); otherwise it is ``not counted``, with that reason.

Clients: aiohttp for SSE and long polling (``proxy=`` for squid), ``websockets`` for WebSocket (its ``proxy=``:
an HTTP CONNECT tunnel through squid). aiohttp speaks only HTTP/1.1, so over HTTP/2 (the ``nginx-h2-tls`` path)
SSE and long polling go through ``curl --http2`` as a subprocess; the WebSocket client there negotiates
``http/1.1`` by ALPN on the same TLS listener, as browsers do when the server does not offer RFC 8441 (nginx 1.22
does not). The certificate is a throwaway self-signed one made by ``openssl req`` at run time; clients skip
verification for it alone.

Squid: Debian's rules allow CONNECT only to port 443 (``http_access deny CONNECT !SSL_ports``). The throwaway
squid keeps Debian's rules and adds one line, ``acl SSL_ports port <feed port>``, so the WebSocket tunnel to the
feed's port is allowed; every squid cell says so in its notes. Loopback is no problem for these clients, which
use the proxy they are given (a browser skips proxies for loopback unless told: ``--proxy-bypass-list=<-loopback>``
in Chromium).

gzip: nginx compresses ``text/event-stream`` and still flushes event by event when the response is unbuffered
(``proxy_buffering off``, or the feed's own ``X-Accel-Buffering: no``); the "0 bytes in 4 s" seen before needs a
buffered response, which ``nginx-gzip-buffered`` reproduces by ignoring the feed's header.

nginx and squid write a request's access-log line when the request ends, so a cell closes its client first, waits
for the line, then stops the proxy; the proxy's logs (and its config) are kept in ``<workdir>/<path>-<transport>/logs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import ssl
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from harness import machine
from harness.faults import Buffer, FaultLog, FaultProxy
from harness.process import ServerProcess, TcpReady
from harness.services import NginxService, ServiceError, _group_exists, _require, _Service, _traversable_by

__all__ = [
    "PATHS",
    "TRANSPORTS",
    "OUTCOMES",
    "FeedNginx",
    "SquidService",
    "make_self_signed_cert",
    "run_cell",
    "arun_cell",
    "run_matrix",
    "matrix_table",
    "proxy_versions",
]

Transport = Literal["sse", "longpoll", "ws"]
TRANSPORTS: tuple[Transport, ...] = ("sse", "longpoll", "ws")

#: The proxy paths, in matrix order, with the setting each one stands for.
PATHS: dict[str, str] = {
    "nginx-default": "nginx `proxy_pass` alone: HTTP/1.0 upstream, no Upgrade/Connection headers, proxy_buffering on, 60 s read timeout",
    "nginx-correct": "nginx as documented: proxy_http_version 1.1, Upgrade/Connection from $http_upgrade, proxy_buffering off, 1 h timeouts",
    "nginx-gzip": "nginx-correct plus `gzip on; gzip_types text/event-stream application/json`",
    "nginx-gzip-buffered": "`gzip on` with nginx's default proxy_buffering and `proxy_ignore_headers X-Accel-Buffering`: a stream "
    "without the feed's X-Accel-Buffering: no header",
    "nginx-short-read-timeout": "nginx-correct with proxy_read_timeout shorter than the feed's keep-alive interval",
    "nginx-h2-tls": "nginx-correct behind `listen ssl http2` with a throwaway self-signed certificate",
    "squid-forward": "Debian squid 5 as a forward proxy: plain HTTP proxied, WebSocket through CONNECT (feed port added to SSL_ports)",
    "buffering-proxy": "harness FaultProxy in Buffer mode: server-to-client bytes held until 8 KiB gather",
}

#: A cell's outcome; "not counted" when the proxy's own log does not show the request.
OUTCOMES = ("works", "delayed", "fails", "not counted")

#: Bytes the buffering proxy holds before forwarding (a streaming feed's few small events never reach it).
BUFFER_BYTES = 8192
#: The short proxy_read_timeout, in seconds, unless a cell is given another.
SHORT_READ_TIMEOUT_S = 2.0

SQUID = machine.register_tool(machine.ExternalTool("squid", ("squid", "/usr/sbin/squid"), ("-v",), "apt-get install -y squid"))
OPENSSL = machine.register_tool(machine.ExternalTool("openssl", ("openssl",), ("version",), "apt-get install -y openssl"))
CURL = machine.register_tool(machine.ExternalTool("curl", ("curl",), ("--version",), "apt-get install -y curl"))

#: The nginx access-log format: enough to tell what the proxy did with the request.
_NGINX_LOG_FORMAT = (
    '\'$time_iso8601 $remote_addr "$request" $status $body_bytes_sent rt=$request_time proto=$server_protocol '
    'up=$upstream_status urt=$upstream_response_time upgrade="$http_upgrade" gzip=$gzip_ratio ae="$http_accept_encoding"\''
)


# -- proxies -------------------------------------------------------------------------------------------------------


class FeedNginx(NginxService):
    """A throwaway nginx in front of one feed server, with the configuration of one of the ``nginx-*`` paths.

    Its access log (format :data:`_NGINX_LOG_FORMAT`) and error log (level ``info``: client aborts and upstream
    timeouts show) are the cell's evidence; :meth:`stop` copies them to ``keep_logs_in`` before the temp dir goes.
    """

    def __init__(
        self,
        feed_port: int,
        variant: str,
        *,
        feed_host: str = "127.0.0.1",
        read_timeout_s: float = SHORT_READ_TIMEOUT_S,
        cert: tuple[Path, Path] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        keep_logs_in: Path | None = None,
        ready_timeout: float = 30.0,
    ):
        if variant not in PATHS or not variant.startswith("nginx-"):
            raise ValueError(f"not an nginx path: {variant!r}")
        if variant == "nginx-h2-tls" and cert is None:
            raise ValueError("nginx-h2-tls needs a certificate (make_self_signed_cert)")
        super().__init__([feed_port], base_dir=base_dir, workers=1, worker_connections=1024, ready_timeout=ready_timeout)
        self.variant = variant
        self.feed = (feed_host, feed_port)
        self.read_timeout_s = read_timeout_s
        self.cert = cert
        self.keep_logs_in = keep_logs_in

    @property
    def tls(self) -> bool:
        return self.variant == "nginx-h2-tls"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def location(self) -> str:
        """The ``location /`` block's directives for this variant."""
        host, port = self.feed
        lines = [f"proxy_pass http://{host}:{port};"]
        if self.variant == "nginx-gzip-buffered":
            # proxy_buffering stays on (the default) and the feed's own opt-out is ignored, as for a server that never sent it.
            lines += ["proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;", "proxy_set_header Connection $connection_upgrade;",
                      "proxy_ignore_headers X-Accel-Buffering;"]  # fmt: skip
        elif self.variant != "nginx-default":
            lines += [
                "proxy_http_version 1.1;",
                "proxy_set_header Upgrade $http_upgrade;",
                "proxy_set_header Connection $connection_upgrade;",
                "proxy_set_header Host $host;",
                "proxy_buffering off;",
                "proxy_cache off;",
                f"proxy_read_timeout {round(self.read_timeout_s * 1000)}ms;"
                if self.variant == "nginx-short-read-timeout"
                else "proxy_read_timeout 3600s;",
                "proxy_send_timeout 3600s;",
            ]
        return "\n            ".join(lines)

    def config(self, port: int, root: Path) -> str:
        user = (
            "user nobody nogroup;\n" if os.geteuid() == 0 and _group_exists("nogroup") else ("user nobody;\n" if os.geteuid() == 0 else "")
        )
        temp = "\n".join(f"    {k}_temp_path {root / (k + '_temp')};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        gzip = "    gzip on;\n    gzip_types text/event-stream application/json;\n" if self.variant.startswith("nginx-gzip") else ""
        listen = f"listen {self.host}:{port}"
        tls = ""
        if self.tls:
            assert self.cert is not None
            listen += " ssl http2"  # nginx 1.22 syntax; `http2 on;` arrived in 1.25.1
            tls = f"        ssl_certificate {self.cert[0]};\n        ssl_certificate_key {self.cert[1]};\n"
        return f"""{user}worker_processes 1;
pid {root / "nginx.pid"};
error_log {root / "error.log"} info;
daemon off;
events {{
    worker_connections 1024;
}}
http {{
    log_format cell {_NGINX_LOG_FORMAT};
    access_log {root / "access.log"} cell;
{temp}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
{gzip}    server {{
        {listen};
{tls}        location / {{
            {self.location()}
        }}
    }}
}}
"""

    def access_lines(self) -> list[str]:
        return _read_lines(self.dir / "access.log") if self.dir else []

    def error_lines(self) -> list[str]:
        return _read_lines(self.dir / "error.log") if self.dir else []

    def stop(self) -> None:
        if self.dir is not None and self.keep_logs_in is not None:
            self.keep_logs_in.mkdir(parents=True, exist_ok=True)
            for name in ("access.log", "error.log", "nginx.conf"):
                with contextlib.suppress(OSError):
                    shutil.copy(self.dir / name, self.keep_logs_in / name)
        super().stop()


#: Debian's squid.conf rules (bookworm, squid 5.7), as installed; the throwaway squid keeps them.
_DEBIAN_SQUID_RULES = """acl SSL_ports port 443
acl Safe_ports port 80
acl Safe_ports port 21
acl Safe_ports port 443
acl Safe_ports port 70
acl Safe_ports port 210
acl Safe_ports port 1025-65535
acl Safe_ports port 280
acl Safe_ports port 488
acl Safe_ports port 591
acl Safe_ports port 777
{extra}http_access deny !Safe_ports
http_access deny CONNECT !SSL_ports
http_access allow localhost manager
http_access deny manager
http_access allow localhost
http_access deny all
"""

_squid_count = 0


class SquidService(_Service):
    """A throwaway Debian squid on a free loopback port: no disk cache, no daemon (``-N``), its own dirs and logs.

    ``connect_ports`` are added to ``SSL_ports`` (the one rule changed from Debian's: CONNECT is allowed to them
    too). Under root squid drops privileges to ``proxy`` (``cache_effective_user``); its temp dir is made that
    user's (in the system temp dir when ``base_dir`` is out of that user's reach). The access log (``stdio:``,
    written as each transaction ends, query strings kept) is the evidence; :meth:`stop` copies it to ``keep_logs_in``.
    """

    name = "squid"
    _port_in_config = True

    def __init__(
        self,
        *,
        connect_ports: Iterable[int] = (),
        base_dir: str | os.PathLike[str] | None = None,
        keep_logs_in: Path | None = None,
        ready_timeout: float = 30.0,
        grace: float = 5.0,
    ):
        super().__init__(port=None, base_dir=base_dir, log_path=None, cpus=None, ready_timeout=ready_timeout, grace=grace)
        self.connect_ports = [int(p) for p in connect_ports]
        self.keep_logs_in = keep_logs_in
        self.user = _squid_user()
        self.service_name: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def changed_rules(self) -> list[str]:
        """The lines added to Debian's rules."""
        return [f"acl SSL_ports port {p}" for p in self.connect_ports]

    def config(self, port: int, root: Path) -> str:
        extra = "".join(line + "\n" for line in self.changed_rules())
        user = f"cache_effective_user {self.user}\n" if self.user else ""
        return (
            _DEBIAN_SQUID_RULES.format(extra=extra)
            + f"""http_port {self.host}:{port}
{user}pid_filename {root / "squid.pid"}
cache_log {root / "cache.log"}
access_log stdio:{root / "access.log"} squid
cache_store_log none
buffered_logs off
strip_query_terms off
logfile_rotate 0
coredump_dir {root}
cache deny all
cache_mem 8 MB
pinger_enable off
shutdown_lifetime 1 seconds
"""
        )

    def _build(self) -> ServerProcess:
        binary = _require("squid")
        base = self.base_dir
        if self.user and base is not None:
            base.mkdir(parents=True, exist_ok=True)
            if not _traversable_by(base.resolve(), self.user):
                base = None  # pytest's tmp_path is 0700 root: squid, once it is `proxy`, could not write its logs there
        self.dir = self._make_dir(base)
        os.chmod(self.dir, 0o755)
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)  # squid writes its logs and pid file here after dropping root
        from harness.process import free_port

        port = self.requested_port or free_port(self.host)
        self.requested_port = port
        conf = self.dir / "squid.conf"
        conf.write_text(self.config(port, self.dir), encoding="utf-8")
        global _squid_count
        _squid_count += 1
        # -n: a service name of its own, so two squids never share a name for their IPC and shared-memory files.
        self.service_name = f"spike{os.getpid()}x{_squid_count}"
        argv = [binary, "-N", "-f", str(conf), "-n", self.service_name]
        return ServerProcess(
            "squid",
            argv,
            port=port,
            host=self.host,
            cwd=self.dir,
            ready=TcpReady(),
            ready_timeout=self.ready_timeout,
            log_path=self.dir / "squid.out",
            grace=self.grace,
        )

    def _start_log(self) -> str:
        return super()._start_log() + "\n".join(self.cache_lines()[-50:])

    def _discard(self) -> None:
        # squid removes its shared-memory segments when it exits cleanly, not when it dies at start or is killed.
        if self.service_name:
            for leftover in Path("/dev/shm").glob(f"{self.service_name}-*"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
        super()._discard()

    def access_lines(self) -> list[str]:
        return _read_lines(self.dir / "access.log") if self.dir else []

    def cache_lines(self) -> list[str]:
        return _read_lines(self.dir / "cache.log") if self.dir else []

    def stop(self) -> None:
        if self.dir is not None and self.keep_logs_in is not None:
            self.keep_logs_in.mkdir(parents=True, exist_ok=True)
            for name in ("access.log", "cache.log", "squid.conf"):
                with contextlib.suppress(OSError):
                    shutil.copy(self.dir / name, self.keep_logs_in / name)
        super().stop()


def _squid_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("proxy", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ServiceError("running as root, and neither a 'proxy' nor a 'nobody' user exists to run squid as")


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and localhost (P-256, one day), made by ``openssl req``: (cert, key)."""
    openssl = _require("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@functools.cache
def proxy_versions() -> dict[str, str | None]:
    """The versions of the programs and client libraries the matrix uses."""
    out: dict[str, str | None] = {}
    for tool in ("nginx", "squid", "curl", "openssl"):
        out[tool] = machine.tool_status(tool)["version"] if machine.find_tool(tool) else None
    for pkg in ("aiohttp", "websockets"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[pkg] = importlib.metadata.version(pkg)
    return out


# -- what a client saw ---------------------------------------------------------------------------------------------


@dataclass
class _Seen:
    """What one client saw: when it joined, each broadcast's arrival, its errors, bytes, and how it ended."""

    started: float = field(default_factory=time.monotonic)
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    protocol: str | None = None
    joined_at: float | None = None
    first_byte_at: float | None = None
    last_byte_at: float | None = None
    nbytes: int = 0
    arrivals: dict[int, float] = field(default_factory=dict)  # seq -> monotonic arrival
    keepalives: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    closed_at: float | None = None
    close: dict[str, Any] | None = None
    requests: int = 0

    def got_bytes(self, n: int) -> None:
        now = time.monotonic()
        if n and self.first_byte_at is None:
            self.first_byte_at = now
        if n:
            self.last_byte_at = now
        self.nbytes += n

    def message(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            return
        if msg.get("op") == "joined" and self.joined_at is None:
            self.joined_at = time.monotonic()
        elif msg.get("op") == "broadcast" and isinstance(msg.get("seq"), int):
            self.arrivals.setdefault(msg["seq"], time.monotonic())

    def error(self, **details: Any) -> None:
        self.errors.append({"at_s": round(time.monotonic() - self.started, 3), **details})


def _exc(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:300]


# -- clients -----------------------------------------------------------------------------------------------------------


def _sse_lines(seen: _Seen, line: str, event: dict[str, list[str]]) -> None:
    """Feed one SSE line; dispatch the event at a blank line."""
    if line == "":
        if event.get("data"):
            with contextlib.suppress(ValueError):
                seen.message(json.loads("\n".join(event["data"])))
        event.clear()
    elif line.startswith(":"):
        seen.keepalives += 1
    else:
        name, _, value = line.partition(":")
        event.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)


async def _sse_aiohttp(url: str, seen: _Seen, *, proxy: str | None) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        seen.requests += 1
        try:
            async with session.get(url, proxy=proxy, headers={"Accept": "text/event-stream"}) as resp:
                seen.status, seen.headers = resp.status, {k.lower(): v for k, v in resp.headers.items()}
                seen.protocol = f"HTTP/{resp.version.major}.{resp.version.minor}" if resp.version else None
                if resp.status != 200:
                    body = await resp.content.read(500)
                    seen.got_bytes(len(body))
                    seen.error(status=resp.status, body=body.decode(errors="replace")[:200])
                    return
                event: dict[str, list[str]] = {}
                buf = b""
                # aiohttp hands over decompressed bytes as they come (content-encoding gzip included).
                async for chunk in resp.content.iter_any():
                    seen.got_bytes(len(chunk))
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for raw in lines:
                        _sse_lines(seen, raw.decode(errors="replace").rstrip("\r"), event)
                seen.closed_at = time.monotonic()
                seen.close = {"how": "stream ended (EOF)"}
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - what the client saw is the result
            seen.closed_at = time.monotonic()
            seen.close = {"how": "exception", "exception": _exc(e)}
            seen.error(exception=_exc(e))


async def _longpoll_aiohttp(base: str, room: str, seen: _Seen, *, proxy: str | None, hold_s: float, close_each: bool = False) -> None:
    """Poll as a long-poll client does: join (no cursor), then poll again at once with each returned cursor.

    A failed poll (a status other than 200, a reset) is recorded and retried after a short pause, as a
    long-poll client's loop would; the cursor makes the retry lose nothing. ``close_each``: a connection per poll
    (``Connection: close``), so that a response ends with its connection."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    cursor: int | None = None
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(force_close=close_each)) as session:
        while True:
            url = f"{base}/poll?room={room}" + ("" if cursor is None else f"&cursor={cursor}&hold_s={hold_s:g}")
            t0 = time.monotonic()
            seen.requests += 1
            try:
                async with session.get(url, proxy=proxy) as resp:
                    body = await resp.read()
                    seen.got_bytes(len(body))
                    seen.status = resp.status
                    seen.headers = {k.lower(): v for k, v in resp.headers.items()}
                    seen.protocol = f"HTTP/{resp.version.major}.{resp.version.minor}" if resp.version else None
                    if resp.status != 200:
                        seen.error(status=resp.status, held_s=round(time.monotonic() - t0, 3), body=body.decode(errors="replace")[:200])
                        await asyncio.sleep(0.1)
                        continue
                    _take_poll(seen, json.loads(body))
                    cursor = json.loads(body).get("cursor", cursor)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                seen.error(exception=_exc(e), held_s=round(time.monotonic() - t0, 3))
                await asyncio.sleep(0.1)


def _take_poll(seen: _Seen, data: Any) -> None:
    if not isinstance(data, dict):
        return
    if data.get("op") == "joined":
        seen.message(data)
    for ev in data.get("events") or []:
        seen.message(ev)


async def _ws_client(url: str, room: str, seen: _Seen, *, proxy: str | None, ssl_ctx: ssl.SSLContext | None, open_timeout: float) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    seen.requests += 1
    try:
        async with connect(url, proxy=proxy, ssl=ssl_ctx, open_timeout=open_timeout, ping_interval=None, max_size=None) as ws:
            seen.status = 101
            seen.headers = {k.lower(): v for k, v in ws.response.headers.raw_items()} if ws.response else {}
            sslobj = ws.transport.get_extra_info("ssl_object")
            seen.protocol = f"HTTP/1.1 (ALPN {sslobj.selected_alpn_protocol()})" if sslobj is not None else "HTTP/1.1"
            await ws.send(json.dumps({"op": "join", "room": room}))
            try:
                async for frame in ws:
                    seen.got_bytes(len(frame))
                    with contextlib.suppress(ValueError):
                        seen.message(json.loads(frame))
            except ConnectionClosed:
                pass
            seen.closed_at = time.monotonic()
            rcvd = ws.close_code
            seen.close = {"how": "closed", "code": rcvd if rcvd is not None else 1006, "reason": ws.close_reason or ""}
    except asyncio.CancelledError:
        raise
    except InvalidStatus as e:
        seen.status = e.response.status_code
        body = (e.response.body or b"")[:200].decode(errors="replace")
        seen.closed_at = time.monotonic()
        seen.close = {"how": "handshake refused", "status": e.response.status_code, "body": body}
        seen.error(status=e.response.status_code, exception=_exc(e))
    except Exception as e:  # noqa: BLE001
        seen.closed_at = time.monotonic()
        seen.close = {"how": "exception", "exception": _exc(e)}
        seen.error(exception=_exc(e))


async def _sse_curl(url: str, seen: _Seen, curl: str) -> None:
    """SSE over HTTP/2: ``curl --http2 -N`` as a subprocess, its stdout parsed as it arrives."""
    argv = [curl, "--http2", "-k", "-sS", "-N", "-v", "-H", "Accept: text/event-stream", url]
    seen.requests += 1
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    stderr_task = asyncio.create_task(_curl_stderr(proc, seen))
    event: dict[str, list[str]] = {}
    try:
        assert proc.stdout is not None
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                break
            seen.got_bytes(len(raw))
            _sse_lines(seen, raw.decode(errors="replace").rstrip("\r\n"), event)
        await proc.wait()
        seen.closed_at = time.monotonic()
        seen.close = {"how": f"curl exited {proc.returncode}"}
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
        stderr_task.cancel()


async def _curl_stderr(proc: asyncio.subprocess.Process, seen: _Seen) -> None:
    assert proc.stderr is not None
    while raw := await proc.stderr.readline():
        line = raw.decode(errors="replace").rstrip()
        if m := re.match(r"< (HTTP/[\d.]+) (\d{3})", line):
            seen.protocol, seen.status = m.group(1), int(m.group(2))
        elif m := re.match(r"< ([\w-]+): (.*)", line):
            seen.headers[m.group(1).lower()] = m.group(2)
        elif "ALPN" in line and "accepted" in line:
            seen.headers.setdefault("x-curl-alpn", line.lstrip("* "))


async def _longpoll_curl(base: str, room: str, seen: _Seen, curl: str, *, hold_s: float) -> None:
    """Long polling over HTTP/2: one ``curl --http2`` per poll (a new TLS connection each: curl cannot chain them)."""
    cursor: int | None = None
    while True:
        url = f"{base}/poll?room={room}" + ("" if cursor is None else f"&cursor={cursor}&hold_s={hold_s:g}")
        t0 = time.monotonic()
        seen.requests += 1
        argv = [curl, "--http2", "-k", "-sS", "-w", "\n%{http_version} %{http_code}", url]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = await proc.communicate()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            raise
        body, _, tail = out.rpartition(b"\n")
        seen.got_bytes(len(body))
        parts = tail.decode().split()
        if len(parts) == 2:
            seen.protocol, seen.status = f"HTTP/{parts[0]}", int(parts[1])
        if proc.returncode != 0 or seen.status != 200:
            seen.error(
                status=seen.status,
                curl_exit=proc.returncode,
                stderr=err.decode(errors="replace")[:200],
                held_s=round(time.monotonic() - t0, 3),
            )
            await asyncio.sleep(0.1)
            continue
        data = json.loads(body)
        _take_poll(seen, data)
        cursor = data.get("cursor", cursor)


# -- publishing ----------------------------------------------------------------------------------------------------


class _Publisher:
    """Publishes numbered broadcasts straight to the feed server (POST /send, or a direct WebSocket for ws)."""

    def __init__(self, base: str, room: str, transport: Transport):
        self.base, self.room, self.transport = base, room, transport
        self.sent: dict[int, float] = {}  # seq -> monotonic send time
        self.acks: list[Any] = []
        self._session: aiohttp.ClientSession | None = None
        self._ws: Any = None

    async def __aenter__(self) -> _Publisher:
        if self.transport == "ws":
            from websockets.asyncio.client import connect

            self._ws = await connect(_ws_url(self.base) + "?publisher=1", proxy=None, ping_interval=None)
        else:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()

    async def publish(self, seq: int) -> None:
        msg = {"op": "broadcast", "room": self.room, "seq": seq, "t": time.time_ns(), "c": 9000, "d": f"proxy-cell-{seq}"}
        self.sent[seq] = time.monotonic()
        if self._ws is not None:
            await self._ws.send(json.dumps(msg))
            return
        assert self._session is not None
        async with self._session.post(f"{self.base}/send", json=msg) as resp:
            self.acks.append({"status": resp.status, "body": (await resp.text())[:200]})


def _ws_url(http_base: str) -> str:
    parts = urlsplit(http_base)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/ws"


# -- one cell ------------------------------------------------------------------------------------------------------


@dataclass
class _Path:
    """A started path: the base URL clients use, how they reach it, and where its evidence comes from."""

    base: str
    proxy: str | None = None
    ssl_ctx: ssl.SSLContext | None = None
    evidence: Callable[[], list[str]] = lambda: []
    extra_evidence: Callable[[], dict[str, Any]] = lambda: {}
    log_name: str = ""
    notes: list[str] = field(default_factory=list)
    version: str | None = None


async def _connect_elsewhere(started: _Path, feed_port: int) -> dict[str, Any]:
    """Debian's CONNECT rule at work: a tunnel to a port other than 443 and the feed's is refused (403), with the
    squid log line saying so; the feed's port went through only because its line was added."""
    from harness.process import free_port

    assert started.proxy is not None
    other = free_port()
    while other == feed_port:  # pragma: no cover - the kernel would have to hand out the feed's own port
        other = free_port()
    parts = urlsplit(started.proxy)
    status: int | None = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port), 10)
        writer.write(f"CONNECT 127.0.0.1:{other} HTTP/1.1\r\nHost: 127.0.0.1:{other}\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        m = re.match(rb"HTTP/1\.[01] (\d{3})", line)
        status = int(m.group(1)) if m else None
    except (OSError, TimeoutError) as e:
        return {"connect_to": other, "error": _exc(e)}
    await _until(lambda: any(f"CONNECT 127.0.0.1:{other}" in ln for ln in started.evidence()), 3.0)
    lines = [ln for ln in started.evidence() if f"CONNECT 127.0.0.1:{other}" in ln]
    return {"connect_to": other, "status": status, "lines": lines}


def _port_of(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme in ("https", "wss") else 80)


def _insecure_ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the throwaway self-signed certificate only
    ctx.set_alpn_protocols(["http/1.1"])  # what a browser offers for a WebSocket when h2 has no RFC 8441
    return ctx


def _matches(line: str, transport: Transport, room: str, feed_port: int, path: str) -> bool:
    if path == "squid-forward" and transport == "ws":
        return f"CONNECT 127.0.0.1:{feed_port}" in line
    if transport == "ws":
        return f"/ws?cell={room}" in line
    return f"room={room}" in line


async def arun_cell(
    transport: Transport,
    path: str,
    feed_base_url: str,
    workdir: str | os.PathLike[str],
    *,
    events: int = 5,
    window_s: float = 4.0,
    gap_s: float = 0.1,
    slow_s: float = 0.5,
    read_timeout_s: float = SHORT_READ_TIMEOUT_S,
    idle_s: float | None = None,
    hold_s: float = 30.0,
    log_wait_s: float = 5.0,
    keepalive_s: float | None = None,
) -> dict[str, Any]:
    """One cell, on the caller's loop; see :func:`run_cell`."""
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; one of {TRANSPORTS}")
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}; one of {list(PATHS)}")
    if idle_s is None:
        idle_s = read_timeout_s * 1.5 + 1.0 if path == "nginx-short-read-timeout" else 0.0
    base = feed_base_url.rstrip("/")
    feed_port = _port_of(base)
    room = f"px{secrets.token_hex(5)}"
    cell_dir = Path(workdir) / f"{path}-{transport}"
    cell_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "transport": transport,
        "path": path,
        "setting": PATHS[path],
        "room": room,
        "published": events,
        "window_s": window_s,
        "idle_s": idle_s,
        "notes": [],
    }
    async with contextlib.AsyncExitStack() as stack:
        try:
            started = await _start_path(stack, path, transport, base, feed_port, cell_dir, read_timeout_s)
        except Exception as e:  # noqa: BLE001 - the path could not start: say so, not counted
            result.update(outcome="not counted", counted=False, reason=f"the proxy did not start: {_exc(e)}")
            return result
        result["notes"] += started.notes
        if idle_s > 0:
            result["notes"].append(f"after the events the cell stays silent {idle_s:g} s, then publishes once more")
        if path == "nginx-short-read-timeout" and keepalive_s is not None:
            beats = keepalive_s < read_timeout_s
            result["notes"].append(
                f"the feed's keep-alive interval is {keepalive_s:g} s: "
                + ("shorter than the read timeout, so its pings keep the stream open" if beats else "longer than the read timeout (case d)")
            )
        result["proxy_version"] = started.version
        seen = _Seen()
        client, result["client"] = _client_for(transport, path, started, room, seen, hold_s=hold_s, open_timeout=window_s)
        task = asyncio.create_task(client)
        publisher = await stack.enter_async_context(_Publisher(base, room, transport))
        # Joined (or failed) first, so no broadcast goes out before the client is a member.
        await _until(lambda: seen.joined_at is not None or task.done(), window_s)
        for seq in range(events):
            await publisher.publish(seq)
            await asyncio.sleep(gap_s)
        await _until(lambda: len(seen.arrivals) >= events or task.done(), window_s)
        in_window = {"bytes": seen.nbytes, "events": len(seen.arrivals), "keepalives": seen.keepalives}
        idle: dict[str, Any] | None = None
        if idle_s > 0:
            errors_before = len(seen.errors)
            t_idle = time.monotonic()
            last_byte = seen.last_byte_at
            await _until(lambda: task.done(), idle_s)
            await publisher.publish(events)  # one more after the silence
            await _until(lambda: events in seen.arrivals or task.done(), window_s)
            idle = {
                "idle_s": idle_s,
                "closed_after_idle_s": None if seen.closed_at is None else round(seen.closed_at - t_idle, 3),
                "silence_before_close_s": None if seen.closed_at is None or last_byte is None else round(seen.closed_at - last_byte, 3),
                "close": seen.close,
                "errors_during_idle": seen.errors[errors_before:],
                "event_after_idle_arrived": events in seen.arrivals,
                "keepalives_during_idle": seen.keepalives - in_window["keepalives"],
            }
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        # The proxy writes its log line when the request ends: wait for it, then collect.
        lines = await _log_lines(started, transport, room, feed_port, path, log_wait_s)
        result["evidence"] = {"log": started.log_name, "lines": lines, **started.extra_evidence()}
        if path == "squid-forward" and transport == "ws" and started.proxy:
            result["debian_connect_rule"] = await _connect_elsewhere(started, feed_port)
        result["acks"] = publisher.acks[:1] + ([{"more": len(publisher.acks) - 1}] if len(publisher.acks) > 1 else [])
        _classify(result, seen, publisher.sent, events, in_window, idle, slow_s, window_s)
    return result


async def _until(cond: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(step)
    return True


async def _log_lines(started: _Path, transport: Transport, room: str, feed_port: int, path: str, wait_s: float) -> list[str]:
    deadline = time.monotonic() + wait_s
    while True:
        lines = [ln for ln in started.evidence() if path == "buffering-proxy" or _matches(ln, transport, room, feed_port, path)]
        if lines or time.monotonic() >= deadline:
            return lines
        await asyncio.sleep(0.05)


def _client_for(
    transport: Transport, path: str, started: _Path, room: str, seen: _Seen, *, hold_s: float, open_timeout: float
) -> tuple[Any, str]:
    versions = proxy_versions()
    if path == "nginx-h2-tls" and transport != "ws":
        curl = _require("curl")
        label = f"curl {versions.get('curl')} --http2 (aiohttp speaks only HTTP/1.1)"
        if transport == "sse":
            return _sse_curl(f"{started.base}/sse?room={room}", seen, curl), label
        return _longpoll_curl(started.base, room, seen, curl, hold_s=hold_s), label + ", one process and TLS connection per poll"
    if transport == "sse":
        return _sse_aiohttp(f"{started.base}/sse?room={room}", seen, proxy=started.proxy), f"aiohttp {versions.get('aiohttp')}"
    if transport == "longpoll":
        close_each = path == "buffering-proxy"
        client = _longpoll_aiohttp(started.base, room, seen, proxy=started.proxy, hold_s=hold_s, close_each=close_each)
        return client, f"aiohttp {versions.get('aiohttp')}" + (", Connection: close (a connection per poll)" if close_each else "")
    url = _ws_url(started.base) + f"?cell={room}"
    client = _ws_client(url, room, seen, proxy=started.proxy, ssl_ctx=started.ssl_ctx, open_timeout=open_timeout)
    return client, f"websockets {versions.get('websockets')}" + (" (HTTP CONNECT through the proxy)" if started.proxy else "")


async def _start_path(
    stack: contextlib.AsyncExitStack, path: str, transport: Transport, base: str, feed_port: int, cell_dir: Path, read_timeout_s: float
) -> _Path:
    feed_host = urlsplit(base).hostname or "127.0.0.1"
    if path.startswith("nginx-"):
        cert = await asyncio.to_thread(make_self_signed_cert, cell_dir / "tls") if path == "nginx-h2-tls" else None
        nginx = FeedNginx(
            feed_port,
            path,
            feed_host=feed_host,
            read_timeout_s=read_timeout_s,
            cert=cert,
            base_dir=cell_dir,
            keep_logs_in=cell_dir / "logs",
        )
        await asyncio.to_thread(nginx.start)
        stack.push_async_callback(asyncio.to_thread, nginx.stop)
        notes = []
        if path == "nginx-short-read-timeout":
            notes.append(
                f"proxy_read_timeout {read_timeout_s:g}s, counted from the last read from the feed server; nginx does not"
                " move a timer by less than 300 ms (NGX_TIMER_LAZY_DELAY), so it may fire up to 0.3 s early"
            )
        if path == "nginx-default" and transport == "sse":
            notes.append(
                "proxy_buffering is on here, but nginx honours the feed's X-Accel-Buffering: no per response,"
                " so the stream is not buffered (nginx-gzip-buffered shows a stream without it)"
            )
        if path == "nginx-h2-tls":
            notes.append(f"self-signed certificate from `openssl req` in {cell_dir / 'tls'}; clients skip verification for it")
            if transport == "ws":
                notes.append(
                    "nginx 1.22 has no WebSocket over HTTP/2 (RFC 8441): the WebSocket takes its own HTTP/1.1 connection"
                    " (ALPN http/1.1) on the same TLS port, as a browser does when the server offers no extended CONNECT"
                )
        return _Path(
            base=nginx.url,
            ssl_ctx=_insecure_ctx() if nginx.tls else None,
            evidence=nginx.access_lines,
            extra_evidence=lambda: {"error_log": [ln for ln in nginx.error_lines() if "[notice]" not in ln][-8:]},
            log_name="nginx access.log",
            notes=notes,
            version=proxy_versions()["nginx"],
        )
    if path == "squid-forward":
        squid = SquidService(connect_ports=[feed_port], base_dir=cell_dir, keep_logs_in=cell_dir / "logs")
        await asyncio.to_thread(squid.start)
        stack.push_async_callback(asyncio.to_thread, squid.stop)
        return _Path(
            base=base,
            proxy=squid.url,
            evidence=squid.access_lines,
            log_name="squid access.log",
            notes=[
                "rule changed from Debian's squid.conf: " + "; ".join(squid.changed_rules())
                + " (Debian allows CONNECT to 443 only; the feed is on a free loopback port)",
                "clients use the proxy explicitly (a browser bypasses proxies for loopback unless told: --proxy-bypass-list=<-loopback>)",
            ],
            version=proxy_versions()["squid"],
        )  # fmt: skip
    assert path == "buffering-proxy"
    faults = FaultLog()
    proxy = await stack.enter_async_context(FaultProxy(feed_port, feed_host, log=faults, name="buffering proxy {port}"))
    proxy.set_mode(Buffer(BUFFER_BYTES))

    async def drain() -> None:
        # Back to Pass before closing: the held bytes go out (to a client long gone), so every connection ends by
        # itself instead of being cancelled by aclose (which Python 3.11's asyncio streams log as an error).
        proxy.restore()
        await _until(lambda: proxy.open_connections == 0, 2.0)

    stack.push_async_callback(drain)

    def counters() -> list[str]:
        return [f"connections accepted: {proxy.connections}, open: {proxy.open_connections}"] if proxy.connections else []

    return _Path(
        base=f"http://127.0.0.1:{proxy.port}",
        evidence=counters,
        extra_evidence=lambda: {"faults": faults.to_list()},
        log_name="fault proxy counters and fault log",
        notes=[
            f"Buffer({BUFFER_BYTES}) server-to-client, no time-based flush: a TCP-level proxy that holds bytes until 8 KiB gather",
            "long polling uses a connection per poll (Connection: close) so each response ends with its connection, which this"
            " TCP-level buffer then forwards, as an HTTP-aware buffering proxy forwards a complete response; over a kept-alive"
            " connection this buffer would hold a small response for ever",
        ]
        if transport == "longpoll"
        else [f"Buffer({BUFFER_BYTES}) server-to-client, no time-based flush: a TCP-level proxy that holds bytes until 8 KiB gather"],
        version="harness.faults.FaultProxy",
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _classify(
    result: dict[str, Any],
    seen: _Seen,
    sent: dict[int, float],
    events: int,
    in_window: dict[str, Any],
    idle: dict[str, Any] | None,
    slow_s: float,
    window_s: float,
) -> None:
    delays = {seq: seen.arrivals[seq] - sent[seq] for seq in range(events) if seq in seen.arrivals and seq in sent}
    result.update(
        status=seen.status,
        protocol=seen.protocol,
        content_type=seen.headers.get("content-type"),
        content_encoding=seen.headers.get("content-encoding"),
        requests=seen.requests,
        joined_ms=None if seen.joined_at is None else _ms(seen.joined_at - seen.started),
        first_byte_ms=None if seen.first_byte_at is None else _ms(seen.first_byte_at - seen.started),
        received=len(delays),
        first_event_ms=_ms(delays[0]) if 0 in delays else None,
        event_delays_ms=[_ms(delays[s]) if s in delays else None for s in range(events)],
        max_delay_ms=_ms(max(delays.values())) if delays else None,
        median_delay_ms=_ms(statistics.median(delays.values())) if delays else None,
        in_window=in_window,
        idle=idle,
        errors=seen.errors[:10],
        close=seen.close,
    )
    if not result["evidence"]["lines"]:
        result.update(outcome="not counted", counted=False, reason=f"the {result['evidence']['log']} does not show the request")
        return
    result["counted"] = True
    if len(delays) < events:
        result.update(outcome="fails", reason=f"{len(delays)} of {events} events in {window_s:g} s; {_failure(seen, in_window)}")
        return
    if idle is not None and (idle["closed_after_idle_s"] is not None or idle["errors_during_idle"] or not idle["event_after_idle_arrived"]):
        how: list[str] = []
        if idle["closed_after_idle_s"] is not None:
            how.append(f"connection closed after {idle['silence_before_close_s']} s without a byte ({_describe_close(seen.close)})")
        for err in idle["errors_during_idle"][:2]:
            how.append("poll failed: " + ", ".join(f"{k}={v}" for k, v in err.items() if k != "body"))
        how.append(
            "the event after the silence " + ("arrived (the client polled again)" if idle["event_after_idle_arrived"] else "never arrived")
        )
        result.update(outcome="fails", reason="; ".join(how))
        return
    worst = max(delays.values())
    if worst > slow_s:
        result.update(
            outcome="delayed",
            reason=f"delayed by up to {_ms(worst):g} ms (median {result['median_delay_ms']:g} ms; threshold {_ms(slow_s):g} ms)",
        )
        return
    result.update(outcome="works", reason=f"all {events} events, max {_ms(worst):g} ms")


def _describe_close(close: dict[str, Any] | None) -> str:
    if not close:
        return "no close seen"
    return ", ".join(f"{k} {v}" for k, v in close.items())


def _failure(seen: _Seen, in_window: dict[str, Any]) -> str:
    parts = []
    if seen.status is not None and seen.status not in (200, 101):
        parts.append(f"status {seen.status}")
    if seen.close:
        parts.append(_describe_close(seen.close))
    if seen.errors:
        err = seen.errors[0]
        parts.append("first error: " + ", ".join(f"{k}={v}" for k, v in err.items()))
    parts.append(f"{in_window['bytes']} bytes received in the window")
    if seen.joined_at is None:
        parts.append("never joined")
    return "; ".join(parts)


def run_cell(
    transport: Transport,
    path: str,
    feed_base_url: str,
    workdir: str | os.PathLike[str],
    *,
    events: int = 5,
    window_s: float = 4.0,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run one cell (its own event loop; call from sync code) and return its record.

    ``feed_base_url`` is the feed server's ``http://host:port`` (WebSocket at ``/ws`` on it). The record has
    ``outcome`` (one of :data:`OUTCOMES`) and ``reason``; ``first_event_ms``, ``event_delays_ms`` (publish to
    arrival, per event), ``max_delay_ms``; ``status``/``close``/``errors``/``in_window`` (bytes received) for the
    failure; ``evidence`` (the proxy's log lines for the request); ``notes`` (rules changed, clients used).
    Keyword options: ``gap_s`` between events, ``slow_s`` (a delay above it makes the cell ``delayed``),
    ``read_timeout_s`` (the short path's proxy_read_timeout), ``idle_s`` (silence before one more event; by
    default only on the short-read-timeout path), ``hold_s`` (long-poll hold), ``log_wait_s``, ``keepalive_s`` (the
    feed server's keep-alive interval, for the notes).
    """
    return asyncio.run(arun_cell(transport, path, feed_base_url, workdir, events=events, window_s=window_s, **kwargs))


def run_matrix(
    feed_base_urls: str | dict[str, str],
    workdir: str | os.PathLike[str],
    *,
    transports: Iterable[Transport] = TRANSPORTS,
    paths: Iterable[str] = PATHS,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Every cell (path by path, each transport), one after another; ``feed_base_urls`` is one URL for a combined
    feed server or a URL per transport."""
    cells = []
    for path in paths:
        for transport in transports:
            base = feed_base_urls if isinstance(feed_base_urls, str) else feed_base_urls[transport]
            cells.append(run_cell(transport, path, base, workdir, **kwargs))
    return cells


def matrix_table(cells: list[dict[str, Any]]) -> list[list[str]]:
    """Rows ``[path, sse, longpoll, ws]``, each cell its outcome and a short why: for a report."""
    by = {(c["path"], c["transport"]): c for c in cells}
    rows = []
    for path in PATHS:
        if not any((path, t) in by for t in TRANSPORTS):
            continue
        row = [path]
        for t in TRANSPORTS:
            c = by.get((path, t))
            if c is None:
                row.append("")
            elif c["outcome"] in ("works", "delayed"):
                row.append(f"{c['outcome']} (first {c.get('first_event_ms')} ms, max {c.get('max_delay_ms')} ms)")
            else:
                row.append(f"{c['outcome']}: {c.get('reason', '')[:80]}")
        rows.append(row)
    return rows
