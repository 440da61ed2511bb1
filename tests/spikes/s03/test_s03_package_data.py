"""Spike 3's SvelteKit app ships in the wheel: the package-data globs cover every file of app/ tracked in git."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from spikes.s03_canvas_performance import spike
from tests.utils import UNIT

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = "spikes.s03_canvas_performance"
#: What a build or an install makes inside app/: never a source, never tracked.
BUILD_OUTPUTS = {"node_modules", "build", ".svelte-kit", "dist"}


def _tracked(under: str) -> list[str]:
    """Files tracked in git under ``under`` (repository-relative, POSIX), build outputs left out."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no list of tracked files")
    out = subprocess.run(["git", "ls-files", "-z", "--", under], cwd=ROOT, capture_output=True, check=True, timeout=30 * UNIT)
    return [p for p in out.stdout.decode().split("\0") if p and not BUILD_OUTPUTS.intersection(p.split("/"))]


def _globs() -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return list(data["tool"]["setuptools"]["package-data"].get(PACKAGE, []))


def test_the_package_data_globs_cover_every_tracked_file_of_the_app():
    package_dir = spike.package_dir
    tracked = _tracked(str((package_dir / "app").relative_to(ROOT)))
    assert len(tracked) >= 10  # the app's sources, config and lock file, so an empty list cannot pass
    covered = set()
    for pattern in _globs():  # as setuptools' build_py resolves them: relative to the package, recursive
        for hit in glob.glob(os.path.join(package_dir, pattern), recursive=True):
            covered.add(Path(hit).resolve().relative_to(ROOT).as_posix())
    missed = sorted(set(tracked) - covered)
    assert not missed, f"add globs for these to [tool.setuptools.package-data] {PACKAGE!r} in pyproject.toml: {missed}"


@pytest.mark.slow  # builds a wheel (setuptools, no network)
def test_the_built_wheel_holds_every_tracked_file_of_the_app(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    for rel in ["pyproject.toml", "README.md", *_tracked("harness"), *_tracked("spikes")]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src), "-w", str(out)],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=120 * UNIT,
    )
    (wheel,) = out.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    app = str((spike.package_dir / "app").relative_to(ROOT))
    missed = sorted(set(_tracked(app)) - names)
    assert not missed, f"not in the wheel: {missed}"
