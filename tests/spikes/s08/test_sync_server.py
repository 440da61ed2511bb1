"""Spike 8's sync server: the sans-I/O core with pycrdt clients (no sockets), then the real process on port 0."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pycrdt import Doc, Map, Text

from harness.poc import REPO_ROOT
from harness.process import LogReady, ServerProcess
from spikes.s08_browser_storage.sync_server import BadFrame, SyncCore
from tests.utils import UNIT


class Clock:
    """A fake clock: each reading is 1 ms after the last."""

    def __init__(self) -> None:
        self.t = 0

    def __call__(self) -> int:
        self.t += 1_000_000
        return self.t


class Peer:
    """A pycrdt client of the core's protocol, fed by hand."""

    def __init__(self) -> None:
        self.doc = Doc()
        self.note = self.doc.get("note", type=Text)
        self.board = self.doc.get("board", type=Map)

    def edit(self, at: int, s: str) -> bytes:
        before = self.doc.get_state()
        self.note.insert(at, s)
        return self.doc.get_update(before)

    def move(self, token: str, x: float, y: float, tid: str) -> bytes:
        before = self.doc.get_state()
        self.board[token] = {"x": x, "y": y, "id": tid}
        return self.doc.get_update(before)

    def feed(self, frames: list[bytes]) -> list[bytes]:
        """Apply what the server sent; the answers a client owes (a D for the server's S)."""
        out = []
        for f in frames:
            if f[:1] in (b"D", b"U"):
                self.doc.apply_update(f[1:])
            elif f[:1] == b"S":
                out.append(b"D" + self.doc.get_update(f[1:]))
        return out


def to(conn: str, out: list[tuple[object, bytes]]) -> list[bytes]:
    return [f for c, f in out if c == conn]


def action(seq: int, tid: str, update: bytes, client: str = "a") -> bytes:
    return b"A" + json.dumps({"client": client, "seq": seq, "id": tid, "kind": "edit"}).encode() + b"\n" + update


def test_state_vector_exchange_merges_concurrent_edits_and_confirms() -> None:
    core = SyncCore(clock=Clock())
    a, b = Peer(), Peer()
    assert core.connect("A", "a") and core.connect("B", "b")
    core.on_message("B", b"U" + b.edit(0, "<b.e0>"))
    a.edit(0, "<a.e0>")  # made offline: the server has not seen it
    a.edit(0, "<a.e1>")
    out = core.on_message("A", b"S" + a.doc.get_state())
    assert [f[:1] for f in to("A", out)] == [b"D", b"S"]
    answers = a.feed(to("A", out))
    out = core.on_message("A", answers[0])
    assert to("A", out) == [b"Y"]  # synced: the server has all a had
    b.feed(to("B", out))  # forwarded as an update
    assert str(a.note) == str(b.note) == str(core.note)
    assert sorted(core.tags()) == ["a.e0", "a.e1", "b.e0"]
    assert core.seen["a.e0"][1] == core.seen["a.e1"][1] == "a"
    assert core.seen["a.e0"][0] == core.seen["a.e1"][0]  # one diff: visible at once


def test_a_replayed_action_is_applied_once_and_acknowledged_twice() -> None:
    core = SyncCore(clock=Clock())
    a, b = Peer(), Peer()
    core.connect("A", "a")
    core.connect("B", "b")
    frame = action(0, "a.e0", a.edit(0, "<a.e0>"))
    first = core.on_message("A", frame)
    second = core.on_message("A", frame)
    assert to("A", first) == [b"K0"] and to("A", second) == [b"K0"]
    assert len(to("B", first)) == 1 and to("B", second) == []  # forwarded once
    rec = core.clients["a"]
    assert rec.applied_actions == {0: "a.e0"} and rec.duplicate_actions == 1
    assert [r["applied"] for r in rec.received] == [True, False]
    b.feed(to("B", first))
    assert str(b.note) == str(core.note) == "<a.e0>"
    assert core.tags() == ["a.e0"]


def test_moves_are_tagged_on_the_board_and_viewed_without_tags() -> None:
    core = SyncCore(clock=Clock())
    a = Peer()
    core.connect("A", "a")
    core.on_message("A", action(0, "a.m0", a.move("t1", 10, 20, "a.m0")))
    assert core.tags() == ["a.m0"]
    assert core.board_view() == {"t1": [10.0, 20.0]}


def test_bad_frames_are_refused_and_counted() -> None:
    core = SyncCore(clock=Clock())
    core.connect("A", "a")
    a = Peer()
    update = a.edit(0, "<a.e0>")
    for bad in (b"U" + update[: len(update) // 2], b"Z", b"A{not json}\n", b"Anoheader", action(0, "a.e0", update[:3])):
        with pytest.raises(BadFrame):
            core.on_message("A", bad)
    assert core.clients["a"].bad_frames == 5
    assert str(core.note) == "" and core.clients["a"].applied_actions == {}


def test_offline_closes_refuses_and_online_restarts_the_counters() -> None:
    core = SyncCore(clock=Clock())
    core.connect("A", "a")
    core.on_message("A", b"S" + Doc().get_state())
    rec = core.clients["a"]
    assert rec.online_bytes_up > 0 and rec.online_bytes_down > 0
    assert core.set_offline("a", True) == ["A"]
    core.disconnect("A")
    assert not core.connect("A2", "a")
    core.set_offline("a", False)
    assert rec.online_ns is not None and rec.online_bytes_up == rec.online_bytes_down == 0
    assert core.connect("A2", "a") and rec.connections == 2
    assert rec.bytes_up > 0  # the totals stay


def test_bytes_are_counted_per_client_both_ways() -> None:
    core = SyncCore(clock=Clock())
    core.connect("A", "a")
    core.connect("B", "b")
    a = Peer()
    u = b"U" + a.edit(0, "<a.e0>")
    core.on_message("A", u)
    assert core.clients["a"].bytes_up == len(u) and core.clients["a"].bytes_down == 0
    assert core.clients["b"].bytes_down == len(u)  # the forward


# -- the real server ---------------------------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    argv = [sys.executable, "-m", "spikes.s08_browser_storage.sync_server", "--host", "{host}", "--port", "{port}"]
    proc = ServerProcess(
        "s08 sync", argv, cwd=REPO_ROOT, ready=LogReady(r"READY port=\d+"), ready_timeout=30 * UNIT, log_path=tmp_path / "sync.log"
    )
    with proc:
        yield proc
    assert proc.returncode == 0, proc.last_log_lines(20)
    assert "Traceback" not in proc.log_path.read_text()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10 * UNIT) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.slow
def test_the_server_syncs_over_websocket_and_answers_the_controls(server: ServerProcess) -> None:
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    ws_url = f"ws://127.0.0.1:{server.port}"
    assert f"READY port={server.port}" in server.log_since_start()
    a = Peer()
    with connect(f"{ws_url}/sync?client=a", max_size=None, open_timeout=10 * UNIT) as ws:
        ws.send(action(0, "a.e0", a.edit(0, "<a.e0>")))
        assert ws.recv(timeout=10 * UNIT) == b"K0"
        ws.send(b"S" + a.doc.get_state())
        frames = [ws.recv(timeout=10 * UNIT) for _ in range(2)]
        assert [f[:1] for f in frames] == [b"D", b"S"]
        for answer in a.feed(frames):  # type: ignore[arg-type]
            ws.send(answer)
        assert ws.recv(timeout=10 * UNIT) == b"Y"
        status, body = _get(f"http://127.0.0.1:{server.port}/offline?client=a")
        assert status == 200 and json.loads(body)["offline"] is True
        with pytest.raises(ConnectionClosed):  # the harness's "offline" cuts the connection
            ws.recv(timeout=10 * UNIT)
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{ws_url}/sync?client=a", open_timeout=10 * UNIT)
    assert refused.value.response.status_code == 503
    assert _get(f"http://127.0.0.1:{server.port}/online?client=a")[0] == 200
    status, body = _get(f"http://127.0.0.1:{server.port}/state")
    state = json.loads(body)
    assert status == 200 and state["text"] == "<a.e0>" and state["tags"] == ["a.e0"]
    assert state["clients"]["a"]["applied_actions"] == {"0": "a.e0"} and state["offline"] == []
    with connect(f"{ws_url}/sync?client=a", open_timeout=10 * UNIT) as ws:
        ws.send(b"U" + b"\xff\xff\xff")  # does not decode: closed with 1008, the server keeps running
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10 * UNIT)
        assert ws.close_code == 1008
    assert json.loads(_get(f"http://127.0.0.1:{server.port}/state")[1])["clients"]["a"]["bad_frames"] == 1
