"""Spike 1's Node parts: the SvelteKit build, the Node tools, bundle sizes, and how to start each POC server.

The SvelteKit app is built out of the source tree, in a cache directory keyed
by the hash of its sources and lock file: a build leaves no generated files
in the spike package (whose source hash marks results stale), a second call
with unchanged sources costs a ``stat``, and concurrent callers (pytest
workers) wait on a file lock instead of running ``npm ci`` twice. Next to it,
on the same install, the framework baseline is built: an empty SvelteKit page
(``poc/sveltekit_baseline``), what the tabletop's front end ships whichever
transport wins. A missing
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
    "BASELINE_DIR",
    "SOCKETIO_NODE_DIR",
    "OPTIONS",
    "TRANSPORTS",
    "BROWSER_CLIENT",
    "HEAP_PATTERN",
    "READY_PATTERN",
    "ToolMissing",
    "BuildError",
    "require_tool",
    "find_chromium",
    "default_cache_dir",
    "ensure_sveltekit_build",
    "ensure_sveltekit_baseline",
    "ensure_socketio_node",
    "npm_dependencies",
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
#: The empty SvelteKit page: its own ``package.json`` (what an empty app needs) and ``src/routes``; the rest is the POC's.
BASELINE_DIR = POC_DIR / "sveltekit_baseline"
#: Socket.IO's reference server, Node's socket.io, with the same events as the python-socketio POC.
SOCKETIO_NODE_DIR = POC_DIR / "socketio_node"

#: The option keys, in the order the document shows them.
OPTIONS = ("native", "socketio", "socketio-node", "sveltekit")
#: Which wire protocol each option's server speaks: plain WebSocket frames, or Socket.IO.
TRANSPORTS = {"native": "ws", "socketio": "socketio", "socketio-node": "socketio", "sveltekit": "ws"}
#: The browser client each option ships (a key of ``reconnect.client_page``): both Socket.IO servers get socket.io-client.
BROWSER_CLIENT = {"native": "native", "socketio": "socketio", "socketio-node": "socketio", "sveltekit": "sveltekit"}
#: Every POC server prints this line once it accepts connections (``LogReady`` pattern).
READY_PATTERN = r"READY port=\d+"
#: What a Node POC server (run with ``--expose-gc``) prints on SIGUSR2, after a full garbage collection: V8's live heap.
HEAP_PATTERN = r"HEAP used=(\d+) total=(\d+) rss=(\d+)"
#: Node's flags for every Node POC server: ``global.gc()`` for the heap reading on SIGUSR2.
NODE_FLAGS = ("--expose-gc",)

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
    """The Chromium binary the harness launches (``harness.browser``); raise :class:`ToolMissing` if none."""
    from harness.browser import find_engine

    path = find_engine("chromium")
    if path is None:
        raise ToolMissing("chromium")
    return path


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
    for path in [*_source_files(SVELTEKIT_DIR), *_source_files(BASELINE_DIR), POC_DIR / "native_ws" / "client.js"]:
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


def ensure_sveltekit_baseline(cache_dir: Path | None = None) -> Path:
    """Build the framework baseline (an empty SvelteKit page) on the POC's install; return its app dir.

    It lives in ``baseline/`` next to the POC's ``sveltekit/`` in the same cache
    directory: the POC's sources and config with ``src/routes`` and
    ``package.json`` taken from ``poc/sveltekit_baseline``, and ``node_modules``
    a link to the POC's, so both are built by the same SvelteKit, vite and
    svelte from the one committed lock file. Only ``vite build`` runs.
    """
    app = ensure_sveltekit_build(cache_dir)
    work = app.parent
    base = work / "baseline"
    if (base / ".built").exists():
        return base
    npm = require_tool("npm")
    with _locked(work.parent / "sveltekit.lock"):
        if (base / ".built").exists():
            return base
        tmp = work / f".tmp-baseline-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(SVELTEKIT_DIR, tmp, ignore=shutil.ignore_patterns(*_SKIP, "routes", "server.js", "package-lock.json"))
            shutil.copytree(BASELINE_DIR, tmp, ignore=shutil.ignore_patterns(*_SKIP), dirs_exist_ok=True)
            (tmp / "node_modules").symlink_to(Path("..") / app.name / "node_modules", target_is_directory=True)
            _run([npm, "run", "build"], tmp)
            if not (tmp / "build" / "handler.js").is_file():
                raise BuildError(f"vite build in {tmp} produced no build/handler.js")
            (tmp / ".built").write_text("built on ../sveltekit/node_modules")
            shutil.rmtree(base, ignore_errors=True)
            tmp.rename(base)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return base


def _socketio_node_key() -> str:
    """Hash of the Node Socket.IO server's package files and the platform."""
    h = hashlib.sha256()
    for path in _source_files(SOCKETIO_NODE_DIR):
        h.update(path.relative_to(POC_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    h.update(f"{sys.platform}-{platform.machine()}".encode())
    return h.hexdigest()[:16]


def ensure_socketio_node(cache_dir: Path | None = None) -> Path:
    """Install the Node Socket.IO server (``npm ci --ignore-scripts`` from its committed lock file) once per source hash.

    Returns the directory to run ``node server.js`` in: a copy of ``poc/socketio_node``
    with its ``node_modules``, in ``cache_dir/socketio-node-<hash>/``, so nothing is
    installed into the spike package. Built in a temporary directory and renamed when
    complete, under the same kind of file lock as the SvelteKit build.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    work = cache_dir / f"socketio-node-{_socketio_node_key()}"
    if (work / ".built").exists():
        return work
    node, npm = require_tool("node"), require_tool("npm")
    with _locked(cache_dir / "socketio-node.lock"):
        if (work / ".built").exists():
            return work
        tmp = cache_dir / f".tmp-{work.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(SOCKETIO_NODE_DIR, tmp, ignore=shutil.ignore_patterns(*_SKIP))
            # No install scripts: socket.io and its dependencies are plain JavaScript.
            _run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"], tmp)
            if not (tmp / "node_modules" / "socket.io" / "package.json").is_file():
                raise BuildError(f"npm ci in {tmp} installed no socket.io")
            (tmp / ".built").write_text(f"node {subprocess.run([node, '--version'], capture_output=True, text=True).stdout}")
            shutil.rmtree(work, ignore_errors=True)
            tmp.rename(work)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return work


def _installed_closure(lock: dict[str, Any], roots: list[str]) -> set[str]:
    """The lock file's installed paths (``node_modules/...``) that ``roots`` pull in, with Node's lookup of nested copies.

    Follows ``dependencies``, ``optionalDependencies`` and ``peerDependencies``
    (npm 7+ installs peers); a dependency the lock does not hold (an optional
    peer nobody asked for, a package for another platform) is not installed.
    """
    packages = lock["packages"]
    seen: set[str] = set()

    def resolve(parent: str, name: str) -> str | None:
        at = parent
        while True:
            candidate = f"{at}/node_modules/{name}" if at else f"node_modules/{name}"
            if candidate in packages:
                return candidate
            if not at:
                return None
            at = at.rsplit("/node_modules/", 1)[0] if "/node_modules/" in at else ""

    stack = [p for r in roots if (p := resolve("", r))]
    while stack:
        path = stack.pop()
        if path in seen:
            continue
        seen.add(path)
        entry = packages[path]
        names = {**entry.get("dependencies", {}), **entry.get("optionalDependencies", {}), **entry.get("peerDependencies", {})}
        stack.extend(p for name in names if (p := resolve(path, name)))
    return seen


def _direct(package_json: Path) -> list[str]:
    pkg = json.loads(package_json.read_text())
    return sorted({*pkg.get("dependencies", {}), *pkg.get("devDependencies", {})})


def npm_dependencies() -> dict[str, Any]:
    """The SvelteKit POC's npm dependencies, and those it adds beyond an empty SvelteKit app, from the committed files.

    Direct: the POC's ``package.json`` against the baseline's. Installed: the
    packages of ``poc/sveltekit/package-lock.json`` that the direct ones pull
    in, all of them and those the baseline's would not. Names and counts.
    """
    lock = json.loads((SVELTEKIT_DIR / "package-lock.json").read_text())
    direct, baseline = _direct(SVELTEKIT_DIR / "package.json"), _direct(BASELINE_DIR / "package.json")
    everything, framework = _installed_closure(lock, direct), _installed_closure(lock, baseline)

    def names(paths: set[str]) -> list[str]:
        return sorted(p.rsplit("node_modules/", 1)[1] for p in paths)

    return {
        "dependencies": direct,
        "baseline_dependencies": baseline,
        "marginal_dependencies": [d for d in direct if d not in baseline],
        "packages": names(everything),
        "baseline_packages": names(framework),
        "marginal_packages": names(everything - framework),
    }


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
    ``sveltekit=False`` skips the SvelteKit builds (and their entries); with
    them, ``sveltekit_baseline`` is the empty page's JavaScript, measured the
    same way as the POC page's (``sveltekit``).
    """
    node_dir = ensure_node_tools()
    argv = [require_tool("node"), "bundle-size.mjs"]
    if sveltekit:
        argv += ["--sveltekit", str(ensure_sveltekit_build(cache_dir)), "--baseline", str(ensure_sveltekit_baseline(cache_dir))]
    else:
        argv += ["--skip-sveltekit"]
    if write_dir is not None:
        argv += ["--write", str(write_dir)]
    sizes: dict[str, dict[str, Any]] = json.loads(_run(argv, node_dir, timeout=120))
    return sizes


def server_command(option: str, cache_dir: Path | None = None, python: str = sys.executable) -> dict[str, Any]:
    """How to start ``option``'s POC server: argv, cwd and env with a ``{port}`` placeholder, and its URL.

    ``url`` is what a client connects to (also with ``{port}``), ``transport`` is
    ``"ws"`` or ``"socketio"``, and ``ready`` is the log pattern that says it is up.
    For ``sveltekit`` this builds the app first (cached), for ``socketio-node`` it installs socket.io (cached).
    The Node servers run with ``--expose-gc``: on SIGUSR2 they print V8's heap after a full collection (:data:`HEAP_PATTERN`).
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
    if option == "socketio-node":
        return {
            "argv": [require_tool("node"), *NODE_FLAGS, "server.js", "--host", "127.0.0.1", "--port", "{port}"],
            "cwd": str(ensure_socketio_node(cache_dir)),
            "env": {"NODE_ENV": "production"},
            "url": "http://127.0.0.1:{port}",
            "transport": TRANSPORTS[option],
            "ready": READY_PATTERN,
        }
    if option == "sveltekit":
        return {
            "argv": [require_tool("node"), *NODE_FLAGS, "server.js", "--host", "127.0.0.1", "--port", "{port}"],
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
