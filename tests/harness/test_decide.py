"""The decision layer: utilities, gates, not-measured renormalisation, ties and sensitivity, on hand-computed values."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness.decide import Criterion, Derived, Gate, Largest, Metric, NotMeasured, Part, Utility, evaluate, sensitivity
from harness.decide.engine import criteria_of
from harness.plugin import Option, Scenario, ScenarioOutput, Spike
from harness.results import MeasurementRecord, RunResult, ScenarioResult

SPIKES = Path(__file__).resolve().parents[2] / "spikes"


# -- utilities -----------------------------------------------------------------------------------------------------------------


def test_a_linear_utility_is_10_at_good_0_at_bad_and_clamped():
    u = Utility(10, 20, "test")
    assert [u.score(v) for v in (5, 10, 15, 20, 30)] == [10.0, 10.0, 5.0, 0.0, 0.0]
    higher = Utility(100, 0, "test")
    assert higher.score(75) == 7.5 and not higher.lower_is_better


def test_a_log_utility_scores_each_halving_the_same():
    u = Utility(1, 100, "test", log=True)
    assert u.score(10) == pytest.approx(5.0)  # half way in orders of magnitude
    assert u.score(1000) == 0.0 and u.score(0.5) == 10.0


@pytest.mark.parametrize(
    "kwargs", [{"good": 1, "bad": 1, "why": "x"}, {"good": 0, "bad": 10, "why": "x", "log": True}, {"good": 1, "bad": 2, "why": " "}]
)
def test_a_utility_without_distinct_anchors_or_a_reason_is_refused(kwargs):
    with pytest.raises(ValueError):
        Utility(**kwargs)


def test_a_gate_needs_exactly_one_limit():
    with pytest.raises(ValueError):
        Gate("g", "data loss", Metric("s", "m"), "x", "why")
    with pytest.raises(ValueError):
        Gate("g", "data loss", Metric("s", "m"), "x", "why", at_most=0, at_least=1)


# -- a small stored run, built by hand ---------------------------------------------------------------------------------------


def _run(
    values: dict[str, dict[str, list[list[float]]]], *, weights: dict[str, int] | None = None, status: dict[str, str] | None = None
) -> RunResult:
    """A run of scenario 'bench': option -> metric name (with an optional '@load' suffix for a 'load' tag) -> per-repeat samples."""
    scenarios = []
    for option, metrics in values.items():
        ms = []
        for key, repeats in metrics.items():
            name, _, load = key.partition("@")
            ms.append(MeasurementRecord(name, "x", {"load": load} if load else {}, "lower", repeats))
        st = (status or {}).get(option, "ok")
        scenarios.append(ScenarioResult("bench", option, st, "it crashed" if st != "ok" else "", {}, ms if st == "ok" else [], [{}], [1.0]))
    return RunResult(
        run_id="t",
        spike={"number": 77, "slug": "t", "title": "T", "source_hash": "x"},
        profile="full",
        author="test",
        started_at="2026-12-01T00:00:00+00:00",
        finished_at="2026-12-01T00:01:00+00:00",
        duration_s=60.0,
        machine={},
        parameters={"repeat": 3, "options": list(values), "scenarios": ["bench"], "weights": weights or {"Speed": 50, "Size": 50}},
        complexity={},
        scenarios=scenarios,
    )


def _noop(ctx):  # pragma: no cover - never run
    return ScenarioOutput()


def _spike(criteria, gates=(), weights=None, margin=0.05) -> Spike:
    class S(Spike):
        number = 77
        slug = "t"
        title = "T"
        priority = "nice"
        planned_hours = 1
        question = "?"
        options = (Option("a", "A"), Option("b", "B"), Option("c", "C"))
        scenarios = (Scenario("bench", "Bench", "", _noop),)
        package_dir = Path(__file__).parent
        tie_margin = margin

    S.criteria = tuple(criteria)
    S.gates = tuple(gates)
    S.weights = weights or {"Speed": 50, "Size": 50}
    return S()


LINEAR = Utility(0, 100, "0 is perfect, 100 unacceptable")


def _crit(name: str, metric: str, min_diff: float = 1.0, **kw) -> Criterion:
    return Criterion(name, (Part(metric, Metric("bench", metric, **kw), "x", LINEAR, min_diff),))


TWO = (_crit("Speed", "speed"), _crit("Size", "size"))


def test_scores_totals_and_the_winner_follow_the_declared_utilities():
    # Speed: a 10 -> 9.0, b 40 -> 6.0; Size: a 50 -> 5.0, b 20 -> 8.0. Totals a 7.0, b 7.0 -> tied; give b a slower speed.
    run = _run(
        {"a": {"speed": [[10], [11], [9]], "size": [[50], [50], [50]]}, "b": {"speed": [[60], [61], [59]], "size": [[20], [20], [20]]}}
    )
    d = evaluate(_spike(TWO), run)
    assert d.score("a", "Speed") == 9.0 and d.score("b", "Speed") == 4.0
    assert d.score("a", "Size") == 5.0 and d.score("b", "Size") == 8.0
    assert d.totals == {"a": pytest.approx(7.0), "b": pytest.approx(6.0)}
    assert d.best == "a" and not d.tie  # every repeat: a 7.0 +- 0.05, b 6.0 +- 0.05, apart
    assert d.cells["a"]["Speed"].basis == "speed 10 x" and d.formulas["Speed"].startswith("Score = speed, `speed` of scenario `bench`")


def test_a_gate_blocks_the_best_scoring_option():
    run = _run(
        {
            "a": {"speed": [[1], [1], [1]], "size": [[1], [1], [1]], "lost": [[0], [2], [0]]},  # best scores, but lost data once
            "b": {"speed": [[30], [30], [30]], "size": [[30], [30], [30]], "lost": [[0], [0], [0]]},
        }
    )
    gate = Gate("no data lost", "data loss", Metric("bench", "lost", stat="max"), "messages", "state must not be lost", at_most=0)
    d = evaluate(_spike(TWO, [gate]), run)
    assert d.totals["a"] > d.totals["b"]
    assert d.best == "b" and d.blocked == ["a"] and d.eligible == ["b"]
    assert d.gate_cell("a") == "fails: no data lost, 2 messages"  # the worst repeat, not the median (0)
    assert d.gate_cell("b") == "passes"
    assert d.gate_cell_brief("a") == "fails: no data lost" and d.gate_cell_brief("b") == "passes"  # the matrix's cell: names only


def test_when_every_option_fails_a_gate_none_qualifies_with_the_highest_load_each_passed():
    run = _run(
        {
            "a": {"speed": [[1]], "size": [[1]], "p99@10": [[50]], "p99@100": [[400]], "p99@1000": [[9000]]},
            "b": {"speed": [[2]], "size": [[2]], "p99@10": [[80]], "p99@100": [[2000]], "p99@1000": [[20000]]},
        }
    )
    gate = Gate("holds its latency", "scale", Metric("bench", "p99", {"load": Largest()}), "ms", "a second late is stale", at_most=1000)
    d = evaluate(_spike(TWO, [gate]), run)
    assert d.none_qualifies and d.best is None and d.ranking == []
    assert d.gates["a"][0].highest_pass == "100" and d.gates["b"][0].highest_pass == "10"
    assert d.gate_cell("a") == "fails: holds its latency, 9,000 ms (passes up to load = 100)"
    assert d.label == "none qualifies at this load: every option fails a gate (holds its latency)"


def test_a_gate_that_could_not_be_measured_does_not_block_but_is_said():
    run = _run({"a": {"speed": [[1]], "size": [[1]]}, "b": {"speed": [[2]], "size": [[2]]}})
    gate = Gate("no data lost", "data loss", Metric("loss-probe", "lost"), "messages", "why", at_most=0)
    d = evaluate(_spike(TWO, [gate]), run)
    assert (
        d.eligible == ["a", "b"]
        and d.unverified_gates("a")[0].text == "no data lost: not measured (loss-probe did not run for this option)"
    )


def test_a_step_that_ran_ok_but_lacks_what_a_criterion_reads_is_an_error_not_a_gap():
    run = _run({"a": {"speed": [[1]]}, "b": {"speed": [[2]], "size": [[2]]}})
    with pytest.raises(KeyError, match="option 'a' has no measurement 'size'"):
        evaluate(_spike(TWO), run)


def test_a_criterion_not_measured_for_one_option_is_left_out_for_every_option_and_weights_renormalised():
    run = _run({"a": {"speed": [[10]], "size": [[90]]}, "b": {"speed": [[20]], "size": [[10]]}})

    def size(run: RunResult, option: str) -> float:
        if option == "b":
            raise NotMeasured("the size probe could not run")
        return run.ok("bench", option).measurement("size").median

    crits = (_crit("Speed", "speed"), Criterion("Size", (Part("size", Derived(size, "the size"), "x", LINEAR, 1),)))
    d = evaluate(_spike(crits), run)
    assert d.left_out == {"Size": "not measured for B: size: the size probe could not run"}
    assert d.used == {"Speed": 100.0}
    assert d.totals == {"a": pytest.approx(9.0), "b": pytest.approx(8.0)}  # a's bad size (1.0) does not count against it
    assert d.cells["b"]["Size"].score is None and d.cells["b"]["Size"].basis == "not measured: size: the size probe could not run"


def test_a_failed_step_is_not_measured_with_its_reason():
    run = _run({"a": {"speed": [[10]], "size": [[10]]}, "b": {"speed": [[10]], "size": [[10]]}}, status={"b": "failed"})
    d = evaluate(_spike(TWO), run)
    assert d.left_out["Speed"] == "not measured for B: speed: bench failed: it crashed"
    assert d.used == {} and d.best is None and not d.none_qualifies


def test_criterion_ties_by_smallest_difference_and_by_overlapping_repeats():
    run = _run(
        {
            "a": {"speed": [[10], [12], [14]], "size": [[10], [10], [10]]},
            "b": {"speed": [[11], [13], [15]], "size": [[10.5], [10.5], [10.5]]},  # speed repeats overlap a's; size 0.5 apart
            "c": {"speed": [[40], [41], [42]], "size": [[30], [30], [30]]},
        }
    )
    d = evaluate(_spike((_crit("Speed", "speed", min_diff=0.5), _crit("Size", "size", min_diff=1.0))), run)
    assert d.criterion_ties("Speed") == ["a", "b"]  # 1 apart >= min_diff, but the repeats overlap
    assert d.criterion_ties("Size") == ["a", "b"]  # 0.5 apart < 1.0
    assert not d.cells["c"]["Speed"].tied_best


def test_exact_values_are_never_tied_for_want_of_repeats():
    run = _run({"a": {"speed": [[10]], "size": [[10]]}, "b": {"speed": [[10]], "size": [[13]]}, "c": {"speed": [[50]], "size": [[50]]}})
    d = evaluate(_spike((_crit("Speed", "speed"), _crit("Size", "size", min_diff=2, exact=True))), run)
    assert d.criterion_ties("Size") == ["a"]


def test_a_winner_within_the_declared_margin_is_a_tie_and_a_wider_margin_declares_more_ties():
    run = _run(
        {"a": {"speed": [[10], [10], [10]], "size": [[10], [10], [10]]}, "b": {"speed": [[16], [16], [16]], "size": [[16], [16], [16]]}}
    )
    assert not evaluate(_spike(TWO, margin=0.05), run).tie  # 9.0 vs 8.4: 6.7% apart, exact in every repeat
    wide = evaluate(_spike(TWO, margin=0.10), run)
    assert wide.tie and wide.tied == ["a", "b"] and wide.label == "tie: A / B (9.00 / 8.40 of 10, within noise)"


def test_derived_values_are_computed_per_repeat_and_not_measured_is_propagated():
    def ratio(run: RunResult, option: str) -> float:
        sr = run.ok("bench", option)
        if sr is None:
            raise NotMeasured("no bench")
        return sr.measurement("speed").median / sr.measurement("size").median

    run = _run({"a": {"speed": [[10], [20], [30]], "size": [[1], [1], [1]]}, "b": {"speed": [[40], [40], [40]], "size": [[2], [2], [2]]}})
    crit = Criterion("Speed", (Part("ratio", Derived(ratio, "speed / size"), "x", LINEAR, 1),))
    d = evaluate(_spike((crit, _crit("Size", "size"))), run)
    assert d.cells["a"]["Speed"].parts[0].repeats == [10.0, 20.0, 30.0] and d.cells["a"]["Speed"].parts[0].value == 20.0


# -- sensitivity ---------------------------------------------------------------------------------------------------------------


def test_sensitivity_finds_the_fewest_points_that_flip_the_winner():
    # a leads on Speed by 4 points, b on Size by 2: totals a 0.5*9 + 0.5*5 = 7.0, b 0.5*5 + 0.5*7 = 6.0.
    # Moving w points from Speed to Size changes a's lead by -(4 - (-2)) w / 100: the lead of 1.0 goes at w = 16.67.
    s = sensitivity("w", {"Speed": 50, "Size": 50}, {"a": {"Speed": 9, "Size": 5}, "b": {"Speed": 5, "Size": 7}})
    assert s.winner == "a" and s.flip_to == "b"
    assert s.points == pytest.approx(100 / 6) and [(m.source, m.target) for m in s.moves] == [("Speed", "Size")]


def test_sensitivity_takes_from_several_criteria_when_one_runs_dry():
    # a 0.1*10 + 0.6*8 + 0.3*0 = 5.8, b 0.3*10 = 3.0: a leads by 2.8 (280 point-score units). A point moved to Size
    # gains b 10 - (-10) = 20 units from Speed, 8 - (-10) = 18 from Cost. Speed has only 10 points: 200 units; the
    # other 80 units take 80 / 18 = 4.44 points of Cost. 14.44 points in all.
    weights = {"Speed": 10, "Cost": 60, "Size": 30}
    s = sensitivity("w", weights, {"a": {"Speed": 10, "Cost": 8, "Size": 0}, "b": {"Speed": 0, "Cost": 0, "Size": 10}})
    assert s.flip_to == "b" and [(m.source, m.target) for m in s.moves] == [("Speed", "Size"), ("Cost", "Size")]
    assert [m.points for m in s.moves] == pytest.approx([10.0, 80 / 18]) and s.points == pytest.approx(10 + 80 / 18)


def test_an_option_worse_on_every_criterion_cannot_be_made_to_win():
    s = sensitivity("w", {"Speed": 50, "Size": 50}, {"a": {"Speed": 9, "Size": 9}, "b": {"Speed": 5, "Size": 5}})
    assert s.winner == "a" and s.flip_to is None and s.points is None


def test_a_spike_with_its_own_weights_also_shows_the_seed_weights():
    run = _run(
        {"a": {"speed": [[10]], "size": [[90]]}, "b": {"speed": [[40]], "size": [[10]]}},
        weights={"Performance": 80, "Cost": 20},
    )
    crits = (_crit("Performance", "speed"), _crit("Cost", "size"))
    d = evaluate(_spike(crits, weights={"Performance": 80, "Cost": 20}), run)
    labels = [s.label for s in d.sensitivities]
    assert labels == ["this spike's weights", "the seed's weights"]
    assert d.sensitivities[0].winner == "a"  # 0.8*9 + 0.2*1 = 7.4 vs 0.8*6 + 0.2*9 = 6.6
    assert d.sensitivities[1].weights == pytest.approx({"Performance": 66.67, "Cost": 33.33}, abs=0.01)  # the seed's 30 / 15 renormalised


# -- the harness owns scoring: no spike computes a score --------------------------------------------------------------------


def _spike_modules() -> list[Path]:
    return sorted(p for p in SPIKES.rglob("*.py") if "node_modules" not in p.parts)


def test_no_spike_overrides_the_harness_scoring():
    from harness.plugin import discover

    for spike in discover().values():
        for name in ("score", "decide", "evaluate"):
            assert name not in type(spike).__dict__, f"spike {spike.number} defines {name}(): scores come from its declared criteria"
        assert spike.criteria, f"spike {spike.number} declares no criteria"
        assert {c.name for c in criteria_of(spike)} == set(spike.weights), f"spike {spike.number}: criteria and weights differ"


def test_no_module_under_spikes_computes_a_0_to_10_score():
    banned_names = {"CriterionScore", "Scoring", "relative_to_best", "geomean", "criterion_findings", "Utility.score"}
    for path in _spike_modules():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name | ast.Attribute):
                name = node.id if isinstance(node, ast.Name) else node.attr
                assert name not in banned_names, f"{path.relative_to(SPIKES)}:{node.lineno} uses {name}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "score":
                raise AssertionError(f"{path.relative_to(SPIKES)}:{node.lineno} calls .score(): scoring is the harness's")
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and "score" in node.name.lower():
                raise AssertionError(f"{path.relative_to(SPIKES)}:{node.lineno} defines {node.name}(): scoring is the harness's")


def test_an_option_measured_only_inside_a_carriers_steps_gets_one_value_per_repeat():
    """A scenario declared for one carrier option may measure every option, tagged: a Derived value of another option
    is then read once per repeat of the run's steps, not once (which would show its first repeat as its value)."""
    from harness.decide.engine import source_values

    run = _run({"a": {"speed@b": [[5.0], [50.0], [7.0]], "speed@a": [[1.0], [2.0], [3.0]]}})

    def tagged(r: RunResult, option: str) -> float:
        sr = r.ok("bench", "a")
        assert sr is not None
        return next(m.median for m in sr.find("speed") if m.tags.get("load") == option)

    derived = Derived(tagged, "the option's tagged value in the carrier's steps")
    assert source_values(derived, run, "a") == [1.0, 2.0, 3.0]
    assert source_values(derived, run, "b") == [5.0, 50.0, 7.0]
