from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness import cli
from harness.compare import compare_runs, history
from harness.results import RunResult, load, save
from tests.harness.fakes import FakeSpike

runner = CliRunner()


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict[str, Any]:
    """A stored run of the fake spike in the current results format; the tests edit copies of it."""
    out = tmp_path_factory.mktemp("template")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "_spikes", lambda: {42: FakeSpike()})
        res = runner.invoke(cli.app, ["run", "42", "--scenario", "works", "--repeat", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return json.loads(next((out / "runs").glob("*.json")).read_text())


def _levels(centers: list[float], n: int = 20, spread: float = 0.01, seed: int = 0) -> list[list[float]]:
    rng = random.Random(seed)
    return [[c * (1 + rng.uniform(-spread, spread)) for _ in range(n)] for c in centers]


def make_run(
    template: dict[str, Any],
    folder: Path,
    n: int,
    metrics: dict[str, list[list[float]]],
    *,
    status: dict[str, str] | None = None,
    drop_step: str | None = None,
    machine: dict[str, Any] | None = None,
    completion: str = "complete",
    profile: str = "full",
    tags: dict[str, str] | None = None,
) -> Path:
    """Run number n of the fake spike (n hours into 2026): step works/a holds ``metrics`` (ms, lower is better), works/b a byte count."""
    d = copy.deepcopy(template)
    t = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=n)
    d["run_id"] = f"{t:%Y%m%dT%H%M%SZ}-s42-fake-{profile}-{n:04d}"
    d["started_at"] = d["finished_at"] = t.isoformat()
    d["profile"] = profile
    if "completion" in d:
        d["completion"] = completion
    d["parameters"]["interrupted"] = completion == "interrupted"
    d["machine"].update(machine or {})
    steps = []
    for sr in d["scenarios"]:
        if sr["option"] == "a":
            sr["measurements"] = [
                {"name": name, "unit": "ms", "tags": tags or {"size": "1"}, "better": "lower", "repeats": reps}
                for name, reps in metrics.items()
            ]
        else:
            sr["measurements"] = [{"name": "bundle", "unit": "bytes", "tags": {}, "better": "lower", "repeats": [[843.0]]}]
        key = f"{sr['scenario']}/{sr['option']}"
        if key == drop_step:
            continue
        if status and key in status:
            sr["status"], sr["reason"], sr["measurements"] = status[key], f"{status[key]} on purpose\nsecond line", []
        steps.append(sr)
    d["scenarios"] = steps
    folder.mkdir(parents=True, exist_ok=True)
    return save(RunResult.from_dict(d), folder)


def invoke(*args: str):
    return runner.invoke(cli.app, list(args))


def test_within_repeat_noise_is_not_a_regression_however_many_samples(template, tmp_path):
    # 1,500 samples a repeat, each repeat at its own level: pooled, the new run looks 2% slower with p << 0.05.
    base = make_run(template, tmp_path, 1, {"latency": _levels([100, 103, 98, 101, 97], n=1500, spread=0.3, seed=1)})
    new = make_run(template, tmp_path, 2, {"latency": _levels([102, 99, 104, 100, 103], n=1500, spread=0.3, seed=2)})
    res = invoke("compare", str(base), str(new), "--min-effect", "0")
    assert res.exit_code == 0, res.output
    assert "0 significant: 0 regression(s)" in res.output and "2 metrics compared, 0 missing" in res.output


def test_a_change_all_repeats_show_is_a_regression(template, tmp_path):
    base = make_run(template, tmp_path, 1, {"latency": _levels([100, 101, 99, 100, 102])})
    new = make_run(template, tmp_path, 2, {"latency": _levels([130, 131, 129, 130, 132])})
    res = invoke("compare", str(base), str(new))
    assert res.exit_code == 1, res.output
    assert "REGRESSION (p 0.0079)" in res.output and "1 regression(s) past the 10% threshold" in res.output


def test_three_repeats_apart_are_likely_not_a_failure(template, tmp_path):
    base = make_run(template, tmp_path, 1, {"latency": _levels([100, 101, 99]), "other": _levels([50, 52, 48])})
    new = make_run(template, tmp_path, 2, {"latency": _levels([130, 131, 129]), "other": _levels([60, 47, 58])})
    res = invoke("compare", str(base), str(new))
    assert res.exit_code == 0, res.output
    assert "1 likely (1 worse), 1 too few repeats" in res.output and "likely worse" in res.output
    assert "too few repeats (3 vs 3): no test can reach p < 0.05" in res.output
    assert "other [size=1]" not in res.output  # undecided rows are hidden by default...
    every = invoke("compare", str(base), str(new), "--all")
    assert "other [size=1]" in every.output and "bundle" in every.output  # ...and shown with --all
    assert invoke("compare", str(base), str(new), "--only-changed").exit_code == 0  # the old flag still works
    assert all(len(line) <= 80 for line in every.output.splitlines())


@pytest.mark.parametrize("state", ["failed", "not_run", "interrupted"])
def test_a_step_ok_in_the_base_and_not_ok_now_fails_compare(template, tmp_path, state):
    base = make_run(template, tmp_path, 1, {"latency": [[10.0]]})
    new = make_run(template, tmp_path, 2, {"latency": [[10.0]]}, status={"works/b": state})
    res = invoke("compare", str(base), str(new))
    assert res.exit_code == cli.EXIT_MISSING == 5, res.output
    words = state.replace("_", " ")
    text = " ".join(res.output.split())  # long lines are wrapped at 80 columns
    assert f"MISSING works/b: ran ok in the base, {words} in the new run: {state} on purpose" in text
    assert "second line" not in res.output and "1 step(s) or metric(s) missing" in res.output


def test_an_absent_step_and_a_vanished_metric_are_one_line_each(template, tmp_path):
    base = make_run(template, tmp_path, 1, {"latency": [[10.0]], "gone": [[1.0]], "gone_too": [[2.0]]})
    new = make_run(template, tmp_path, 2, {"latency": [[10.0]]}, drop_step="works/b")
    res = invoke("compare", str(base), str(new))
    assert res.exit_code == 5, res.output
    missing = [line for line in res.output.splitlines() if line.startswith("  MISSING ")]
    assert missing == [
        "  MISSING works/a: gone [size=1] was measured in the base and is absent from the",
        "  MISSING works/a: gone_too [size=1] was measured in the base and is absent from",
        "  MISSING works/b: ran ok in the base, absent from the new run",
    ]
    assert "3 missing" in res.output


def test_a_partial_new_run_is_not_missing_what_it_was_not_asked_for(template, tmp_path):
    base = make_run(template, tmp_path, 1, {"latency": [[10.0]]})
    new = make_run(template, tmp_path, 2, {"latency": [[10.0]]}, drop_step="works/b", completion="partial")
    res = invoke("compare", str(base), str(new))
    assert res.exit_code == 0, res.output
    assert "1 step(s) of the base are not in the new run, a partial run" in res.output


def test_missing_wins_over_a_regression(template, tmp_path):
    base = make_run(template, tmp_path, 1, {"latency": [[512.0], [512.0]]})
    new = make_run(template, tmp_path, 2, {"latency": [[600.0], [600.0]]}, status={"works/b": "failed"})
    res = invoke("compare", str(base), str(new))
    assert res.exit_code == 5 and "1 regression(s) past" in res.output and "MISSING works/b" in res.output


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ([[10.5]], [[12.5]]),  # a lone fraction
        ([[10.0]], [[12.0]]),  # a lone whole number: RSS bytes of a one-repeat scenario, or a count of lost messages
        ([[10.0], [10.0]], [[12.0]]),  # seen twice in the base, once in the new run
    ],
)
def test_a_single_value_on_either_side_is_too_few_repeats(template, tmp_path, before, after):
    base = make_run(template, tmp_path, 1, {"latency": before})
    new = make_run(template, tmp_path, 2, {"latency": after})
    res = invoke("compare", str(base), str(new), "--all")
    assert res.exit_code == 0, res.output
    assert "1 too few repeats" in res.output and "REGRESSION" not in res.output


def test_a_value_identical_in_every_repeat_is_exact(template, tmp_path):
    counted = make_run(template, tmp_path, 3, {"latency": [[10.0], [10.0]]})
    more = make_run(template, tmp_path, 4, {"latency": [[12.0], [12.0], [12.0]]})
    res = invoke("compare", str(counted), str(more))
    assert res.exit_code == 1 and "REGRESSION (exact)" in res.output


def test_a_machine_change_yields_no_verdict_unless_asked(template, tmp_path):
    base = make_run(template, tmp_path, 1, {"latency": _levels([100, 101, 99, 100, 102])})
    new = make_run(
        template, tmp_path, 2, {"latency": _levels([130, 131, 129, 130, 132])}, machine={"cpu_model": "Other CPU", "cpu_count_logical": 8}
    )
    res = invoke("compare", str(base), str(new))
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())  # long lines are wrapped at 80 columns
    assert "no regression verdict: the runs come from different machines" in text
    assert f"cpu_model: {template['machine']['cpu_model']} -> Other CPU" in text
    assert f"cpu_count_logical: {template['machine']['cpu_count_logical']} -> 8" in text
    assert "--across-machines" in text and "0 regression(s), 1 withheld (no verdict)" in text
    js = invoke("compare", str(base), str(new), "--format", "json")
    (c,) = json.loads(js.output[: js.output.rindex("}") + 1])["comparisons"]
    assert js.exit_code == 0 and c["summary"]["regressions"] == 0 and c["summary"]["regressions_withheld"] == 1
    judged = invoke("compare", str(base), str(new), "--across-machines")
    assert judged.exit_code == 1 and "judged anyway" in judged.output
    js = invoke("compare", str(base), str(new), "--across-machines", "--format", "json")
    (c,) = json.loads(js.output[: js.output.rindex("}") + 1])["comparisons"]
    assert c["summary"]["regressions"] == 1 and c["summary"]["regressions_withheld"] == 0


def test_different_profiles_are_never_judged(template, tmp_path):
    base = make_run(template, tmp_path, 1, {"latency": [[512.0], [512.0]]})
    new = make_run(template, tmp_path, 2, {"latency": [[600.0], [600.0]]}, profile="quick")
    res = invoke("compare", str(base), str(new), "--across-machines")
    assert res.exit_code == 0 and "different profiles (full -> quick)" in res.output and "1 withheld (no verdict)" in res.output


def test_metrics_whose_tags_carry_the_scale_are_not_missing_across_profiles(template, tmp_path):
    base = make_run(template, tmp_path, 1, {"latency": [[512.0], [512.0]]}, tags={"connections": "500"})
    new = make_run(template, tmp_path, 2, {"latency": [[60.0], [60.0]]}, tags={"connections": "50"}, profile="quick")
    res = invoke("compare", str(base), str(new))
    text = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert "MISSING" not in text and "0 missing" in text
    assert "1 metric(s) of the base are not in the new run: not counted as missing, since the profiles differ" in text
    same_profile = make_run(template, tmp_path, 3, {"latency": [[60.0], [60.0]]}, tags={"connections": "50"})
    assert invoke("compare", str(base), str(same_profile)).exit_code == 5  # within one profile it is missing


def test_markdown_and_json_formats(template, tmp_path):
    base = make_run(template, tmp_path, 1, {"latency": [[512.0], [512.0]]})
    new = make_run(template, tmp_path, 2, {"latency": [[600.0], [600.0]]}, status={"works/b": "failed"})
    md = invoke("compare", str(base), str(new), "--format", "markdown")
    assert md.exit_code == 5 and "| Scenario | Option | Metric |" in md.output and "- **missing**: works/b" in md.output
    js = invoke("compare", str(base), str(new), "--format", "json")
    data = json.loads(js.output[: js.output.rindex("}") + 1])
    (c,) = data["comparisons"]
    assert c["summary"]["regressions"] == 1 and c["summary"]["missing"] == 1
    assert c["rows"][0]["verdict"] == "REGRESSION" and c["rows"][0]["evidence"] == "exact"
    assert c["problems"][0]["kind"] == "failed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alpha", "0"], "--alpha 0.0: expected a number between 0 and 1"),
        (["--alpha", "1"], "--alpha 1.0: expected a number between 0 and 1"),
        (["--alpha", "nan"], "--alpha nan"),
        (["--alpha", "-0.5"], "--alpha -0.5"),
        (["--threshold", "-0.1"], "--threshold -0.1: expected a finite relative change >= 0"),
        (["--threshold", "inf"], "--threshold inf"),
        (["--threshold", "nan"], "--threshold nan"),
        (["--min-effect", "-1"], "--min-effect -1.0"),
        (["--format", "xml"], "--format 'xml': expected text, markdown or json"),
    ],
)
def test_bad_option_values_are_one_line_usage_errors(template, tmp_path, args, message):
    base = make_run(template, tmp_path, 1, {"latency": [[10.0]]})
    res = invoke("compare", str(base), str(base), *args)
    assert res.exit_code == 2, res.output
    assert message in res.output and res.output.strip().count("\n") == 0 and "Traceback" not in res.output


def test_history_and_two_runs_are_exclusive(template, tmp_path):
    base = make_run(template, tmp_path, 1, {"latency": [[10.0]]})
    assert invoke("compare", str(base), str(base), "--history", str(tmp_path)).exit_code == 2
    res = invoke("compare")
    assert res.exit_code == 2 and "give BASE and NEW" in res.output


def _series(template, folder, levels, *, repeats=3, seed=0, **kw) -> list[Path]:
    rng = random.Random(seed)
    paths = []
    for i, level in enumerate(levels, start=1):
        run_level = level * (1 + rng.uniform(-0.03, 0.03))
        centers = [run_level * (1 + rng.uniform(-0.01, 0.01)) for _ in range(repeats)]
        paths.append(make_run(template, folder, i, {"latency": _levels(centers, seed=rng.randrange(1 << 30))}, **kw))
    return paths


def test_history_finds_a_planted_step_at_the_right_run(template, tmp_path):
    paths = _series(template, tmp_path / "runs", [100] * 5 + [150] * 3)
    res = invoke("compare", "--history", str(tmp_path / "runs"))
    assert res.exit_code == 0, res.output  # the step is old: the newest run is no worse than the ones before it
    step_run = load(paths[5]).run_id
    assert f"steps at run {step_run}\n" in res.output and "worse (p " in res.output
    assert "8 runs: 1 step(s), 0 in the newest run, 0 regression(s)" in res.output


def test_history_fails_on_a_step_in_the_newest_run(template, tmp_path):
    paths = _series(template, tmp_path / "runs", [100] * 6 + [140])
    res = invoke("compare", "--history", str(tmp_path / "runs"))
    assert res.exit_code == 1, res.output
    assert f"steps at run {load(paths[-1]).run_id} (newest)" in res.output and "REGRESSION" in res.output
    assert "1 step regression(s) in the newest run" in res.output
    js = invoke("compare", "--history", str(tmp_path / "runs"), "--format", "json")
    (h,) = json.loads(js.output[: js.output.rindex("}") + 1])["histories"]
    assert h["regressions"] == 1 and h["steps"][0]["run"] == load(paths[-1]).run_id and h["steps"][0]["newest"]


def test_history_too_short_gives_no_verdict(template, tmp_path):
    _series(template, tmp_path / "runs", [100] * 3 + [200])
    # Runs that do not count: a quick one, a partial one and an interrupted one.
    make_run(template, tmp_path / "runs", 10, {"latency": [[300.0]]}, profile="quick")
    make_run(template, tmp_path / "runs", 11, {"latency": [[300.0]]}, completion="partial")
    make_run(template, tmp_path / "runs", 12, {"latency": [[300.0]]}, completion="interrupted")
    res = invoke("compare", "--history", str(tmp_path / "runs"))
    assert res.exit_code == 0, res.output
    assert "history too short: 4 comparable run(s), need 5; no verdict" in res.output
    assert "1 interrupted, 1 partial, 1 quick profile" in res.output


def test_history_on_a_new_machine_starts_over(template, tmp_path):
    _series(template, tmp_path / "runs", [100] * 6)
    make_run(template, tmp_path / "runs", 9, {"latency": _levels([200, 201, 199])}, machine={"cpu_model": "Other CPU"})
    res = invoke("compare", "--history", str(tmp_path / "runs"))
    assert res.exit_code == 0, res.output
    assert "6 other machine" in res.output and "history too short: 1 comparable run(s)" in res.output
    runs = [load(p) for p in sorted((tmp_path / "runs").glob("*.json"))]
    (h,) = history(runs, across_machines=True)
    assert len(h.runs) == 7 and h.regressions  # asked for: the machine change itself is the step


def test_compare_runs_reports_new_metrics_and_code_changes(template, tmp_path):
    base = load(make_run(template, tmp_path, 1, {"latency": [[10.0]]}))
    new = load(make_run(template, tmp_path, 2, {"latency": [[10.0]], "fresh": [[3.0]]}))
    new.spike["source_hash"] = "changed"
    rc = compare_runs(base, new)
    assert not rc.problems and rc.withheld is None
    assert "1 metric(s) only in the new run: no baseline" in rc.notes and any("code changed" in n for n in rc.notes)


def _corrupt(folder: Path) -> None:
    (folder / "20260101T230000Z-s42-fake-full-9999.json").write_text("{ not json")


@pytest.mark.parametrize(
    ("new_latency", "status", "code"),
    [
        ([[100.0], [100.0]], None, 4),  # nothing else wrong: the skipped file is the finding
        ([[130.0], [130.0]], None, 1),  # a regression outranks it
        ([[130.0], [130.0]], {"works/b": "failed"}, 5),  # and a missing step outranks both
    ],
)
def test_an_unreadable_file_in_a_compared_folder_exits_4_unless_worse(template, tmp_path, new_latency, status, code):
    make_run(template, tmp_path / "base", 1, {"latency": [[100.0], [100.0]]})
    make_run(template, tmp_path / "new", 2, {"latency": new_latency}, status=status)
    _corrupt(tmp_path / "new")
    res = invoke("compare", str(tmp_path / "base"), str(tmp_path / "new"))
    assert res.exit_code == code, res.output
    assert "warning: skipped" in res.output and "9999.json: not valid JSON" in " ".join(res.output.split())
    assert "Spike 42" in res.output  # the normal output is still printed
    assert ("1 results file(s) skipped as unreadable" in res.output) == (code == 4)


def test_an_unreadable_file_with_no_baseline_or_in_the_history_exits_4(template, tmp_path):
    make_run(template, tmp_path / "new", 2, {"latency": [[100.0], [100.0]]})
    (tmp_path / "base").mkdir()
    _corrupt(tmp_path / "base")
    res = invoke("compare", str(tmp_path / "base"), str(tmp_path / "new"))
    assert res.exit_code == 4 and "no baseline" in res.output, res.output
    _series(template, tmp_path / "runs", [100] * 6)
    assert invoke("compare", "--history", str(tmp_path / "runs")).exit_code == 0
    _corrupt(tmp_path / "runs")
    res = invoke("compare", "--history", str(tmp_path / "runs"))
    assert res.exit_code == 4 and "6 runs: 0 step(s)" in res.output, res.output
    _series(template, tmp_path / "runs", [100] * 6 + [140])
    assert invoke("compare", "--history", str(tmp_path / "runs")).exit_code == 1  # a regression outranks it


@pytest.mark.parametrize("n_runs", [30, 60])
def test_history_finds_a_step_at_the_newest_run_however_long_the_series(template, tmp_path, n_runs):
    paths = _series(template, tmp_path / "runs", [100] * (n_runs - 1) + [150])
    res = invoke("compare", "--history", str(tmp_path / "runs"))
    assert res.exit_code == 1, res.output
    assert f"steps at run {load(paths[-1]).run_id} (newest)" in res.output and "REGRESSION" in res.output
    js = invoke("compare", "--history", str(tmp_path / "runs"), "--format", "json")
    (h,) = json.loads(js.output[: js.output.rindex("}") + 1])["histories"]
    assert h["regressions"] == 1 and h["blind_metrics"] == ["works/b bundle"]  # one value a run: said, not hidden


def test_history_with_two_repeats_a_run_says_it_cannot_see_the_newest_run(template, tmp_path):
    _series(template, tmp_path / "runs", [100] * 29 + [150], repeats=2)
    res = invoke("compare", "--history", str(tmp_path / "runs"))
    text = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert "2 metric(s) have too few repeats per run to show a step at the newest run" in text
    assert "10 values before against 2: smallest p 0.03, need below 0.005" in text
    js = invoke("compare", "--history", str(tmp_path / "runs"), "--format", "json")
    (h,) = json.loads(js.output[: js.output.rindex("}") + 1])["histories"]
    assert h["blind"] == 2 and h["blind_metrics"] == ["works/a latency [size=1]", "works/b bundle"]


def test_the_newest_run_is_not_judged_on_fewer_than_5_runs_since_an_older_step(template, tmp_path):
    # A step at run 7, then 3 runs at the new level and a newest run 30% worse: 4 runs since the step.
    # (The first step is large so that the wobble rule lets both be found; see find_steps.)
    paths = _series(template, tmp_path / "runs", [100] * 6 + [2000] * 3 + [2600])
    res = invoke("compare", "--history", str(tmp_path / "runs"))
    text = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    step_run = load(paths[6]).run_id
    assert f"history too short since the step at {step_run} (4 run(s) from it to the newest, need 5)" in text
    assert "no verdict on the newest run for 1 metric(s)" in text and "REGRESSION" not in text
    # One more run at the new level before the newest: 5 runs since the step, and the verdict is given.
    more = tmp_path / "more"
    paths = _series(template, more, [100] * 6 + [2000] * 4 + [2600])
    res = invoke("compare", "--history", str(more))
    assert res.exit_code == 1 and f"steps at run {load(paths[-1]).run_id} (newest)" in res.output, res.output
