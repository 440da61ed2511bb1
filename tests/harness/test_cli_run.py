"""The run lifecycle through the CLI: where documents go, dirty trees, budgets, stale runs, the ETA across spikes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness import budget, cli, machine, plugin
from harness import runner as run_module
from harness.decide import Criterion, Derived, Part
from harness.results import load
from tests.harness.fakes import LATENCY, FakeSpike

runner = CliRunner()


class CalmSpike(FakeSpike):
    """The fake spike with only its working scenario, so a run of it is full and complete."""

    scenarios = (FakeSpike.scenarios[0],)


class OtherCalmSpike(CalmSpike):
    number = 43
    slug = "other"
    title = "Other Spike"


class UnscorableSpike(CalmSpike):
    """Measures fine, then cannot score its own run (a scoring bug, or a metric renamed in the scenario only)."""

    number = 41
    slug = "unscorable"
    title = "Unscorable Spike"

    criteria = (
        Criterion(
            "Performance",
            (
                Part(
                    "renamed",
                    Derived(lambda run, o: run.ok("works", "a").measurement("renamed").median, "a renamed metric"),
                    "ms",
                    LATENCY,
                    1,
                ),
            ),
        ),
        *(c for c in CalmSpike.criteria if c.name != "Performance"),
    )


@pytest.fixture(autouse=True)
def fake_registry(monkeypatch):
    registry = {42: CalmSpike()}
    monkeypatch.setattr(cli, "_spikes", lambda: registry)
    real = machine.find_tool
    monkeypatch.setattr(machine, "find_tool", lambda name: None if name == "nginx" else real(name))
    return registry


def invoke(*args: str):
    return runner.invoke(cli.app, list(args))


def _runs(folder: Path) -> list[Path]:
    return sorted((folder / "runs").glob("*.json"))


def _head(doc: Path, lines: int = 12) -> str:
    return "\n".join(doc.read_text().splitlines()[:lines])


def test_a_quick_run_goes_to_results_quick_and_leaves_the_full_document_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    full = invoke("run", "42", "--repeat", "1")
    assert full.exit_code == 0, full.output
    results = tmp_path / "results"
    before = {p.name: p.read_bytes() for p in results.glob("*.md")}
    assert set(before) == {"spike-42-fake.md", "README.md"}

    quick = invoke("run", "42", "--quick", "--repeat", "1")
    assert quick.exit_code == 0, quick.output
    assert {p.name: p.read_bytes() for p in results.glob("*.md")} == before
    assert len(_runs(results)) == 1  # the quick run is stored beside its own documents, not in results/runs
    (stored,) = _runs(results / "quick")
    doc = results / "quick" / "spike-42-fake.md"
    assert "**Quick run.**" in _head(doc) and load(stored).run_id in _head(doc)
    assert "(quick, complete)" in (results / "quick" / "README.md").read_text()


def test_run_help_says_where_quick_runs_go_and_how_to_override():
    text = invoke("run", "--help").output
    for words in ("results/quick", "--allow-partial", "--allow-dirty", "6"):
        assert words in text


def test_a_partial_run_does_not_replace_the_full_document_unless_allowed(tmp_path):
    out = tmp_path / "out"
    assert invoke("run", "42", "--repeat", "1", "--out", str(out)).exit_code == 0
    (full_json,) = _runs(out)
    full_id = load(full_json).run_id
    main = out / "spike-42-fake.md"
    full_doc = main.read_bytes()
    assert f"`{full_id}`, full profile, complete" in _head(main)

    partial = invoke("run", "42", "--option", "a", "--repeat", "1", "--out", str(out))
    assert partial.exit_code == 0, partial.output
    assert "does not replace the full-profile document" in partial.output
    assert main.read_bytes() == full_doc
    partial_id = next(load(p).run_id for p in _runs(out) if load(p).run_id != full_id)
    kept = out / "partial" / "spike-42-fake.md"
    assert "**Partial run.**" in _head(kept) and "options not run: b" in _head(kept) and partial_id in _head(kept)
    index = (out / "README.md").read_text()
    assert f"(runs/{full_id}.json) (full, complete)" in index and f"a newer full, partial run (`{partial_id}`) is not shown" in index

    # Asked for, the partial run takes the document and the index row.
    assert invoke("report", "42", "--allow-partial", "--out", str(out)).exit_code == 0
    assert partial_id in _head(main) and "**Partial run.**" in _head(main)
    assert f"(runs/{partial_id}.json) (full, partial)" in (out / "README.md").read_text()
    # A plain report puts the full run back.
    assert invoke("report", "42", "--out", str(out)).exit_code == 0
    assert main.read_bytes() == full_doc

    again = invoke("run", "42", "--option", "b", "--repeat", "1", "--allow-partial", "--out", str(out))
    assert again.exit_code == 0 and "**Partial run.**" in _head(main) and "options not run: a" in _head(main)


def test_an_interrupted_run_is_stored_and_its_document_says_so_without_replacing_the_full_one(tmp_path, fake_registry):
    out = tmp_path / "out"
    assert invoke("run", "42", "--repeat", "1", "--out", str(out)).exit_code == 0
    full_doc = (out / "spike-42-fake.md").read_bytes()
    fake_registry[42] = FakeSpike()  # the same spike, now with a scenario that presses Ctrl-C
    res = invoke("run", "42", "--scenario", "works", "--scenario", "interrupts", "--repeat", "1", "--out", str(out))
    assert res.exit_code == 130, res.output
    assert len(_runs(out)) == 2 and (out / "spike-42-fake.md").read_bytes() == full_doc
    assert "**Interrupted.**" in _head(out / "partial" / "spike-42-fake.md") and "interrupted" in _head(
        out / "partial" / "spike-42-fake.md", 5
    )

    # Into an empty folder there is nothing to replace: the document is the main one, marked all the same.
    fresh = tmp_path / "fresh"
    res = invoke("run", "42", "--scenario", "works", "--scenario", "interrupts", "--repeat", "1", "--out", str(fresh))
    assert res.exit_code == 130
    assert "**Interrupted.**" in _head(fresh / "spike-42-fake.md")
    assert "interrupted run only" in (fresh / "README.md").read_text()


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.fixture
def repo(tmp_path, fake_registry):
    """A git work tree holding the spike's code and a committed results folder, like this repository."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    shutil.copytree(FakeSpike.package_dir, root / "pkg")
    (root / "results").mkdir()
    (root / "results" / "README.md").write_text("committed index\n")
    _git(tmp_path, "init", "-q", str(root))
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "start")
    spike = CalmSpike()
    spike.package_dir = root / "pkg"
    fake_registry[42] = spike
    return root


def test_a_run_into_committed_results_from_a_dirty_tree_is_refused(repo):
    (repo / "pkg" / "server.py").write_text("def echo(x):\n    return x + 1\n")
    res = invoke("run", "42", "--repeat", "1", "--out", str(repo / "results"))
    assert res.exit_code == 2, res.output
    assert res.output.strip().count("\n") == 0 and "pkg/server.py" in res.output and "--allow-dirty" in res.output
    assert not (repo / "results" / "runs").exists() and (repo / "results" / "README.md").read_text() == "committed index\n"


def test_allow_dirty_runs_records_the_paths_and_the_document_says_so(repo):
    (repo / "pkg" / "server.py").write_text("def echo(x):\n    return x + 1\n")
    (repo / "notes.txt").write_text("untracked outside results: counts\n")
    res = invoke("run", "42", "--repeat", "1", "--allow-dirty", "--out", str(repo / "results"))
    assert res.exit_code == 0, res.output
    (stored,) = _runs(repo / "results")
    source = load(stored).source
    assert source["dirty"] is True and source["allow_dirty"] is True
    assert source["dirty_paths"] == ["notes.txt", "pkg/server.py"]  # the run's own output under results/ is not listed
    assert source["commit"] == _git(repo, "rev-parse", "HEAD").strip()
    head = _head(repo / "results" / "spike-42-fake.md")
    assert "**Local changes.**" in head and "(`--allow-dirty`)" in head and "`pkg/server.py`" in head
    assert "run with local changes" in (repo / "results" / "README.md").read_text()


def test_a_clean_tree_untracked_results_and_folders_outside_the_repo_are_never_refused(repo, tmp_path, monkeypatch):
    (repo / "results" / "runs").mkdir()
    (repo / "results" / "runs" / "from-before.log").write_text("untracked output of an earlier run\n")
    res = invoke("run", "42", "--repeat", "1", "--out", str(repo / "results"))
    assert res.exit_code == 0, res.output
    assert load(_runs(repo / "results")[0]).source["dirty"] is False
    # Dirty now (the run rewrote the committed index): a temp folder or the untracked quick folder still take runs.
    (repo / "pkg" / "server.py").write_text("def echo(x):\n    return x + 2\n")
    assert invoke("run", "42", "--repeat", "1", "--out", str(tmp_path / "elsewhere")).exit_code == 0
    monkeypatch.chdir(repo)
    assert invoke("run", "42", "--quick", "--repeat", "1").exit_code == 0
    assert len(_runs(repo / "results" / "quick")) == 1


def test_over_budget_exits_6_and_says_so_everywhere(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "budget_minutes", lambda number, quick: 1e-6)
    out = tmp_path / "out"
    res = invoke("run", "42", "--repeat", "1", "--out", str(out))
    assert res.exit_code == cli.EXIT_OVER_BUDGET == 6, res.output
    assert "over budget" in res.output
    (stored,) = _runs(out)
    assert load(stored).budget == {"minutes": 1e-6, "over": True}
    head = _head(out / "spike-42-fake.md")
    assert "**Over budget.**" in head and "**over budget**" in head
    assert "over budget (" in (out / "README.md").read_text()
    assert "over budget" in invoke("list", "--out", str(out)).output


def test_failed_steps_outrank_over_budget(tmp_path, monkeypatch, fake_registry):
    monkeypatch.setattr(budget, "budget_minutes", lambda number, quick: 1e-6)
    fake_registry[42] = FakeSpike()
    res = invoke("run", "42", "--scenario", "works", "--scenario", "crashes", "--repeat", "1", "--out", str(tmp_path))
    assert res.exit_code == cli.EXIT_FAILED_STEPS, res.output


def test_a_generous_budget_exits_0(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "budget_minutes", lambda number, quick: 60.0)
    res = invoke("run", "42", "--repeat", "1", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert load(_runs(tmp_path)[0]).budget == {"minutes": 60.0, "over": False}


def test_list_and_documents_show_a_run_stale_once_a_harness_module_changes(tmp_path, monkeypatch):
    assert invoke("run", "42", "--repeat", "1", "--out", str(tmp_path)).exit_code == 0
    assert "stale" not in invoke("list", "--out", str(tmp_path)).output
    harness_copy = tmp_path / "harness-copy"
    shutil.copytree(plugin.HARNESS_DIR, harness_copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(plugin, "HARNESS_DIR", harness_copy)
    assert "stale" not in invoke("list", "--out", str(tmp_path)).output  # the same files, the same hash
    for name in ("cli.py", "compare.py", "budgets.toml", "report/render.py"):  # cannot change a measurement
        with (harness_copy / name).open("a") as fh:
            fh.write("\n# an edit that only re-renders, compares or judges time\n")
    assert "stale" not in invoke("list", "--out", str(tmp_path)).output
    with (harness_copy / "process.py").open("a") as fh:
        fh.write("\n# an edit to a module every spike runs through\n")
    assert "stale" in invoke("list", "--out", str(tmp_path)).output
    assert invoke("report", "42", "--out", str(tmp_path)).exit_code == 0
    assert "**Stale.**" in _head(tmp_path / "spike-42-fake.md", 16)


def test_run_all_shows_an_overall_bar_with_an_eta_from_stored_durations(tmp_path, monkeypatch, fake_registry):
    fake_registry[43] = OtherCalmSpike()
    out = tmp_path / "out"
    assert invoke("run", "42", "--repeat", "1", "--out", str(out)).exit_code == 0
    (stored,) = _runs(out)
    data = json.loads(stored.read_text())
    data["duration_s"] = 600.0  # spike 42 took ten minutes last time
    stored.write_text(json.dumps(data))
    monkeypatch.setattr(budget, "budget_minutes", lambda number, quick: 5.0 if number == 43 else 60.0)  # 43 has no history
    seen: list[str] = []
    real = cli.OverallProgress.describe

    def spy(self, index, fraction):
        text = real(self, index, fraction)
        seen.append(text)
        return text

    monkeypatch.setattr(cli.OverallProgress, "describe", spy)
    res = invoke("run", "all", "--repeat", "1", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert seen[0] == "spike 1 of 2, about 15 min left"  # 10 min measured before + 5 min budget
    assert "spike 2 of 2, about 5 min left" in seen
    assert "all spikes" in res.output


def _no_crash(res) -> None:  # type: ignore[no-untyped-def]
    """CliRunner turns an uncaught exception into exit 1 with the exception kept: a crash, whatever the exit code."""
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output


def test_a_run_its_spike_cannot_score_is_one_line_and_the_other_spikes_and_the_index_go_on(tmp_path, fake_registry):
    fake_registry.clear()
    fake_registry.update({41: UnscorableSpike(), 42: CalmSpike()})
    out = tmp_path / "out"
    res = invoke("run", "all", "--repeat", "1", "--out", str(out))
    _no_crash(res)
    assert res.exit_code == cli.EXIT_DATA == 4, res.output
    (line,) = [line for line in res.output.splitlines() if "cannot score spike 41" in line]
    assert line.startswith("error: ") and "has no measurement 'renamed'" in line
    assert len(_runs(out)) == 2  # spike 41's run is stored, and spike 42 still ran after it
    assert (out / "spike-42-fake.md").is_file() and not (out / "spike-41-unscorable.md").exists()
    index = (out / "README.md").read_text()
    row41 = next(r for r in index.splitlines() if r.startswith("| 41. "))
    assert "cannot score spike 41" in row41 and "Unscorable Spike](" not in row41  # no link to a document that was not written
    assert next(r for r in index.splitlines() if r.startswith("| 42. ")).count("Option ") == 1  # spike 42 has its recommendation
    assert "spike 41: run " in res.output.splitlines()[-1]  # the closing line names what went wrong


def test_a_crash_of_the_harness_is_one_line_exit_4_with_the_partial_run_stored(tmp_path, monkeypatch, fake_registry):
    fake_registry[43] = OtherCalmSpike()
    calls: list[int] = []
    real = run_module._missing_tools

    def breaks_on_the_second_step(requires):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("tool check broke")
        return real(requires)

    monkeypatch.setattr(run_module, "_missing_tools", breaks_on_the_second_step)
    out = tmp_path / "out"
    res = invoke("run", "all", "--repeat", "1", "--out", str(out))
    _no_crash(res)  # before: the RuntimeError reached the CLI, exit 1, which the nightly reads as a regression
    assert res.exit_code == cli.EXIT_DATA, res.output
    crashed = next(load(p) for p in _runs(out) if load(p).spike["number"] == 42)
    (line,) = [line for line in res.output.splitlines() if "RuntimeError" in line]
    log = out / "runs" / f"{crashed.run_id}.log"
    assert "RuntimeError: tool check broke" in line and str(crashed.path) in line and str(log) in line
    assert crashed.completion == "interrupted" and crashed.result("works", "a").status == "ok"
    assert "Traceback" in log.read_text()  # the traceback is kept, in the run's log file
    assert any(load(p).spike["number"] == 43 for p in _runs(out))  # the next spike still ran
    assert "interrupted run only" in (out / "README.md").read_text()


def test_spike_debug_prints_the_traceback_of_a_crash(tmp_path, monkeypatch):
    def broken(requires):  # type: ignore[no-untyped-def]
        raise RuntimeError("tool check broke")

    monkeypatch.setattr(run_module, "_missing_tools", broken)
    monkeypatch.setenv("SPIKE_DEBUG", "1")
    res = invoke("run", "42", "--repeat", "1", "--out", str(tmp_path))
    assert res.exit_code == cli.EXIT_DATA and "Traceback" in res.output and "RuntimeError: tool check broke" in res.output
