from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from harness import cli, machine
from harness.results import RunResult, save
from tests.harness.fakes import FakeSpike

runner = CliRunner()


@pytest.fixture(autouse=True)
def fake_registry(monkeypatch):
    monkeypatch.setattr(cli, "_spikes", lambda: {42: FakeSpike()})
    real = machine.find_tool
    monkeypatch.setattr(machine, "find_tool", lambda name: None if name == "nginx" else real(name))


def invoke(*args: str):
    return runner.invoke(cli.app, list(args))


def test_help_explains_every_command():
    res = invoke("--help")
    assert res.exit_code == 0
    for cmd in ("list", "run", "report", "compare", "doctor"):
        assert cmd in res.output
    run_help = invoke("run", "--help").output
    assert "--scenario" in run_help and "--quick" in run_help and "--repeat" in run_help


def test_list_shows_registered_spikes(tmp_path):
    res = invoke("list", "--out", str(tmp_path))
    assert res.exit_code == 0 and "Fake Spike" in res.output and "never" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nope"], "unknown spike 'nope'; valid: all, 42 (fake)"),
        (["run", "42", "--scenario", "nope"], "valid: works, crashes, needs-tool, interrupts"),
        (["run", "fake", "--option", "zzz"], "no option 'zzz'; valid: a, b"),
        (["run", "42", "--weight", "Speed=10"], "unknown criterion 'Speed'"),
        (["run", "42", "--weight", "Performance=oops"], "expected CRITERION=PERCENT"),
        (["run", "42", "--weight", "Performance=50"], "weights add up to 120"),
        (["report", "7"], "unknown spike '7'"),
    ],
)
def test_usage_errors_exit_2_and_list_valid_names(tmp_path, args, message):
    res = invoke(*args, "--out", str(tmp_path))
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output


def test_unwritable_out_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    res = invoke("run", "42", "--scenario", "works", "--out", str(blocker / "sub"))
    assert res.exit_code == 4
    assert res.output.strip().count("\n") == 0 and "cannot write to --out" in res.output


def test_run_stores_renders_and_reports_failed_steps(tmp_path):
    res = invoke(
        "run", "42", "--scenario", "works", "--scenario", "crashes", "--scenario", "needs-tool", "--repeat", "1", "--out", str(tmp_path)
    )
    assert res.exit_code == 3, res.output  # a step failed: results stored all the same
    assert len(list((tmp_path / "runs").glob("*.json"))) == 1
    doc = (tmp_path / "spike-42-fake.md").read_text()
    assert "| crashes | a | failed |" in doc and "| needs-tool | a | not run | nginx is not installed" in doc
    assert "Fake Spike" in (tmp_path / "README.md").read_text()
    # report re-renders from JSON, running nothing.
    (tmp_path / "spike-42-fake.md").unlink()
    res = invoke("report", "42", "--out", str(tmp_path))
    assert res.exit_code == 0 and (tmp_path / "spike-42-fake.md").read_text() == doc


def test_malformed_results_file_is_one_line_exit_4(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "broken.json").write_text('{"format_version": 1, "run_id": 3')
    res = invoke("report", "all", "--out", str(tmp_path))
    assert res.exit_code == 4 and "broken.json: not valid JSON" in res.output
    assert "Traceback" not in res.output and res.output.strip().count("\n") == 0


def _stored(tmp_path, name, latency_a):
    res = invoke("run", "42", "--scenario", "works", "--repeat", "1", "--out", str(tmp_path / name))
    assert res.exit_code == 0, res.output
    path = next((tmp_path / name / "runs").glob("*.json"))
    data = json.loads(path.read_text())
    for sr in data["scenarios"]:
        if sr["option"] == "a":
            sr["measurements"][0]["repeats"] = [[latency_a + i * 0.01 for i in range(20)]]
    save(RunResult.from_dict(data), path.parent)
    return path


def test_compare_exits_1_on_a_regression_and_0_otherwise(tmp_path):
    base = _stored(tmp_path, "base", 10.0)
    same = _stored(tmp_path, "same", 10.0)
    slow = _stored(tmp_path, "slow", 15.0)
    ok = invoke("compare", str(base), str(same))
    assert ok.exit_code == 0, ok.output
    assert "2 metrics compared, 0 significant, 0 regression(s)" in ok.output
    bad = invoke("compare", str(base), str(slow))
    assert bad.exit_code == 1 and "1 significant, 1 regression(s)" in bad.output
    assert "1 regression(s) past the 10% threshold" in bad.output


def test_compare_folders_without_a_baseline_says_so(tmp_path):
    _stored(tmp_path, "only", 10.0)
    (tmp_path / "empty").mkdir()
    res = invoke("compare", str(tmp_path / "empty"), str(tmp_path / "only" / "runs"))
    assert res.exit_code == 0 and "no baseline" in res.output


def test_doctor_lists_parts_and_blocked_scenarios():
    res = invoke("doctor")
    assert res.exit_code == 0
    for name in ("redis-server", "postgres", "node", "npm", "chromium", "nginx"):
        assert name in res.output
    assert "42/needs-tool" in res.output


def test_load_refuses_a_remote_server_without_sending():
    res = invoke("load", "ws://192.0.2.1:9/")
    assert res.exit_code == 2


def test_load_drives_a_real_server_and_prints_the_table(capfd):
    from tests.harness.load.servers import reference_server

    with reference_server("ws") as (port, _):
        res = invoke("load", f"ws://127.0.0.1:{port}/", "--connections", "3", "--rate", "20", "--duration", "0.5", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(capfd.readouterr().out or res.output)
    assert out["connected"] == 3 and out["sent"] == out["received"] > 0 and out["lost"] == 0
