"""Spike 4's plugin end to end: a tiny real run through the runner, the decision recomputed by hand, the document rendered.

Real POC servers, real nginx and squid, real Chromium; every scenario at a smoke-test size. The criteria and the gate
are then recomputed from the stored JSON with the few lines of ``tests/spikes/handcheck.py``, independently of
``harness.decide``: a declaration that reads the wrong scenario, tag or direction fails here.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

import harness.browser  # noqa: F401  (registers chromium with the harness's programs)
from harness.report.render import decide, render_spike
from harness.results import load
from harness.runner import RunPlan, run_spike
from spikes.s04_transport import TransportSpike, spike
from spikes.s04_transport.decision import CUTS
from tests.spikes import handcheck as h
from tests.utils import require_program

pytestmark = pytest.mark.slow

TINY = {
    "latency": {"listeners": 4, "rates": [10], "duration_s": 1.0, "front_rate": 10, "grace_s": 1.0},
    "capacity": {"listeners": 4, "lo_rate": 5.0, "hi_rate": 40.0, "max_steps": 2, "step_s": 0.6},
    "resume": {"listeners": 3, "faults": ["cut-1s", "restart"], "lead_s": 1.0, "tail_s": 2.0, "restart_down_s": 0.5},
    "proxies": {"events": 2, "window_s": 1.5},
    "browsers": {"engines": ["chromium"], "h2": False},
    "compat": {},
    "bad-input": {},
    "robustness": {},
}


class TinySpike(TransportSpike):
    scenarios = tuple(dataclasses.replace(sc, quick_params={**sc.quick_params, **TINY[sc.key]}) for sc in spike.scenarios)


def test_tiny_run_is_stored_scored_by_its_declaration_and_rendered(tmp_path):
    require_program("nginx", "squid", "chromium", "node", "npm")
    tiny = TinySpike()
    run = run_spike(RunPlan(tiny, options=["sse", "ws"], quick=True), tmp_path)
    assert [(s.scenario, s.option, s.status, s.reason) for s in run.scenarios if s.status != "ok"] == []
    stored = load(run.path)
    data = json.loads(run.path.read_text())
    for o in ("sse", "ws"):
        lat = stored.ok("latency", o)
        # The account adds up: every listener and the publisher expect every event; nothing was lost at this load.
        assert lat.median("delivered", path="direct-h1", rate="10") == lat.median("expected", path="direct-h1", rate="10") > 0
        assert lat.median("memory_per_connection_bytes", path="nginx-h1", rate="10") is not None
        cells = stored.ok("resume", o).fact["cells"]
        assert [c["fault"] for c in cells] == ["cut-1s", "restart"]
        cut = cells[0]
        assert cut["total"]["delivered"] + cut["total"]["lost_after_ack"] + cut["total"]["lost_without_ack"] == cut["total"]["expected"]
        assert cut["reconnected"] > 0 and cut["faults"]  # the cut happened, on the run's fault log, and clients came back
        # After the restart every listener was told to reload (an epoch change), counted as unexpected arrivals.
        assert cells[1]["total"]["unexpected"] > 0
        proxies = stored.ok("proxies", o).fact["cells"]
        assert {c["path"] for c in proxies} >= {"nginx-default", "nginx-correct", "squid-forward"}
        assert all(c["evidence"] for c in proxies if c["counted"])  # a counted cell shows the proxy's own log lines
        assert stored.ok("bad-input", o).median("bad_input_unclear") == 0
    by_path = {c["path"]: c for c in stored.ok("proxies", "ws").fact["cells"]}
    assert by_path["nginx-default"]["outcome"] == "fails" and by_path["nginx-correct"]["outcome"] == "works"
    assert stored.ok("compat", "sse").fact["compat"]["source"].startswith("data: @mdn/browser-compat-data")

    d = decide(tiny, stored)
    for o in ("sse", "ws"):
        cuts = [c for c in stored.ok("resume", o).fact["cells"] if c["fault"] in CUTS]
        lost = sum(c["total"]["lost_after_ack"] + c["total"]["duplicated"] for c in cuts)
        gate = {g.gate.name: g for g in d.gates[o]}["no feed event lost or repeated on resume after a network cut"]
        assert gate.value == lost and (gate.status == "pass") == (lost == 0)
        px = stored.ok("proxies", o)
        share = px.median("proxy_paths_working") / px.median("proxy_paths_counted")
        br = stored.ok("browsers", o)
        expected = {
            "Proxy compatibility": h.lin(share, 1.0, 0.4),
            "Browser support": h.lin(br.median("browser_engines_passed") / br.median("browser_engines_run"), 1.0, 0.5),
            "Resource usage": (
                h.logu(h.value(data, "latency", o, "memory_per_connection_bytes", path="direct-h1", rate="10"), 10 * 1024, 100 * 1024)
                + h.logu(h.value(data, "latency", o, "server_cpu_us_per_event", path="direct-h1", rate="10"), 5, 200)
                + h.logu(h.value(data, "latency", o, "bytes_in_per_event", path="direct-h1", rate="10"), 150, 600)
            )
            / 3,
            "Latency": (
                h.logu(h.value(data, "latency", o, "latency_p99_ms", path="direct-h1", rate="10"), 20, 500)
                + h.logu(h.value(data, "capacity", o, "capacity_events_per_s"), 1000, 20)
            )
            / 2,
            "Complexity": h.complexity(data, o),
        }
        for crit, v in expected.items():
            assert d.cells[o][crit].score == pytest.approx(v), (o, crit)

    doc = render_spike(tiny, stored, tmp_path).read_text()
    for title in (
        "The seed's test matrix",
        "Latency and cost per rate",
        "Capacity of a feed room, per repeat",
        "Reconnect and resume (the harness's account)",
        "Through proxies",
        "In the browser engines (measured)",
        "What each transport needs from the proxies in front of it",
        "**Quick run.**",
    ):
        assert title in doc, title
    # The mobile columns are data, never measured.
    matrix = doc[doc.index("The seed's test matrix") :]
    assert "Chrome Android (data)" in matrix and "Safari on iOS (data)" in matrix and "Android (measured" not in matrix
