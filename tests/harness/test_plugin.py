from __future__ import annotations

import importlib.metadata
import shutil
import sys
import types

import pytest

from harness.plugin import DEFAULT_WEIGHTS, Spike, SpikeLoadError, discover, source_hash
from tests.harness.fakes import FakeSpike


def _ep(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group="realtime_spikes.spikes")


@pytest.fixture
def plugin_module(monkeypatch):
    mod = types.ModuleType("third_party_spikes")
    mod.instance = FakeSpike()
    mod.cls = FakeSpike
    mod.not_a_spike = object()

    class Dup(FakeSpike):
        slug = "duplicate"

    class BadWeights(FakeSpike):
        weights = {**DEFAULT_WEIGHTS, "Performance": 50}

    mod.dup = Dup()
    mod.bad_weights = BadWeights()
    monkeypatch.setitem(sys.modules, "third_party_spikes", mod)
    return mod


def test_discovers_instances_and_classes_by_number(plugin_module):
    found = discover([_ep("x", "third_party_spikes:instance")])
    assert list(found) == [42] and isinstance(found[42], Spike)
    assert isinstance(discover([_ep("y", "third_party_spikes:cls")])[42], FakeSpike)


def test_builtin_entry_points_include_spike_9():
    found = discover()
    assert 9 in found and found[9].slug == "message-protocol"


def test_duplicate_numbers_are_an_error(plugin_module):
    with pytest.raises(SpikeLoadError, match="two plugins declare spike 42"):
        discover([_ep("x", "third_party_spikes:instance"), _ep("y", "third_party_spikes:dup")])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("third_party_spikes:not_a_spike", "is not a Spike"),
        ("no_such_module_anywhere:spike", "failed to load"),
        ("third_party_spikes:bad_weights", "add up to 120"),
    ],
)
def test_bad_plugins_name_the_entry_point(plugin_module, value, message):
    with pytest.raises(SpikeLoadError, match=message):
        discover([_ep("broken", value)])


def test_source_hash_changes_when_the_code_does(tmp_path):
    spike = FakeSpike()
    shutil.copytree(spike.package_dir, tmp_path / "poc")
    spike.package_dir = tmp_path / "poc"
    before = source_hash(spike)
    assert source_hash(spike) == before
    (tmp_path / "poc" / "server.py").write_text("def echo(x):\n    return x + 1\n")
    assert source_hash(spike) != before


def test_quick_params_override_full_ones():
    sc = FakeSpike().scenario("works")
    assert sc.resolved_params(quick=False) == {"size": 100}
    assert sc.resolved_params(quick=True) == {"size": 1}


def test_source_hash_covers_the_harness_modules_and_lock_files_but_not_the_renderer(tmp_path):
    spike = FakeSpike()
    shutil.copytree(spike.package_dir, tmp_path / "poc")
    spike.package_dir = tmp_path / "poc"
    harness = tmp_path / "harness"
    (harness / "report").mkdir(parents=True)
    (harness / "process.py").write_text("TIMEOUT = 1\n")
    (harness / "report" / "render.py").write_text("TITLE = 'a'\n")
    before = source_hash(spike, harness)
    (harness / "report" / "render.py").write_text("TITLE = 'b'\n")  # re-applied by `spike report`, never stale
    assert source_hash(spike, harness) == before
    (harness / "process.py").write_text("TIMEOUT = 2\n")
    after_harness = source_hash(spike, harness)
    assert after_harness != before
    (tmp_path / "poc" / "node").mkdir()
    (tmp_path / "poc" / "node" / "package-lock.json").write_text('{"lockfileVersion": 3}\n')
    with_lock = source_hash(spike, harness)
    assert with_lock != after_harness
    (tmp_path / "poc" / "node" / "node_modules").mkdir()
    (tmp_path / "poc" / "node" / "node_modules" / "dep.js").write_text("installed, pinned by the lock file\n")
    assert source_hash(spike, harness) == with_lock


def test_the_real_harness_is_hashed_without_its_renderer():
    from harness.plugin import _HARNESS_NOT_HASHED, HARNESS_DIR, _hashed_files

    hashed = {p.relative_to(HARNESS_DIR).as_posix() for p in _hashed_files(HARNESS_DIR, _HARNESS_NOT_HASHED)}
    assert {"runner.py", "process.py", "load/engine.py", "budgets.toml"} <= hashed
    assert not any(p.startswith("report/") for p in hashed)
