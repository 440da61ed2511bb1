"""Spike 8's lifecycle scenarios: persistence, invalidation, eviction and bad input, through the offline app page.

The app page (``web/app.html`` + ``web/app.js``) keeps the app's data kinds in one store of ``web/stores.js``:
the board snapshot (100 tokens), preferences, the outbox of offline actions, the map image and 8 token images
(bytes), the app's code (text), the note as a CRDT update blob with a checksummed header, and a schema/version
marker written last. Every value is made from a generation number, so the page tells *present* (equal to what
was written), *absent*, *corrupted* (there but different or undecodable) and *error* (the read threw) apart
per data kind. The harness drives it through :class:`harness.browser_session.BrowserSession` (one profile
across launches): a first command in the query string, the next ones as messages, one report per command.

- :func:`run_persistence`: write every kind in every store, close the browser cleanly and reopen it on the same
  profile; write again and SIGKILL the browser at once; write again and clear the origin's data while the tab is
  open, then read through the page's open handles and through fresh ones. ``persist()`` and ``persisted()`` as
  each engine answers them.
- :func:`run_invalidation`: the map image and the app code through a service worker (``web/sw.js``, one scope per
  strategy: cache-first under a versioned cache name, the same with the page calling ``registration.update()`` at
  start, stale-while-revalidate, network-first with ETag revalidation); the harness's server changes version (new
  ETag, new bytes, a new worker script) between loads: stale reads counted, cold (network) vs warm (cache) load
  time, bytes served. The second cache-first variant exists because the engine's own update check is not timely:
  Chromium 156 kept serving the old version for every load in a row after the change (its update check after a
  navigation is deferred, and ``register()`` with an unchanged script URL does not update), where Firefox and
  WebKitGTK had the new worker by the second load.
- :func:`run_eviction`: the origin's data cleared while the app is closed; on the next start the app notices the
  missing marker and resyncs in full from ``/api/snapshot``: time, bytes, and whether it equals the server's state.
- :func:`run_bad_input`: corrupt records (truncated JSON, a schema from the future, a CRDT blob that does not
  decode), a quota error in the middle of a write (Chromium's CDP quota override; the map written as 1 MiB tiles),
  an IndexedDB upgrade blocked by another document holding the database: each detected and handled by a full
  resync that keeps the outbox and the preferences when they still decode, counted.

A multi-record write marks the schema marker incomplete first and complete last, so a write cut part way (a quota
error, a crash) is noticed at the next start.

The scoring (:func:`persistence_cells`, :func:`stale_reads`, :func:`resync_ok`, :func:`bad_input_account`) is
plain Python, tested without a browser. Every function returns a JSON-able dict.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "WEB_DIR",
    "STORES",
    "DATA_KINDS",
    "STRATEGIES",
    "BAD_CASES",
    "AppServer",
    "page_files",
    "persistence_cells",
    "stale_reads",
    "persistence_summary",
    "resync_ok",
    "bad_input_account",
    "run_persistence",
    "run_invalidation",
    "run_eviction",
    "run_bad_input",
    "default_extra_files",
]

WEB_DIR = Path(__file__).resolve().parent / "web"
STORES = ("localstorage", "indexeddb", "idb", "cacheapi", "memory", "opfs")
DATA_KINDS = ("board", "prefs", "outbox", "map", "art", "code", "note", "meta")
STRATEGIES = ("cache-first", "cache-first-update", "stale-while-revalidate", "network-first")
BAD_CASES = ("truncated_json", "future_schema", "bad_crdt", "quota", "upgrade_blocked")
#: How long one page command may take (the writes are about 300 KiB per store).
_REPORT_S = 30.0
#: The asset sizes: a map image and the app code, incompressible past their first line (the version).
_MAP_BYTES = 512 * 1024
_CODE_BYTES = 64 * 1024


# -- the harness's server: versioned assets with ETags, the worker script, the snapshot ---------------------------------


def _filler(n: int, seed: str) -> bytes:
    """``n`` incompressible bytes from ``seed`` (SHA-256 in counter mode): a new version is all new bytes."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


class AppServer:
    """What the harness's page server answers beyond the static files, as plain logic (tested without sockets).

    ``version`` is the app's version (1, 2, ...): the assets' first line names it (``v2``), their ETag is their
    hash, and ``/sw.js`` carries it in front of the worker's code, so :meth:`bump` is a deployment. ``snapshot`` is
    the server's copy of the app's state (100 tokens and the note text) that a full resync fetches; ``served`` counts
    requests and bytes per path.
    """

    def __init__(self, sw_source: str = "", *, gen: int = 7) -> None:
        self.version = 1
        self.sw_source = sw_source
        self.snapshot: dict[str, Any] = {
            "gen": gen,
            "tokens": [
                {"id": f"t{i}", "x": (i * 41 + gen) % 1000, "y": (i * 29 + gen) % 800, "color": "server", "label": f"Token {i}"}
                for i in range(100)
            ],
            "note": f"The shared note as the server holds it (generation {gen}).",
        }
        self.served: dict[str, dict[str, int]] = {}
        self.log: list[dict[str, Any]] = []

    def bump(self) -> int:
        """A new deployment: new asset bytes and ETags, a new worker script."""
        self.version += 1
        return self.version

    def asset(self, name: str) -> bytes:
        size = _MAP_BYTES if name == "map.bin" else _CODE_BYTES
        head = f"v{self.version}\n".encode()
        return head + _filler(size - len(head), f"{name}:{self.version}")

    @staticmethod
    def etag(body: bytes) -> str:
        return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'

    def _count(self, path: str, status: int, body: bytes) -> None:
        c = self.served.setdefault(path, {"requests": 0, "bytes": 0, "not_modified": 0})
        c["requests"] += 1
        c["bytes"] += len(body)
        c["not_modified"] += status == 304

    def respond(self, method: str, path: str, headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes] | None:
        """The answer to ``method path`` (query included), or ``None`` for a path this server does not own."""
        parsed = urllib.parse.urlsplit(path)
        p = parsed.path
        lower = {k.lower(): v for k, v in headers.items()}
        out: tuple[int, dict[str, str], bytes] | None = None
        if method == "GET" and p == "/sw.js":
            body = f'self.S08_VERSION = "v{self.version}";\n{self.sw_source}'.encode()
            out = (200, {"Content-Type": "text/javascript", "Cache-Control": "no-cache"}, body)
        elif method == "GET" and p == "/version":
            out = (200, {"Content-Type": "text/plain", "Cache-Control": "no-store"}, f"v{self.version}".encode())
        elif method == "GET" and p == "/api/snapshot":
            out = (200, {"Content-Type": "application/json", "Cache-Control": "no-store"}, json.dumps(self.snapshot).encode())
        elif method == "GET" and p.startswith("/s/") and "/asset/" in p:
            name = p.rsplit("/", 1)[1]
            if name not in ("map.bin", "code.js"):
                return None
            body = self.asset(name)
            tag = self.etag(body)
            hdrs = {"ETag": tag, "Cache-Control": "no-cache", "Content-Type": "application/octet-stream"}
            if tag in [t.strip() for t in lower.get("if-none-match", "").split(",")]:
                out = (304, hdrs, b"")
            else:
                out = (200, hdrs, body)
        if out is not None:
            self._count(p, out[0], out[2])
            self.log.append({"path": p, "status": out[0], "bytes": len(out[2]), "version": self.version})
        return out


#: A page of the app's origin that is not the app: the tab shows it while "the app is closed" and the browser runs.
_BLANK_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Spike 8: the app is closed</title></head>
<body><p>The app is closed; the browser stays open.</p>
<script src="/__harness.js"></script>
<script>
  harnessReport({op: "blank"});
  harness.nextMessage("cmd").then(function (m) { if (m.cmd && m.cmd.op === "navigate") location.href = m.cmd.url; });
</script></body></html>
"""


def page_files(extra: Mapping[str, bytes | str] | None = None) -> dict[str, bytes | str]:
    """The app's static files: the page at ``/app.html`` and in each strategy's worker scope, its scripts, stores.js.

    ``/sw.js`` is not here: :class:`AppServer` serves it with the version in front. ``idb.js`` (the bundled ``idb``
    library, helper B's) comes in ``extra`` when the caller has it; without it the ``idb`` store fails to open and
    says so in its cell.
    """
    html = (WEB_DIR / "app.html").read_text(encoding="utf-8")
    files: dict[str, bytes | str] = {
        "app.html": html,
        "app.js": (WEB_DIR / "app.js").read_text(encoding="utf-8"),
        "stores.js": (WEB_DIR / "stores.js").read_text(encoding="utf-8"),
        "blank.html": _BLANK_HTML,
    }
    for s in STRATEGIES:
        files[f"s/{s}/app.html"] = html
    files.update(extra or {})
    return files


# -- scoring: plain Python ---------------------------------------------------------------------------------------------


def persistence_cells(report: Mapping[str, Any] | None) -> dict[str, Any]:
    """Per store, per data kind: present / absent / corrupted / error, from a page's ``read`` report.

    A store that failed to open has every kind as ``"error"``; ``summary`` says per store how many kinds kept.
    """
    out: dict[str, Any] = {}
    for store, r in ((report or {}).get("stores") or {}).items():
        if r.get("open_error"):
            kinds = {k: "error" for k in DATA_KINDS}
        else:
            kinds = {k: (r.get("kinds") or {}).get(k, "error") for k in DATA_KINDS}
        present = sum(v == "present" for v in kinds.values())
        out[store] = {
            "kinds": kinds,
            "kept": present,
            "of": len(DATA_KINDS),
            "summary": "all kept"
            if present == len(DATA_KINDS)
            else "all lost"
            if all(v == "absent" for v in kinds.values())
            else f"{present} of {len(DATA_KINDS)} kept",
            "errors": r.get("errors") or ({"open": r["open_error"]} if r.get("open_error") else {}),
            "held_in_memory": r.get("held_in_memory"),
            "handle": r.get("handle"),
        }
    return out


def stale_reads(loads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stale reads over loads made after a version change: an asset whose first line is not the server's version.

    Each load is ``{"server": "v2", "map": {"version": "v1", ...}, "code": {...}}``. ``first_fresh`` is the index of
    the first load where both assets were current (``None``: none was).
    """
    stale = 0
    reads = 0
    first_fresh: int | None = None
    per_load = []
    for i, load in enumerate(loads):
        n = 0
        for asset in ("map", "code"):
            a = load.get(asset) or {}
            if not a:
                continue
            reads += 1
            if a.get("version") != load.get("server"):
                n += 1
        stale += n
        per_load.append(n)
        if n == 0 and first_fresh is None and (load.get("map") or load.get("code")):
            first_fresh = i
    return {"stale": stale, "reads": reads, "per_load": per_load, "first_fresh_load": first_fresh}


def _median(xs: Iterable[float | None]) -> float | None:
    vals = [float(x) for x in xs if isinstance(x, (int, float))]
    return round(statistics.median(vals), 2) if vals else None


def persistence_summary(result: Mapping[str, Any]) -> dict[str, dict[str, str | None]]:
    """Per store, one word per event of :func:`run_persistence`: what a reader found after it (the document's cells)."""
    events = {
        "clean close": "after_close",
        "SIGKILL": "after_kill",
        "cleared, open page's handles": "after_clear_open_handles",
        "cleared, fresh handles": "after_clear_fresh_handles",
        "cleared, reopened": "after_clear_reopen",
    }
    out: dict[str, dict[str, str | None]] = {}
    for store in result.get("stores") or []:
        row: dict[str, str | None] = {}
        for label, key in events.items():
            cells = result.get(key)
            if cells is None:
                continue
            cell = cells.get(store)
            row[label] = _cell_word(cell) if cell else None
        out[store] = row
    return out


def _cell_word(cell: Mapping[str, Any]) -> str:
    kinds = cell.get("kinds") or {}
    if cell.get("summary") in ("all kept", "all lost"):
        return str(cell["summary"])
    bad = {k: v for k, v in kinds.items() if v != "present"}
    return f"{cell.get('summary')}: " + ", ".join(f"{k} {v}" for k, v in bad.items())


def resync_ok(state: Mapping[str, Any] | None, server: Mapping[str, Any]) -> bool:
    """Whether the app's state after a resync equals the server's: the generation, every token, the note text."""
    if not state:
        return False
    return bool(state.get("gen") == server["gen"] and state.get("tokens") == server["tokens"] and state.get("note") == server["note"])


def bad_input_account(cases: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The count the document shows: per case, detected / handled (resynced to the server's state) / not run."""
    detected = handled = run = 0
    for c in cases.values():
        if c.get("status") == "not available":
            continue
        run += 1
        detected += bool(c.get("detected"))
        handled += bool(c.get("handled"))
    return {"cases": len(cases), "run": run, "detected": detected, "handled": handled}


# -- driving the page --------------------------------------------------------------------------------------------------


def _handlers(server: AppServer) -> dict[str, Any]:
    """:class:`AppServer`'s paths as :class:`harness.browser_session.BrowserSession` handlers (exact paths)."""
    from harness.browser_session import Reply, Request

    def handle(req: Request) -> Reply:
        answer = server.respond(req.method, req.path, req.headers)
        if answer is None:
            return Reply(404, b"not found", "text/plain")
        status, headers, body = answer
        ctype = headers.pop("Content-Type", "application/octet-stream")
        return Reply(status, body, ctype, headers)

    paths = ["/sw.js", "/version", "/api/snapshot"]
    paths += [f"/s/{s}/asset/{name}" for s in STRATEGIES for name in ("map.bin", "code.js")]
    return {p: handle for p in paths}


def default_extra_files() -> dict[str, bytes | str]:
    """``/idb.js``, the bundled ``idb`` library (this package's npm lock); empty when it cannot be built here."""
    try:
        from spikes.s08_browser_storage.bench import idb_bundle

        return {"idb.js": idb_bundle()}
    except Exception:  # no npm cache and no registry: the idb store then reports its open error in its cells
        return {}


def _session(engine: str, workdir: Path, server: AppServer, extra: Mapping[str, bytes | str] | None, *, marionette: bool = False) -> Any:
    """The session; ``marionette``: Firefox started with its remote protocol, so the origin can be cleared with the tab open."""
    from harness.browser_session import BrowserSession

    files = page_files(default_extra_files() if extra is None else extra)
    return BrowserSession(engine, workdir, files=files, handlers=_handlers(server), firefox_marionette=marionette and engine == "firefox")


def _query(**params: Any) -> str:
    return urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})


def _failed(exc: BaseException) -> dict[str, Any]:
    return {"error": {"name": type(exc).__name__, "message": str(exc)[:600]}}


def _data(res: Any) -> dict[str, Any]:
    data = getattr(res, "data", res)
    return dict(data) if isinstance(data, Mapping) else {"error": {"name": "BadReport", "message": repr(data)[:300]}}


def _start(session: Any, path: str, timeout: float = _REPORT_S) -> dict[str, Any]:
    """Launch the browser on the session's profile at ``path``: the page's first report."""
    from harness.browser import BrowserError

    try:
        return _data(session.open_and_keep(path, timeout))
    except BrowserError as exc:
        return _failed(exc)


def _command(session: Any, cmd: Mapping[str, Any], timeout: float = _REPORT_S) -> dict[str, Any]:
    """One command to the open page, and its report."""
    from harness.browser import BrowserError

    session.send({"type": "cmd", "cmd": dict(cmd)})
    try:
        return _data(session.wait_report(timeout))
    except BrowserError as exc:
        return _failed(exc)


def _navigate(session: Any, path: str, timeout: float = _REPORT_S) -> dict[str, Any]:
    """The open tab goes to ``path`` (a new document, as a reload is): that document's first report."""
    return _command(session, {"op": "navigate", "url": path}, timeout)


def _clear(session: Any) -> dict[str, Any]:
    """Clear the origin's data the way the engine allows (Chromium: CDP with the tab open; others: closed first)."""
    try:
        how = session.clear_origin()
    except Exception as exc:  # the engine has no way: recorded, not faked
        return {"cleared": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"cleared": True, **(how if isinstance(how, dict) else {})}


def run_persistence(
    engine: str,
    workdir: str | Path,
    *,
    stores: Sequence[str] = STORES,
    kill_after_s: float = 0.0,
    extra_files: Mapping[str, bytes | str] | None = None,
    firefox_marionette: bool = True,
) -> dict[str, Any]:
    """What each store keeps per data kind across a clean close, a SIGKILL, and the origin cleared under an open tab.

    One browser profile for the run. Launch 1 writes generation 1 (and asks ``persist()``), reads it back in the same
    page, and is closed cleanly. Launch 2 reads generation 1, writes generation 2 and is SIGKILLed ``kill_after_s``
    after the page reported the write complete. Launch 3 reads generation 2, writes generation 3, and the origin's data
    is cleared: in Chromium with the tab open (the page then reads through the handles it holds and through fresh
    ones); in Firefox too with ``firefox_marionette`` (its clear-data service through Marionette); in WebKitGTK the
    session closes the browser first, and launch 4 reads what is left.
    """
    workdir = Path(workdir)
    server = AppServer((WEB_DIR / "sw.js").read_text(encoding="utf-8"))
    names = ",".join(stores)
    out: dict[str, Any] = {"engine": engine, "stores": list(stores), "kill_after_s": kill_after_s, "kinds": list(DATA_KINDS)}
    with _session(engine, workdir, server, extra_files, marionette=firefox_marionette) as session:
        out["version"] = session.version
        w1 = _start(session, "/app.html?" + _query(op="write", stores=names, gen=1, persist=1))
        out["write"] = {"gen": 1, "stores": w1.get("stores"), "error": w1.get("error")}
        out["storage"] = w1.get("storage")
        out["same_page"] = persistence_cells(_command(session, {"op": "read", "stores": names, "gen": 1}))
        session.close()

        r1 = _start(session, "/app.html?" + _query(op="read", stores=names, gen=1, persist=1))
        out["after_close"] = persistence_cells(r1)
        out["storage_after_reopen"] = r1.get("storage")
        out["read_errors"] = {"after_close": r1.get("error")}
        w2 = _command(session, {"op": "write", "stores": names, "gen": 2})
        out["write_before_kill"] = {"stores": w2.get("stores"), "error": w2.get("error")}
        if kill_after_s:
            time.sleep(kill_after_s)
        session.kill()

        r2 = _start(session, "/app.html?" + _query(op="read", stores=names, gen=2))
        out["after_kill"] = persistence_cells(r2)
        out["read_errors"]["after_kill"] = r2.get("error")
        _command(session, {"op": "write", "stores": names, "gen": 3})
        clear = _clear(session)
        out["clear"] = clear
        if clear.get("cleared") and session.running:
            seen_open = _command(session, {"op": "read", "stores": names, "gen": 3, "reuse": 1})
            out["after_clear_open_handles"] = persistence_cells(seen_open)
            out["events_after_clear"] = seen_open.get("events")
            out["after_clear_fresh_handles"] = persistence_cells(_command(session, {"op": "read", "stores": names, "gen": 3}))
        elif clear.get("cleared"):
            out["after_clear_open_handles"] = None  # the engine's clear needs the browser closed: nothing was open
            r4 = _start(session, "/app.html?" + _query(op="read", stores=names, gen=3))
            out["after_clear_reopen"] = persistence_cells(r4)
        if session.running:
            session.close()
        out["handler_errors"] = session.handler_errors
    out["persist_effect"] = _persist_effect(out)
    after = out.get("after_clear_fresh_handles") or out.get("after_clear_reopen") or {}
    # A clear that left data in a store that keeps it is the harness's failure to clear, not the store's merit.
    out["clear_left"] = sorted(st for st, c in after.items() if st != "memory" and c.get("kept"))
    return out


def _persist_effect(out: Mapping[str, Any]) -> str:
    storage = out.get("storage") or {}
    granted = storage.get("persisted") is True or storage.get("persist") is True
    said = f"persist() answered {storage.get('persist')!r} and persisted() {storage.get('persisted')!r}"
    if not granted:
        return f"{said}: nothing was granted, so no difference observable here"
    return f"{said}: granted; a clean close, a SIGKILL and a clear of the origin act alike either way in these cells: no difference observable here"


def run_invalidation(
    engine: str,
    workdir: str | Path,
    *,
    warm_loads: int = 3,
    after_loads: int = 3,
    extra_files: Mapping[str, bytes | str] | None = None,
) -> dict[str, Any]:
    """Stale reads after a version change, and cold vs warm load time, per invalidation strategy.

    One launch; each load is a navigation of the tab (a new document, as a reload). Per strategy (its own worker
    scope and caches): one cold load (nothing cached, the worker installed and waited for until it controls the
    page), ``warm_loads`` loads from the cache, then the server changes version (new asset bytes and ETags, a new
    worker script) and ``after_loads`` loads follow. Where the engine registers no service worker here, the same
    strategies run as the page's own Cache API code (``mode: "page"``) and the worker's error is kept.
    """
    workdir = Path(workdir)
    server = AppServer((WEB_DIR / "sw.js").read_text(encoding="utf-8"))
    out: dict[str, Any] = {"engine": engine, "strategies": {}, "service_worker": None}
    with _session(engine, workdir, server, extra_files) as session:
        out["version"] = session.version
        first = _start(session, "/blank.html")
        out["start_error"] = first.get("error")
        mode = "sw"
        for strategy in STRATEGIES:
            res: dict[str, Any] = {}
            cold = _asset_load(session, server, strategy, mode, wait=True)
            if mode == "sw" and cold.get("error"):
                out["service_worker"] = {"available": False, "error": cold["error"]}
                mode = "page"
                cold = _asset_load(session, server, strategy, mode, wait=True)
            elif out["service_worker"] is None:
                out["service_worker"] = {"available": True}
            res["mode"] = mode
            warm = [_asset_load(session, server, strategy, mode) for _ in range(warm_loads)]
            server.bump()
            after = [_asset_load(session, server, strategy, mode) for _ in range(after_loads)]
            res["cold"] = _load_row(cold)
            res["warm"] = [_load_row(w) for w in warm]
            res["after_change"] = [_load_row(a) for a in after]
            res["cold_ms"] = _asset_ms(cold)
            res["warm_ms_median"] = _median(_asset_ms(w) for w in warm)
            res["after_change_ms_median"] = _median(_asset_ms(a) for a in after)
            res["stale"] = stale_reads(after)
            res["served"] = {p: c for p, c in server.served.items() if p.startswith(f"/s/{strategy}/")}
            res["update_ms"] = [(a.get("update") or {}).get("ms") for a in after if a.get("update")]
            res["errors"] = [x["error"] for x in [cold, *warm, *after] if x.get("error")]
            out["strategies"][strategy] = res
        session.close()
        out["handler_errors"] = session.handler_errors
    out["server"] = {"final_version": server.version, "served": server.served}
    return out


def _asset_load(session: Any, server: AppServer, strategy: str, mode: str, *, wait: bool = False) -> dict[str, Any]:
    """One load of the app in ``strategy``'s scope: the versions and timings of its two assets, and the server's version."""
    path = f"/s/{strategy}/app.html?" + _query(op="assets", strategy=strategy, mode=mode, wait_control=1 if wait else None)
    r = _navigate(session, path)
    r["server"] = f"v{server.version}"
    return r


def _asset_ms(load: Mapping[str, Any]) -> float | None:
    ms = [(load.get(a) or {}).get("ms") for a in ("map", "code")]
    vals = [m for m in ms if isinstance(m, (int, float))]
    return round(sum(vals), 2) if len(vals) == 2 else None


def _load_row(load: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "server": load.get("server"),
        "controlled": load.get("controlled"),
        "controlled_now": load.get("controlled_now"),
        "map": {k: (load.get("map") or {}).get(k) for k in ("version", "via", "ms", "status")},
        "code": {k: (load.get("code") or {}).get(k) for k in ("version", "via", "ms", "status")},
        "caches": load.get("caches"),
        "error": load.get("error"),
    }


def run_eviction(
    engine: str,
    workdir: str | Path,
    *,
    stores: Sequence[str] = STORES,
    extra_files: Mapping[str, bytes | str] | None = None,
) -> dict[str, Any]:
    """The origin's data evicted while the app is closed; the next start notices and resyncs in full, measured.

    The app starts on an empty profile per store (a resync too: the first-run figure) and is closed (the tab goes
    to a blank page of the origin); the origin is cleared (Chromium: CDP with the browser up; the others: the
    browser closed and the origin's directories deleted); the app starts again per store: what it noticed, the
    resync's time and bytes, and whether its state then equals the server's.
    """
    workdir = Path(workdir)
    server = AppServer((WEB_DIR / "sw.js").read_text(encoding="utf-8"))
    out: dict[str, Any] = {"engine": engine, "stores": {}}
    with _session(engine, workdir, server, extra_files) as session:
        out["version"] = session.version
        firsts = {stores[0]: _start(session, "/app.html?" + _query(op="boot", store=stores[0]))}
        for store in stores[1:]:
            firsts[store] = _command(session, {"op": "boot", "store": store})
        _navigate(session, "/blank.html")
        out["clear"] = _clear(session)
        if session.running:
            again = {stores[0]: _navigate(session, "/app.html?" + _query(op="boot", store=stores[0]))}
        else:
            again = {stores[0]: _start(session, "/app.html?" + _query(op="boot", store=stores[0]))}
        for store in stores[1:]:
            again[store] = _command(session, {"op": "boot", "store": store})
        session.close()
        out["handler_errors"] = session.handler_errors
    for store in stores:
        f, a = firsts[store], again[store]
        rs = a.get("resync") or {}
        out["stores"][store] = {
            "first_run": {"resynced": bool(f.get("resync")), "ms": (f.get("resync") or {}).get("ms"), "error": f.get("error")},
            "noticed": a.get("problems"),
            "resynced": bool(rs),
            "resync_ms": rs.get("ms"),
            "fetch_ms": rs.get("fetch_ms"),
            "bytes_fetched": rs.get("bytes"),
            "write_error": rs.get("write_error"),
            "equals_server": resync_ok(a.get("state"), server.snapshot),
            "problems_after": a.get("problems_after"),
            "error": a.get("error"),
        }
    out["server_snapshot_bytes"] = len(json.dumps(server.snapshot).encode())
    return out


#: The quota case: the origin held to a small quota (CDP), and a map written past it (incompressible bytes).
_QUOTA_BYTES = 2 * 1024 * 1024
_QUOTA_BLOB = 8 * 1024 * 1024


def run_bad_input(
    engine: str,
    workdir: str | Path,
    *,
    store: str = "indexeddb",
    extra_files: Mapping[str, bytes | str] | None = None,
) -> dict[str, Any]:
    """Corrupt records, a quota error mid-write, a blocked upgrade: each detected and handled by a full resync, counted."""
    workdir = Path(workdir)
    server = AppServer((WEB_DIR / "sw.js").read_text(encoding="utf-8"))
    cases: dict[str, Any] = {}
    with _session(engine, workdir, server, extra_files) as session:
        # The quota case first, on a fresh profile: Chromium applied the override only to a database first opened
        # after it (an override set while the app's database was already open was not enforced at 2 or 8 MiB).
        blank = _start(session, "/blank.html")
        cases["quota"] = _quota_case(engine, session, server, store)
        first = _navigate(session, "/app.html?" + _query(op="boot", store=store))
        setup = {"start_error": blank.get("error"), "first_boot_error": first.get("error")}
        for case in ("truncated_json", "future_schema", "bad_crdt"):
            c = _command(session, {"op": "corrupt", "store": store, "case": case})
            cases[case] = _case(_command(session, {"op": "boot", "store": store}), server, c.get("error"))
        u = _command(session, {"op": "upgrade_blocked", "store": store, "tag": str(time.time_ns())})
        cases["upgrade_blocked"] = {
            "status": "failed" if u.get("error") else "run",
            "detected": bool(u.get("blocked_events")),
            "blocked_events": u.get("blocked_events"),
            "blocked_after_ms": u.get("blocked_after_ms"),
            "holder_messages": u.get("holder_messages"),
            "upgraded": u.get("upgraded"),
            "upgrade_ms": u.get("upgrade_ms"),
            "handled": bool(u.get("upgraded")) and resync_ok(u.get("state"), server.snapshot),
            "resync_ms": (u.get("resync") or {}).get("ms"),
            "how": (
                "a second document of the origin (an iframe, standing in for another tab) holds the database at version 1 "
                "with no versionchange handler; the page opens version 2, and on onblocked removes the holder, the upgrade "
                "proceeds and the app resyncs"
            ),
            "error": u.get("error"),
        }
        session.close()
        out_errors = session.handler_errors
    return {
        "engine": engine,
        "store": store,
        "setup": setup,
        "cases": cases,
        "account": bad_input_account(cases),
        "handler_errors": out_errors,
    }


def _case(boot: Mapping[str, Any], server: AppServer, setup_error: Any) -> dict[str, Any]:
    return {
        "status": "failed" if boot.get("error") or setup_error else "run",
        "detected": bool(boot.get("problems")),
        "problems": boot.get("problems"),
        "handled": bool(boot.get("resync")) and resync_ok(boot.get("state"), server.snapshot) and not boot.get("problems_after"),
        "resync_ms": (boot.get("resync") or {}).get("ms"),
        "kept": (boot.get("resync") or {}).get("kept"),
        "error": boot.get("error") or setup_error,
    }


def _quota_case(engine: str, session: Any, server: AppServer, store: str) -> dict[str, Any]:
    if engine != "chromium":
        return {"status": "not available", "why": "a per-origin quota is set only through Chromium's DevTools protocol here"}
    try:
        session.cdp("Storage.overrideQuotaForOrigin", {"origin": session.origin, "quotaSize": _QUOTA_BYTES})
    except Exception as exc:
        return {"status": "not available", "why": f"Storage.overrideQuotaForOrigin failed: {type(exc).__name__}: {exc}"}
    try:
        q = _navigate(session, "/app.html?" + _query(op="quota_write", store=store, blob_bytes=_QUOTA_BLOB))
    finally:
        try:
            session.cdp("Storage.overrideQuotaForOrigin", {"origin": session.origin})
        except Exception:  # the next case's writes are small; a failed reset would show in them
            pass
    return {
        "status": "failed" if q.get("error") else "run",
        "quota_bytes": _QUOTA_BYTES,
        "blob_bytes": _QUOTA_BLOB,
        "detected": bool(q.get("errors") or q.get("problems")),
        "errors": q.get("errors"),
        "problems": q.get("problems"),
        "map_write": (q.get("write") or {}).get("map"),
        "map_tiles_written": (q.get("write") or {}).get("map_tiles_written"),
        "kept": (q.get("resync") or {}).get("kept"),
        "handled": bool(q.get("resync")) and resync_ok(q.get("state"), server.snapshot) and not q.get("problems_after"),
        "resync_ms": (q.get("resync") or {}).get("ms"),
        "resync_write_error": (q.get("resync") or {}).get("write_error"),
        "estimate_before": q.get("estimate_before"),
        "error": q.get("error"),
    }
