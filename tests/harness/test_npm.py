"""harness.npm: a committed lock file installed once into a cache, esbuild bundles, gzip bytes, missing programs."""

from __future__ import annotations

import gzip
import json

import pytest

from harness import machine, npm
from harness.plugin import NotRunnable
from tests.utils import require_program


def test_a_missing_node_or_npm_is_not_runnable_with_its_install_command(monkeypatch):
    monkeypatch.setattr(machine, "find_tool", lambda name: None)
    for name in ("node", "npm"):
        with pytest.raises(NotRunnable, match=rf"{name} is not installed \(install: apt-get install -y"):
            npm.require_program(name)


def test_a_package_without_a_lock_file_is_refused(tmp_path):
    (tmp_path / "package.json").write_text(json.dumps({"name": "x", "version": "0.0.0"}))
    with pytest.raises(npm.NpmError, match="no package-lock.json"):
        npm.ensure_installed(tmp_path, "x", cache_dir=tmp_path / "cache")


def test_gzip_size_is_level_9_and_deterministic():
    data = b"tabletop " * 500
    assert npm.gzip_size(data) == npm.gzip_size(data) == len(gzip.compress(data, 9, mtime=0)) < len(data)


def test_install_once_per_lock_then_bundle_from_it(tmp_path):
    require_program("node", "npm")
    # An empty package: npm ci needs no registry, so the test runs offline; esbuild comes from Spike 9's lock instead.
    pkg = {"name": "empty", "version": "0.0.0", "private": True}
    lock = {"name": "empty", "version": "0.0.0", "lockfileVersion": 3, "requires": True, "packages": {"": pkg}}
    (tmp_path / "package.json").write_text(json.dumps(pkg))
    (tmp_path / "package-lock.json").write_text(json.dumps(lock))
    cache = tmp_path / "cache"
    first = npm.ensure_installed(tmp_path, "empty", cache_dir=cache)
    assert (first / ".installed").is_file() and first.parent == cache and first.name.startswith("empty-")
    assert npm.ensure_installed(tmp_path, "empty", cache_dir=cache) == first  # the second call finds it done
    assert not any(p.name.startswith(".tmp-") for p in cache.iterdir())
    with pytest.raises(npm.NpmError, match="esbuild is not among the packages"):
        npm.esbuild_bundle(first, "export const a = 1;")
    assert npm.locked_versions(tmp_path, []) == {}
    # A changed lock is a new install dir.
    (tmp_path / "package.json").write_text(json.dumps({**pkg, "description": "changed"}))
    assert npm.ensure_installed(tmp_path, "empty", cache_dir=cache) != first


def test_esbuild_bundles_and_minifies_an_entry_given_as_text():
    require_program("node", "npm")
    from spikes.s09_message_protocol.browser_bench import BROWSER_DIR

    where = npm.ensure_installed(BROWSER_DIR, "s09-browser")
    code = npm.esbuild_bundle(where, "export function add(first, second) { return first + second; }\n")
    assert b"export" in code and b"first" not in code  # minified: the parameter names are gone
    assert npm.locked_versions(BROWSER_DIR, ["esbuild"])["esbuild"][:1].isdigit()


def test_a_vite_builds_key_follows_the_sources_not_generated_trees(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.js").write_text("export const a = 1;\n")
    key = npm._app_key(tmp_path)
    for generated in ("node_modules", "build", ".svelte-kit"):
        (tmp_path / generated).mkdir()
        (tmp_path / generated / "x.js").write_text("junk")
    assert npm._app_key(tmp_path) == key
    (tmp_path / "src" / "a.js").write_text("export const a = 2;\n")
    assert npm._app_key(tmp_path) != key
