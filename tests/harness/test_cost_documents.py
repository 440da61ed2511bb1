"""Cost in money and the cross-spike summary, rendered from small stored runs of the real spikes."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from harness.cli import app
from harness.decide import cost
from harness.report.render import cost_section, cross_spike, decide, render_index, render_spike
from harness.results import load
from spikes.s05_auth import spike as s05
from spikes.s06_scalability import spike as s06

DATA = Path(__file__).resolve().parents[1] / "spikes"
S05 = DATA / "s05" / "data" / "quick-run.json"
S06 = DATA / "s06" / "data" / "tiny-run.json"


def test_the_cost_section_prices_every_option_at_each_scale_from_its_usage():
    run = load(S06)
    d = decide(s06, run)
    money = cost_section(s06, run, d)
    assert money is not None and [r[0] for r in money["rows"]] == [d.title(o) for o in d.options]
    for o, row in zip(d.options, money["rows"], strict=True):
        ((_, money_source),) = cost.money_parts(s06.criteria)  # the Cost criterion's money part
        usage = money_source.usage(run, o)  # type: ignore[misc]
        for n, cell in zip(cost.SCALES, row[2:], strict=True):
            est = cost.estimate(usage, n)
            if est.usd is None:
                assert cell.startswith("infeasible") and "$" not in cell  # never priced
            else:
                assert cell.startswith(cost.fmt_usd(est.usd)) and ("(extrapolated)" in cell) == (n > 10 * usage.users)
    flips = money["flips"]
    assert len(flips) == len(cost.Prices.ITEMS) or (len(flips) == 1 and flips[0].startswith("no single price"))


def test_a_price_change_that_flips_the_decision_is_found_and_named(tmp_path):
    run = load(S05)
    d = decide(s05, run)
    base = cost.current()
    # Whatever the search says must agree with a direct re-evaluation: at the price it names the decision moves,
    # and for a price it says cannot move it, neither end of the range does.
    flips = cost_section(s05, run, d)["flips"]  # type: ignore[index]
    for line in flips:
        m = re.match(r"the (.+?) price at ([0-9.]+)x", line)
        if m:
            item = next(i for i in base.ITEMS if base.label(i) == m.group(1))
            with cost.using(base.scaled(item, float(m.group(2)))):
                moved = decide(s05, run)
            assert moved.label != d.label or moved.tied_with != d.tied_with
        else:
            assert line.startswith("no ") and "from 0.1x to 10x changes it" in line
            items = [i for i in base.ITEMS if line.startswith(f"no {base.label(i)} price")] or list(base.ITEMS)
            for item in items:
                for f in (0.1, 10.0):
                    with cost.using(base.scaled(item, f)):
                        same = decide(s05, run)
                    assert same.label.split(" (")[0] == d.label.split(" (")[0] and same.tied_with == d.tied_with


def test_the_index_states_the_redis_conflict_between_spikes_5_and_6_with_figures(tmp_path):
    runs = {5: load(S05), 6: load(S06)}
    decisions = {n: decide(s, runs[n]) for n, s in ((5, s05), (6, s06))}
    lines = cross_spike({5: s05, 6: s06}, decisions, runs)
    assert "sessions" in [decisions[5].best, *decisions[5].tied_with]  # the stored run's choice, which needs Redis
    (line,) = [x for x in lines if "needs Redis" in x]
    assert "Spike 6 charges only to" in line and "$" in line
    path = render_index({5: s05, 6: s06}, runs, tmp_path)
    text = path.read_text()
    assert "## Where the spikes meet" in text
    for line in lines:
        assert line in text


def test_a_document_names_its_prices_and_their_status(tmp_path):
    text = render_spike(s06, load(S06), tmp_path).read_text()
    assert "#### Cost in money" in text and "Prices that would change it" in text
    for row in cost.current().rows():
        assert f"**{row['status']}**" in text


def test_a_malformed_price_table_is_a_one_line_error_not_a_traceback(tmp_path, monkeypatch):
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / S06.name).write_bytes(S06.read_bytes())
    bad = tmp_path / "prices.toml"
    bad.write_text("headroom = 'lots'\n")
    monkeypatch.setenv("SPIKE_PRICES", str(bad))
    cost.reload()
    try:
        res = CliRunner().invoke(app, ["report", "6", "--out", str(out)])
    finally:
        monkeypatch.delenv("SPIKE_PRICES")
        cost.reload()
    assert res.exit_code == 4 and "prices.toml" in res.output and "Traceback" not in res.output


def test_a_tie_across_runtimes_says_which_side_matches_the_apps_own():
    from types import SimpleNamespace

    from spikes.s01_websocket_impl import spike as s01

    titles = {"native": "Native", "socketio": "Socket.IO", "sveltekit": "SvelteKit"}
    tie = SimpleNamespace(
        best="native",
        tied_with=["sveltekit"],
        none_qualifies=False,
        options=list(titles),
        title=titles.get,
        totals={"native": 9.0, "socketio": 6.0, "sveltekit": 8.8},
        eligible=list(titles),
    )
    lines = cross_spike({1: s01}, {1: tie}, {})  # type: ignore[dict-item]
    assert lines == [
        "Spike 1's tie (Native and SvelteKit): SvelteKit runs on Node.js like the app's front end, SvelteKit on Node.js (the "
        "seed's stack), while Native would add Python: one runtime fewer to build, deploy and monitor is a reason to break the tie"
    ]
    alone = SimpleNamespace(**{**vars(tie), "tied_with": []})
    (line,) = cross_spike({1: s01}, {1: alone}, {})  # type: ignore[dict-item]
    assert line.startswith("Spike 1's choice (Native) runs on Python, beside the app's front end") and "SvelteKit runs on Node.js" in line
