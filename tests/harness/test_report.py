from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.decide import Criterion, Derived, Part
from harness.plugin import Table, source_hash
from harness.report.render import decide, render_index, render_spike
from harness.results import ResultsError, RunResult, ScoringError, save
from harness.runner import RunPlan, run_spike
from tests.harness.fakes import LATENCY, FakeSpike

GOLDEN = Path(__file__).parent / "golden"
FIXED_MACHINE = {
    "hostname": "golden",
    "cpu_model": "Test CPU",
    "cpu_count_logical": 2,
    "cpu_count_physical": 1,
    "cpu_mhz_max": None,
    "memory_total_bytes": 2 * 2**30,
    "os": "Linux 6.0",
    "platform": "Linux",
    "python": "3.11.7",
    "python_implementation": "CPython",
    "packages": {"realtime-spikes": "0.1.0"},
    "load_avg_1m_at_start": 0.5,
    "commit": "0123456789abcdef",
    "dirty": False,
}


def _fixed_run(tmp_path: Path, **changes) -> RunResult:
    spike = FakeSpike()
    run = run_spike(RunPlan(spike, scenarios=["works", "crashes"], repeat=2, author="Golden Tester"), tmp_path / "scratch")
    data = run.to_dict()
    data.update(
        run_id="golden-run",
        started_at="2026-11-25T10:00:00+00:00",
        finished_at="2026-11-25T10:06:00+00:00",
        duration_s=360.0,
        machine=FIXED_MACHINE,
        harness={"measured_s": 350.0, "overhead_fraction": 0.0278},
        source={"commit": "0123456789abcdef", "dirty": False, "dirty_paths": [], "allow_dirty": False},
        budget={"minutes": None, "over": False},
    )
    for sr in data["scenarios"]:
        sr["durations_s"] = [1.0 for _ in sr["durations_s"]]
    data.update(changes)
    fixed = RunResult.from_dict(data)
    save(fixed, tmp_path / "out" / "runs")
    return fixed


def test_outcome_document_matches_golden(tmp_path):
    run = _fixed_run(tmp_path)
    doc = render_spike(FakeSpike(), run, tmp_path / "out")
    # Code links are relative to wherever the output folder is: normalise them.
    poc = os.path.relpath(FakeSpike().package_dir, doc.parent)
    text = doc.read_text().replace(poc, "POC")
    golden = GOLDEN / "spike-42-fake.md"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    assert (tmp_path / "out" / "charts" / "spike-42-lat.svg").read_text().startswith("<?xml")


def test_document_follows_the_seed_template_in_order(tmp_path):
    text = render_spike(FakeSpike(), _fixed_run(tmp_path), tmp_path / "out").read_text()
    heads = [
        "## Spike: 42 Fake Spike",
        "**Date:** 2026-11-25",
        "**Developer:** Golden Tester",
        "**Duration:**",
        "### Question",
        "### Method",
        "### Results",
        "### Recommendation",
        "### Code/Artifacts",
    ]
    positions = [text.index(h) for h in heads]
    assert positions == sorted(positions)
    assert "| Criterion | Weight | Option A | Option B |" in text
    assert "Chosen option: **Option A**" in text  # lower fake latency: higher score
    assert "Good, because latency is 11.0 ms" in text and "Bad, because latency is 21.0 ms" in text
    assert "Good, because performance scores 9.0 (best): latency 11 ms." in text  # 10 at 10 ms, 0 at 20 ms: 20 - 11
    assert "Bad, because performance scores 0.0 (worst): latency 21 ms." in text
    assert "| crashes | a | failed | RuntimeError: the server crashed mid-scenario |" in text
    assert "Quick run" not in text and "Stale" not in text


def test_quick_and_stale_runs_say_so(tmp_path):
    run = _fixed_run(tmp_path, profile="quick", spike={"number": 42, "slug": "fake", "title": "Fake Spike", "source_hash": "old"})
    text = render_spike(FakeSpike(), run, tmp_path / "out").read_text()
    assert "**Quick run.**" in text and "**Stale.**" in text and f"{source_hash(FakeSpike())} now" in text


def test_the_method_shows_the_parameters_the_stored_run_used_not_the_current_defaults(tmp_path):
    # A run stored before a scenario's defaults changed must still say what it measured ("parameters as run").
    run = _fixed_run(tmp_path)
    data = run.to_dict()
    for sr in data["scenarios"]:
        if sr["scenario"] == "works":
            sr["params"] = {"size": 7}
    text = render_spike(FakeSpike(), RunResult.from_dict(data), tmp_path / "out").read_text()
    assert "Parameters: `size` = 7." in text and "`size` = 100" not in text


def test_matrix_totals_are_weighted_sums_of_utility_scores(tmp_path):
    params = {
        "repeat": 2,
        "options": ["a", "b"],
        "scenarios": ["works"],
        "interrupted": False,
        "weights": {"Performance": 50, "Complexity": 50},
    }
    d = decide(FakeSpike(), _fixed_run(tmp_path, parameters=params))
    assert d.criteria == ["Performance", "Complexity"]
    # Median latency of a over its per-repeat medians (10.5, 11.5) is 11 ms: 10 at 10 ms, 0 at 20 ms, linear: 9.0.
    assert d.score("a", "Performance") == 9.0 and d.score("b", "Performance") == 0.0
    # Complexity: the fake POC's lines (+ 25 for b's one dependency) are under 150 line-equivalents: 10.
    assert d.score("a", "Complexity") == 10.0 and d.score("b", "Complexity") == 10.0
    assert d.totals["a"] == pytest.approx(9.5) and d.totals["b"] == pytest.approx(5.0)
    assert d.best == "a" and d.ranking == ["a", "b"]


def test_index_lists_every_spike(tmp_path):
    run = _fixed_run(tmp_path)
    text = render_index({42: FakeSpike()}, {42: run}, tmp_path / "out").read_text()
    assert "[Fake Spike](spike-42-fake.md)" in text and "Option A" in text and "1 step(s) not ok" not in text
    assert "2 step(s) not ok" in text
    empty = render_index({42: FakeSpike()}, {}, tmp_path / "empty").read_text()
    assert "no run stored yet" in empty


def test_a_runner_up_that_wins_a_repeat_makes_a_tie(tmp_path):
    run = _fixed_run(tmp_path)
    assert decide(FakeSpike(), run).repeat_winners == ["a", "a"]
    # Option b much faster than a in the second repeat only: the repeats disagree,
    # and the document must not claim a stable choice.
    data = run.to_dict()
    for sr in data["scenarios"]:
        if sr["scenario"] == "works":
            for m in sr["measurements"]:
                if sr["option"] == "b":
                    m["repeats"][1] = [1.0, 1.0]
    flipped = RunResult.from_dict(data)
    d = decide(FakeSpike(), flipped)
    # b's median over its two repeats (20.5 and 1 ms) is 10.75 ms: b is ahead pooled, a wins repeat 1.
    assert d.repeat_winners == ["a", "b"] and d.tie and d.tied == ["b", "a"]
    assert d.evidence["a"] == "Option A has the best total in repeat 1: the winner does not hold across repeats"
    text = render_spike(FakeSpike(), flipped, tmp_path / "out2").read_text()
    assert "the best qualifying option was, repeat by repeat: Option A; Option B" in text and "Tie within noise" in text
    assert "does not rest on one lucky repeat" not in text and "Chosen option" not in text


def test_repeat_winners_need_two_repeats(tmp_path):
    data = _fixed_run(tmp_path).to_dict()
    for sr in data["scenarios"]:
        for m in sr["measurements"]:
            m["repeats"] = m["repeats"][:1]
    assert decide(FakeSpike(), RunResult.from_dict(data)).repeat_winners == []


# -- a stored run its spike cannot score or render: one line naming the file, never a traceback -------------------------------


def _without_latency_of_a(tmp_path: Path) -> RunResult:
    run = _fixed_run(tmp_path)
    data = run.to_dict()
    for sr in data["scenarios"]:
        if sr["option"] == "a":
            sr["measurements"] = []
    broken = RunResult.from_dict(data)
    broken.path = run.path
    return broken


def test_a_deleted_scored_measurement_is_a_one_line_results_error(tmp_path):
    # The step ran ok but its file lacks what a criterion reads: a malformed file or a renamed metric, not "not measured".
    run = _without_latency_of_a(tmp_path)
    with pytest.raises(ScoringError) as exc:
        decide(FakeSpike(), run)
    text = str(exc.value)
    assert isinstance(exc.value, ResultsError) and "\n" not in text
    assert text.startswith(f"{run.path}: cannot score spike 42")
    assert "scenario 'works', option 'a' has no measurement 'latency' (KeyError)" in text
    with pytest.raises(ScoringError, match=r": cannot render spike 42 .*has no measurement 'latency'"):
        render_spike(FakeSpike(), run, tmp_path / "out2")


def test_a_step_that_failed_is_not_measured_and_left_out_for_every_option(tmp_path):
    data = _fixed_run(tmp_path).to_dict()
    for sr in data["scenarios"]:
        if sr["scenario"] == "works" and sr["option"] == "a":
            sr.update(status="failed", reason="RuntimeError: the server crashed", measurements=[], facts=[], durations_s=[1.0])
    run = RunResult.from_dict(data)
    d = decide(FakeSpike(), run)
    assert set(d.left_out) == {"Performance", "Maintenance", "Scalability", "Cost"}
    assert d.left_out["Performance"] == "not measured for Option A: latency: works failed: RuntimeError: the server crashed"
    assert d.used == {"Complexity": 100.0}  # renormalised over what was measured for every option
    assert d.totals == {"a": 10.0, "b": 10.0}
    text = render_spike(FakeSpike(), run, tmp_path / "out2").read_text()
    assert "| Performance | 30% (left out) | not measured | (0.0) |" in text
    assert "Left out for every option, because not measured for some: Performance (not measured for Option A: latency: works failed" in text
    assert "| Complexity | 20% (100%) |" in text


class _Failing(FakeSpike):
    """A criterion whose value raises the given error, as a value reading a field the stored run lacks would."""

    def __init__(self, error: Exception) -> None:
        def boom(run: RunResult, option: str) -> float:
            raise error

        self.criteria = (Criterion("Performance", (Part("boom", Derived(boom, "raises"), "ms", LATENCY, 1),)), *FakeSpike.criteria[1:])


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (KeyError("rejected_fraction"), "'rejected_fraction' is missing (KeyError)"),
        (TypeError("unsupported operand type(s) for /: 'NoneType' and 'float'"), "for /: 'NoneType' and 'float' (TypeError)"),
        (ValueError("max() arg is an empty sequence"), "max() arg is an empty sequence (ValueError)"),
        (ZeroDivisionError("division by zero"), "division by zero (ZeroDivisionError)"),
        (IndexError("list index out of range"), "list index out of range (IndexError)"),
        (AttributeError("'NoneType' object has no attribute 'fact'"), "has no attribute 'fact' (AttributeError)"),
        (ValueError("a\nlong\n message"), "a long message (ValueError)"),
    ],
)
def test_every_data_error_from_a_spike_becomes_one_line(tmp_path, error, shown):
    run = _fixed_run(tmp_path)
    with pytest.raises(ScoringError) as exc:
        decide(_Failing(error), run)
    assert str(exc.value).endswith(shown) and "\n" not in str(exc.value) and str(run.path) in str(exc.value)
    assert isinstance(exc.value, ResultsError) and str(exc.value).startswith(f"{run.path}: cannot score spike 42")


def test_a_bug_that_is_not_about_the_data_is_not_disguised_as_one(tmp_path):
    with pytest.raises(RuntimeError, match="a bug"):
        decide(_Failing(RuntimeError("a bug")), _fixed_run(tmp_path))


# -- ties within noise: the per-repeat weighted totals decide whether the best option is separated from the runners-up --------


def _with_latencies(tmp_path: Path, latencies: dict[str, list[list[float]]]) -> RunResult:
    """The golden run with option -> per-repeat latency samples of the scored 'works' scenario replaced."""
    data = _fixed_run(tmp_path).to_dict()
    n = max(len(r) for r in latencies.values())
    data["parameters"]["repeat"] = n
    for sr in data["scenarios"]:
        if sr["scenario"] == "works" and sr["option"] in latencies:
            sr["measurements"][0]["repeats"] = latencies[sr["option"]]
            sr["facts"] = [sr["facts"][0]] * n
            sr["durations_s"] = [1.0] * n
    return RunResult.from_dict(data)


def _recommendation(text: str) -> str:
    return text[text.index("### Recommendation") : text.index("### Code/Artifacts")]


def test_overlapping_repeat_totals_are_a_tie_in_the_document_and_the_index(tmp_path):
    # Four criteria (80%) read the latency, 10 at 10 ms and 0 at 20 ms; Complexity (20%) is 10 for both.
    # Per-repeat totals: a 10.0, 8.0, 9.2; b 9.6, 7.2, 8.4. Their medians are 9% apart, more than matters, but the
    # repeats overlap: 3 vs 3 cannot reach p < 0.05 and the ranges are not apart.
    run = _with_latencies(tmp_path, {"a": [[10.0], [12.5], [11.0]], "b": [[10.5], [13.5], [12.0]]})
    decision = decide(FakeSpike(), run)
    assert decision.best == "a" and decision.tie and decision.tied == ["a", "b"]
    assert {o: [round(t, 2) for t in v] for o, v in decision.repeat_totals.items()} == {"a": [10.0, 8.0, 9.2], "b": [9.6, 7.2, 8.4]}
    text = _recommendation(render_spike(FakeSpike(), run, tmp_path / "out").read_text())
    assert "Chosen option" not in text
    assert "Tie within noise: **Option A** and **Option B** (totals 9.20 and 8.40; their per-repeat totals overlap (3 vs 3 repeats" in text
    assert "Ranked by total (median value of each criterion over the repeats): 1. Option A 9.20, 2. Option B 8.40." in text
    assert "weighted totals per repeat: Option A 10.00, 8.00, 9.20; Option B 9.60, 7.20, 8.40" in text
    assert "by the per-repeat rule above, Option A and Option B are tied" in text
    assert "or rerun with more repeats (`--repeat`) to tell them apart" in text
    assert "does not rest on one lucky repeat" not in text
    index = render_index({42: FakeSpike()}, {42: run}, tmp_path / "out").read_text()
    assert "| tie: Option A / Option B (9.20 / 8.40 of 10, within noise) |" in index
    assert "| Option A (" not in index


def test_a_lead_below_the_smallest_difference_that_matters_is_a_tie_even_when_every_repeat_agrees(tmp_path):
    # a beats b on every repeat, but by about 2% of the total: below the tie margin (5%) whatever the repeats say.
    run = _with_latencies(tmp_path, {"a": [[10.0], [10.1], [10.2]], "b": [[10.3], [10.4], [10.5]]})
    decision = decide(FakeSpike(), run)
    assert decision.repeat_winners == ["a", "a", "a"] and decision.tie and not decision.more_repeats_could_separate
    text = _recommendation(render_spike(FakeSpike(), run, tmp_path / "out").read_text())
    assert "Tie within noise: **Option A** and **Option B**" in text and "more repeats would not change this" in text
    assert decision.evidence["b"].startswith("Option B is within 5% of Option A: the medians of their per-repeat totals, 9.92 and 9.68")


def test_repeats_that_are_all_clearly_apart_name_a_winner_with_its_margin(tmp_path):
    run = _with_latencies(tmp_path, {"a": [[10.0], [10.5], [11.0]], "b": [[20.0], [21.0], [22.0]]})
    decision = decide(FakeSpike(), run)
    assert not decision.tie and decision.tied == ["a"] and decision.margin == pytest.approx(9.6 - 2.0)
    text = _recommendation(render_spike(FakeSpike(), run, tmp_path / "out").read_text())
    assert "Tie within noise" not in text
    assert (
        "Chosen option: **Option A**, because it passes every gate and has the best weighted total, 9.60 of 10 (next: Option B, 2.00)."
        in text
    )
    assert (
        "The margin is 7.60 points; separated: every repeat of Option A above every repeat of Option B (3 vs 3 repeats; a likely difference"
        in text
    )
    assert "3 of 3 repeats agree: the choice does not rest on one lucky repeat" in text
    index = render_index({42: FakeSpike()}, {42: run}, tmp_path / "out").read_text()
    assert "| Option A (9.60 / 10) |" in index and "tie:" not in index


def test_enough_repeats_for_the_test_separate_options_whose_ranges_touch(tmp_path):
    # 5 vs 5 repeats: one overlapping pair, still p < 0.05 by Mann-Whitney over the per-repeat totals.
    run = _with_latencies(tmp_path, {"a": [[10.0], [10.5], [11.0], [11.5], [14.0]], "b": [[13.0], [15.0], [15.5], [16.0], [16.5]]})
    decision = decide(FakeSpike(), run)
    assert not decision.tie
    assert decision.evidence["b"].startswith("separated: Option A above Option B over the repeats (p = 0.0")


def test_enough_repeats_that_overlap_are_a_tie_by_the_test(tmp_path):
    # 5 vs 5 repeats, medians 9% apart, a ahead in every repeat, but interleaved: Mann-Whitney over the per-repeat totals is far from 0.05.
    run = _with_latencies(tmp_path, {"a": [[10.0], [12.5], [11.0], [10.5], [11.5]], "b": [[10.5], [13.5], [12.0], [11.0], [12.5]]})
    decision = decide(FakeSpike(), run)
    assert decision.tie and decision.repeat_winners == ["a"] * 5
    assert decision.evidence["b"].startswith("their per-repeat totals do not differ significantly (p = 0.")
    assert decision.evidence["b"].endswith(", 5 vs 5 repeats)")


def test_a_single_repeat_with_a_small_lead_is_a_tie_and_a_large_one_says_there_is_no_noise_estimate(tmp_path):
    close = decide(FakeSpike(), _with_latencies(tmp_path, {"a": [[10.0, 11.0]], "b": [[10.5, 11.5]]}))
    assert close.tie and not close.noise_estimate and close.repeat_winners == []
    assert close.evidence["b"] == "the totals differ by 0.40, under 5% of the best"  # 9.60 vs 9.20
    run = _with_latencies(tmp_path / "far", {"a": [[10.0, 11.0]], "b": [[14.0, 15.0]]})  # 9.60 vs 6.40
    far = decide(FakeSpike(), run)
    assert not far.tie and not far.noise_estimate
    text = _recommendation(render_spike(FakeSpike(), run, tmp_path / "out").read_text())
    assert "Chosen option: **Option A**" in text and "The margin is 3.20 points; one repeat: no noise estimate." in text
    index = render_index({42: FakeSpike()}, {42: run}, tmp_path / "out").read_text()
    assert "| Option A (9.60 / 10; one repeat: no noise estimate) |" in index


class _OtherFake(FakeSpike):
    number = 43
    slug = "other"
    title = "Other Fake"


def test_the_index_shows_a_run_that_cannot_be_scored_as_such_and_writes_the_other_rows(tmp_path):
    broken = _without_latency_of_a(tmp_path)
    fine = _fixed_run(tmp_path / "second")
    index = render_index({42: FakeSpike(), 43: _OtherFake()}, {42: broken, 43: fine}, tmp_path / "out")
    rows = index.read_text().splitlines()
    row42 = next(r for r in rows if r.startswith("| 42. "))
    assert "| cannot score spike 42 (a measurement or fact it reads is missing or malformed): " in row42
    assert "has no measurement 'latency' (KeyError)" in row42 and "| none (see the status) |" in row42
    assert "](spike-42-fake.md)" not in row42 and "(runs/golden-run.json) (full, partial)" in row42
    assert str(tmp_path) not in row42  # the file is linked relatively, not printed in full
    row43 = next(r for r in rows if r.startswith("| 43. "))
    assert "[Other Fake](spike-43-other.md)" in row43 and "| partial run only, 2 step(s) not ok |" in row43 and "| Option A (" in row43


class _RenderFails(FakeSpike):
    """Scores fine, but its report() reads a fact the stored run lacks."""

    def report(self, run: RunResult):  # type: ignore[no-untyped-def]
        return run.ok("works", "a").fact["never_stored"]


def test_the_index_does_not_link_a_document_the_run_cannot_be_rendered_into(tmp_path):
    run = _fixed_run(tmp_path)
    row = next(r for r in render_index({42: _RenderFails()}, {42: run}, tmp_path / "out").read_text().splitlines() if r.startswith("| 42."))
    assert "| cannot render spike 42 (a measurement or fact it reads is missing or malformed): 'never_stored' is missing" in row
    assert "](spike-42-fake.md)" not in row


# -- documents that answer first: the decision box near the top, no table row a reader must scroll --------------------------

RESULTS = Path(__file__).resolve().parents[2] / "results"


@pytest.mark.parametrize("doc", sorted(RESULTS.glob("spike-*.md")), ids=lambda p: p.name)
def test_every_committed_document_answers_within_its_first_40_lines_and_has_no_table_row_over_400_characters(doc):
    lines = doc.read_text().splitlines()
    assert "### Decision" in lines[:40], f"{doc.name}: the decision box starts after line 40"
    long_rows = [i + 1 for i, line in enumerate(lines) if line.startswith("|") and len(line) > 400]
    assert not long_rows, f"{doc.name}: table rows over 400 characters at lines {long_rows}"


def test_the_committed_index_says_what_to_build_for_every_seed_spike_and_has_no_long_row():
    text = (RESULTS / "README.md").read_text()
    head = text[text.index("## What to build") : text.index("## Spikes")]
    for number in range(1, 11):
        assert f"- **{number}. " in head
    assert not [line for line in text.splitlines() if line.startswith("|") and len(line) > 400]


def test_a_table_with_a_long_row_is_written_as_a_list(tmp_path):
    class Verbose(FakeSpike):
        def report(self, run):
            content = super().report(run)
            content.tables.append(Table("Verdicts", ["Case", "Option A", "Option B"], [["flood", "x" * 300, "y" * 200]]))
            content.caveats.append("the generator was client-bound")
            return content

    text = render_spike(Verbose(), _fixed_run(tmp_path), tmp_path / "out").read_text()
    assert "- **Case: flood**\n  - Option A: " + "x" * 300 + "\n  - Option B: " + "y" * 200 in text
    assert not [line for line in text.splitlines() if line.startswith("|") and len(line) > 400]
    lines = text.splitlines()
    box = lines.index("### Decision")
    assert box < 40 and lines[box + 1].startswith("**Choice: Option A** (9.20 of 10; next Option B 2.00, margin 7.20).")
    assert "Caveats: the generator was client-bound; a partial run: options or scenarios that did not run could change it." in text
    assert "- Performance: Option A 9.0 (latency 11 ms) against Option B 0.0 (latency 21 ms); 2.70 points of the total." in text
