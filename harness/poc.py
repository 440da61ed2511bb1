"""How an option's proof-of-concept server starts, declared once on the :class:`~harness.plugin.Option`.

DESIGN.md's Option contract: "how to start its POC server (a command the process layer
runs), which client adapter talks to it". An option declares a :class:`PocServer` (or a
function returning one, for servers that must be built or looked up first, such as a Node
server); every scenario and test starts it the same way, through :func:`poc_server`::

    Option("native", "Native WebSocket", server=PocServer(
        argv=("{python}", "-m", "spikes.s01_websocket_impl.poc.native_ws.server", "--port", "{port}"),
        url="ws://{host}:{port}/", ready="log:READY port="), client="ws-raw")

    with poc_server(ctx.option, ctx.workdir) as (server, url):
        ...

Placeholders in ``argv``, ``env`` values, ``url`` and ``cwd``: ``{python}`` (this
interpreter), ``{port}``, ``{host}``, ``{option}`` (the option key), ``{repo}`` (the
directory holding the spike packages, so ``python -m spikes...`` imports), and any name
the caller passes in ``values`` (``{redis}``, ``{pg}``, ``{server_id}``...). An unfilled
placeholder is an error before the server starts, not a server that fails to parse its
arguments.

Starting a server imports only :mod:`harness.process`: no service, browser or load module.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.process import LOOPBACK, HttpReady, LogReady, ReadyProbe, ServerProcess, TcpReady

if TYPE_CHECKING:
    from harness.plugin import Option

__all__ = ["PocServer", "PocServerError", "REPO_ROOT", "resolve", "poc_server", "server_process", "url_of"]

#: The directory that holds ``spikes/`` and ``harness/``: the working directory of ``python -m spikes...``.
REPO_ROOT = Path(__file__).resolve().parent.parent

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
# Filled by the process layer itself, at start (a restart keeps the port).
_PROCESS_KEYS = frozenset({"port", "host"})


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


class PocServerError(ValueError):
    """An option's server declaration cannot be started as declared (no declaration, an unfilled placeholder)."""


@dataclass(frozen=True)
class PocServer:
    """A command that starts one option's POC server, and how to tell it is up and reach it.

    ``ready`` is ``"tcp"`` (the port accepts), ``"http:/path"`` (a 2xx/3xx/4xx answer on that
    path) or ``"log:<regex>"`` (the server printed a line matching it). ``url`` is what a
    client connects to. ``cwd`` defaults to :data:`REPO_ROOT`.
    """

    argv: tuple[str, ...]
    url: str = "ws://{host}:{port}/"
    ready: str = "tcp"
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None

    def __post_init__(self) -> None:
        if not self.argv:
            raise PocServerError("a POC server needs a command (argv is empty)")
        kind, colon, arg = self.ready.partition(":")
        ok = (
            self.ready == "tcp"
            or (kind == "http" and bool(colon) and (not arg or arg.startswith("/")))
            or (kind == "log" and bool(arg) and _compiles(arg))
        )
        if not ok:
            raise PocServerError(f"ready must be 'tcp', 'http:/path' or 'log:<regex>' (a valid, non-empty regex), not {self.ready!r}")

    def probe(self) -> ReadyProbe:
        kind, _, arg = self.ready.partition(":")
        if kind == "http":
            return HttpReady(arg or "/")
        if kind == "log":
            return LogReady(arg)
        return TcpReady()

    def placeholders(self) -> set[str]:
        """Every ``{name}`` the declaration uses."""
        texts: Iterable[str] = (*self.argv, self.url, *self.env.values(), self.cwd or "")
        return {m.group(1) for t in texts for m in _PLACEHOLDER.finditer(t)}


#: What an option may declare: the command itself, or a function that works it out (and may raise NotRunnable).
ServerDeclaration = PocServer | Callable[[], PocServer]


def resolve(option: Option) -> PocServer:
    """The option's :class:`PocServer`, calling its factory if it declared one (which may build, or raise NotRunnable)."""
    decl = getattr(option, "server", None)
    if decl is None:
        raise PocServerError(f"option {option.key!r} declares no POC server (Option.server)")
    spec = decl() if callable(decl) and not isinstance(decl, PocServer) else decl
    if not isinstance(spec, PocServer):
        raise PocServerError(f"option {option.key!r}: its server factory returned {type(spec).__name__}, not a PocServer")
    return spec


def _fill(text: str, values: Mapping[str, str]) -> str:
    # Plain replacement (argv may hold JSON braces); {port} and {host} are left to the process layer.
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def server_process(
    option: Option,
    workdir: Path,
    *,
    name: str | None = None,
    values: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    host: str = LOOPBACK,
    cpus: Iterable[int] | None = None,
    log_name: str = "server.log",
    ready_timeout: float = 30.0,
    grace: float = 5.0,
    spec: PocServer | None = None,
) -> tuple[ServerProcess, str]:
    """A :class:`ServerProcess` for the option's declared server (not started) and its URL template.

    ``values`` fill the declaration's own placeholders (``{pg}``, ``{server_id}``...); ``env`` is
    added to the declared environment (secrets a scenario makes per run go here, never into
    argv). ``port=None`` lets the process layer choose a free port at start (and choose again
    if another process took it first). ``name`` and ``log_name`` (a file in ``workdir``) say
    which server a log is of; ``cpus`` pins it; ``grace`` is how long a stop waits before
    SIGKILL (a server that flushes buffered rows on SIGTERM needs more); ``spec`` starts
    this declaration instead of the option's own.

    The URL keeps ``{port}`` until the server has one: use :func:`poc_server`, or fill it
    with :func:`url_of` after ``start()``.
    """
    spec = spec or resolve(option)
    subs = {"python": sys.executable, "option": option.key, "repo": str(REPO_ROOT)}
    subs.update({k: str(v) for k, v in (values or {}).items()})
    missing = spec.placeholders() - set(subs) - _PROCESS_KEYS
    if missing:
        raise PocServerError(
            f"option {option.key!r}: its server command uses {', '.join('{' + m + '}' for m in sorted(missing))}, which the caller did not give"
        )
    merged_env = {k: _fill(v, subs) for k, v in spec.env.items()}
    merged_env.update(env or {})
    server = ServerProcess(
        name or f"{option.title} POC server",
        [_fill(a, subs) for a in spec.argv],
        port=port,
        host=host,
        env=merged_env,
        cwd=_fill(spec.cwd, subs) if spec.cwd else REPO_ROOT,
        ready=spec.probe(),
        ready_timeout=ready_timeout,
        log_path=workdir / log_name,
        cpus=cpus,
        grace=grace,
    )
    return server, _fill(spec.url, subs)


def url_of(server: ServerProcess, url: str) -> str:
    """``url`` (as :func:`server_process` returned it) with the started server's host and port filled in."""
    if server.port is None:
        raise PocServerError(f"server {server.name!r} has no port yet: start it first")
    return url.replace("{host}", server.host).replace("{port}", str(server.port))


@contextlib.contextmanager
def poc_server(option: Option, workdir: Path, **kwargs: object) -> Iterator[tuple[ServerProcess, str]]:
    """Start the option's declared POC server on a free loopback port; yield it and the URL its clients use; stop it after.

    Keyword arguments are :func:`server_process`'s. The server is stopped however the block ends.
    """
    server, url = server_process(option, workdir, **kwargs)  # type: ignore[arg-type]
    with server:
        yield server, url_of(server, url)
