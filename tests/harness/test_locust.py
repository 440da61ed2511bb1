"""Locust master and two workers on loopback against a POC server: the counts and the merged HDR histogram add up."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.load.locust import LOCUSTFILE, LocustPlan, MessagePlan, master_command, worker_command
from harness.poc import server_process
from harness.process import ServerProcess, free_port
from tests.utils import UNIT

LOCUST = (sys.executable, "-m", "locust")


def native_server(tmp_path: Path) -> ServerProcess:
    """Spike 6's native POC server as its option declares it (``Option.server``), persisting nothing, not started."""
    from spikes.s06_scalability import spike

    server, _ = server_process(
        spike.option("native"),
        tmp_path,
        name="s06 native",
        values={"pg": "", "redis": "", "server_id": 0},
        log_name="server.log",
        ready_timeout=20 * UNIT,
    )
    return server


def test_plan_validation():
    with pytest.raises(ValueError):
        LocustPlan("x", 0, 1, 1, MessagePlan(1))
    with pytest.raises(ValueError):
        MessagePlan(1, transport="sse")
    with pytest.raises(ValueError):
        MessagePlan(1, {"room": "r"})  # no op
    with pytest.raises(ValueError):
        MessagePlan(1, {"op": "echo", "seq": 3})  # the user stamps seq, t, c and d
    with pytest.raises(ValueError, match=r"\$room"):
        LocustPlan("x", 1, 1, 1, MessagePlan(1, {"op": "echo", "room": "$room"}))  # a parameter the spike did not declare
    with pytest.raises(ValueError):
        LocustPlan("x", 1, 1, 1, MessagePlan(1), params={"not an identifier": 1})
    with pytest.raises(ValueError):
        LocustPlan("x", 1, 1, 1, MessagePlan(1), params={"k": [1, 2]})  # not a scalar
    assert MessagePlan(1, {"op": "ping"}).reply_ops == ("ping",)


def test_commands_carry_the_plan():
    plan = LocustPlan("burst", 500, 50, 25, MessagePlan(1.0, {"op": "echo", "tag": "$tag"}), params={"tag": "t1", "n": 3})
    m = master_command(plan, "ws://10.0.0.5:8000", workers=3)
    assert m[:2] == ["locust", "-f"] and "--master" in m and m[m.index("--expect-workers") + 1] == "3"
    assert m[m.index("-u") + 1] == "500" and m[m.index("-r") + 1] == "50" and m[m.index("--harness-run-time") + 1] == "25"
    sent = json.loads(m[m.index("--harness-plan") + 1])
    assert sent["send"] == {"op": "echo", "tag": "$tag"} and sent["rate"] == 1.0 and sent["transport"] == "ws"
    assert json.loads(m[m.index("--spike-params") + 1]) == {"tag": "t1", "n": 3}
    assert worker_command("10.0.0.1")[-2:] == ["--master-port", "5557"]


def test_harness_locust_package_names_nothing_of_spike_6():
    """The harness's Locust support is generic: no Spike 6 flag, parameter, scenario, room or service in its source."""
    from spikes.s06_scalability import locust_users, spike

    names = {"s06", "spike 6", "chat", "room", "table-1", "persist", "postgres", "postgresql", "pg", "redis", "nginx", "broadcast"}
    names |= {sc.key for sc in spike.scenarios} | set(locust_users.SPIKE_PARAMS) | {str(v) for v in locust_users.SPIKE_PARAMS.values()}
    sources = sorted(LOCUSTFILE.parent.glob("*.py"))
    assert {p.name for p in sources} >= {"__init__.py", "locustfile.py"}
    for path in sources:
        text = path.read_text(encoding="utf-8")
        found = sorted(n for n in names if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text, re.IGNORECASE))
        assert not found, f"{path.name} names Spike 6's {found}"


class RecordingServer:
    """A WebSocket server of the harness protocol that keeps every message it receives: it answers join with joined, echoes the rest."""

    def __init__(self) -> None:
        from websockets.sync.server import serve

        self.received: list[dict] = []
        self.server = serve(self._handle, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handle(self, ws) -> None:
        for text in ws:
            msg = json.loads(text)
            self.received.append(msg)
            ws.send(json.dumps({"op": "joined", "room": msg.get("room")}) if msg.get("op") == "join" else text)

    def __enter__(self) -> RecordingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.mark.slow
def test_a_spike_parameter_reaches_the_locust_user(tmp_path):
    """A spike's own parameters (here from an @FILE) reach every user: they fill its messages on the wire and it reports them."""
    params = {"room": "from-the-spike", "tag": "t-42", "weight": 3}
    plan = LocustPlan(
        "params",
        users=3,
        spawn_rate=10,
        run_time_s=2,
        messages=MessagePlan(5.0, {"op": "echo", "tag": "$tag"}, setup=(({"op": "join", "room": "$room"}, "joined"),)),
        params=params,
    )
    (tmp_path / "params.json").write_text(json.dumps(params))
    summary = tmp_path / "summary.json"
    with RecordingServer() as server:
        argv = master_command(plan, f"ws://127.0.0.1:{server.port}", summary=str(summary), locust=LOCUST, locustfile=str(LOCUSTFILE))
        # One local process instead of a master and workers; the parameters come from a file.
        for flag in ("--expect-workers", "--master-bind-port"):
            del argv[argv.index(flag) : argv.index(flag) + 2]
        argv.remove("--master")
        argv[argv.index("--spike-params") + 1] = "@" + str(tmp_path / "params.json")
        res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60 * UNIT)
    assert summary.exists(), res.stdout[-2000:] + res.stderr[-2000:]
    s = json.loads(summary.read_text())
    joins = [m for m in server.received if m["op"] == "join"]
    echoes = [m for m in server.received if m["op"] == "echo"]
    assert len(joins) == plan.users and {m["room"] for m in joins} == {"from-the-spike"}
    assert echoes and {m["tag"] for m in echoes} == {"t-42"} and all({"seq", "t", "c", "d"} <= set(m) for m in echoes)
    assert s["params"] == params and s["received"] > 0 and s["requests"]["WS echo"] == s["received"]


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
    server = native_server(tmp_path)
    # The scheduled message carries a spike parameter, which only the master is given: the workers' users must get it from there.
    plan = LocustPlan(
        "test", users=12, spawn_rate=12, run_time_s=4, messages=MessagePlan(5.0, {"op": "echo", "tag": "$tag"}), params={"tag": "w"}
    )
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
    assert all(w["params"] == {"tag": "w"} for w in per_worker) and s["params"] == {"tag": "w"}
    # The merged histogram holds every reply, and Locust counted each as one request.
    assert s["hdr_count"] == s["received"] == s["requests"]["WS echo"]
    assert s["requests"]["WS connect"] == plan.users
    # Against a healthy server on loopback, at most the messages in flight at the stop are missing.
    assert 0 <= s["sent"] - s["received"] <= plan.users
    assert s["latency_ms"]["p50"] is not None and s["latency_ms"]["p50"] <= s["latency_ms"]["p99.9"]


@pytest.mark.slow
def test_idle_generator_reports_its_own_memory(tmp_path):
    from harness.load.idle import run_idle_generator

    server = native_server(tmp_path)
    calls = []
    with server:
        r = run_idle_generator(f"ws://127.0.0.1:{server.port}/", "ws", 200, hold_s=0.2, during_hold=lambda: calls.append(1) or "read")
    assert r["connected"] == 200 and r["connect_failed"] == 0 and len(r["connect_ms"]) == 200
    assert r["rss_connected"] > r["rss_before"] > 0
    assert r["during_hold"] == "read" and calls == [1]
    assert r["nofile_soft"] >= 200
    with pytest.raises(ValueError):
        run_idle_generator("ws://example.com:80/", "ws", 1)
