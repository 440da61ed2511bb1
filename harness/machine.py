"""Machine and environment metadata for every run, and the external parts doctor checks.

Runs from different machines are never silently merged: ``spike compare`` warns
when the CPU model, core count or Python differ, as pyperf does.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

__all__ = ["collect", "git_commit", "ExternalTool", "EXTERNAL_TOOLS", "find_tool", "tool_status", "TRACKED_PACKAGES"]

#: Packages whose versions go into every run: the field's dependencies.
TRACKED_PACKAGES = (
    "realtime-spikes",
    "websockets",
    "python-socketio",
    "aiohttp",
    "msgpack",
    "protobuf",
    "orjson",
    "msgspec",
    "pycrdt",
    "redis",
    "locust",
    "hdrhistogram",
    "psutil",
    "uvloop",
    "playwright",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    out = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_commit(cwd: Path | None = None) -> dict[str, Any]:
    """The commit the code was run from, and whether the tree had local changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}


def collect(cwd: Path | None = None) -> dict[str, Any]:
    """Everything a reader needs to judge where a number came from."""
    vm = psutil.virtual_memory()
    try:
        freq = psutil.cpu_freq()
        mhz = round(freq.max or freq.current) if freq else None
    except (OSError, NotImplementedError):
        mhz = None
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cpu_count_logical": psutil.cpu_count(logical=True),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpu_mhz_max": mhz,
        "memory_total_bytes": vm.total,
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": _versions(),
        "load_avg_1m_at_start": round(load1, 2) if load1 is not None else None,
        **git_commit(cwd),
    }


@dataclass(frozen=True)
class ExternalTool:
    """A program some scenarios need, how to find its version, and how to install it."""

    name: str
    binaries: tuple[str, ...]
    version_args: tuple[str, ...]
    install: str
    #: For a program with no version flag (WebKitGTK's MiniBrowser would open a window): how to read its version.
    version_fn: Callable[[str], str] | None = None


#: Every external program the harness knows, by name. It grows by :func:`register_tool`: the module that uses a program
#: registers it (``harness.services`` its servers, ``harness.browser`` the engines and Xvfb, a spike its own), so adding
#: a program never means editing a list here. Node.js and npm are the harness's own (Node clients and builds).
EXTERNAL_TOOLS: dict[str, ExternalTool] = {}


def register_tool(tool: ExternalTool) -> ExternalTool:
    """Make ``tool`` known to `spike doctor`, the scenarios' ``requires`` and the runner; the same name twice must agree."""
    known = EXTERNAL_TOOLS.get(tool.name)
    if known is not None and (known.binaries, known.install) != (tool.binaries, tool.install):
        raise ValueError(f"program {tool.name!r} is registered twice, differently ({known.binaries} vs {tool.binaries})")
    EXTERNAL_TOOLS.setdefault(tool.name, tool)
    return EXTERNAL_TOOLS[tool.name]


register_tool(ExternalTool("node", ("node",), ("--version",), "apt-get install -y nodejs (Node.js 20 or newer)"))
register_tool(ExternalTool("npm", ("npm",), ("--version",), "apt-get install -y npm"))


def find_tool(name: str) -> str | None:
    """The path of an external tool's binary, or ``None`` when it is not installed."""
    import glob

    tool = EXTERNAL_TOOLS[name]
    for b in tool.binaries:
        if "*" in b:
            hits = sorted(glob.glob(b))
            if hits:
                return hits[-1]
        elif found := shutil.which(b) or (shutil.which(b, path="/usr/sbin:/sbin") if name == "nginx" else None):
            return found
    return None


def tool_status(name: str) -> dict[str, Any]:
    """Whether a tool is present, where, and the version it reports."""
    tool = EXTERNAL_TOOLS[name]
    path = find_tool(name)
    if path is None:
        return {"name": name, "present": False, "path": None, "version": None, "install": tool.install}
    if tool.version_fn is not None:
        return {"name": name, "present": True, "path": path, "version": tool.version_fn(path), "install": tool.install}
    if not tool.version_args:
        return {"name": name, "present": True, "path": path, "version": "", "install": tool.install}
    try:
        proc = subprocess.run([path, *tool.version_args], capture_output=True, text=True, timeout=20)
        text = (proc.stdout or proc.stderr).strip().splitlines()
        version = text[0] if text else ""
        m = re.search(r"v?(\d+(?:\.\d+)+)", version)
        version = m.group(0) if m else version
    except (OSError, subprocess.TimeoutExpired) as exc:
        version = f"unknown ({exc})"
    return {"name": name, "present": True, "path": path, "version": version, "install": tool.install}
