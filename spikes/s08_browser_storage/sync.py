"""The sync scenario: offline edits in a browser, kept in IndexedDB across a restart, synced with a pycrdt server.

One run (:func:`run_sync`), in one engine:

1. The spike's sync server starts (``sync_server.py``, its own process), and a second client that stays online
   (:class:`OnlineClient`, pycrdt over the same protocol) writes the starting document: a line of the note and the
   board's 100 tokens.
2. The page (``web/sync.html``, Yjs bundled from ``npm-sync/``) opens online and syncs the document.
3. The session goes offline: the sync server closes the page's connection and refuses new ones (the session's
   ``on_offline`` switch, the same in every engine), and the page is told. The page makes ``edits`` note edits and
   ``moves`` token moves (from a seed; each tagged with its id), each stored in IndexedDB with its update in the
   log and its action in the outbox. Meanwhile the online client edits and moves tokens too.
4. Optionally a log record is corrupted (cut in half). The browser is closed (or killed) and reopened, still
   offline, on the same profile: the page restores from IndexedDB (a record that does not decode is counted and
   the page will fall back to a full resync).
5. Online: the page syncs by ``strategy``: ``state-vector`` (the Yjs exchange: state vector out, diffs both ways;
   the outbox is drained when the server confirms) or ``outbox-replay`` (every outbox action sent with its client
   and sequence number, applied once by the server, removed on its acknowledgement; then the exchange for what the
   page lacks).

The account is the server's, not the page's word: every tag in the server's document is an arrival of that edit
(:mod:`harness.load.account`'s words: delivered, lost after or without acknowledgement, duplicated, unexpected,
reordered). A move is a token's position, so it can show there once at most; that it was applied once is the
server's record of actions (``applied_actions``, ``duplicate_actions``). The time to sync is from the server's
going online for the page to the last offline edit becoming visible in its document; bytes are the WebSocket
payloads both ways from then on, counted by the server (and by the page, which should agree).
"""

from __future__ import annotations

import functools
import json
import random
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pycrdt import Doc, Map, Text

from harness import npm
from harness.load.account import NO_SENDER, Account, ConnLog

__all__ = [
    "STRATEGIES",
    "NPM_DIR",
    "WEB_DIR",
    "OnlineClient",
    "account",
    "page_files",
    "versions",
    "run_sync",
]

STRATEGIES = ("state-vector", "outbox-replay")
HERE = Path(__file__).resolve().parent
NPM_DIR = HERE / "npm-sync"
WEB_DIR = HERE / "web"
NPM_NAME = "s08-sync"
#: The offline client's name (its connection's query, the prefix of its edits' ids) and the online one's.
PAGE, OTHER = "off", "on"
#: Tokens on the board; the page moves t0..t49, the online client t50..t99: a move's effect stays visible.
TOKENS = 100
MAX_MOVES = TOKENS // 2
#: Account connection numbers (harness.load.account names senders by int).
_CONN = {PAGE: 0, OTHER: 1}


# -- the page's files --------------------------------------------------------------------------------------------


@functools.cache
def yjs_bundle() -> bytes:
    """Yjs as one ES module (``/yjs.js``), bundled from the committed lock."""
    return npm.esbuild_bundle(npm.ensure_installed(NPM_DIR, NPM_NAME), 'export * from "yjs";')


def page_files() -> dict[str, bytes]:
    """What the session serves: the page, its script, and the bundle."""
    return {
        "/sync.html": (WEB_DIR / "sync.html").read_bytes(),
        "/sync.js": (WEB_DIR / "sync.js").read_bytes(),
        "/yjs.js": yjs_bundle(),
    }


def versions() -> dict[str, str]:
    """The pinned versions: yjs (and lib0, its one dependency) from the lock, pycrdt and websockets installed."""
    from importlib.metadata import version

    out = npm.locked_versions(NPM_DIR, ["yjs", "lib0", "esbuild"])
    out["pycrdt"] = version("pycrdt")
    out["websockets"] = version("websockets")
    return out


# -- the client that stays online ---------------------------------------------------------------------------------


class OnlineClient:
    """A second client (pycrdt), online the whole time, speaking the page's protocol: state vector, diffs, updates."""

    def __init__(self, url: str, name: str = OTHER, seed: int = 2, timeout: float = 10.0) -> None:
        from websockets.sync.client import connect

        self.name = name
        self.rand = random.Random(seed)
        self.doc: Doc[Any] = Doc()
        self.note = self.doc.get("note", type=Text)
        self.board = self.doc.get("board", type=Map)
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self.edits: list[str] = []  # ids in the order made
        self.bytes_up = self.bytes_down = 0
        self.ws = connect(f"{url}/sync?client={name}", max_size=None, open_timeout=timeout, legacy=True)  # kept open across calls
        self.reader = threading.Thread(target=self._read, name=f"sync-client-{name}", daemon=True)
        self.reader.start()
        self._send(b"S" + self.doc.get_state())
        if not self.synced.wait(timeout):
            raise TimeoutError(f"client {name}: no sync with the server in {timeout:g} s")

    def _send(self, frame: bytes) -> None:
        self.bytes_up += len(frame)
        self.ws.send(frame)

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for frame in self.ws:
                data = frame if isinstance(frame, bytes) else frame.encode()
                self.bytes_down += len(data)
                kind, body = data[:1], data[1:]
                with self.lock:
                    if kind in (b"D", b"U"):
                        self.doc.apply_update(body)
                    elif kind == b"S":
                        self._send(b"D" + self.doc.get_update(body))
                if kind == b"Y":
                    self.synced.set()
        except ConnectionClosed:
            pass

    def _local(self, fn: Any) -> None:
        with self.lock:
            before = self.doc.get_state()
            with self.doc.transaction():
                fn()
            self._send(b"U" + self.doc.get_update(before))

    def seed_board(self, text: str = "<start>") -> None:
        """The starting document: a note line and 100 tokens (one transaction)."""

        def fn() -> None:
            self.note.insert(0, text)
            for i in range(TOKENS):
                self.board[f"t{i}"] = {"x": float(i * 10 % 1000), "y": float(i * 7 % 800)}

        self._local(fn)

    def edit(self) -> str:
        """Insert a tag between two tags (a tag stays whole), as the page does."""
        tid = f"{self.name}.e{sum(1 for e in self.edits if '.e' in e)}"
        with self.lock:
            s = str(self.note)
        spots = [0] + [i + 1 for i, ch in enumerate(s) if ch == ">"]
        at = spots[self.rand.randrange(len(spots))]
        self._local(lambda: self.note.insert(at, f"<{tid}>"))
        self.edits.append(tid)
        return tid

    def move(self) -> str:
        n = sum(1 for e in self.edits if ".m" in e)
        tid = f"{self.name}.m{n}"
        token = f"t{MAX_MOVES + n % MAX_MOVES}"
        x, y = float(self.rand.randrange(1000)), float(self.rand.randrange(800))
        self._local(lambda: self.board.__setitem__(token, {"x": x, "y": y, "id": tid}))
        self.edits.append(tid)
        return tid

    def view(self) -> dict[str, Any]:
        with self.lock:
            board = self.board.to_py() or {}
            return {
                "text": str(self.note),
                "board": {k: [float(v["x"]), float(v["y"])] for k, v in sorted(board.items()) if isinstance(v, dict)},
            }

    def close(self) -> None:
        self.ws.close()
        self.reader.join(5)


# -- the account (pure) ------------------------------------------------------------------------------------------------


def account(
    made: Mapping[str, Sequence[str]],
    acked: Mapping[str, Sequence[str]],
    server: Mapping[str, Any],
) -> dict[str, Any]:
    """Every client's edits against the server's document: :class:`harness.load.account.Account`, one connection a client.

    ``made``: each client's edit ids in the order made (their position is the ``seq``); ``acked``: the ids each
    client was told the server has (an action's ``K``, the exchange's ``Y``; the online client's live updates get
    none); ``server``: the sync server's
    ``/state``. An arrival is an occurrence of a tag in the server's document, at the time it first showed there;
    a tag of no client's edit is unexpected. Echo mode: each client's edits are expected once, at the server.
    """
    seq_of = {(client, eid): i for client, ids in made.items() for i, eid in enumerate(ids)}
    by_id = {eid: client for client, ids in made.items() for eid in ids}
    seen = server.get("seen") or {}
    arrivals: dict[str, list[tuple[int, int, int]]] = {c: [] for c in made}
    stray: list[tuple[int, int, int]] = []
    for tag in server.get("tags") or []:
        t_ns = int((seen.get(tag) or {}).get("t_ns") or 0)
        client = by_id.get(tag)
        if client is None:
            stray.append((NO_SENDER, -1, t_ns))
        else:
            arrivals[client].append((_CONN.get(client, 0), seq_of[(client, tag)], t_ns))
    logs = []
    for client, ids in made.items():
        conn = _CONN.get(client, len(_CONN))
        got = sorted(arrivals[client], key=lambda a: (a[2], a[1]))
        if client == PAGE:
            got += stray  # the page's connection owns the stray tags: it is the one under test
        acked_seq = tuple(seq_of[(client, e)] for e in acked.get(client, ()) if (client, e) in seq_of)
        logs.append(ConnLog(conn=conn, sent=tuple(range(len(ids))), acked=acked_seq, arrivals=tuple(got)))
    acc = Account.of(logs, mode="echo")
    out = acc.to_dict()
    out["clients"] = {str(_CONN.get(c, c)): c for c in made}
    return out


def outbox_account(page_client: Mapping[str, Any], made: int, outbox_after: int, applied_twice: int) -> dict[str, Any]:
    """The outbox drained exactly once: every action applied once, none twice, none left in the page's store."""
    actions = [r for r in page_client.get("received", []) if r.get("kind") == "action"]
    applied = len(page_client.get("applied_actions") or {})
    return {
        "actions_made": made,
        "action_frames_received": len(actions),
        "applied": applied,
        "duplicate_copies_ignored": int(page_client.get("duplicate_actions") or 0),
        "applied_twice": applied_twice,
        "left_in_outbox": outbox_after,
    }


def sync_timing(server: Mapping[str, Any], ids: Sequence[str], client: str = PAGE) -> dict[str, Any]:
    """From the client's going online (the server's clock) to the last of ``ids`` showing in the server's document."""
    rec = (server.get("clients") or {}).get(client) or {}
    t0 = rec.get("online_ns")
    seen = server.get("seen") or {}
    times = [seen[i]["t_ns"] for i in ids if i in seen]
    last = max(times) if times else None
    return {
        "online_to_all_edits_ms": None if t0 is None or last is None or len(times) < len(ids) else round((last - t0) / 1e6, 3),
        "bytes_up": rec.get("online_bytes_up"),
        "bytes_down": rec.get("online_bytes_down"),
        "frames_up": rec.get("online_frames_up"),
        "frames_down": rec.get("online_frames_down"),
    }


# -- the run ------------------------------------------------------------------------------------------------------------


def _get(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def start_server(workdir: Path) -> Any:
    """The sync server as its own process (a :class:`harness.process.ServerProcess`), ready."""
    from harness.process import LogReady, ServerProcess

    server = ServerProcess(
        "s08-sync-server",
        [sys.executable, "-m", "spikes.s08_browser_storage.sync_server", "--host", "{host}", "--port", "{port}"],
        ready=LogReady(r"READY port=\d+"),
        log_path=workdir / "sync-server.log",
        cwd=HERE.parent.parent,
        grace=2.0,
    )
    server.start()
    return server


def run_sync(
    engine: str,
    workdir: str | Path,
    *,
    edits: int,
    moves: int,
    strategy: str,
    kill: bool = False,
    corrupt: bool = False,
    resend: int = 0,
    other_edits: int = 3,
    other_moves: int = 2,
    seed: int = 1,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """The sync scenario once in ``engine`` (see the module's docstring); its account, timings and bytes, as JSON data.

    ``kill``: SIGKILL the browser instead of closing it; ``corrupt``: cut the newest update-log record in half before
    the restart; ``resend``: the page sends its first ``resend`` outbox actions twice (an acknowledgement lost to a
    crash). ``other_edits`` / ``other_moves``: what the client that stayed online does meanwhile.
    """
    from harness.browser_session import BrowserSession

    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
    if not 0 <= moves <= MAX_MOVES or not 0 <= other_moves <= MAX_MOVES:
        raise ValueError(f"at most {MAX_MOVES} moves per client (one token each, so every move stays visible)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    files = page_files()
    server = start_server(workdir)
    base = f"http://127.0.0.1:{server.port}"
    ws_base = f"ws://127.0.0.1:{server.port}"
    other: OnlineClient | None = None
    steps: dict[str, Any] = {}

    def switch(offline: bool) -> None:
        _get(f"{base}/{'offline' if offline else 'online'}?client={PAGE}")

    try:
        other = OnlineClient(ws_base, seed=seed + 1)
        other.seed_board()
        query = f"/sync.html?client={PAGE}&port={server.port}&seed={seed}"
        with BrowserSession(engine, workdir, files=files, on_offline=switch) as session:
            first = session.open_and_keep(query, timeout=timeout)
            steps["start"] = _check(first.data)
            session.set_offline(True)
            session.send({"type": "cmd", "op": "offline", "edits": edits, "moves": moves})
            steps["offline"] = _check(session.wait_report(timeout).data)
            for i in range(max(other_edits, other_moves)):  # the other client works meanwhile
                if i < other_edits:
                    other.edit()
                if i < other_moves:
                    other.move()
            if corrupt:
                session.send({"type": "cmd", "op": "corrupt"})
                steps["corrupt"] = _check(session.wait_report(timeout).data)
            t = time.monotonic()
            session.kill() if kill else session.close()
            steps["stop_s"] = round(time.monotonic() - t, 3)
            steps["restored"] = _check(session.open_and_keep(query, timeout=timeout).data)
            session.set_offline(False)
            session.send({"type": "cmd", "op": "online", "strategy": strategy, "resend": resend})
            steps["online"] = _check(session.wait_report(timeout).data)
            made_ids = [m["id"] for m in steps["offline"]["made"]]
            state = _settle(base, other, made_ids, timeout)
            other_view = other.view()
            session.send({"type": "cmd", "op": "report"})
            steps["final"] = _check(session.wait_report(timeout).data)
            session.close()
            engine_version = session.version
    finally:
        if other is not None:
            other.close()
        server.stop()
    return summarize(
        engine, engine_version, strategy, steps, state, other.edits, kill=kill, corrupt=corrupt, resend=resend, other_view=other_view
    )


def _check(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RuntimeError(f"the sync page reported {data!r}")
    if "error" in data:
        raise RuntimeError(f"the sync page failed at {data.get('op')}: {data['error']}\n{data.get('stack', '')}")
    return data


def _settle(base: str, other: OnlineClient, ids: Sequence[str], timeout: float) -> dict[str, Any]:
    """The server's state once it has every id and the online client has caught up (or at ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        state = _get(f"{base}/state")
        if (all(i in state["seen"] for i in ids) and other.view()["text"] == state["text"]) or time.monotonic() > deadline:
            return dict(state)
        time.sleep(0.02)


def summarize(
    engine: str,
    engine_version: str,
    strategy: str,
    steps: Mapping[str, Any],
    server: Mapping[str, Any],
    other_edits: Sequence[str],
    *,
    kill: bool,
    corrupt: bool,
    resend: int,
    other_view: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's JSON: the account, the outbox, time and bytes, the texts compared, the page's health counts."""
    offline, online, final = steps["offline"], steps["online"], steps["final"]
    made = [m["id"] for m in offline["made"]]
    acc = account({PAGE: made, OTHER: list(other_edits)}, {PAGE: online.get("acked") or [], OTHER: []}, server)
    tags = list(server.get("tags") or [])
    applied_twice = sum(1 for i in made if tags.count(i) > 1)
    page_rec = (server.get("clients") or {}).get(PAGE) or {}
    texts_equal = final["text"] == server["text"]
    boards_equal = final["board"] == server["board"]
    restored = steps["restored"]
    return {
        "engine": engine,
        "engine_version": engine_version,
        "strategy": strategy,
        "browser_stop": "kill" if kill else "close",
        "corrupt_log_record": corrupt,
        "resend": resend,
        "edits": sum(1 for m in offline["made"] if m["kind"] == "edit"),
        "moves": sum(1 for m in offline["made"] if m["kind"] == "move"),
        "other_client_edits": len(other_edits),
        "account": acc,
        "outbox": outbox_account(page_rec, len(made), int(final.get("outbox_left", -1)), applied_twice),
        "exactly_once": acc["total"]["delivered"]["count"] == acc["total"]["expected"]
        and acc["total"]["duplicated"]["count"] == 0
        and acc["total"]["unexpected"]["count"] == 0
        and applied_twice == 0
        and int(final.get("outbox_left", -1)) == 0,
        "texts_equal": texts_equal and (other_view is None or other_view["text"] == server["text"]),
        "boards_equal": boards_equal,
        "timing": sync_timing(server, made) | {"page_sync_ms": online.get("sync_ms"), "page_connect_ms": online.get("connect_ms")},
        "page_counted": {k: online.get(k) for k in ("bytes_up", "bytes_down", "frames_up", "frames_down")},
        "restore": {
            "ms": restored.get("restored", {}).get("restore_ms"),
            "outbox": restored.get("restored", {}).get("outbox"),
            "log_records": restored.get("health", {}).get("log_records"),
            "text_restored_equal_to_offline": restored.get("text") == offline.get("text"),
        },
        "health": final.get("health") or {},
        "fallback_full_resync": bool(online.get("fallback")),
        "log_compaction": online.get("compacted"),
        "doc_bytes": server.get("doc_bytes"),
        "offline_edit_ms": offline.get("edit_ms"),
        "server_text_chars": len(server["text"]),
    }
