from __future__ import annotations

import json
import os

import pytest

from harness import results
from harness.results import FORMAT_VERSION, ResultsError, RunResult, load, save
from harness.runner import RunPlan, run_spike
from tests.harness.fakes import FakeSpike


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
    assert back.spike["source_hash"] and back.format_version == FORMAT_VERSION


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
        (lambda d: {k: v for k, v in d.items() if k != "machine"}, "missing field 'machine'"),
        (lambda d: {**d, "surprise": 1}, "unknown field"),
        (lambda d: {**d, "profile": "medium"}, "profile 'medium'"),
        (lambda d: {**d, "duration_s": "long"}, "field 'duration_s' is str"),
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


def test_latest_runs_picks_the_newest_per_spike(tmp_path):
    first = run_spike(RunPlan(FakeSpike(), scenarios=["works"], repeat=1), tmp_path)
    data = first.to_dict()
    data["run_id"] = "zzz-later"
    data["started_at"] = "2999-01-01T00:00:00+00:00"
    later = RunResult.from_dict(data)
    save(later, tmp_path / "runs")
    assert results.latest_runs(tmp_path / "runs")[42].run_id == "zzz-later"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: {**d, "spike": {**d["spike"], "number": "nine"}}, "spike.number is 'nine'"),
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
