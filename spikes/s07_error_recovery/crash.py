"""Spike 7's client-crash scenario: a Chromium page killed in the middle of its edits and opened again on its profile.

The page (``web/crash.js``) is a tabletop client that makes ``edits`` edits (broadcasts with its own client id
``c`` and ``seq`` 1..N, ``rate`` a second) through an outbox: ``indexeddb`` (an object store; an edit goes on the
socket only once its write transaction completed), ``memory`` (a JS Map) or ``none`` (the baseline of the
reconnect-only option: no outbox, and its server sends no acknowledgements to empty one). An edit leaves the
outbox when the server's ``ack`` arrives; after a rejoin, everything left is sent again.

The harness is the page's independent witness: the page logs every step with a *synchronous* POST to this module's
page server, so the step is recorded before the page goes on: ``made`` (the app accepted the edit, before the
outbox write), ``handed`` (the outbox write completed; the edit is about to go on the socket) and ``acked``. The
browser runs as a :class:`harness.process.ServerProcess` (its own process group) on a ``--user-data-dir`` profile of
its own. Once ``kill_at`` of the edits are handed over, the whole group gets SIGKILL; Chromium is then started again
on the same profile with the page in its ``reopen`` phase, which reads the outbox, rejoins, sends what it kept
again and reports when the outbox is empty (``drained``). The server's own record (``{"op": "applied"}``) then
says which edits of the client it applied.

Two network conditions (the ``network`` tag): ``online`` (the kill on a healthy connection: only edits in flight
can be lost) and ``offline`` (from ``offline_at`` handed-over edits until after the kill, the fault proxy between
the page and the server resets the connection and refuses new ones, as a dropped Wi-Fi does: edits pile up
unacknowledged in the outbox, or, without one, go nowhere).

:func:`harness.browser.run_page` cannot do this (a fresh profile for every page, one result per page), so this
module launches Chromium itself with the harness's public pieces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from harness.browser import CHROMIUM_ARGS, ENGINES, BrowserError, find_engine
from harness.faults import FaultLog, FaultProxy, Reset
from harness.plugin import NotRunnable, ScenarioContext, ScenarioOutput, Table
from harness.process import ServerCrashed, ServerProcess
from harness.results import RunResult
from harness.stats import fmt_num
from spikes.s07_error_recovery import scenarios as _sc

__all__ = [
    "CRASH_METHOD",
    "CRASH_OPTIONS",
    "CRASH_PARAMS",
    "CRASH_QUICK",
    "VARIANTS",
    "PageLog",
    "crash_table",
    "run_crash",
    "tally",
]

WEB_DIR = Path(__file__).parent / "web"
#: The options the scenario runs: the outbox ones, and reconnect only as the baseline without an outbox.
CRASH_OPTIONS = ("reconnect", "queue", "queue-reconstruct", "checkpoint")
#: The outbox variants each option runs: reconnect only has no outbox (its server sends no acknowledgements).
VARIANTS = {
    "reconnect": ("none",),
    "queue": ("indexeddb", "memory"),
    "queue-reconstruct": ("indexeddb", "memory"),
    "checkpoint": ("indexeddb", "memory"),
}
ROOM = "crash-1"

CRASH_PARAMS: dict[str, Any] = {
    "edits": 200,
    "browsers": 2,
    "rate": 50,
    "kill_at": 0.5,  # the fraction of the edits handed over when the browser is killed
    "offline_at": 0.25,  # offline network: the fraction handed over when the proxy starts resetting
    "networks": ["online", "offline"],
    # IndexedDB transactions' durability hint. Chromium's default is relaxed since Chrome 121: "complete" once the write is in the
    # OS's buffers, which a killed process cannot lose (a power loss could); "strict" flushes to disk first.
    "durability": "default",
    "timeout_s": 60.0,
    "log_len": 10_000,
}
CRASH_QUICK: dict[str, Any] = {"edits": 100, "networks": ["offline"]}

CRASH_METHOD = (
    "Debian's Chromium, headless, on a profile directory of its own, opens a page (`web/crash.js`) that joins a room of the option's "
    "server through the harness's fault proxy and makes `edits` edits (broadcasts with its client id and seq 1..N, `rate` a second), "
    "each first put in its outbox: IndexedDB (written, the transaction complete, before the send; durability hint `durability`), "
    "memory (a JS Map), or none (reconnect only: its server acknowledges nothing). An edit leaves the outbox on the server's "
    "acknowledgement; after a rejoin, what is left is sent again. The page logs each edit to the harness with a synchronous POST "
    "that returns once recorded: made (before the outbox write), handed over (after it, before the send) and acknowledged, so the "
    "harness knows what the app accepted independently of the outbox. When `kill_at` of the edits are handed over (plus a random "
    "delay under one edit's period, so that the kill lands anywhere in an edit), the browser's whole process group gets SIGKILL; "
    "Chromium is started again on the same profile, the page reads its outbox, rejoins, sends what "
    'it kept and reports when the outbox is empty. The server\'s record of the client\'s applied seqs (`{"op": "applied"}`) is '
    "compared with what was handed over. Network `online`: the kill on a healthy connection; `offline`: from `offline_at` of the "
    "edits handed over until after the relaunch, the proxy resets the page's connection and refuses new ones. Duplicated: broadcasts "
    "of one edit a member (a watcher on the server directly) received more than once. One run per option, outbox and network, `browsers` at a time (each its own server, Chromium and profile). "
    "SIGKILL is a crash of the browser, not of the machine: an IndexedDB write that completed under the default (relaxed) durability "
    "is in the OS's buffers and survives it; a power loss is not tested. Without an outbox, the edits made offline are lost whether or "
    "not the browser then crashes."
)


# -- the witness: the page's log, and the page server ------------------------------------------------------


class PageLog:
    """Everything the page posted to ``/log``, in arrival order, each with ``time.monotonic()`` of its arrival."""

    def __init__(self) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._cond = threading.Condition()

    def add(self, event: dict[str, Any]) -> None:
        with self._cond:
            self.events.append((time.monotonic(), event))
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float, alive: Callable[[], bool] = lambda: True) -> bool:
        """Wait until ``pred(events)`` holds; False at ``timeout`` or soon after ``alive()`` says the browser is gone.

        An ``error`` event from the page raises :class:`BrowserError`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                evs = [e for _, e in self.events]
                errors = [e for e in evs if e.get("stage") == "error"]
                if errors:
                    raise BrowserError(f"the crash page failed: {errors[0].get('error')}")
                if pred(evs):
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or not alive():
                    return False
                self._cond.wait(min(0.25, left))

    def stages(self, stage: str, phase: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [e for _, e in self.events if e.get("stage") == stage and (phase is None or e.get("phase") == phase)]

    def arrival(self, stage: str, phase: str) -> float | None:
        """``time.monotonic()`` when the first ``stage`` event of ``phase`` arrived."""
        with self._cond:
            return next((t for t, e in self.events if e.get("stage") == stage and e.get("phase") == phase), None)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a killed browser resets its connections: expected here, not worth a traceback


class PageServer:
    """Loopback HTTP: the page's files from ``web/`` and ``POST /log`` into a :class:`PageLog`. Stays up across the kill:
    the reopened page has the same origin (``127.0.0.1:port``), so it sees the same IndexedDB."""

    def __init__(self, log: PageLog, web_dir: Path = WEB_DIR) -> None:
        files = {p.name: p.read_bytes() for p in web_dir.iterdir() if p.suffix in (".html", ".js")}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: one connection for the page's synchronous posts

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                name = self.path.split("?", 1)[0].lstrip("/")
                if name in files:
                    self._send(200, files[name], "text/html; charset=utf-8" if name.endswith(".html") else "text/javascript")
                else:
                    self._send(404, b"not found", "text/plain")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/log":
                    self._send(404, b"not found", "text/plain")
                    return
                try:
                    event = json.loads(body)
                except ValueError:
                    event = {"stage": "error", "error": f"malformed log entry: {body[:200]!r}"}
                log.add(event if isinstance(event, dict) else {"stage": "error", "error": "a log entry must be an object"})
                self._send(204, b"", "text/plain")

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="s07-crash-page-server", daemon=True)

    def url(self, **query: Any) -> str:
        return f"http://127.0.0.1:{self.port}/crash.html?" + urllib.parse.urlencode(query)

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- the account ---------------------------------------------------------------------------------------------


def tally(log: PageLog | Iterable[dict[str, Any]], applied: Iterable[int], deliveries: Counter[int] | None = None) -> dict[str, Any]:
    """Which edits survived: the page's log of its edit phase (``made``, ``handed``, ``acked``) against the server's applied seqs.

    ``deliveries``: how many times a member received each seq's broadcast (a duplicated edit: more than once).
    """
    events = [e for _, e in log.events] if isinstance(log, PageLog) else list(log)
    edit = [e for e in events if e.get("phase") == "edit"]
    made = {int(e["seq"]) for e in edit if e.get("stage") == "made"}
    handed = {int(e["seq"]) for e in edit if e.get("stage") == "handed"}
    acked = {int(e["seq"]) for e in edit if e.get("stage") == "acked"}
    applied_set = set(applied)
    reopened = next((e for e in events if e.get("stage") == "reopened"), {})
    drained = next((e for e in events if e.get("stage") == "drained" and e.get("phase") == "reopen"), {})
    in_write = made - handed
    return {
        "made": len(made),
        "handed": len(handed),
        "acked": len(acked),
        "survived": len(handed & applied_set),
        "lost": sorted(handed - applied_set),
        "lost_acked": sorted(acked - applied_set),
        "in_write": sorted(in_write),
        "in_write_survived": sorted(in_write & applied_set),
        "unexpected": sorted(applied_set - made),  # applied, never made: should not exist
        "kept": sorted(int(s) for s in reopened.get("kept", [])),
        "resent": int(drained.get("resent", 0)),
        "drained": bool(drained.get("ok", False)),
        "duplicated": sorted(s for s, n in (deliveries or Counter()).items() if n > 1),
    }


# -- the pieces of one run -----------------------------------------------------------------------------------


class _Watcher:
    """A member of the room on the server directly: counts every broadcast of client ``c`` it receives, per seq."""

    def __init__(self, url: str, c: int) -> None:
        self.url, self.c = url, c
        self.deliveries: Counter[int] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._joined = threading.Event()
        self._thread = threading.Thread(target=self._run, name="s07-crash-watcher", daemon=True)

    def __enter__(self) -> _Watcher:
        self._thread.start()
        if not self._joined.wait(10):
            raise RuntimeError(f"the watcher could not join: {self.errors}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        from websockets.sync.client import connect

        try:
            with connect(self.url, open_timeout=10) as ws:
                ws.send(json.dumps({"op": "join", "room": ROOM}))
                while not self._stop.is_set():
                    try:
                        msg = json.loads(ws.recv(timeout=0.2))
                    except TimeoutError:
                        continue
                    if msg.get("op") == "joined":
                        self._joined.set()
                    elif msg.get("op") == "broadcast" and msg.get("c") == self.c:
                        self.deliveries[int(msg["seq"])] += 1
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")


def ask(url: str, msg: dict[str, Any]) -> dict[str, Any]:
    """One request to the server on a fresh connection, and its answer."""
    from websockets.sync.client import connect

    with connect(url, open_timeout=10) as ws:
        ws.send(json.dumps(msg))
        return dict(json.loads(ws.recv(timeout=10)))


def _chromium() -> str:
    path = find_engine("chromium")
    if path is None:
        raise NotRunnable(f"Chromium is not installed (install: {ENGINES['chromium'].install})")
    return path


def browser_process(path: str, url: str, profile: Path, log_path: Path) -> ServerProcess:
    """Headless Chromium on ``profile`` (``--user-data-dir``) opening ``url``, in its own process group; not started."""
    argv = [path, "--headless=new", *CHROMIUM_ARGS, "--no-default-browser-check", f"--user-data-dir={profile}", url]
    env = {"NO_AT_BRIDGE": "1", "HOME": str(profile), "XDG_RUNTIME_DIR": str(profile)}
    return ServerProcess("chromium", argv, env=env, ready=None, log_path=log_path, grace=3.0)


@contextlib.contextmanager
def _running(browser: ServerProcess) -> Iterator[ServerProcess]:
    try:
        browser.start()
    except ServerCrashed as exc:
        raise BrowserError(f"Chromium exited with {exc.returncode} at start: {exc}") from None
    try:
        yield browser
    finally:
        browser.stop()


def crash_run(
    ctx: ScenarioContext,
    url: str,
    variant: str,
    network: str,
    c: int,
    p: dict[str, Any],
    *,
    chromium: str | None = None,
) -> dict[str, Any]:
    """One crash: the page's edits through ``variant``'s outbox, the browser killed and reopened on its profile, the account."""
    path = chromium or _chromium()
    timeout = float(p["timeout_s"])
    n = int(p["edits"])
    kill_at = max(1, round(n * p["kill_at"]))
    offline_at = max(1, round(n * p["offline_at"]))
    delay = random.Random(c).uniform(0.0, 1.0 / float(p["rate"]))  # reproducible per client id
    base = ctx.workdir / f"crash-{variant}-{network}-{c}"
    profile = base / "profile"
    profile.mkdir(parents=True, exist_ok=True)
    server_port = int(urllib.parse.urlsplit(url).port or 0)
    faults = FaultLog(on_fault=lambda f: ctx.fault(f.kind, f.target, **f.details))
    log = PageLog()
    query = {"room": ROOM, "c": c, "n": n, "rate": p["rate"], "variant": variant, "durability": p["durability"]}
    query["drain_timeout_ms"] = int(timeout * 1000 / 2)
    with FaultProxy(server_port, log=faults) as proxy, PageServer(log) as pages, _Watcher(url, c) as watcher:
        query["ws"] = f"ws://127.0.0.1:{proxy.port}/"
        before = ask(url, {"op": "state", "room": ROOM})
        first = browser_process(path, pages.url(**query, phase="edit"), profile, base / "chromium.log")
        with _running(first):

            def handed(k: int) -> Callable[[list[dict[str, Any]]], bool]:
                return lambda evs: sum(1 for e in evs if e.get("stage") == "handed" and e.get("phase") == "edit") >= k

            if network == "offline":
                if not log.wait_for(handed(offline_at), timeout, lambda: first.alive):
                    raise BrowserError(f"the page handed over fewer than {offline_at} edits in {timeout:.0f} s: {first.last_log_lines(10)}")
                proxy.set_mode(Reset())  # logged as a fault by the proxy
            if not log.wait_for(handed(kill_at), timeout, lambda: first.alive):
                raise BrowserError(f"the page handed over fewer than {kill_at} edits in {timeout:.0f} s: {first.last_log_lines(10)}")
            time.sleep(delay)  # somewhere in the edit after it: the kill lands mid-edit, not on the log's heels
            with faults.record("kill", "chromium", signal="SIGKILL", process_group=first.pid):
                first.kill()
        killed_at = time.monotonic()
        if network == "offline":
            proxy.restore()
        second = browser_process(path, pages.url(**query, phase="reopen"), profile, base / "chromium.log")
        launched = time.monotonic()
        with _running(second):
            drained = log.wait_for(lambda evs: any(e.get("stage") == "drained" and e.get("phase") == "reopen" for e in evs), timeout)
        arrived = log.arrival("drained", "reopen")
        time.sleep(0.3)  # a broadcast of the last resend on its way to the watcher
        answer = ask(url, {"op": "applied", "room": ROOM, "c": c})
        after = ask(url, {"op": "state", "room": ROOM})
    if answer.get("op") != "applied":
        raise RuntimeError(f"the server did not answer the applied request: {answer}")
    account = tally(log, answer["seqs"], watcher.deliveries)
    reopened_at = log.arrival("loaded", "reopen")
    return {
        "variant": variant,
        "network": network,
        "c": c,
        "kill_at": kill_at,
        "offline_at": offline_at if network == "offline" else None,
        **account,
        "drained": drained and account["drained"],
        "drain_ms": (arrived - launched) * 1000 if arrived is not None and account["drained"] else None,
        "reopen_ms": (reopened_at - launched) * 1000 if reopened_at is not None else None,
        "kill_delay_ms": delay * 1000,
        "kill_to_relaunch_ms": (launched - killed_at) * 1000,
        "resent_known": after.get("duplicates_dropped", 0) - before.get("duplicates_dropped", 0),
        "page_loads": [e.get("phase") for e in log.stages("loaded")],
        "closes_before_kill": len(log.stages("closed", "edit")),
        "faults": faults.to_list(),
        "watcher_errors": watcher.errors[:5],
        "server_errors": [e.get("code") for e in log.stages("server-error")][:10],
    }


def record(out: ScenarioOutput, run: dict[str, Any]) -> None:
    """Store one crash run's counts and times under the tags ``outbox`` and ``network``."""
    tag = {"outbox": run["variant"], "network": run["network"]}
    out.add("handed", "edits", [run["handed"]], None, **tag)
    out.add("acked", "edits", [run["acked"]], None, **tag)
    out.add("survived", "edits", [run["survived"]], "higher", **tag)
    out.add("lost", "edits", [len(run["lost"])], **tag)
    out.add("lost_acked", "edits", [len(run["lost_acked"])], **tag)
    out.add("in_write", "edits", [len(run["in_write"])], None, **tag)
    out.add("in_write_survived", "edits", [len(run["in_write_survived"])], None, **tag)
    out.add("kept", "edits", [len(run["kept"])], None, **tag)
    out.add("resent", "edits", [run["resent"]], None, **tag)
    out.add("resent_known", "edits", [run["resent_known"]], None, **tag)
    out.add("duplicated", "edits", [len(run["duplicated"])], **tag)
    out.add("unexpected", "edits", [len(run["unexpected"])], **tag)
    out.add("drained", "runs", [1.0 if run["drained"] else 0.0], "higher", **tag)
    if run["drain_ms"] is not None:
        out.add("drain_ms", "ms", [run["drain_ms"]], **tag)


def run_crash(ctx: ScenarioContext) -> ScenarioOutput:
    """The client crash, for each of the option's outbox variants and each network condition: one crash run each."""
    p = ctx.params
    key = ctx.option.key
    if key not in VARIANTS:
        raise NotRunnable(f"the client crash is not declared for {key!r}")
    path = _chromium()
    out = ScenarioOutput()
    runs = []
    cells = [(v, net) for v in VARIANTS[key] for net in p["networks"]]
    results: list[dict[str, Any] | None] = [None] * len(cells)

    def cell(i: int, variant: str, network: str) -> dict[str, Any]:
        # A server of its own per run: its counters (duplicates dropped) are this run's alone when runs overlap.
        sub = dataclasses.replace(ctx, workdir=ctx.workdir / f"cell-{i}")
        sub.workdir.mkdir(parents=True, exist_ok=True)
        with _sc.deployment(sub, p["log_len"]) as (_server, url, _services):
            return crash_run(sub, url, variant, network, 1000 * (ctx.repeat + 1) + i, p, chromium=path)

    # ``browsers`` crash runs at a time, each its own server, Chromium, profile, page server and client id: independent.
    with ThreadPoolExecutor(max_workers=int(p.get("browsers", 1))) as pool:
        futures = {pool.submit(cell, i, variant, network): i for i, (variant, network) in enumerate(cells)}
        for n, fut in enumerate(as_completed(futures)):
            results[futures[fut]] = fut.result()
            ctx.advance((n + 1) / len(cells))
    for run in results:
        assert run is not None
        record(out, run)
        runs.append(run)
    out.facts = {"runs": runs, "durability": p["durability"], "edits": p["edits"], "rate": p["rate"]}
    return out


# -- the document's table ------------------------------------------------------------------------------------

_ROWS = (
    ("handed", "edits handed over before the kill"),
    ("acked", "of which acknowledged before the kill"),
    ("survived", "handed over and applied by the server"),
    ("lost", "handed over, **lost**"),
    ("lost_acked", "acknowledged, lost"),
    ("in_write", "in the outbox write at the kill (made, not handed over)"),
    ("kept", "kept by the outbox through the kill"),
    ("resent", "sent again after the relaunch"),
    ("resent_known", "of those, already applied (acknowledged again, not applied twice)"),
    ("duplicated", "duplicated (a member received one edit twice)"),
    ("drain_ms", "relaunch to outbox drained and rejoined, ms"),
)
_VARIANT_TITLES = {"indexeddb": "IndexedDB outbox", "memory": "memory outbox", "none": "no outbox"}


_NETWORK_TITLES = {
    "online": "online: the kill on a healthy connection",
    "offline": "offline: the connection reset and refused from `offline_at` of the edits until after the relaunch",
}


def crash_table(run: RunResult, titles: dict[str, str], scenario: str = "client-crash") -> Table | None:
    """The client-crash table from a stored run: a column per option and outbox, a section of rows per network condition,
    a figure per repeat."""
    cols: list[tuple[str, str, Any]] = []  # (option, outbox, its ok result, or the status of a step that did not run ok)
    for o in CRASH_OPTIONS:
        sr = run.result(scenario, o)
        if sr is None:
            continue
        if sr.status != "ok":
            status = sr.status.replace("_", " ") + (f": {sr.reason.splitlines()[0]}" if sr.reason else "")
            cols.extend((o, v, status) for v in VARIANTS[o])
            continue
        for v in VARIANTS[o]:
            if any(m.tags.get("outbox") == v for m in sr.find("handed")):
                cols.append((o, v, sr))
    networks: list[str] = []
    for _, _, sr in cols:
        for m in [] if isinstance(sr, str) else sr.find("handed"):
            if m.tags.get("network") not in networks:
                networks.append(m.tags["network"])
    if not cols or not networks:
        return None
    rows = []
    for net in networks:
        rows.append([f"**{_NETWORK_TITLES.get(net, net)}**", *("" for _ in cols)])
        for name, label in _ROWS:
            row = [label]
            for _, v, sr in cols:
                if isinstance(sr, str):
                    row.append(sr)
                    continue
                try:
                    m = sr.measurement(name, outbox=v, network=net)
                except KeyError:
                    row.append("not drained" if name == "drain_ms" else "n/a")
                    continue
                row.append(", ".join(fmt_num(s) for s in m.samples) if m.samples else "n/a")
            rows.append(row)
    return Table(
        "Client crash: Chromium killed mid-edit and reopened on its profile",
        ["", *(f"{titles.get(o, o)}, {_VARIANT_TITLES[v]}" for o, v, _ in cols)],
        rows,
        "One figure per repeat. Handed over: the outbox write completed and the edit went to the socket, as the page told the harness "
        "synchronously before sending; survived: in the server's own list of the client's applied edits. The relaunch time includes "
        "Chromium's start on the old profile.",
    )
