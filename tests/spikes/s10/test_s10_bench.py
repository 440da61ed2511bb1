"""The client-library cost bench, with tiny params: every op measured in a pinned child, the shape of the result."""

from __future__ import annotations

from pathlib import Path

import pytest

from spikes.s10_monitoring import bench


@pytest.mark.slow  # child processes, real local receivers
def test_bench_tiny(tmp_path: Path) -> None:
    ops = ["baseline", "prom_child_inc", "otel_span", "dogstatsd_increment_buffered", "sentry_capture_exception"]
    res = bench.run_bench({"calls": 200, "slow_calls": 50, "sentry_calls": 3, "repeats": 2, "ops": ops}, tmp_path)
    assert set(res["ops"]) == set(ops)
    for op, e in res["ops"].items():
        assert "error" not in e, (op, e)
        assert len(e["ns_per_call"]) == 2 and e["min_ns"] <= e["median_ns"] <= e["max_ns"]
        assert e["affinity"] == [res["core"]]
        assert "median_net_ns" in e
    assert res["versions"]["prometheus_client"] != "missing"
    assert res["sinks"]["sentry"]["events"] >= 1
    assert (tmp_path / "bench.json").exists()


def test_ops_table_is_complete() -> None:
    assert {k for _, _, k in bench.OPS.values()} <= set(bench.DEFAULT_PARAMS)
    assert set(bench.DEFAULT_PARAMS) == set(bench.QUICK_PARAMS)
    assert bench.pick_core() >= 0
