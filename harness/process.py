"""POC server processes: start on a free port, wait until ready, stop, kill, pin to CPUs.

Each server runs in its own session and process group (``start_new_session``),
so a terminal's Ctrl-C never reaches it directly and one signal to the group
reaches every process it forked. The harness owns the lifetime: a module-level
registry of live servers is stopped at interpreter exit (``atexit``, which also
runs after an uncaught exception or Ctrl-C) and on SIGTERM/SIGHUP, so a run
leaves no orphan behind. Only a SIGKILL of the harness itself cannot be
answered; that is a limit of POSIX, not a choice.

Stopping sends the stop signal (SIGTERM by default) to the whole group, waits
a grace period, then SIGKILLs the group and any descendant that escaped it
(a ``setsid`` daemon). "Gone" means "no process left that is not a zombie":
inside containers PID 1 often never reaps orphans, so a killed grandchild may
stay a zombie forever, holding no resources.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import logging
import os
import pwd
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import psutil

__all__ = [
    "free_port",
    "port_in_use",
    "ReadyProbe",
    "TcpReady",
    "HttpReady",
    "LogReady",
    "ServerProcess",
    "ServerError",
    "ServerNotReady",
    "ServerCrashed",
    "PortInUse",
    "PinPlan",
    "pin_plan",
    "pin_current",
    "live_servers",
    "stop_all",
    "group_members",
]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
#: How long the registry's emergency cleanup lets servers shut down before SIGKILL.
EMERGENCY_GRACE_S = 2.0
_POLL_S = 0.02


# -- ports ----------------------------------------------------------------------

#: Ports this process handed out recently: the kernel may offer a just-closed
#: port again, and two servers started back to back must not get the same one.
_handed_out: list[int] = []
_handed_lock = threading.Lock()


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on now (the kernel's choice)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        with _handed_lock:
            if port in _handed_out:
                continue
            _handed_out.append(port)
            del _handed_out[:-64]
        return port
    raise OSError(f"no free port found on {host}")  # pragma: no cover - would need 50 collisions


#: How many free ports a server that lost its port to another process gets in turn.
PORT_RACE_ATTEMPTS = 3
_PORT_RACE = re.compile(r"address already in use|EADDRINUSE|could not bind", re.IGNORECASE)


def _lost_port_race(log_text: str) -> bool:
    """Whether a server's start-up log says its port was taken before it could bind it."""
    return bool(_PORT_RACE.search(log_text))


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could not bind ``host:port`` now (something listens on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR as servers use it: a port in TIME_WAIT after a restart is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


# -- readiness probes -------------------------------------------------------------


class ReadyProbe(Protocol):
    """Answers whether a started server is ready; ``str()`` says what it checks."""

    def __call__(self, server: ServerProcess) -> bool: ...


@dataclass(frozen=True)
class TcpReady:
    """Ready when a TCP connection to the server's port succeeds."""

    timeout: float = 0.5

    def __call__(self, server: ServerProcess) -> bool:
        try:
            with socket.create_connection((server.host, server.port), timeout=self.timeout):
                return True
        except OSError:
            return False

    def __str__(self) -> str:
        return "TCP connect"


@dataclass(frozen=True)
class HttpReady:
    """Ready when ``GET path`` answers with a status below 500."""

    path: str = "/"
    timeout: float = 1.0

    def __call__(self, server: ServerProcess) -> bool:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=self.timeout)
        try:
            conn.request("GET", self.path)
            return conn.getresponse().status < 500
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def __str__(self) -> str:
        return f"HTTP GET {self.path} < 500"


@dataclass(frozen=True)
class LogReady:
    """Ready when a line of this start's output matches ``pattern`` (``re.search``)."""

    pattern: str

    def __call__(self, server: ServerProcess) -> bool:
        rx = re.compile(self.pattern)
        return any(rx.search(line) for line in server.log_since_start().splitlines())

    def __str__(self) -> str:
        return f"log line matching {self.pattern!r}"


# -- errors ---------------------------------------------------------------------------


class ServerError(Exception):
    """A POC server could not be started as asked."""


class PortInUse(ServerError):
    """The requested port is taken; raised before anything is started."""

    def __init__(self, port: int, host: str = LOOPBACK, name: str | None = None):
        self.port, self.host, self.name = port, host, name
        who = f"server {name!r} cannot start: " if name else ""
        super().__init__(f"{who}port {port} on {host} is already in use")


def _format_tail(lines: Sequence[str], log_path: Path) -> str:
    if not lines:
        return f"(log {log_path} is empty)"
    body = "\n".join(f"    {line}" for line in lines)
    return f"last {len(lines)} log lines ({log_path}):\n{body}"


class ServerNotReady(ServerError):
    """The server ran but its readiness probe did not pass in time."""

    def __init__(self, name: str, timeout: float, probe: object, log_lines: Sequence[str], log_path: Path):
        self.name, self.timeout, self.log_lines, self.log_path = name, timeout, list(log_lines), log_path
        super().__init__(f"server {name!r} was not ready after {timeout:g} s (waiting for {probe}); {_format_tail(log_lines, log_path)}")


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"exit code {code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            return f"exit code {code}"
    return f"exit code {code}"


class ServerCrashed(ServerError):
    """The server exited while the harness waited for it to become ready."""

    def __init__(self, name: str, returncode: int, log_lines: Sequence[str], log_path: Path):
        self.name, self.returncode, self.log_lines, self.log_path = name, returncode, list(log_lines), log_path
        super().__init__(f"server {name!r} exited during start with {_describe_exit(returncode)}; {_format_tail(log_lines, log_path)}")


# -- process groups ---------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """State letter and process group of ``pid`` from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[2])


def group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass  # someone else's processes are in it; look closer
    if not os.path.isdir("/proc"):  # pragma: no cover - non-Linux: trust killpg
        return [pgid]
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st is not None and st[1] == pgid and st[0] not in ("Z", "X"):
                out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    st = _proc_stat(pid)
    if st is None:
        return psutil.pid_exists(pid) if not os.path.isdir("/proc") else False
    return st[0] not in ("Z", "X")


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# -- CPU pinning -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PinPlan:
    """Disjoint CPU sets: one for the server under test, one for the load generator."""

    server: frozenset[int]
    load: frozenset[int]


def pin_plan(server_cores: int = 1, available: Iterable[int] | None = None) -> PinPlan | None:
    """Split the CPUs this process may use between server and load, or None with fewer than 2.

    The server gets the lowest ``server_cores`` cores and the load generator the
    rest, so the two never compete for a core and the measurement is of the
    server, not of the scheduler.
    """
    if available is None:
        if not hasattr(os, "sched_getaffinity"):
            return None
        available = os.sched_getaffinity(0)
    cores = sorted(available)
    if len(cores) < 2:
        return None
    n = max(1, min(server_cores, len(cores) - 1))
    return PinPlan(server=frozenset(cores[:n]), load=frozenset(cores[n:]))


def _pin_process(pid: int, cores: frozenset[int]) -> None:
    """Pin every thread of ``pid``: on Linux the affinity is per thread, and new threads inherit it."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(tid, cores)


def pin_current(cores: Iterable[int] | None) -> frozenset[int] | None:
    """Pin the calling process (all its threads) to ``cores``; return the set it had, to restore later."""
    if cores is None or not hasattr(os, "sched_setaffinity"):
        return None
    before = frozenset(os.sched_getaffinity(0))
    _pin_process(os.getpid(), frozenset(cores))
    return before


# -- the registry ------------------------------------------------------------------------------

#: Live servers by id, with the pid of the process that started them. Plain dict
#: operations are atomic under the GIL, so the signal handler needs no lock.
_LIVE: dict[int, tuple[int, ServerProcess]] = {}
_handlers_installed = False


def live_servers() -> list[ServerProcess]:
    """The servers this process started and has not stopped yet."""
    me = os.getpid()
    return [srv for owner, srv in list(_LIVE.values()) if owner == me]


def stop_all(grace: float = EMERGENCY_GRACE_S) -> None:
    """Stop every live server of this process: stop signal, shared grace period, then SIGKILL."""
    servers = live_servers()
    for srv in servers:
        srv._send_stop_signal()
    deadline = time.monotonic() + grace
    for srv in servers:
        srv._finish_stop(max(0.0, deadline - time.monotonic()))


def _atexit_cleanup() -> None:
    if live_servers():
        stop_all()


def _on_fatal_signal(signum: int, frame: object) -> None:
    """Stop our servers, then let the signal do what it would have done."""
    stop_all()
    prev = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(prev):
        prev(signum, frame)
    elif prev == signal.SIG_IGN:
        return
    else:
        # SystemExit rather than re-raising the signal: finally blocks and the
        # remaining atexit handlers still run, and the exit status says why.
        raise SystemExit(128 + signum)


_previous_handlers: dict[int, object] = {}


def install_signal_handlers() -> None:
    """Hook SIGTERM and SIGHUP now (from the main thread), so a harness that starts its servers from worker threads
    still stops them when it is terminated: the hook is otherwise installed by the first server started in the
    main thread, and a server started from a thread pool alone would leave nothing hooked."""
    _install_handlers()


def _install_handlers() -> None:
    """Hook SIGTERM and SIGHUP once, from the main thread, chaining to earlier handlers."""
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        prev = signal.getsignal(sig)
        if prev is None:  # set from C: leave it alone
            continue
        _previous_handlers[sig] = prev
        signal.signal(sig, _on_fatal_signal)
    _handlers_installed = True


atexit.register(_atexit_cleanup)
# A forked child (a load worker) must never stop its parent's servers.
os.register_at_fork(after_in_child=_LIVE.clear)


# -- the server -------------------------------------------------------------------------------------


def _substitute(text: str, values: Mapping[str, str]) -> str:
    # Plain replacement, not str.format: argv may hold JSON or shell braces.
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def _tail(path: Path, n: int, block: int = 8192) -> list[str]:
    """The last ``n`` lines of a file, reading from the end (logs can be large)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            data = b""
            while end > 0 and data.count(b"\n") <= n:
                step = min(block, end)
                end -= step
                f.seek(end)
                data = f.read(step) + data
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-n:] if n > 0 else []


class ServerProcess:
    """One POC server: an argv run in its own process group on a loopback port, owned by the harness.

    ``argv`` and ``env`` values may use ``{port}`` and ``{host}``. ``port=None``
    picks a free port at the first start; a restart keeps it. ``ready`` is a
    probe (``TcpReady()`` by default, ``None`` for no wait). Output goes to
    ``log_path`` (appended across restarts; by default a new temp file, kept
    after the run so it can be read). ``cpus`` pins the
    server and its children after spawn. ``user`` runs it as another user (root
    only). ``stop_signal`` and ``signal_group`` say how to ask it to stop: some
    servers (PostgreSQL) want one signal to the leader, which then stops its
    own children.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int | None = None,
        host: str = LOOPBACK,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        cwd: str | os.PathLike[str] | None = None,
        ready: ReadyProbe | None = TcpReady(),
        ready_timeout: float = 30.0,
        log_path: str | os.PathLike[str] | None = None,
        cpus: Iterable[int] | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        signal_group: bool = True,
        grace: float = 5.0,
    ):
        self.name = name
        self.argv = list(argv)
        self.host = host
        self.port: int | None = port or None
        self.env = dict(env or {})
        self.inherit_env = inherit_env
        self.cwd = Path(cwd) if cwd is not None else None
        self.ready = ready
        self.ready_timeout = ready_timeout
        if log_path is None:
            fd, tmp = tempfile.mkstemp(prefix=f"server-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-", suffix=".log")
            os.close(fd)
            log_path = tmp
        self.log_path = Path(log_path)
        self.cpus = frozenset(cpus) if cpus is not None else None
        self.user = user
        self.stop_signal = stop_signal
        self.signal_group = signal_group
        self.grace = grace
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._pgid: int | None = None
        self._known_descendants: dict[int, psutil.Process] = {}
        self.starts = 0

    # -- state ------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The pid of the server's main process (its group leader), once started."""
        return self._popen.pid if self._popen else None

    @property
    def alive(self) -> bool:
        """Whether the server's main process is running."""
        return self._popen is not None and self._poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code of the last run (negative: killed by that signal), None while running."""
        return self._poll()

    @property
    def url(self) -> str:
        """``http://host:port``, for HTTP and WebSocket servers."""
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        """The argv as it is run, with ``{port}`` and ``{host}`` filled in."""
        return [_substitute(a, self._subs()) for a in self.argv]

    def _subs(self) -> dict[str, str]:
        return {"port": str(self.port), "host": self.host}

    def __repr__(self) -> str:
        state = "alive" if self.alive else ("never started" if self._popen is None else f"exited {self.returncode}")
        return f"<ServerProcess {self.name!r} port={self.port} pid={self.pid} {state}>"

    # -- logs -------------------------------------------------------------------------
    def last_log_lines(self, n: int = 20) -> list[str]:
        """The last ``n`` lines the server wrote (stdout and stderr, interleaved)."""
        return _tail(self.log_path, n)

    def log_since_start(self) -> str:
        """Everything the server wrote since its latest start."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _log_note(self, text: str) -> None:
        # Harness notes in the server log make a run log readable on its own.
        with contextlib.suppress(OSError), open(self.log_path, "ab") as f:
            f.write(f"[harness] {text}\n".encode())

    # -- lifetime ----------------------------------------------------------------------
    def start(self) -> Self:
        """Spawn the server and wait until its probe passes; raise if it cannot."""
        if self.alive:
            raise ServerError(f"server {self.name!r} is already running (pid {self.pid})")
        chosen_here = self.port is None
        if self.port is not None and port_in_use(self.port, self.host):
            raise PortInUse(self.port, self.host, self.name)
        for attempt in range(1, PORT_RACE_ATTEMPTS + 1):
            if chosen_here:
                self.port = free_port(self.host)
            self._spawn()
            try:
                self._wait_ready()
            except ServerCrashed:
                self.kill()
                # A port the kernel called free can be taken (by another test worker, or as
                # a client's ephemeral port) before the server binds it. Only a port we chose
                # is retried: a port the user asked for stays an error.
                if chosen_here and attempt < PORT_RACE_ATTEMPTS and _lost_port_race(self.log_since_start()):
                    self.starts -= 1
                    log.info("server %r lost port %s to another process; trying another port", self.name, self.port)
                    continue
                raise
            except BaseException:
                # Not ready, or Ctrl-C while waiting: never leave it behind.
                self.kill()
                raise
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self) -> None:
        argv = self.command()
        env = dict(os.environ) if self.inherit_env else {}
        env.setdefault("PYTHONUNBUFFERED", "1")  # so log probes see Python servers' lines at once
        env.update({k: _substitute(v, self._subs()) for k, v in self.env.items()})
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_note(f"start {self.name} on {self.host}:{self.port}: {subprocess.list2cmdline(argv)}")
        self._log_offset = self.log_path.stat().st_size
        uid: int | None = None
        gid: int | None = None
        groups: list[int] | None = None
        if self.user is not None:
            pw = pwd.getpwnam(self.user)
            # user= alone would keep root's group; drop it too.
            uid, gid, groups = pw.pw_uid, pw.pw_gid, []
        _install_handlers()
        with open(self.log_path, "ab") as logf:
            self._popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=env,
                start_new_session=True,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
        self._pgid = self._popen.pid  # a new session's leader is its group's leader
        self._known_descendants = {}
        self.starts += 1
        _LIVE[id(self)] = (os.getpid(), self)
        if self.cpus is not None:
            self._apply_affinity()

    def _apply_affinity(self) -> None:
        # Right after spawn and again once ready: threads and children made during
        # start-up are caught by the second pass; later ones inherit the set.
        if self._popen is None or self.cpus is None:
            return
        for pid in [self._popen.pid, *(p.pid for p in _descendants(self._popen.pid))]:
            with contextlib.suppress(OSError):
                _pin_process(pid, self.cpus)

    def _wait_ready(self) -> None:
        assert self._popen is not None
        deadline = time.monotonic() + self.ready_timeout
        while True:
            code = self._popen.poll()
            if code is not None:
                raise ServerCrashed(self.name, code, self.last_log_lines(20), self.log_path)
            if self.ready is None or self.ready(self):
                self._apply_affinity()
                self._log_note(f"{self.name} ready (pid {self._popen.pid})")
                return
            if time.monotonic() >= deadline:
                raise ServerNotReady(self.name, self.ready_timeout, self.ready, self.last_log_lines(20), self.log_path)
            time.sleep(_POLL_S)

    def _remember_descendants(self) -> None:
        # Snapshot before signalling: a child that left the group (setsid) is still ours.
        if self._popen is not None:
            for p in _descendants(self._popen.pid):
                self._known_descendants.setdefault(p.pid, p)

    def _send_stop_signal(self) -> None:
        if self._popen is None or self._pgid is None:
            return
        self._remember_descendants()
        if self.signal_group:
            _signal_group(self._pgid, self.stop_signal)
            for p in self._known_descendants.values():
                with contextlib.suppress(psutil.Error, OSError):
                    if os.getpgid(p.pid) != self._pgid:
                        p.send_signal(self.stop_signal)  # it left the group; ask it too
        elif self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(self.stop_signal)

    def _gone(self) -> bool:
        assert self._popen is not None and self._pgid is not None
        self._popen.poll()  # reap the leader when we can
        if self._popen.returncode is None and _alive(self._popen.pid):
            return False
        if group_members(self._pgid):
            return False
        return not any(_still_running(p) for p in self._known_descendants.values())

    def _poll(self) -> int | None:
        """The leader's exit code (reaping it); forget the group id once the group is empty."""
        if self._popen is None:
            return None
        code = self._popen.poll()
        if code is not None and self._pgid is not None and not group_members(self._pgid):
            self._pgid = None  # reaped and empty: the id may now go to a stranger's group
        return code

    def _forget(self) -> int | None:
        """Drop the finished server from the registry, noting its end in the log once."""
        assert self._popen is not None
        if _LIVE.pop(id(self), None) is not None:
            code = self._popen.returncode
            self._log_note(f"{self.name} stopped, {_describe_exit(code)}" if code is not None else f"{self.name}: leader not reaped")
        return self._popen.returncode

    def _finish_stop(self, grace: float) -> int | None:
        """Wait up to ``grace`` for the server to go, then SIGKILL what is left."""
        if self._popen is None:
            return None
        if self._pgid is not None:
            deadline = time.monotonic() + grace
            while not self._gone() and time.monotonic() < deadline:
                time.sleep(_POLL_S)
            if not self._gone():
                self._sigkill_everything()
            with contextlib.suppress(subprocess.TimeoutExpired):
                # The leader is dead by now; a short wait only reaps it (another thread may hold the reap lock).
                self._popen.wait(timeout=0.5)
            self._poll()
        return self._forget()

    def _sigkill_everything(self) -> None:
        assert self._popen is not None and self._pgid is not None
        self._remember_descendants()
        _signal_group(self._pgid, signal.SIGKILL)
        for p in self._known_descendants.values():
            with contextlib.suppress(psutil.Error):
                p.kill()  # psutil checks create_time: a reused pid is left alone
        deadline = time.monotonic() + 5.0
        while not self._gone() and time.monotonic() < deadline:
            time.sleep(_POLL_S)

    def stop(self, grace: float | None = None) -> int | None:
        """Stop signal to the process group, SIGKILL after ``grace`` s; return the exit code."""
        if self._popen is None:
            return None
        self._poll()
        if self._pgid is not None:
            self._send_stop_signal()
        return self._finish_stop(self.grace if grace is None else grace)

    def kill(self) -> int | None:
        """SIGKILL the whole process group at once (fault injection); return the exit code."""
        if self._popen is None:
            return None
        self._poll()
        if self._pgid is not None:
            self._sigkill_everything()
        return self._finish_stop(0.0)

    def restart(self) -> Self:
        """Stop (if running) and start again on the same port."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        if not self.alive:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _still_running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False
