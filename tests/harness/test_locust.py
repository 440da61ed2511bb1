"""Locust master and two workers on loopback against a POC server: the counts and the merged HDR histogram add up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.load.locust import LOCUSTFILE, LocustPlan, master_command, worker_command
from harness.process import LogReady, ServerProcess, free_port
from tests.utils import UNIT

POC = Path(__file__).resolve().parents[2] / "spikes" / "s06_scalability" / "poc" / "native_server.py"
LOCUST = (sys.executable, "-m", "locust")


def test_plan_validation():
    with pytest.raises(ValueError):
        LocustPlan("x", 0, 1, 1, 1)
    with pytest.raises(ValueError):
        LocustPlan("x", 1, 1, 1, 1, mode="poll")


def test_commands_carry_the_plan():
    plan = LocustPlan("burst", 500, 50, 25, 1.0)
    m = master_command(plan, "ws://10.0.0.5:8000", workers=3)
    assert m[:2] == ["locust", "-f"] and "--master" in m and m[m.index("--expect-workers") + 1] == "3"
    assert m[m.index("-u") + 1] == "500" and m[m.index("-r") + 1] == "50" and m[m.index("--s06-run-time") + 1] == "25"
    assert worker_command("10.0.0.1")[-2:] == ["--master-port", "5557"]


def test_cli_prints_and_writes(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["locust", "6", "--scenario", "burst", "--write", str(tmp_path / "lf.py"), "--host", "ws://10.1.2.3:9000"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "lf.py").read_text() == LOCUSTFILE.read_text()
    assert "--master" in res.output and "--worker --master-host MASTER_IP" in res.output and "ws://10.1.2.3:9000" in res.output
    assert "-u 500" in res.output  # the seed's burst: 500 connections
    bad = runner.invoke(app, ["locust", "6", "--scenario", "nope"])
    # A usage error on one line that names the bad scenario and the valid ones (the exact wording is tests/harness/test_cli.py's).
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1, bad.output
    assert "'nope'" in bad.output and "burst" in bad.output and "Traceback" not in bad.output


@pytest.mark.slow
def test_master_and_two_workers_counts_add_up(tmp_path):
    server = ServerProcess(
        "s06 native",
        [sys.executable, str(POC), "--port", "{port}"],
        ready=LogReady(r"READY port=\d+"),
        log_path=tmp_path / "server.log",
        ready_timeout=20 * UNIT,
    )
    plan = LocustPlan("test", users=12, spawn_rate=12, run_time_s=4, rate=5.0)
    bind = free_port()
    summary = tmp_path / "summary.json"
    wdir = tmp_path / "workers"
    with server:
        master = subprocess.Popen(
            master_command(
                plan,
                f"ws://127.0.0.1:{server.port}",
                workers=2,
                bind_port=bind,
                summary=str(summary),
                locust=LOCUST,
                locustfile=str(LOCUSTFILE),
            )
            + ["--master-bind-host", "127.0.0.1"],
            cwd=tmp_path,
            stdout=open(tmp_path / "master.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        workers = [
            subprocess.Popen(
                worker_command("127.0.0.1", master_port=bind, summary_dir=str(wdir), locust=LOCUST, locustfile=str(LOCUSTFILE)),
                cwd=tmp_path,
                stdout=open(tmp_path / f"worker{i}.log", "wb"),
                stderr=subprocess.STDOUT,
            )
            for i in range(2)
        ]
        try:
            master.wait(timeout=60 * UNIT)
            for w in workers:
                w.wait(timeout=30 * UNIT)
        finally:
            for p in (master, *workers):
                if p.poll() is None:
                    p.kill()
                    p.wait()
    log = (tmp_path / "master.log").read_text()
    assert summary.exists(), log[-2000:]
    s = json.loads(summary.read_text())
    per_worker = [json.loads(f.read_text()) for f in sorted(wdir.glob("worker-*.json"))]
    assert len(per_worker) == 2 and len(s["workers"]) == 2
    # Each worker's own count of what it sent, summed, is the master's total; same for replies.
    assert sum(w["sent"] for w in per_worker) == s["sent"] > 0
    assert sum(w["received"] for w in per_worker) == s["received"]
    assert sum(w["connected"] for w in per_worker) == plan.users
    # The merged histogram holds every reply, and Locust counted each as one request.
    assert s["hdr_count"] == s["received"] == s["requests"]["WS echo"]
    assert s["requests"]["WS connect"] == plan.users
    # Against a healthy server on loopback, at most the messages in flight at the stop are missing.
    assert 0 <= s["sent"] - s["received"] <= plan.users
    assert s["latency_ms"]["p50"] is not None and s["latency_ms"]["p50"] <= s["latency_ms"]["p99.9"]


@pytest.mark.slow
def test_idle_generator_reports_its_own_memory(tmp_path):
    from harness.load.idle import run_idle_generator

    server = ServerProcess(
        "s06 native",
        [sys.executable, str(POC), "--port", "{port}"],
        ready=LogReady(r"READY port=\d+"),
        log_path=tmp_path / "server.log",
        ready_timeout=20 * UNIT,
    )
    calls = []
    with server:
        r = run_idle_generator(f"ws://127.0.0.1:{server.port}/", "ws", 200, hold_s=0.2, during_hold=lambda: calls.append(1) or "read")
    assert r["connected"] == 200 and r["connect_failed"] == 0 and len(r["connect_ms"]) == 200
    assert r["rss_connected"] > r["rss_before"] > 0
    assert r["during_hold"] == "read" and calls == [1]
    assert r["nofile_soft"] >= 200
    with pytest.raises(ValueError):
        run_idle_generator("ws://example.com:80/", "ws", 1)
