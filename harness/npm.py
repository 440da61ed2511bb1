"""npm packages for any spike: install a committed lock file once into a cache, bundle with esbuild, measure gzip bytes.

A spike commits a ``package.json`` and its ``package-lock.json`` (pinned versions;
``node_modules`` is never committed). :func:`ensure_installed` runs ``npm ci``
for them in ``$XDG_CACHE_HOME/realtime-spikes/npm/<name>-<hash>/``, keyed by the
hash of both files and the platform: nothing is written into the source tree
(whose files make up a spike's source hash), a second call with the same lock
costs a ``stat``, and concurrent callers (pytest workers) wait on a file lock
instead of installing twice. The install is made in a temporary directory and
renamed when complete, so a crash never leaves a half install that looks done.

npm runs with ``--ignore-scripts``: no package's install script runs (esbuild's
finds its platform binary without one). A missing ``node`` or ``npm`` raises
:class:`harness.plugin.NotRunnable` with the install command, so a scenario
shows as "not run" and says why.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from harness import machine
from harness.plugin import NotRunnable

__all__ = [
    "MIN_NODE_MAJOR",
    "NpmError",
    "require_program",
    "cache_root",
    "ensure_installed",
    "locked_versions",
    "run_node",
    "esbuild_bundle",
    "vite_build",
    "gzip_size",
]

#: The oldest Node.js the harness's builds are tested with.
MIN_NODE_MAJOR = 20
_TIMEOUT_S = 600


class NpmError(RuntimeError):
    """An npm, Node or esbuild step failed; the message holds the command and its output's tail."""


def require_program(name: str) -> str:
    """The path of ``node`` or ``npm``; raise :class:`NotRunnable` with the install command if absent (or Node too old)."""
    path = machine.find_tool(name)
    if path is None:
        raise NotRunnable(f"{name} is not installed (install: {machine.EXTERNAL_TOOLS[name].install})")
    if name == "node":
        version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout.strip()
        major = int(version.lstrip("v").split(".")[0]) if version.lstrip("v").split(".")[0].isdigit() else 0
        if major < MIN_NODE_MAJOR:
            raise NotRunnable(
                f"node is {version or 'of unknown version'}, older than {MIN_NODE_MAJOR} (install: {machine.EXTERNAL_TOOLS['node'].install})"
            )
    return path


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/realtime-spikes/npm`` (``~/.cache`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "realtime-spikes" / "npm"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if needed): one installer at a time, across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(argv: Sequence[str], cwd: Path, *, stdin: str | None = None, timeout: float = _TIMEOUT_S) -> bytes:
    env = {**os.environ, "NO_UPDATE_NOTIFIER": "1", "npm_config_update_notifier": "false"}
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, input=None if stdin is None else stdin.encode(), capture_output=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise NpmError(f"{' '.join(argv)} (in {cwd}) did not finish in {timeout:g} s") from exc
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).decode(errors="replace").strip().splitlines()[-30:]
        raise NpmError(f"{' '.join(argv)} (in {cwd}) failed with exit code {proc.returncode}:\n" + "\n".join(out))
    return proc.stdout


def _key(package_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        h.update(name.encode() + b"\0" + (package_dir / name).read_bytes() + b"\0")
    # node_modules hold platform binaries (esbuild's): a cache shared across machines must not mix them.
    h.update(f"{sys.platform}-{platform.machine()}".encode())
    return h.hexdigest()[:16]


def ensure_installed(package_dir: str | Path, name: str, cache_dir: str | Path | None = None) -> Path:
    """``npm ci`` of ``package_dir``'s ``package.json`` and ``package-lock.json``, once per lock; return the install dir.

    The returned directory holds both files and ``node_modules``; run Node and esbuild there
    (:func:`run_node`, :func:`esbuild_bundle`) so imports resolve to the locked packages.
    """
    package_dir = Path(package_dir)
    if not (package_dir / "package-lock.json").is_file():
        raise NpmError(f"{package_dir} has no package-lock.json: commit one (npm install --package-lock-only) so installs are pinned")
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    work = root / f"{name}-{_key(package_dir)}"
    if (work / ".installed").is_file():
        return work
    require_program("node")
    npm = require_program("npm")
    with _locked(root / f"{name}.lock"):
        if (work / ".installed").is_file():  # another process installed it while we waited
            return work
        tmp = root / f".tmp-{work.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            for f in ("package.json", "package-lock.json"):
                shutil.copy2(package_dir / f, tmp / f)
            _run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"], tmp)
            (tmp / ".installed").write_text(f"npm ci of {package_dir}\n")
            shutil.rmtree(work, ignore_errors=True)
            tmp.rename(work)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return work


def locked_versions(package_dir: str | Path, names: Sequence[str]) -> dict[str, str]:
    """The version ``package-lock.json`` pins for each of ``names`` (top-level installs)."""
    packages = json.loads((Path(package_dir) / "package-lock.json").read_text(encoding="utf-8"))["packages"]
    return {n: packages[f"node_modules/{n}"]["version"] for n in names}


def run_node(install_dir: Path, args: Sequence[str], *, stdin: str | None = None, timeout: float = 120) -> bytes:
    """``node ARGS`` in ``install_dir`` (``require`` and ``import`` resolve to its ``node_modules``); its stdout."""
    return _run([require_program("node"), *args], install_dir, stdin=stdin, timeout=timeout)


def esbuild_bundle(install_dir: Path, source: str, *, minify: bool = True, fmt: str = "esm", target: str = "es2020") -> bytes:
    """``source`` (an ES module, given as text) bundled for the browser by the installed esbuild; the bundle's bytes.

    Imports resolve from ``install_dir``. Licence comments are dropped, as an app's production build would.
    """
    esbuild = install_dir / "node_modules" / "esbuild" / "bin" / "esbuild"
    if not esbuild.is_file():
        raise NpmError(f"esbuild is not among the packages installed in {install_dir}: add it to the package.json")
    argv = [
        str(esbuild),
        "--bundle",
        f"--format={fmt}",
        "--platform=browser",
        f"--target={target}",
        "--legal-comments=none",
        "--log-level=warning",
    ]
    if minify:
        argv.append("--minify")
    return _run([require_program("node"), *argv], install_dir, stdin=source, timeout=120)


#: Generated or installed trees inside an app's source directory: never copied into a build, never part of its key.
_BUILD_SKIP = ("node_modules", "build", ".svelte-kit", "dist", "__pycache__")


def _app_key(app_dir: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in app_dir.rglob("*") if p.is_file() and not set(_BUILD_SKIP).intersection(p.relative_to(app_dir).parts)):
        h.update(path.relative_to(app_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(f"{sys.platform}-{platform.machine()}".encode())
    return h.hexdigest()[:16]


def vite_build(app_dir: str | Path, name: str, *, out: str = "build", cache_dir: str | Path | None = None) -> Path:
    """``vite build`` of the app in ``app_dir`` (a SvelteKit or plain vite app with a committed lock), once per source hash.

    The packages come from :func:`ensure_installed`; the sources are copied next to a link to its
    ``node_modules`` in ``<cache>/<name>-build-<hash>/`` and built there, in a temporary directory renamed
    when complete (concurrent callers wait on a file lock). Returns the build's output directory ``out``.
    """
    app_dir = Path(app_dir)
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    work = root / f"{name}-build-{_app_key(app_dir)}"
    if (work / ".built").is_file():
        return work / out
    install = ensure_installed(app_dir, name, root)
    node = require_program("node")
    with _locked(root / f"{name}-build.lock"):
        if (work / ".built").is_file():
            return work / out
        tmp = root / f".tmp-{work.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(app_dir, tmp, ignore=shutil.ignore_patterns(*_BUILD_SKIP))
            (tmp / "node_modules").symlink_to(install / "node_modules", target_is_directory=True)
            _run([node, str(install / "node_modules" / "vite" / "bin" / "vite.js"), "build", "--logLevel", "warn"], tmp)
            if not (tmp / out).is_dir():
                raise NpmError(f"vite build in {tmp} produced no {out}/")
            (tmp / ".built").write_text(f"vite build of {app_dir}\n")
            shutil.rmtree(work, ignore_errors=True)
            tmp.rename(work)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return work / out


def gzip_size(data: bytes) -> int:
    """Bytes after gzip at level 9, as a web server would send a static bundle."""
    return len(gzip.compress(data, 9, mtime=0))
