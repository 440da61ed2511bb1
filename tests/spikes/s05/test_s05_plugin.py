"""Spike 5's plugin: scores, matrix and document from a stored run, and a real (small) run end to end."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.report.render import decide, render_spike
from harness.results import RunResult, load
from spikes.s05_auth import WEIGHTS, scenarios, spike
from tests.spikes import handcheck as h
from tests.spikes.s05.conftest import require

STORED = Path(__file__).parent / "data" / "quick-run.json"
runner = CliRunner()


@pytest.fixture
def stored_run() -> RunResult:
    return load(STORED)


def test_weights_add_up_and_include_security():
    assert sum(WEIGHTS.values()) == 100 and "Security" in WEIGHTS
    spike.validate()


def test_criteria_and_the_gate_match_hand_computed_values_from_the_stored_run(stored_run):
    data = h.load_json(STORED)
    d = decide(spike, stored_run)
    for o in stored_run.options:
        res = spike.results(stored_run, o, "recommended")
        outcomes = [r["outcome"] for r in res.values() if r["outcome"] != "not-applicable"]
        outcomes += [f["replay_on_other_instance"]["outcome"] for f in stored_run.ok("revocation", o).facts[:1]]
        blocked = outcomes.count("blocked")
        closed = h.repeats(data, "revocation", o, "closed_after_logout")
        revoke = h.value(data, "revocation", o, "revocation_ms") if all(x for r in closed for x in r) else None
        expected = {
            "Security": h.lin(blocked / len(outcomes), 1.0, 0.5),
            "Performance": (
                h.logu(h.value(data, "cost", o, "handshake_ms"), 5, 100) + h.logu(h.value(data, "cost", o, "connections_per_s"), 1000, 50)
            )
            / 2,
            "Maintenance": 0.0 if revoke is None else h.lin(revoke, 1000, 8000),
            "Scalability": h.logu(h.value(data, "cost", o, "memory_per_connection_bytes"), 10 * 1024, 100 * 1024),
            "Cost": (
                h.money_score(
                    h.money(
                        h.value(data, "cost", o, "closed_server_cpu") / h.value(data, "cost", o, "connections_per_s") / 3600,
                        h.value(data, "cost", o, "memory_per_connection_bytes"),
                        0.0,
                        1,
                        redis=h.value(data, "cost", o, "store_commands_per_connection") > 0,
                    )
                )
                + h.lin(h.value(data, "cost", o, "store_commands_per_connection"), 0, 10)
            )
            / 2,
            "Complexity": h.complexity(data, o),
        }
        for crit, v in expected.items():
            assert d.cells[o][crit].score == pytest.approx(v), (o, crit)
        assert d.gates[o][0].status == ("pass" if blocked == len(outcomes) else "fail")
    # The seed's weights are shown beside the spike's own (Security weighs 0 there).
    assert [s.label for s in d.sensitivities] == ["this spike's weights", "the seed's weights"]
    assert "Security" not in d.sensitivities[1].weights


def test_an_attack_getting_through_lowers_security_and_drops_the_option_from_the_settings(stored_run, tmp_path):
    data = stored_run.to_dict()
    sr = next(s for s in data["scenarios"] if s["scenario"] == "attacks" and s["option"] == "sessions")
    before = decide(spike, stored_run).cells["sessions"]["Security"].score
    facts = copy.deepcopy(sr["facts"])
    flood = next(r for r in facts[-1]["recommended"]["results"] if r["attack"] == "flood")
    flood["outcome"] = "got-through"
    sr["facts"] = facts
    changed = RunResult.from_dict(data)
    after = decide(spike, changed)
    assert after.cells["sessions"]["Security"].score < before and "sessions" in after.blocked
    assert after.gate_cell("sessions").startswith("fails: no attack through, 1 attack through")
    content = spike.report(changed)
    tables = [t for t in content.tables if t.title.startswith("Settings of the options")]
    assert not any(row[0] == "Session management (Redis)" for t in tables for row in t.rows)
    if not tables:  # no option left that blocked everything: the document says so instead of recommending settings
        assert any("No option's recommended settings blocked every attack" in n for n in content.notes)


def test_a_missing_scenario_is_not_measured_and_left_out_not_invented(stored_run):
    data = stored_run.to_dict()
    data["scenarios"] = [s for s in data["scenarios"] if not (s["scenario"] == "revocation" and s["option"] == "cookie")]
    d = decide(spike, RunResult.from_dict(data))
    assert d.cells["cookie"]["Maintenance"].score is None and "Maintenance" in d.left_out and "Maintenance" not in d.used


def test_document_renders_every_section_from_the_stored_run(stored_run, tmp_path):
    text = render_spike(spike, stored_run, tmp_path).read_text()
    for heading in (
        "Security matrix, recommended settings",
        "Security matrix, deliberately weak settings",
        "Cost of authenticating (recommended settings)",
        "Revocation: logout on instance A, live connection on instance B",
        "| Criterion | Weight |",
        "| Security | 30% |",
    ):
        assert heading in text
    assert "Chosen option: **" in text
    links = re.findall(r"\]\((charts/[^)]+\.svg)\)", text)
    assert links and all((tmp_path / link).is_file() for link in links)


@pytest.mark.slow
def test_a_small_real_run_end_to_end_keeps_its_secrets(tmp_path, monkeypatch):
    require("redis-server")
    require("chromium")
    require("playwright")
    made: list[scenarios.Secrets] = []

    class Recorded(scenarios.Secrets):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(scenarios, "Secrets", Recorded)
    res = runner.invoke(
        app, ["run", "5", "--quick", "--scenario", "attacks", "--scenario", "revocation", "--option", "sessions", "--out", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    run = load(next((tmp_path / "runs").glob("*.json")))
    for scen in ("attacks", "revocation"):
        assert run.ok(scen, "sessions") is not None, run.result(scen, "sessions")
    attacks = run.ok("attacks", "sessions")
    assert attacks.median("attacks_blocked", variant="recommended") == attacks.median("attacks_applicable", variant="recommended") == 7
    assert attacks.median("attacks_blocked", variant="weak") < 7
    rev = run.ok("revocation", "sessions")
    assert rev.fact["close_code"] == 4003 and rev.median("closed_after_logout") == 1
    assert rev.fact["replay_on_other_instance"]["outcome"] == "blocked"
    doc = (tmp_path / "spike-05-auth.md").read_text()
    assert "| Session management (Redis) | cookie `tt_session` | SameSite=Strict; Path=/; HttpOnly; Secure |" in doc
    assert made
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".md", ".log"):
            text = path.read_text()
            for sec in made:
                assert sec.jwt not in text and sec.password not in text, path


@pytest.mark.slow
def test_the_cost_scenario_measures_handshakes_throughput_memory_and_redis(tmp_path):
    require("redis-server")
    from harness.plugin import ScenarioContext

    params = {"connections": 20, "rate": 50, "closed_connections": 20, "concurrency": 4, "memory_connections": 20, "logins": 4}
    out = scenarios.run_cost(
        ScenarioContext(option=spike.option("sessions"), params=params, repeat=0, quick=True, workdir=tmp_path, log=lambda s: None)
    )
    got = {m.name: m.samples for m in out.measurements}
    assert len(got["handshake_ms"]) == 20 and all(x > 0 for x in got["handshake_ms"])
    assert len(got["login_ms"]) == 4 and got["connections_per_s"][0] > 0
    # One HGET per handshake: the session lookup.
    assert got["store_commands_per_connection"] == [1.0]
    assert out.facts["redis_keys"] >= 4  # several sessions, one key each, plus the per-user sets
