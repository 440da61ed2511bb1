"""Spike 1's bundle figures: raw, the empty SvelteKit page (framework baseline), marginal; npm dependencies; chart spreads.

``bundle-run.json`` is a stored ``spike run 1 --quick --scenario bundle``;
``quick-run.json`` is older, from before the baseline was measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.results import RunResult, ScenarioResult, load
from spikes.s01_websocket_impl import build, spike

DATA = Path(__file__).parent / "data"
BUNDLE_RUN = DATA / "bundle-run.json"
OLD_RUN = DATA / "quick-run.json"


def _ok(run: RunResult, scenario: str, option: str) -> ScenarioResult:
    sr = run.ok(scenario, option)
    assert sr is not None, (scenario, option)
    return sr


def _bundle_table(run: RunResult) -> dict[str, list[str]]:
    table = next(t for t in spike.report(run).tables if t.title == "Browser JavaScript: raw, framework baseline and marginal")
    return {row[0]: row[1:] for row in table.rows}


@pytest.mark.parametrize("kind", ["min", "gzip"])
def test_marginal_bytes_are_the_bundle_minus_the_empty_sveltekit_page(kind: str) -> None:
    run = load(BUNDLE_RUN)
    sk = _ok(run, "bundle", "sveltekit")
    raw, baseline = sk.median(f"bundle_{kind}_bytes"), sk.median(f"framework_baseline_{kind}_bytes")
    assert raw and baseline and 0 < baseline < raw
    assert sk.median(f"marginal_{kind}_bytes") == raw - baseline
    # The other clients are standalone bundles: what they add to the SvelteKit app is all of them.
    for o in ("native", "socketio"):
        sr = _ok(run, "bundle", o)
        assert sr.median(f"marginal_{kind}_bytes") == sr.median(f"bundle_{kind}_bytes")
    # The document shows the three figures, each from the stored run, and says which is which.
    word = "minified" if kind == "min" else "gzipped"
    rows = _bundle_table(run)
    assert rows[f"raw: all its browser JavaScript, {word}"][2] == f"{raw:,.0f} B"
    assert rows[f"framework baseline: an empty SvelteKit page, {word}"] == [
        "none: a standalone client",
        "none: a standalone client",
        f"{baseline:,.0f} B",
    ]
    assert rows[f"marginal: raw - framework baseline, {word}"][2] == f"{raw - baseline:,.0f} B"


def test_marginal_npm_dependencies_are_what_sveltekit_adds_to_an_empty_app() -> None:
    run = load(BUNDLE_RUN)
    sk = _ok(run, "bundle", "sveltekit")
    npm = sk.fact["npm"]
    assert npm["marginal_dependencies"] == ["ws"] and sk.median("marginal_npm_dependencies") == 1
    assert sk.median("npm_dependencies") == len(npm["dependencies"]) == 6
    assert sk.median("marginal_npm_packages") == len(npm["marginal_packages"]) == 1
    assert sk.median("npm_packages") == len(npm["packages"])
    note = next(n for n in spike.report(run).notes if n.startswith("**SvelteKit's npm dependencies.**"))
    assert "marginal: 1 direct (`ws`), pulling in 1 package of the lock file (`ws`)" in note


def test_a_run_from_before_the_baseline_says_not_measured() -> None:
    run = load(OLD_RUN)
    rows = _bundle_table(run)
    assert rows["framework baseline: an empty SvelteKit page, gzipped"][2] == "not measured"
    assert rows["marginal: raw - framework baseline, gzipped"] == ["not measured"] * 3
    assert rows["raw: all its browser JavaScript, gzipped"][2].endswith(" B")  # the raw figures are still shown
    notes = spike.report(run).notes
    assert "**SvelteKit's npm dependencies** beyond an empty SvelteKit app: not measured in this run." in notes


def test_the_baseline_app_lists_the_framework_at_the_pocs_versions() -> None:
    poc = json.loads((build.SVELTEKIT_DIR / "package.json").read_text())
    base = json.loads((build.BASELINE_DIR / "package.json").read_text())
    poc_deps = {**poc.get("dependencies", {}), **poc.get("devDependencies", {})}
    base_deps = {**base.get("dependencies", {}), **base.get("devDependencies", {})}
    assert base_deps and all(poc_deps[name] == version for name, version in base_deps.items())
    # What the Complexity criterion does not count is what an empty SvelteKit app needs.
    assert sorted(spike.ships_anyway) == sorted(base_deps)


def test_npm_dependencies_follow_nested_copies_and_skip_uninstalled_peers() -> None:
    lock = {
        "packages": {
            "": {},
            "node_modules/kit": {"dependencies": {"a": "1"}, "peerDependencies": {"vite": "6"}},
            "node_modules/vite": {"optionalDependencies": {"fsevents": "2"}},
            "node_modules/a": {"dependencies": {"b": "2"}},
            "node_modules/b": {"version": "1"},
            "node_modules/a/node_modules/b": {"version": "2"},
            "node_modules/ws": {"peerDependencies": {"bufferutil": "4"}},
        }
    }
    assert build._installed_closure(lock, ["kit"]) == {
        "node_modules/kit",
        "node_modules/vite",
        "node_modules/a",
        "node_modules/a/node_modules/b",
    }
    assert build._installed_closure(lock, ["ws", "missing"]) == {"node_modules/ws"}
    deps = build.npm_dependencies()  # the committed package.json and lock files
    assert deps["marginal_dependencies"] == ["ws"] and deps["marginal_packages"] == ["ws"]


def test_charts_draw_the_spread_of_the_repeats() -> None:
    data = load(OLD_RUN).to_dict()
    for sr in data["scenarios"]:
        if sr["scenario"] in ("echo", "memory") and sr["option"] == "native":
            for m in sr["measurements"]:
                m["repeats"] = [m["repeats"][0], [2 * s for s in m["repeats"][0]]]
    run = RunResult.from_dict(data)
    charts = {c.slug: c for c in spike.report(run).charts}
    native, other = "Native WebSocket (websockets)", "SvelteKit (adapter-node + ws)"
    counts = charts["throughput"].categories
    echo = _ok(run, "echo", "native")
    for n, r in zip(counts, charts["throughput"].spread[native]):
        rate = echo.measurement("closed_received_rate", connections=n).repeats[0][0]
        assert r == (rate, 2 * rate)
    p99 = echo.measurement("open_latency_p99_ms", connections=counts[-1]).repeats[0][0]
    assert charts["latency"].spread[native][2] == (p99, 2 * p99)
    mem = _ok(run, "memory", "native").measurement("memory_per_connection_bytes").repeats[0][0]
    assert charts["memory"].spread[native] == [(mem, 2 * mem)]
    # One repeat: no whiskers.
    assert all(r is None for c in charts.values() for r in c.spread[other])
