"""Spike 1's Node parts: the SvelteKit build, the Node tools, bundle sizes, and how to start each POC server.

The SvelteKit app is built out of the source tree, in a cache directory keyed
by the hash of its sources and lock file: a build leaves no generated files
in the spike package (whose source hash marks results stale), a second call
with unchanged sources costs a ``stat``, and concurrent callers (pytest
workers) wait on a file lock instead of running ``npm ci`` twice. A missing
``node``/``npm``/``chromium`` raises :class:`ToolMissing` with the install
command, so a caller can record "not run" and say why.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "PACKAGE_DIR",
    "POC_DIR",
    "NODE_DIR",
    "SVELTEKIT_DIR",
    "OPTIONS",
    "TRANSPORTS",
    "READY_PATTERN",
    "ToolMissing",
    "BuildError",
    "require_tool",
    "find_chromium",
    "default_cache_dir",
    "ensure_sveltekit_build",
    "ensure_node_tools",
    "bundle_sizes",
    "server_command",
    "server_commands",
    "client_check",
]

PACKAGE_DIR = Path(__file__).resolve().parent
POC_DIR = PACKAGE_DIR / "poc"
NODE_DIR = PACKAGE_DIR / "node"
SVELTEKIT_DIR = POC_DIR / "sveltekit"

#: The option keys, in the order the document shows them.
OPTIONS = ("native", "socketio", "sveltekit")
#: Which wire protocol each option's server speaks: plain WebSocket frames, or Socket.IO.
TRANSPORTS = {"native": "ws", "socketio": "socketio", "sveltekit": "ws"}
#: Every POC server prints this line once it accepts connections (``LogReady`` pattern).
READY_PATTERN = r"READY port=\d+"

#: Node 18 is the oldest that vite 6 and SvelteKit 2 support.
MIN_NODE_MAJOR = 18
_INSTALL = {
    "node": "apt-get install -y nodejs npm (Node.js >= 20), or https://nodejs.org",
    "npm": "apt-get install -y npm",
    "chromium": "apt-get install -y chromium",
}
# Generated or installed trees: never copied into a build, never part of its hash.
_SKIP = {"node_modules", "build", ".svelte-kit", "__pycache__"}
_NPM_TIMEOUT_S = 900


class ToolMissing(RuntimeError):
    """A program the scenario needs (node, npm, chromium) is not installed."""

    def __init__(self, tool: str, detail: str = ""):
        self.tool = tool
        self.install = _INSTALL.get(tool, f"install {tool}")
        super().__init__(f"{tool} {detail or 'is not installed'}; install it with: {self.install}")


class BuildError(RuntimeError):
    """A build step (npm ci, vite build, a Node script) failed; the message holds its output's tail."""


def require_tool(name: str) -> str:
    """The path of ``node`` or ``npm``; raise :class:`ToolMissing` if absent or too old."""
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(name)
    if name == "node":
        version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout.strip()
        major = int(version.lstrip("v").split(".")[0] or 0) if version.startswith("v") else 0
        if major < MIN_NODE_MAJOR:
            raise ToolMissing("node", f"is {version or 'unknown'}, older than {MIN_NODE_MAJOR}")
    return path


def find_chromium() -> str:
    """The Chromium binary Playwright should launch; raise :class:`ToolMissing` if none."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise ToolMissing("chromium")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/realtime-spikes/s01`` (``~/.cache`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "realtime-spikes" / "s01"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed): one builder at a time, across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(argv: list[str], cwd: Path, timeout: float = _NPM_TIMEOUT_S) -> str:
    """Run a build command; raise :class:`BuildError` with the output's tail if it fails."""
    env = {**os.environ, "NO_UPDATE_NOTIFIER": "1"}
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{' '.join(argv)} (in {cwd}) did not finish in {timeout:g} s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise BuildError(f"{' '.join(argv)} (in {cwd}) failed with exit code {proc.returncode}:\n{tail}")
    return proc.stdout


def _source_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not _SKIP.intersection(p.relative_to(root).parts))


def _sveltekit_key() -> str:
    """Hash of everything the build reads: sources, lock file, the shared client, the platform."""
    h = hashlib.sha256()
    for path in [*_source_files(SVELTEKIT_DIR), POC_DIR / "native_ws" / "client.js"]:
        h.update(path.relative_to(POC_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    # node_modules hold platform binaries (esbuild, rollup): a cache shared across machines must not mix them.
    h.update(f"{sys.platform}-{platform.machine()}".encode())
    return h.hexdigest()[:16]


def ensure_sveltekit_build(cache_dir: Path | None = None) -> Path:
    """Build the SvelteKit POC (``npm ci``, ``vite build``) once per source hash; return the dir to run ``node server.js`` in.

    The build happens in ``cache_dir/sveltekit-<hash>/``: the app in ``sveltekit/``
    next to a copy of ``native_ws/client.js``, the layout the ``$native`` alias of
    ``svelte.config.js`` expects. It is built in a temporary directory and
    renamed when complete, so a crash never leaves a half build that looks done.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    work = cache_dir / f"sveltekit-{_sveltekit_key()}"
    app = work / "sveltekit"
    if (work / ".built").exists():
        return app
    node, npm = require_tool("node"), require_tool("npm")
    with _locked(cache_dir / "sveltekit.lock"):
        if (work / ".built").exists():  # another process built it while we waited
            return app
        tmp = cache_dir / f".tmp-{work.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(SVELTEKIT_DIR, tmp / "sveltekit", ignore=shutil.ignore_patterns(*_SKIP))
            (tmp / "native_ws").mkdir()
            shutil.copy2(POC_DIR / "native_ws" / "client.js", tmp / "native_ws" / "client.js")
            _run([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"], tmp / "sveltekit")
            _run([npm, "run", "build"], tmp / "sveltekit")
            if not (tmp / "sveltekit" / "build" / "handler.js").is_file():
                raise BuildError(f"vite build in {tmp / 'sveltekit'} produced no build/handler.js")
            (tmp / ".built").write_text(f"node {subprocess.run([node, '--version'], capture_output=True, text=True).stdout}")
            shutil.rmtree(work, ignore_errors=True)
            tmp.rename(work)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return app


def ensure_node_tools() -> Path:
    """Install the Node tools' dependencies (``npm ci`` in ``node/``) once per lock file; return that dir."""
    lock_hash = hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()[:16]
    stamp = NODE_DIR / "node_modules" / ".s01-installed"
    if stamp.is_file() and stamp.read_text() == lock_hash:
        return NODE_DIR
    require_tool("node")
    npm = require_tool("npm")
    with _locked(default_cache_dir() / "node-tools.lock"):
        if not (stamp.is_file() and stamp.read_text() == lock_hash):
            _run([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"], NODE_DIR)
            stamp.write_text(lock_hash)
    return NODE_DIR


def bundle_sizes(cache_dir: Path | None = None, write_dir: Path | None = None, sveltekit: bool = True) -> dict[str, dict[str, Any]]:
    """Minified and gzip bytes of each option's browser JavaScript, from ``node/bundle-size.mjs``.

    ``write_dir`` also receives the esbuild bundles ``native.js`` and
    ``socketio.js`` (ES modules exporting ``connect``), for pages to load.
    ``sveltekit=False`` skips the SvelteKit build (and its entry).
    """
    node_dir = ensure_node_tools()
    argv = [require_tool("node"), "bundle-size.mjs"]
    if sveltekit:
        argv += ["--sveltekit", str(ensure_sveltekit_build(cache_dir))]
    else:
        argv += ["--skip-sveltekit"]
    if write_dir is not None:
        argv += ["--write", str(write_dir)]
    return json.loads(_run(argv, node_dir, timeout=120))


def server_command(option: str, cache_dir: Path | None = None, python: str = sys.executable) -> dict[str, Any]:
    """How to start ``option``'s POC server: argv, cwd and env with a ``{port}`` placeholder, and its URL.

    ``url`` is what a client connects to (also with ``{port}``), ``transport`` is
    ``"ws"`` or ``"socketio"``, and ``ready`` is the log pattern that says it is up.
    For ``sveltekit`` this builds the app first (cached).
    """
    if option in ("native", "socketio"):
        poc = POC_DIR / ("native_ws" if option == "native" else "socketio")
        url = "ws://127.0.0.1:{port}/" if option == "native" else "http://127.0.0.1:{port}"
        return {
            "argv": [python, str(poc / "server.py"), "--host", "127.0.0.1", "--port", "{port}"],
            "cwd": str(poc),
            "env": {"PYTHONUNBUFFERED": "1"},
            "url": url,
            "transport": TRANSPORTS[option],
            "ready": READY_PATTERN,
        }
    if option == "sveltekit":
        return {
            "argv": [require_tool("node"), "server.js", "--host", "127.0.0.1", "--port", "{port}"],
            "cwd": str(ensure_sveltekit_build(cache_dir)),
            "env": {"NODE_ENV": "production"},
            "url": "ws://127.0.0.1:{port}/ws",
            "transport": TRANSPORTS[option],
            "ready": READY_PATTERN,
        }
    raise KeyError(f"unknown option {option!r}; expected one of {', '.join(OPTIONS)}")


def server_commands(cache_dir: Path | None = None, python: str = sys.executable) -> dict[str, dict[str, Any]]:
    """:func:`server_command` for every option (builds SvelteKit; raises :class:`ToolMissing` without Node)."""
    return {option: server_command(option, cache_dir, python) for option in OPTIONS}


def client_check(url: str, transport: str, timeout: float = 10.0) -> dict[str, Any]:
    """Run ``node/client-check.mjs``: echo, join and broadcast with the official ``ws`` or ``socket.io-client``.

    ``transport`` is ``ws``, ``socketio`` or ``socketio-polling``. Returns the
    script's JSON (``ok``, ``client``, ``echo_ms``, ``broadcast_ms``, ``errors``);
    a failed check is a result, not an exception.
    """
    node_dir = ensure_node_tools()
    argv = [require_tool("node"), "client-check.mjs", url, transport, "--timeout", str(timeout)]
    proc = subprocess.run(argv, cwd=node_dir, capture_output=True, text=True, timeout=timeout + 30, check=False)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise BuildError(f"client-check.mjs printed no result (exit code {proc.returncode}): {proc.stderr.strip()[-2000:]}") from exc
