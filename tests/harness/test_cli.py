from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from harness import cli, machine
from harness.results import RunResult, save
from tests.harness.fakes import FakeSpike

runner = CliRunner()
#: The real loader (the fixture below replaces it with a fake registry).
LOAD_AND_CHECK = cli._spikes
REGISTERED = cli._registered


@pytest.fixture(autouse=True)
def fake_registry(monkeypatch):
    monkeypatch.setattr(cli, "_spikes", lambda: {42: FakeSpike()})
    monkeypatch.setattr(cli, "_registered", lambda: {42: FakeSpike()})
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
        (["report", "77"], "unknown spike '77'"),
        (["run", "3"], "spike 3 (Canvas Performance Limits) is planned, not implemented yet; implemented: 42"),
        (["report", "s07-error-recovery"], "spike 7 (Error Recovery Patterns) is planned, not implemented yet; implemented: 42"),
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


def test_malformed_results_file_is_one_warning_line_and_skipped(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "broken.json").write_text('{"format_version": 1, "run_id": 3')
    res = invoke("report", "all", "--out", str(tmp_path))
    assert res.exit_code == 4 and "Traceback" not in res.output
    (line,) = [x for x in res.output.splitlines() if "broken.json" in x and "warning" in x]
    assert line.startswith("warning: skipped") and "broken.json: not valid JSON" in line


def _stored(tmp_path, name, latency_a):
    res = invoke("run", "42", "--scenario", "works", "--repeat", "1", "--out", str(tmp_path / name))
    assert res.exit_code == 0, res.output
    path = next((tmp_path / name / "runs").glob("*.json"))
    data = json.loads(path.read_text())
    for sr in data["scenarios"]:
        if sr["option"] == "a":
            sr["measurements"][0]["repeats"] = [
                [latency_a + k * 0.001 + i * 0.01 for i in range(20)] for k in range(5)
            ]  # 5 repeats: enough for a test
    save(RunResult.from_dict(data), path.parent)
    return path


def test_compare_exits_1_on_a_regression_and_0_otherwise(tmp_path):
    base = _stored(tmp_path, "base", 10.0)
    same = _stored(tmp_path, "same", 10.0)
    slow = _stored(tmp_path, "slow", 15.0)
    ok = invoke("compare", str(base), str(same))
    assert ok.exit_code == 0, ok.output
    assert "2 metrics compared, 0 missing" in ok.output and "0 significant: 0 regression(s)" in ok.output
    bad = invoke("compare", str(base), str(slow))
    assert bad.exit_code == 1 and "1 significant: 1 regression(s)" in bad.output
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
    assert_one_line_error(res, 2, "refusing to send load to 192.0.2.1", "--allow-remote")
    assert "allow_remote" not in res.output and "usage:" not in res.output


@pytest.mark.slow  # starts a real server
def test_load_drives_a_real_server_and_prints_the_table(capfd):
    from tests.harness.load.servers import reference_server

    with reference_server("ws") as (port, _):
        res = invoke("load", f"ws://127.0.0.1:{port}/", "--connections", "3", "--rate", "20", "--duration", "0.5", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(capfd.readouterr().out or res.output)
    assert out["connected"] == 3 and out["sent"] == out["received"] > 0 and out["lost"] == 0


def test_load_an_unknown_option_is_one_line_exit_2():
    res = invoke("load", "ws://127.0.0.1:9/", "--conections", "3")
    assert_one_line_error(res, 2, "No such option: --conections", "`spike load --help` lists every option")
    assert res.output.startswith("spike load: error: ") and "Usage" not in res.output


@pytest.mark.slow  # starts a real server
def test_load_messages_a_stalled_server_never_answers_are_lost_exit_3(capfd):
    from tests.harness.load.servers import reference_server
    from tests.utils import UNIT

    # The server blocks for longer than the run plus its grace at the 5th message: the rest are never answered.
    with reference_server("ws", "--stall-after", "5", "--stall-ms", str(int(3000 * UNIT))) as (port, _):
        res = invoke("load", f"ws://127.0.0.1:{port}/", "-c", "1", "-r", "20", "-d", str(0.5 * UNIT), "--grace", "0", "--json")
    assert res.exit_code == 3, res.output
    printed = capfd.readouterr().out or res.output
    out = json.loads(printed[printed.index("{") : printed.rindex("}") + 1])  # the JSON, whichever line came first
    assert out["lost"] > 0
    assert f"spike load: error: {out['lost']} of {out['expected']} expected message(s) lost" in res.output


# -- bad inputs answer in one line; doctor and locust against the real registry -------------------------


def assert_one_line_error(res, code: int, *needles: str) -> str:
    """The command failed as a user error: the exit status asked, one line naming the problem, no traceback."""
    assert res.exit_code == code, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def real_registry(monkeypatch):
    """Undo the fake registry: the spikes installed through entry points, real program lookup, a wide console."""
    from rich.console import Console

    monkeypatch.setattr(cli, "_spikes", LOAD_AND_CHECK)
    monkeypatch.setattr(cli, "_registered", REGISTERED)
    monkeypatch.setattr(machine, "find_tool", REAL_FIND_TOOL)
    monkeypatch.setattr(cli, "console", Console(width=400, highlight=False))  # table cells not folded mid-name
    spikes = cli.discover()
    assert spikes, "no spike is registered: is the package installed (pip install -e .)?"
    return spikes


REAL_FIND_TOOL = machine.find_tool


def test_a_planned_spike_is_named_as_planned_against_the_real_registry(real_registry, monkeypatch):
    from harness.budget import seed_spikes

    # Every spike of the seed is implemented now: one is taken out of the real registry to stand for a planned one.
    n = max(real_registry)
    assert n in seed_spikes()
    rest = {k: v for k, v in real_registry.items() if k != n}
    monkeypatch.setattr(cli, "_spikes", lambda: rest)
    implemented = ", ".join(str(k) for k in sorted(rest))
    for which in (str(n), f"{n:02d}", seed_spikes()[n].slug):
        res = invoke("run", which)
        assert_one_line_error(res, 2, f"spike {n} ({seed_spikes()[n].title}) is planned, not implemented yet; implemented: {implemented}")


def test_doctor_lists_every_program_the_real_spikes_declare(real_registry):
    declared = {(r, f"{n}/{sc.key}") for n, s in real_registry.items() for sc in s.scenarios for r in sc.requires}
    res = invoke("doctor")
    assert res.exit_code == 0, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    for program in machine.EXTERNAL_TOOLS:
        assert program in res.output
    lines = res.output.splitlines()
    for program, scenario in declared:
        at = next(i for i, line in enumerate(lines) if f" {program} " in line)
        # A long cell wraps: the row goes on over the lines whose first cell is blank.
        row = [lines[at]]
        for line in lines[at + 1 :]:
            if not re.match(r"^│\s+│", line):
                break
            row.append(line)
        assert scenario in " ".join(row), row
    missing = sorted(sc for program, sc in declared if REAL_FIND_TOOL(program) is None)
    if missing:
        assert "would not run" in res.output and all(sc in res.output for sc in missing)
    else:
        assert "every registered scenario has what it needs" in res.output


def test_doctor_names_a_requirement_it_cannot_look_up(monkeypatch):
    import dataclasses

    from tests.harness.fakes import FakeSpike

    class NeedsWarp(FakeSpike):
        scenarios = (*FakeSpike.scenarios, dataclasses.replace(FakeSpike.scenarios[0], key="warp", requires=("warp-drive",)))

    monkeypatch.setattr(cli, "_registered", lambda: {42: NeedsWarp()})
    res = invoke("doctor")
    assert res.exit_code == 4 and "Traceback" not in res.output
    assert "42/warp require(s) 'warp-drive', which harness/machine.py EXTERNAL_TOOLS does not describe" in res.output.splitlines()[-1]
    # Running it is refused when the spikes are loaded, naming the spike, before anything starts (it was a KeyError mid-run).
    monkeypatch.setattr(cli, "_spikes", LOAD_AND_CHECK)
    for args in (("run", "42", "--quick"), ("list",)):
        res = invoke(*args)
        assert res.exit_code == 4 and "Traceback" not in res.output, res.output
        assert "spike 42 (fake), scenario 'warp': requires 'warp-drive', a program the harness does not describe" in " ".join(
            res.output.split()
        )


def test_locust_prints_master_and_worker_commands_for_each_real_locust_scenario(real_registry):
    with_locust = {n: s for n, s in real_registry.items() if hasattr(s, "locust_plan")}
    assert 6 in with_locust, "spike 6 (scalability) offers Locust users"
    spike = with_locust[6]
    scenarios = []
    for sc in spike.scenarios:
        try:
            scenarios.append((sc.key, spike.locust_plan(sc.key)))
        except ValueError:
            continue
    assert {"many-idle", "few-busy", "burst"} <= {key for key, _ in scenarios}
    for key, plan in scenarios:
        res = invoke("locust", "6", "--scenario", key, "--host", "ws://10.0.0.5:8000", "--workers", "3")
        assert res.exit_code == 0, res.output
        master = next(line for line in res.output.splitlines() if "--master " in line)
        assert f" -u {plan.users} " in master and "--expect-workers 3" in master and "--host ws://10.0.0.5:8000" in master
        assert any("--worker " in line and "--master-host" in line for line in res.output.splitlines())
        assert f"Scenario {key}:" in res.output


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["all", "--scenario", "burst"], ("spike locust takes one spike, not 'all'", "spikes with Locust users: 6 (scalability)")),
        (["6", "--scenario", "nope"], ("spike 6 has no scenario 'nope'", "scenarios with Locust users: many-idle, few-busy, burst")),
        (["6", "--scenario", "generator-idle"], ("spike 6: scenario 'generator-idle' has no Locust form", "many-idle, few-busy, burst")),
        (["1", "--scenario", "echo"], ("spike 1 has no Locust users; spikes with them: 6 (scalability)",)),
        (["6", "--scenario", "burst", "--transport", "sse"], ("--transport 'sse': expected ws or socketio",)),
        (["6", "--scenario", "burst", "--host", "ws://10.0.0.5:99999"], ("--host 'ws://10.0.0.5:99999'",)),
        (["6", "--scenario", "burst", "--host", "10.0.0.5:8000"], ("--host '10.0.0.5:8000': expected a URL such as ws://",)),
        (["77", "--scenario", "burst"], ("unknown spike '77'",)),
    ],
)
def test_locust_bad_inputs_are_one_line_usage_errors(real_registry, args, needles):
    assert_one_line_error(invoke("locust", *args), 2, *needles)
