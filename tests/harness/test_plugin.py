from __future__ import annotations

import importlib.metadata
import shutil
import sys
import types
from pathlib import Path

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


def _hash_setup(tmp_path):
    spike = FakeSpike()
    shutil.copytree(spike.package_dir, tmp_path / "poc")
    spike.package_dir = tmp_path / "poc"
    harness = tmp_path / "harness"
    (harness / "report").mkdir(parents=True)
    (harness / "load").mkdir()
    (harness / "decide").mkdir()
    for name in (
        "process.py",
        "results.py",
        "cli.py",
        "compare.py",
        "budget.py",
        "budgets.toml",
        "load/engine.py",
        "report/render.py",
        "decide/engine.py",
    ):
        (harness / name).write_text(f"# {name}\n")
    return spike, harness


def test_source_hash_covers_every_file_of_the_spike_package_whatever_its_extension(tmp_path):
    spike, harness = _hash_setup(tmp_path)
    before = source_hash(spike, harness)
    (tmp_path / "poc" / "data").mkdir()
    (tmp_path / "poc" / "data" / "trace.json.gz").write_bytes(b"\x1f\x8b replayed trace")  # like Spike 2's automerge-paper.json.gz
    with_trace = source_hash(spike, harness)
    assert with_trace != before
    (tmp_path / "poc" / "data" / "trace.json.gz").write_bytes(b"\x1f\x8b another trace")
    assert source_hash(spike, harness) != with_trace
    (tmp_path / "poc" / "node").mkdir()
    (tmp_path / "poc" / "node" / "package-lock.json").write_text('{"lockfileVersion": 3}\n')
    with_lock = source_hash(spike, harness)
    assert with_lock != with_trace


@pytest.mark.parametrize(
    "generated",
    [
        "node/node_modules/dep.js",  # installed, pinned by the lock file
        "__pycache__/server.cpython-311.pyc",
        "build/handler.js",
        "dist/bundle.js",
        "pkg.egg-info/PKG-INFO",
        ".svelte-kit/output.js",
        ".gitignore",
        "node/.cache/x",
    ],
)
def test_source_hash_skips_caches_build_outputs_and_dotfiles(tmp_path, generated):
    spike, harness = _hash_setup(tmp_path)
    before = source_hash(spike, harness)
    path = tmp_path / "poc" / generated
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("generated\n")
    assert source_hash(spike, harness) == before


@pytest.mark.parametrize("name", ["process.py", "results.py", "load/engine.py"])
def test_source_hash_covers_the_harness_modules_that_run_or_measure(tmp_path, name):
    spike, harness = _hash_setup(tmp_path)
    (tmp_path / "poc" / "load_user.py").write_text("from harness.load import engine\n")  # the load engine counts once used
    before = source_hash(spike, harness)
    with (harness / name).open("a") as fh:
        fh.write("TIMEOUT = 2\n")
    assert source_hash(spike, harness) != before


def test_source_hash_leaves_out_the_spike_decision(tmp_path):
    spike, harness = _hash_setup(tmp_path)
    before = source_hash(spike, harness)
    (tmp_path / "poc" / "decision.py").write_text("CRITERIA = ()  # criteria and gates score stored runs; they measure nothing\n")
    assert source_hash(spike, harness) == before
    (tmp_path / "poc" / "server").mkdir()
    (tmp_path / "poc" / "server" / "decision.py").write_text("# a POC module of that name is code that runs: hashed\n")
    assert source_hash(spike, harness) != before


@pytest.mark.parametrize("name", ["report/render.py", "decide/engine.py", "cli.py", "compare.py", "budget.py", "budgets.toml"])
def test_source_hash_leaves_out_the_harness_parts_that_cannot_change_a_measurement(tmp_path, name):
    spike, harness = _hash_setup(tmp_path)
    before = source_hash(spike, harness)
    with (harness / name).open("a") as fh:
        fh.write("# an edit: re-rendering, comparing or judging the time never changes what was measured\n")
    assert source_hash(spike, harness) == before
    (harness / "report" / "new_chart.py").write_text("# a new renderer module\n")
    assert source_hash(spike, harness) == before


def test_the_real_harness_and_spike_2_are_hashed_by_the_rule():
    from harness.plugin import _HARNESS_NOT_HASHED, HARNESS_DIR, _hashed_files

    hashed = {p.relative_to(HARNESS_DIR).as_posix() for p in _hashed_files(HARNESS_DIR, _HARNESS_NOT_HASHED)}
    assert {"runner.py", "process.py", "probes.py", "results.py", "load/engine.py"} <= hashed
    assert not any(p.startswith(("report/", "decide/")) for p in hashed)
    assert not {"cli.py", "compare.py", "budget.py", "budgets.toml"} & hashed
    spikes = discover()
    if 2 in spikes:
        names = {p.name for p in _hashed_files(Path(spikes[2].package_dir))}
        assert "automerge-paper.json.gz" in names  # the replayed trace: a new trace is a new measurement


def test_an_optional_harness_part_counts_only_for_the_spikes_that_use_it(tmp_path):
    spike, harness = _hash_setup(tmp_path)
    before = source_hash(spike, harness)
    # A new browser driver, used by no code of this spike: its runs stay current.
    (harness / "browser.py").write_text("# drives Firefox for another spike\n")
    assert source_hash(spike, harness) == before
    (harness / "load" / "engine.py").write_text("# the load engine changed\n")
    assert source_hash(spike, harness) == before
    # Once the spike imports the load engine (or names it in a command), a change to it makes its runs stale.
    (tmp_path / "poc" / "uses.py").write_text("from harness.load import engine\n")
    using = source_hash(spike, harness)
    (harness / "load" / "engine.py").write_text("# the load engine changed again\n")
    assert source_hash(spike, harness) != using
    (tmp_path / "poc" / "uses.py").write_text("ARGV = ['python', '-m', 'harness.browser']\n")
    named = source_hash(spike, harness)
    (harness / "browser.py").write_text("# a browser driver edit\n")
    assert source_hash(spike, harness) != named


def test_a_new_harness_module_counts_only_once_something_uses_it(tmp_path):
    spike, harness = _hash_setup(tmp_path)
    before = source_hash(spike, harness)
    (harness / "faults.py").write_text("# a fault injector for Spike 7\n")
    assert source_hash(spike, harness) == before
    # Once the core imports it, it runs for every spike: every spike's runs go stale on a change.
    (harness / "runner.py").write_text("from harness import faults\n")
    with_core = source_hash(spike, harness)
    (harness / "faults.py").write_text("# the fault injector changed\n")
    assert source_hash(spike, harness) != with_core


def test_a_part_imported_in_a_parenthesised_multi_line_import_counts(tmp_path):
    spike, harness = _hash_setup(tmp_path)
    (harness / "faults.py").write_text("# faults\n")
    (tmp_path / "poc" / "uses.py").write_text("from harness import (\n    faults,\n)\n")
    before = source_hash(spike, harness)
    (harness / "faults.py").write_text("# faults changed\n")
    assert source_hash(spike, harness) != before


def test_a_name_after_a_multi_line_import_does_not_count(tmp_path):
    spike, harness = _hash_setup(tmp_path)
    (harness / "faults.py").write_text("# faults\n")
    (tmp_path / "poc" / "uses.py").write_text("from harness import (\n    plugin,\n)\nfaults = 1\n")
    before = source_hash(spike, harness)
    (harness / "faults.py").write_text("# faults changed\n")
    assert source_hash(spike, harness) == before


def test_a_part_used_by_a_part_the_spike_uses_counts_too(tmp_path):
    spike, harness = _hash_setup(tmp_path)
    (harness / "services.py").write_text("# redis and friends\n")
    (harness / "load" / "engine.py").write_text("from harness import services\n")
    (tmp_path / "poc" / "uses.py").write_text("import harness.load.engine\n")
    before = source_hash(spike, harness)
    (harness / "services.py").write_text("# redis changed\n")
    assert source_hash(spike, harness) != before


def test_the_real_spikes_use_the_parts_they_import():
    import re

    from harness.plugin import _SPIKE_NOT_HASHED, HARNESS_DIR, _hashed_files, optional_parts, used_parts

    def names(text: str, part: str) -> bool:
        mod = part.removesuffix(".py")
        return bool(re.search(rf"\bharness[./]{mod}\b|from harness import (\([^)]*\b{mod}\b|[^\n(]*\b{mod}\b)", text))

    def text_of(part: str) -> str:
        path = HARNESS_DIR / part
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        return "\n".join(f.read_text(errors="replace") for f in files)

    seen_any = False
    for number, spike in discover().items():
        files = _hashed_files(Path(spike.package_dir), _SPIKE_NOT_HASHED)
        text = "\n".join(f.read_text(errors="replace") for f in files if f.suffix == ".py")
        parts = used_parts(files, HARNESS_DIR)
        for part in optional_parts(HARNESS_DIR):
            if names(text, part):  # named by the spike: counted
                assert part in parts, (number, part)
                seen_any = True
        for part in parts:  # counted: named by the spike, or by another part it uses
            assert names(text, part) or any(names(text_of(o), part) for o in parts if o != part), (number, part)
    assert seen_any  # the real spikes do use optional parts (load, services, browser)
