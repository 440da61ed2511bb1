from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness import cli, results
from harness.budget import table_minutes
from harness.plugin import discover
from harness.report.render import decide
from harness.results import FORMAT_VERSION, ResultsError, RunResult, load, save, scan_runs
from harness.runner import RunPlan, run_spike
from tests.harness.fakes import FakeSpike

FORMATS = Path(__file__).parent / "formats"


@pytest.fixture
def stored(tmp_path):
    run = run_spike(RunPlan(FakeSpike(), scenarios=["works"], repeat=2), tmp_path)
    return run, tmp_path / "runs"


def test_round_trip_keeps_raw_samples_per_repeat(stored):
    run, runs_dir = stored
    back = load(run.path)
    assert back.to_dict() == run.to_dict()
    m = back.result("works", "a").measurement("latency", message="m1")
    assert m.repeats == [[10.0, 11.0], [11.0, 12.0]]
    assert back.machine["cpu_count_logical"] >= 1 and back.machine["python"]
    assert back.spike["source_hash"] and back.format_version == FORMAT_VERSION and back.upgraded_from is None
    assert back.completion in results.COMPLETIONS and set(back.source) == {"commit", "dirty", "dirty_paths", "allow_dirty"}


def test_save_is_atomic_when_writing_fails(stored, monkeypatch):
    run, runs_dir = stored
    original = run.path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        save(run, runs_dir)
    assert run.path.read_bytes() == original
    assert not list(runs_dir.glob(".*.tmp"))


def _write(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: [], "top level is list"),
        (lambda d: {**d, "format_version": 99}, "format_version 99 is not supported"),
        (lambda d: {k: v for k, v in d.items() if k != "machine"}, "machine is missing"),
        (lambda d: {**d, "surprise": 1}, "unknown field"),
        (lambda d: {**d, "profile": "medium"}, "profile 'medium'"),
        (lambda d: {**d, "duration_s": "long"}, 'duration_s is "long", expected a finite number'),
        (lambda d: {**d, "scenarios": [{**d["scenarios"][0], "status": "great"}]}, "status 'great'"),
    ],
)
def test_malformed_files_name_the_file_and_the_problem(stored, tmp_path, mutate, message):
    run, _ = stored
    data = json.loads(run.path.read_text())
    bad = _write(tmp_path / "bad.json", mutate(data))
    with pytest.raises(ResultsError) as exc:
        load(bad)
    assert str(bad) in str(exc.value) and message in str(exc.value)


def test_non_finite_samples_are_rejected(stored, tmp_path):
    run, _ = stored
    text = run.path.read_text().replace("10.0", "NaN", 1)
    with pytest.raises(ResultsError, match="non-finite"):
        load(_write(tmp_path / "nan.json", text))


def test_missing_file_is_a_results_error(tmp_path):
    with pytest.raises(ResultsError, match="no such results file"):
        load(tmp_path / "absent.json")


def test_scan_runs_orders_runs_by_start_time_not_by_file_name(tmp_path):
    first = run_spike(RunPlan(FakeSpike(), scenarios=["works"], repeat=1), tmp_path)
    data = first.to_dict()
    data["run_id"] = "000-named-first-started-later"
    data["started_at"] = "2999-01-01T00:00:00+00:00"
    later = RunResult.from_dict(data)
    save(later, tmp_path / "runs")
    runs, errors = scan_runs(tmp_path / "runs")
    assert [r.run_id for r in runs] == [first.run_id, "000-named-first-started-later"] and errors == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: {**d, "spike": {**d["spike"], "number": "nine"}}, 'spike.number is "nine"'),
        (
            lambda d: {**d, "scenarios": [{**d["scenarios"][0], "measurements": [{**d["scenarios"][0]["measurements"][0], "tags": "x"}]}]},
            "tags must be an object",
        ),
        (
            lambda d: {
                **d,
                "scenarios": [{**d["scenarios"][0], "measurements": [{**d["scenarios"][0]["measurements"][0], "repeats": [[]]}]}],
            },
            "has no samples",
        ),
    ],
)
def test_structurally_valid_but_unusable_files_are_rejected(stored, tmp_path, mutate, message):
    run, _ = stored
    bad = _write(tmp_path / "bad.json", mutate(json.loads(run.path.read_text())))
    with pytest.raises(ResultsError, match=message):
        load(bad)


# -- every field scoring and rendering read is checked, and the error names it ------------------------------------------------


def _set(path: str, value: object):
    """A mutation setting (or, with value DELETE, deleting) the field at a dotted path such as scenarios.0.params."""

    def mutate(d: dict) -> dict:
        d = copy.deepcopy(d)
        *parents, last = path.split(".")
        node = d
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if value is DELETE:
            del node[int(last) if isinstance(node, list) else last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return d

    return mutate


DELETE = object()

CORRUPTIONS = [
    # The list: each gives one line naming the field.
    (_set("parameters.weights.Performance", "30"), 'parameters.weights.Performance is "30", expected an integer'),
    (_set("complexity.a.loc", "17"), 'complexity.a.loc is "17", expected an integer'),
    (_set("complexity.a.loc", DELETE), "complexity.a.loc is missing"),
    (_set("scenarios.0.params", [1, 2]), "scenarios[0].params is a list, expected an object"),
    (_set("scenarios.0.params", "size=100"), 'scenarios[0].params is "size=100", expected an object'),
    (_set("scenarios.0.facts", [1, 2]), "scenarios[0].facts[0] is 1, expected an object"),
    (_set("scenarios.0.facts", {"seen": 100}), "scenarios[0].facts is an object, expected a list"),
    (_set("parameters.options", DELETE), "parameters.options is missing"),
    (_set("parameters.options", []), "parameters.options is an empty list, expected a non-empty list"),
    # The other fields that scores, documents and compare read.
    (_set("parameters.weights.Performance", 40), "parameters.weights add up to 110, expected 100"),
    (_set("parameters.weights.Performance", True), "parameters.weights.Performance is true, expected an integer"),
    (_set("parameters.weights", {}), "parameters.weights is an object, expected an object of criterion -> percent"),
    (_set("parameters.weights", DELETE), "parameters.weights is missing"),
    (_set("parameters.options", ["a", 7]), "parameters.options[1] is 7, expected a non-empty string"),
    (_set("parameters.options", ["a", "a"]), "parameters.options lists an option twice"),
    (_set("parameters.scenarios", DELETE), "parameters.scenarios is missing"),
    (_set("parameters.scenarios", "works"), 'parameters.scenarios is "works", expected a list'),
    (_set("parameters.repeat", 0), "parameters.repeat is 0, expected an integer >= 1"),
    (_set("parameters.interrupted", "no"), 'parameters.interrupted is "no", expected true or false'),
    (_set("complexity.a", DELETE), "complexity.a is missing"),
    (_set("complexity.a.files", ["server.py"]), "complexity.a.files is a list, expected an object"),
    (
        lambda d: {**d, "complexity": {**d["complexity"], "a": {**d["complexity"]["a"], "files": {"server.py": "12"}}}},
        'complexity.a.files.server.py is "12", expected an integer >= 0',
    ),
    (_set("complexity.b.dependencies", "dep1"), 'complexity.b.dependencies is "dep1", expected a list'),
    (_set("complexity.b.dependency_count", 3), "complexity.b.dependency_count is 3, but complexity.b.dependencies lists 1"),
    (_set("complexity.b.surprise", 1), "complexity.b has unknown field(s) surprise"),
    (_set("scenarios.0.durations_s", ["1.0"]), 'scenarios[0].durations_s[0] is "1.0", expected a finite number >= 0'),
    (_set("scenarios.0.durations_s", 1.0), "scenarios[0].durations_s is 1.0, expected a list"),
    (_set("scenarios.0.reason", 3), "scenarios[0].reason is 3, expected a string or null"),
    (_set("scenarios.0.facts", DELETE), "scenarios[0].facts is missing"),
    (
        _set("scenarios.0.measurements.0.better", "faster"),
        'scenarios[0].measurements[0].better is "faster", expected "lower", "higher" or null',
    ),
    (_set("scenarios.0.measurements.0.unit", 1), "scenarios[0].measurements[0].unit is 1, expected a string"),
    (_set("scenarios.0.measurements.0.name", ""), 'scenarios[0].measurements[0].name is "", expected a non-empty string'),
    (_set("scenarios.0.measurements", {}), "scenarios[0].measurements is an object, expected a list"),
    (_set("scenarios.0", "works"), 'scenarios[0] is "works", expected an object'),
    (_set("machine.cpu_model", DELETE), "machine.cpu_model is missing"),
    (_set("machine.memory_total_bytes", "2 GiB"), 'machine.memory_total_bytes is "2 GiB", expected an integer >= 0'),
    (_set("machine.packages", ["websockets"]), "machine.packages is a list, expected an object"),
    (_set("machine.packages.websockets", 17), "machine.packages.websockets is 17, expected a string"),
    (_set("machine.load_avg_1m_at_start", "high"), 'machine.load_avg_1m_at_start is "high", expected a finite number >= 0 or null'),
    (_set("machine.commit", 12345), "machine.commit is 12345, expected a string or null"),
    (_set("machine.dirty", "yes"), 'machine.dirty is "yes", expected true or false or null'),
    (_set("machine", []), "machine is an empty list, expected an object"),
    (_set("started_at", "yesterday"), 'started_at is "yesterday", expected an ISO 8601 time'),
    (_set("run_id", ""), 'run_id is "", expected a non-empty string'),
    (_set("spike.slug", DELETE), "spike.slug is missing"),
    (_set("harness.overhead_fraction", DELETE), "harness.overhead_fraction is missing"),
    (_set("harness.measured_s", "fast"), 'harness.measured_s is "fast", expected a finite number >= 0'),
    # Format 2's own fields.
    (_set("completion", DELETE), "completion is missing"),
    (_set("completion", "done"), 'completion is "done", expected one of "complete", "partial", "interrupted"'),
    (_set("source.dirty", "no"), 'source.dirty is "no", expected true or false'),
    (_set("source.dirty_paths", [3]), "source.dirty_paths[0] is 3, expected a string"),
    (_set("source.allow_dirty", DELETE), "source.allow_dirty is missing"),
    (_set("budget.minutes", "3"), 'budget.minutes is "3", expected a finite number >= 0 or null'),
    (_set("budget.over", None), "budget.over is null, expected true or false"),
    (_set("format_version", "2"), 'format_version is "2", expected an integer'),
    (_set("format_version", 0), "format_version 0 is not supported: this tool reads formats 1 to"),
]


@pytest.mark.parametrize(("mutate", "message"), CORRUPTIONS, ids=[m for _, m in CORRUPTIONS])
def test_every_field_that_is_read_is_checked_and_named(stored, tmp_path, mutate, message):
    run, _ = stored
    data = json.loads(run.path.read_text())
    assert data["format_version"] == FORMAT_VERSION
    bad = _write(tmp_path / "bad.json", mutate(data))
    with pytest.raises(ResultsError) as exc:
        load(bad)
    text = str(exc.value)
    assert text.startswith(f"{bad}: ") and message in text and "\n" not in text


def test_a_newer_format_is_refused_with_a_hint(stored, tmp_path):
    run, _ = stored
    bad = _write(tmp_path / "new.json", {**json.loads(run.path.read_text()), "format_version": FORMAT_VERSION + 1})
    with pytest.raises(ResultsError, match=rf"format_version {FORMAT_VERSION + 1} is not supported.*newer realtime-spikes"):
        load(bad)


# -- format history: a sample of every version loads, upgrades and scores -----------------------------------------------------


def test_there_is_a_committed_sample_of_every_format_version():
    versions = sorted(int(p.stem[1:]) for p in FORMATS.glob("v*.json"))
    assert versions == list(range(1, FORMAT_VERSION + 1))


@pytest.mark.parametrize("sample", sorted(FORMATS.glob("v*.json")), ids=lambda p: p.name)
def test_every_format_sample_loads_upgrades_and_scores(sample):
    version = json.loads(sample.read_text())["format_version"]
    run = load(sample)
    assert run.format_version == FORMAT_VERSION
    assert run.upgraded_from == (None if version == FORMAT_VERSION else version)
    assert run.to_dict()["format_version"] == FORMAT_VERSION and "upgraded_from" not in run.to_dict()
    # The upgraded record is one the current code can score: the spike finds everything it reads, except what a
    # scenario added to the spike after the sample was stored measures (left out as not measured, never a crash).
    spike = discover()[run.spike["number"]]
    decision = decide(spike, run)
    newer = {sc.key for sc in spike.scenarios} - {sr.scenario for sr in run.scenarios}
    assert all(any(f"the {key} step did not run" in why for key in newer) for why in decision.left_out.values()), decision.left_out
    assert decision.options and all(t is not None for t in decision.totals.values())


def test_upgrade_1_to_2_fills_the_format_2_fields_as_agreed():
    v1 = json.loads((FORMATS / "v1.json").read_text())
    run = load(FORMATS / "v1.json")
    assert run.completion == "complete"
    assert run.source == {"commit": v1["machine"]["commit"], "dirty": True, "dirty_paths": [], "allow_dirty": True}
    assert run.budget == {"minutes": 3.0, "over": False}  # Spike 9's full-profile budget; the run took 37 s
    interrupted = {
        **v1,
        "parameters": {**v1["parameters"], "interrupted": True},
        "duration_s": 200.0,
        "machine": {**v1["machine"], "dirty": None},
    }
    up = RunResult.from_dict(interrupted)
    assert up.completion == "interrupted" and up.budget == {"minutes": 3.0, "over": True}
    assert up.source["dirty"] is False and up.source["allow_dirty"] is False
    quick = RunResult.from_dict({**v1, "profile": "quick"})
    assert quick.budget["minutes"] == pytest.approx(table_minutes(9, True))


def test_the_v2_sample_is_the_v1_sample_upgraded():
    up = load(FORMATS / "v1.json").to_dict()
    v2 = load(FORMATS / "v2.json").to_dict()
    assert {**up, "run_id": ""} == {**v2, "run_id": ""}


def test_upgrading_leaves_the_file_and_the_input_alone(tmp_path):
    copy_path = Path(shutil.copy(FORMATS / "v1.json", tmp_path / "old.json"))
    before = copy_path.read_bytes()
    data = json.loads(before)
    snapshot = copy.deepcopy(data)
    load(copy_path)
    RunResult.from_dict(data)
    assert copy_path.read_bytes() == before and data == snapshot


def test_a_v1_file_with_a_bad_field_names_the_field_to_fix_in_that_file(tmp_path):
    data = json.loads((FORMATS / "v1.json").read_text())
    data["machine"]["commit"] = 7  # the upgrade copies it into source.commit; the error names where it is stored
    with pytest.raises(ResultsError, match="machine.commit is 7"):
        load(_write(tmp_path / "old.json", data))


# -- one bad file is reported and skipped -------------------------------------------------------------------------------------


def test_scan_runs_returns_the_good_runs_and_an_error_per_bad_file(stored):
    run, runs_dir = stored
    _write(runs_dir / "broken.json", "{")
    weights = json.loads(run.path.read_text())
    weights["parameters"]["weights"]["Performance"] = "30"
    _write(runs_dir / "weights.json", weights)
    good, errors = scan_runs(runs_dir)
    assert [r.run_id for r in good] == [run.run_id]
    assert sorted(str(e).split(":")[0] for e in errors) == [str(runs_dir / "broken.json"), str(runs_dir / "weights.json")]
    assert all(isinstance(e, ResultsError) for e in errors)
    assert scan_runs(runs_dir / "absent") == ([], [])


def test_the_old_folder_readers_are_gone():
    # scan_runs is the one way to read a folder; latest_runs and iter_runs had no caller left but tests.
    assert not hasattr(results, "latest_runs") and not hasattr(results, "iter_runs")


# -- through the CLI: exit 4, one line, no traceback ------------------------------------------------------------------------


def _cli(*args: str):
    return CliRunner().invoke(cli.app, list(args))


@pytest.fixture
def fake_registry(monkeypatch):
    monkeypatch.setattr(cli, "_spikes", lambda: {42: FakeSpike()})


def _lines_with(output: str, text: str) -> list[str]:
    return [line for line in output.splitlines() if text in line]


def _no_crash(res) -> None:
    """CliRunner never prints a traceback: an uncaught exception is exit 1 with the exception kept in ``res.exception``."""
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)


def test_report_skips_a_bad_file_among_good_ones_with_one_warning_line(stored, fake_registry):
    run, runs_dir = stored
    data = json.loads(run.path.read_text())
    data["complexity"]["a"]["loc"] = "many"
    bad = _write(runs_dir / "zz-corrupt.json", data)
    res = _cli("report", "42", "--out", str(runs_dir.parent))
    # Not fatal: the good run is rendered and the index written; the exit status (4) says a file was bad.
    assert res.exit_code == 4, res.output
    assert "Traceback" not in res.output
    (line,) = _lines_with(res.output, str(bad))
    assert line.startswith("warning: skipped") and 'complexity.a.loc is "many", expected an integer' in line
    assert (runs_dir.parent / "spike-42-fake.md").is_file() and (runs_dir.parent / "README.md").is_file()
    assert str(run.path) in res.output.replace("\n", "")


def test_list_shows_the_good_runs_and_warns_about_a_bad_file(stored, fake_registry):
    run, runs_dir = stored
    _write(runs_dir / "broken.json", '{"format_version": 1, "run_id": 3')
    res = _cli("list", "--out", str(runs_dir.parent))
    assert res.exit_code == 0, res.output
    (line,) = _lines_with(res.output, "broken.json")
    assert line.startswith("warning: skipped") and "not valid JSON" in line
    assert run.started_at[:10] in res.output  # the good run is listed


def test_a_scored_measurement_deleted_is_one_line_exit_4(stored, fake_registry):
    run, runs_dir = stored
    data = json.loads(run.path.read_text())
    for sr in data["scenarios"]:
        if sr["option"] == "a":
            sr["measurements"] = []
    _write(run.path, data)
    res = _cli("report", "42", "--out", str(runs_dir.parent))
    _no_crash(res)
    assert res.exit_code == 4, res.output
    (line,) = _lines_with(res.output, "cannot render spike 42")  # one line naming the file and the cause
    assert line.startswith(f"error: {run.path}: cannot render spike 42") and "has no measurement 'latency'" in line
    assert "cannot score spike 42" in (runs_dir.parent / "README.md").read_text()  # the index is written, the row says why


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_set("parameters.weights.Performance", "30"), 'parameters.weights.Performance is "30", expected an integer'),
        (_set("complexity.json.loc", DELETE), "complexity.json.loc is missing"),
        (_set("scenarios.0.params", []), "scenarios[0].params is an empty list, expected an object"),
        (_set("scenarios.0.facts", [[]]), "scenarios[0].facts[0] is an empty list, expected an object"),
        (_set("parameters.options", DELETE), "parameters.options is missing"),
    ],
    ids=["weight", "loc", "params", "facts", "options"],
)
def test_a_corrupted_copy_of_a_real_run_is_one_line_exit_4(tmp_path, mutate, message):
    (tmp_path / "runs").mkdir()
    bad = _write(tmp_path / "runs" / "s09.json", mutate(json.loads((FORMATS / "v1.json").read_text())))
    # Read directly, the file is a data error: one line, exit 4.
    res = _cli("compare", str(bad), str(FORMATS / "v1.json"))
    assert res.exit_code == 4, res.output
    assert "Traceback" not in res.output and res.output.strip().count("\n") == 0
    assert f"{bad}: {message}" in res.output
    # Among the stored runs, it is named on one warning line and skipped: no empty matrix rendered in its place.
    res = _cli("report", "9", "--out", str(tmp_path))
    _no_crash(res)
    assert res.exit_code == 4, res.output
    (line,) = _lines_with(res.output, str(bad))
    assert message in line
    assert not (tmp_path / "spike-09-message-protocol.md").exists()


def test_a_deleted_measurement_in_a_real_run_is_named_by_report(tmp_path):
    data = json.loads((FORMATS / "v1.json").read_text())
    for sr in data["scenarios"]:
        if sr["scenario"] == "type-safety" and sr["option"] == "json":
            sr["measurements"] = [m for m in sr["measurements"] if m["name"] != "rejected_fraction"]
    (tmp_path / "runs").mkdir()
    bad = _write(tmp_path / "runs" / "s09.json", data)
    res = _cli("report", "9", "--out", str(tmp_path))
    _no_crash(res)
    assert res.exit_code == 4, res.output
    (line,) = _lines_with(res.output, f"{bad}: cannot ")
    assert "spike 9" in line and "scenario 'type-safety', option 'json' has no measurement 'rejected_fraction'" in line


def test_a_run_that_cannot_be_scored_does_not_stop_report_all_or_the_index(tmp_path, monkeypatch):
    # The reviewer's case: a real Spike 9 run that loads but cannot be scored, before a spike whose run is fine.
    monkeypatch.setattr(cli, "_spikes", lambda: {9: discover()[9], 42: FakeSpike()})
    data = json.loads((FORMATS / "v1.json").read_text())
    for sr in data["scenarios"]:
        if sr["scenario"] == "type-safety" and sr["option"] == "json":
            sr["measurements"] = [m for m in sr["measurements"] if m["name"] != "rejected_fraction"]
    (tmp_path / "runs").mkdir()
    bad = _write(tmp_path / "runs" / "s09.json", data)
    good = run_spike(RunPlan(FakeSpike(), scenarios=["works"], repeat=1), tmp_path)
    res = _cli("report", "all", "--out", str(tmp_path))
    _no_crash(res)
    assert res.exit_code == 4, res.output
    (line,) = _lines_with(res.output, f"error: {bad}: cannot ")
    assert (tmp_path / "spike-42-fake.md").is_file() and not (tmp_path / "spike-09-message-protocol.md").exists()
    assert f"spike 42: rendered {tmp_path / 'spike-42-fake.md'}" in res.output.replace("\n", "")
    rows = (tmp_path / "README.md").read_text().splitlines()
    row9 = next(r for r in rows if r.startswith("| 9. "))
    assert "cannot score spike 9" in row9 and "has no measurement 'rejected_fraction'" in row9
    assert "(runs/s09.json)" in row9 and str(tmp_path) not in row9  # the row links the run, by a relative path
    assert good.run_id in next(r for r in rows if r.startswith("| 42. "))
    assert "spike 9: run " in res.output.splitlines()[-1] and "cannot be scored or rendered" in res.output.splitlines()[-1]
