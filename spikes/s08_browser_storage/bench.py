"""Spike 8's storage measurements in real engines: each store's enforced limit, its speed on the app's records, round-trips.

The page (``web/bench.html``, ``web/bench.js``) drives the six store adapters of ``web/stores.js`` (localStorage,
IndexedDB raw, IndexedDB through the npm ``idb`` library, the Cache API, memory, the Origin Private File System) and
posts plain JSON back through :func:`harness.browser.run_page`, one engine at a time. ``idb`` is pinned by
``npm/package-lock.json``, installed through :mod:`harness.npm` into the cache (never into this folder) and bundled by
esbuild as ``/idb.js``.

Limits are probed with incompressible chunks (Chromium compresses IndexedDB values, so zeros would say nothing), as
enforced, not as reported: ``navigator.storage.estimate()`` says about 10 GiB on an empty origin here whatever applies,
so it is recorded beside the figure, never as it. In Chromium the same probe runs under a per-origin quota set through
the DevTools protocol (:func:`run_quota_override`): :func:`run_page` launches Chromium without a DevTools connection,
so that probe drives the system Chromium through Playwright with a persistent profile (an incognito context's storage
lives in memory, with limits of its own).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from harness import npm
from harness.browser import CHROMIUM_ARGS, PageResult, find_engine, run_page
from harness.plugin import NotRunnable

__all__ = [
    "WEB_DIR",
    "NPM_DIR",
    "STORES",
    "DISK_STORES",
    "MiB",
    "idb_bundle",
    "idb_version",
    "page_files",
    "page_html",
    "run_bench",
    "run_limits",
    "run_speed",
    "run_roundtrip",
    "run_quota_override",
    "limit_verdict",
    "speed_rows",
]

SPIKE_DIR = Path(__file__).resolve().parent
WEB_DIR = SPIKE_DIR / "web"
NPM_DIR = SPIKE_DIR / "npm"
MiB = 1024 * 1024

#: Every store option, as ``openStore(kind)`` names it.
STORES = ("localstorage", "indexeddb", "idb", "cacheapi", "memory", "opfs")
#: The stores that write to the origin's quota-managed storage (probed with chunks; localStorage has its own probe).
DISK_STORES = ("indexeddb", "idb", "cacheapi", "opfs")
#: What the page imports from the bundle: all of idb's exports (openDB, deleteDB, wrap...).
IDB_ENTRY = "export * from 'idb';\n"


# -- the page ----------------------------------------------------------------------------------------------------------


@cache
def _install() -> Path:
    return npm.ensure_installed(NPM_DIR, "s08-browser-storage")


@cache
def idb_bundle() -> bytes:
    """The npm ``idb`` library (the locked version), bundled and minified for the page as an ES module."""
    return npm.esbuild_bundle(_install(), IDB_ENTRY)


def idb_version() -> str:
    """The version of ``idb`` the lock pins."""
    return npm.locked_versions(NPM_DIR, ["idb"])["idb"]


def page_files() -> dict[str, bytes | str]:
    """The files served beside the page: the adapters, the bench, and the idb bundle."""
    return {
        "stores.js": (WEB_DIR / "stores.js").read_bytes(),
        "bench.js": (WEB_DIR / "bench.js").read_bytes(),
        "idb.js": idb_bundle(),
    }


def page_html(config: dict[str, Any]) -> str:
    """``web/bench.html`` with ``config`` in its JSON script block (``</`` escaped: the block must not end early)."""
    text = json.dumps(config, separators=(",", ":")).replace("</", "<\\/")
    return (WEB_DIR / "bench.html").read_text(encoding="utf-8").replace("__CONFIG__", text)


def _check_stores(stores: Sequence[str]) -> list[str]:
    unknown = [s for s in stores if s not in STORES]
    if unknown:
        raise ValueError(f"unknown store(s) {', '.join(unknown)}; known: {', '.join(STORES)}")
    return list(stores)


def _probe_order(stores: Sequence[str]) -> list[str]:
    """The stores with the Cache API last: Chromium keeps a deleted cache's bytes counted against the origin's quota
    for a while after ``caches.delete()`` (seen under a 50 MiB override: the next store failed after 4 MiB)."""
    return sorted(stores, key=lambda s: s == "cacheapi")


def run_bench(engine: str, workdir: str | Path, config: dict[str, Any], *, timeout: float) -> PageResult:
    """The bench page with ``config`` in ``engine`` (a fresh profile under ``workdir``); what it reported."""
    return run_page(
        engine,
        page_html(config),
        files=page_files(),
        timeout=timeout,
        workdir=workdir,
        # performance.memory's figures are rounded coarsely without it (the memory "store" reports the JS heap).
        chromium_args=("--enable-precise-memory-info",),
    )


def _shape(engine: str, res: PageResult) -> dict[str, Any]:
    data = res.data if isinstance(res.data, dict) else {}
    return {
        "engine": engine,
        "label": res.label(),
        "headless": engine == "chromium" or "--headless" in res.flags,
        "browser": res.to_dict(),
        "idb_version": idb_version(),
        **data,
    }


# -- limits ------------------------------------------------------------------------------------------------------------


def run_limits(
    engine: str,
    workdir: str | Path,
    *,
    max_mib: int,
    step_mib: int = 8,
    stores: Sequence[str] = STORES,
    memory_cap_mib: int = 256,
    store_budget_s: float = 60.0,
    page_per_store: bool = True,
) -> dict[str, Any]:
    """Each store's enforced limit in ``engine``: chunks of ``step_mib`` random MiB until an error or ``max_mib``.

    Per store: bytes stored, the error's name and message (``None``: "at least ``max_mib``, not reached"), the time,
    and after an error whether the failing write rolled back and the earlier chunks are intact (``afterError``);
    ``estimate()`` before, at the end and after the store is deleted. localStorage: the longest value one key takes,
    in UTF-16 code units, for a Latin-1 and a non-Latin-1 character. Memory: chunks held up to ``memory_cap_mib``
    with the JS heap's growth where the engine reports it (not storage). A store stops at ``store_budget_s`` seconds.

    ``page_per_store`` (the default) probes each store in its own launch on a fresh profile: an engine may go on
    counting a deleted store's bytes (WebKitGTK, after its IndexedDB filled about 1 GB, refused the next store's first
    chunk; Chromium's ``caches.delete()`` frees late), which would cut the next store's figure short. Without it one
    page probes every store in turn (one launch: faster, with that bias).
    """
    stores = _probe_order(_check_stores(stores))
    config = {
        "mode": "limits",
        "stores": stores,
        "maxMib": max_mib,
        "stepMib": step_mib,
        "memoryCapMib": memory_cap_mib,
        "storeBudgetMs": int(store_budget_s * 1000),
    }
    if not page_per_store:
        disk = sum(1 for s in stores if s in DISK_STORES)
        out = _shape(engine, run_bench(engine, workdir, config, timeout=90.0 + disk * (store_budget_s + 20.0)))
    else:
        out = {}
        for kind in stores:
            part = _shape(engine, run_bench(engine, Path(workdir) / kind, {**config, "stores": [kind]}, timeout=90.0 + store_budget_s))
            merged = out.get("stores", {})
            out = {**part, "stores": {**merged, **part.get("stores", {})}, "page_per_store": True}
            out.pop("config", None)
        out["config"] = {**config, "pagePerStore": True}
    for entry in out.get("stores", {}).values():
        entry["verdict"] = limit_verdict(entry)
    return out


def _mib(n: float) -> str:
    return f"{n / MiB:,.0f} MiB" if n < 1024 * MiB else f"{n / 1024 / MiB:,.2f} GiB"


def _yes_no(flag: Any, yes: str, no: str) -> str:
    return yes if flag is True else no if flag is False else ""


def limit_verdict(entry: dict[str, Any]) -> str:
    """One line for a store's limit probe: "at least 1 GiB, not reached", "failed at 49 MiB: QuotaExceededError"..."""
    kind = entry.get("kind", "?")
    if not entry.get("available", False):
        err = entry.get("error") or {}
        return f"not available: {err.get('name', '?')}: {err.get('message', '')}".rstrip(": ")
    if kind == "localstorage":
        parts = []
        for label, key in (("Latin-1", "latin1"), ("non-Latin-1", "nonLatin1")):
            p = entry.get(key) or {}
            if not p.get("available"):
                continue
            if p.get("reached"):
                parts.append(f"{label}: at least {p['valueChars']:,} characters, not reached")
            else:
                err = (p.get("error") or {}).get("name", "no error recorded")
                parts.append(f"{label}: {p['valueChars']:,} UTF-16 characters in one value ({err})")
        return "; ".join(parts) or "not measured"
    if kind == "memory":
        return f"held {entry.get('mibHeld', 0):,.0f} MiB (cap {_mib(entry.get('capBytes', 0))}): not storage, gone with the page"
    stored = entry.get("bytesStored", 0)
    if entry.get("reached"):
        return f"at least {_mib(entry.get('maxBytes', stored))}, not reached"
    if entry.get("stopped"):
        return f"at least {_mib(stored)}, stopped by the {entry['stopped']}"
    err = entry.get("error") or {}
    after = entry.get("afterError") or {}
    rb = _yes_no(after.get("rolledBack"), "the failing write rolled back", "the failing write was NOT rolled back")
    intact = _yes_no(after.get("earlierIntact"), "earlier data intact", "earlier data damaged")
    tail = ", ".join(x for x in (rb, intact) if x)
    return f"failed after {_mib(stored)}: {err.get('name', '?')}" + (f" ({tail})" if tail else "")


# -- speed -------------------------------------------------------------------------------------------------------------


def run_speed(
    engine: str,
    workdir: str | Path,
    *,
    counts: Sequence[int],
    stores: Sequence[str] = STORES,
    rounds: int = 3,
    budget_s: float = 20.0,
    op_budget_s: float = 9.0,
) -> dict[str, Any]:
    """Each store's speed on the app's token records in ``engine``, at each of ``counts``.

    Per store and count: one put per record (a transaction each where the store has them), all records in one
    ``putMany`` ("n/a" for memory and localStorage, which have no transactions), and reading all back; each the
    median of up to ``rounds`` rounds of total ms, records/s, and the longest main-thread stall (``longestStallMs``:
    the widest gap between ``setTimeout(0)`` heartbeats; ``longTaskMaxMs``: Chromium's long-task observer).

    ``budget_s`` is the engine's whole run: each store gets what is left over the stores still to run, and each timed
    operation a third of its store's share (``op_budget_s`` at most). Rounds stop before they would overrun it; a mode
    predicted (from its time per record at the previous count) to overrun runs on the first records only
    (``capped``, at least 1,000); past ``budget_s`` the remaining counts are skipped.
    """
    stores = _check_stores(stores)
    config = {
        "mode": "speed",
        "stores": stores,
        "counts": list(counts),
        "rounds": rounds,
        "budgetMs": int(budget_s * 1000),
        "opBudgetMs": int(op_budget_s * 1000),
    }
    timeout = 90.0 + 3 * budget_s + len(stores) * 4 * op_budget_s
    return _shape(engine, run_bench(engine, workdir, config, timeout=timeout))


def speed_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The speed result as table rows: store, records, mode (one per record / all in one / read all), ms, records/s, stall."""
    rows = []
    for kind, entry in result.get("stores", {}).items():
        if not entry.get("available"):
            rows.append({"store": kind, "records": None, "mode": "-", "note": "not available", "error": entry.get("error")})
            continue
        for count, c in entry.get("counts", {}).items():
            if "skipped" in c or "error" in c and "eachTx" not in c:
                rows.append(
                    {"store": kind, "records": int(count), "mode": "-", "note": c.get("skipped") or "failed", "error": c.get("error")}
                )
                continue
            for mode, title in (("eachTx", "one per record"), ("oneTx", "all in one"), ("readAll", "read all")):
                m = c.get(mode) or {}
                rows.append(
                    {
                        "store": kind,
                        "records": m.get("records", int(count)),
                        "mode": title,
                        "ms": m.get("ms"),
                        "records_per_s": m.get("recordsPerS"),
                        "longest_stall_ms": m.get("longestStallMs"),
                        "long_task_max_ms": m.get("longTaskMaxMs"),
                        "rounds": m.get("rounds"),
                        "note": m.get("note")
                        or m.get("skipped")
                        or (f"capped: {m['records']:,} of {m['of']:,}" if m.get("capped") else ""),
                        "na": bool(m.get("na")),
                        "error": m.get("error"),
                    }
                )
    return rows


# -- round-trip --------------------------------------------------------------------------------------------------------


def run_roundtrip(engine: str, workdir: str | Path, *, stores: Sequence[str] = STORES, timeout: float = 60.0) -> dict[str, Any]:
    """Whether each store gives back the app's offline data as written, in ``engine``: per store ``ok`` and ``problems``."""
    config = {"mode": "roundtrip", "stores": _check_stores(stores)}
    return _shape(engine, run_bench(engine, workdir, config, timeout=timeout))


# -- Chromium under a per-origin quota set through the DevTools protocol ----------------------------------------------


class _Files:
    """The page and its files on 127.0.0.1:0 (a loopback origin is a secure context: caches and OPFS exist there)."""

    def __init__(self, html: str, files: dict[str, bytes | str]):
        body = {"": html.encode(), "__harness.js": b"window.harnessReport = function () {};\n"}
        body.update({k: v.encode() if isinstance(v, str) else v for k, v in files.items()})

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].lstrip("/")
                data = body.get(path)
                self.send_response(200 if data is not None else 404)
                ctype = "text/html; charset=utf-8" if path == "" else "text/javascript"
                self.send_header("Content-Type", ctype if data is not None else "text/plain")
                self.send_header("Cache-Control", "no-store")
                payload = data if data is not None else b"not found"
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="s08-quota-page", daemon=True)


@contextmanager
def _serving(html: str, files: dict[str, bytes | str]) -> Iterator[_Files]:
    server = _Files(html, files)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


async def _quota_probe(workdir: Path, quota_bytes: int, config: dict[str, Any], timeout: float) -> dict[str, Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:  # pragma: no cover - the project depends on it
        raise NotRunnable("playwright (the Python package) is not installed") from exc
    path = find_engine("chromium")
    if path is None:
        raise NotRunnable("Chromium is not installed (install: apt-get install -y chromium)")
    profile = Path(tempfile.mkdtemp(prefix="profile-quota-", dir=workdir))
    with _serving(page_html(config), page_files()) as server:
        async with async_playwright() as p:
            context = await p.chromium.launch_persistent_context(
                str(profile), executable_path=path, headless=True, args=list(CHROMIUM_ARGS)
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                cdp = await context.new_cdp_session(page)
                version = (await cdp.send("Browser.getVersion")).get("product", "")
                await cdp.send("Storage.overrideQuotaForOrigin", {"origin": server.origin, "quotaSize": quota_bytes})
                await page.goto(server.origin + "/")
                data = await asyncio.wait_for(page.evaluate("() => window.s08Result"), timeout)
                usage = await cdp.send("Storage.getUsageAndQuota", {"origin": server.origin})
                user_agent = await page.evaluate("() => navigator.userAgent")
            finally:
                await context.close()
    if isinstance(data, dict) and "__error" in data:
        raise RuntimeError(f"the quota probe page failed in Chromium: {data['__error']}")
    return {"version": version, "user_agent": user_agent, "cdp_usage_and_quota": usage, "origin": server.origin, **data}


def _quota_probe_session(workdir: Path, quota_bytes: int, config: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The probe through :class:`harness.browser_session.BrowserSession`: the page waits for "go" once the quota is set."""
    from harness.browser_session import BrowserSession

    files: dict[str, bytes | str] = {"/index.html": page_html({**config, "waitFor": "go"})}
    files.update({f"/{k}": v for k, v in page_files().items()})
    with BrowserSession("chromium", workdir, files=files) as session:
        session.open_and_keep("/index.html", timeout=60.0)
        session.cdp("Storage.overrideQuotaForOrigin", {"origin": session.origin, "quotaSize": quota_bytes})
        session.send({"type": "go"})
        try:
            res = session.wait_report(timeout)
            usage = session.cdp("Storage.getUsageAndQuota", {"origin": session.origin})
            version = session.cdp("Browser.getVersion").get("product", "")
        finally:
            session.close()
    data = res.data if isinstance(res.data, dict) else {}
    return {"version": version, "user_agent": res.user_agent, "cdp_usage_and_quota": usage, "origin": session.origin, **data}


def run_quota_override(
    workdir: str | Path,
    *,
    quota_mib: int = 50,
    max_mib: int | None = None,
    step_mib: int = 4,
    stores: Sequence[str] = ("indexeddb", "opfs", "cacheapi"),
    store_budget_s: float = 30.0,
    driver: str = "session",
) -> dict[str, Any]:
    """Chromium only: the limits probe under a ``quota_mib`` per-origin quota (CDP ``Storage.overrideQuotaForOrigin``).

    Headless Chromium on a persistent profile under ``workdir``, driven by ``driver``: ``"session"``
    (:class:`harness.browser_session.BrowserSession`, the plain Chromium with its DevTools port) or ``"playwright"``
    (the system Chromium through Playwright's CDP session). Per store as :func:`run_limits` (``estimate()`` beside the
    enforced figure), plus the DevTools protocol's own ``Storage.getUsageAndQuota`` at the end. Chunks go up to
    ``max_mib`` (default twice the quota), so a quota not enforced shows as "not reached".
    """
    if driver not in ("session", "playwright"):
        raise ValueError(f"unknown driver {driver!r}: 'session' or 'playwright'")
    stores = _probe_order([s for s in _check_stores(stores) if s in DISK_STORES])
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "mode": "limits",
        "report": "window" if driver == "playwright" else "harness",
        "stores": stores,
        "maxMib": max_mib if max_mib is not None else 2 * quota_mib,
        "stepMib": step_mib,
        "storeBudgetMs": int(store_budget_s * 1000),
    }
    timeout = 60.0 + len(stores) * (store_budget_s + 10.0)
    if driver == "session":
        data = _quota_probe_session(workdir, quota_mib * MiB, config, timeout)
    else:
        data = asyncio.run(_quota_probe(workdir, quota_mib * MiB, config, timeout))
    for entry in data.get("stores", {}).values():
        entry["verdict"] = limit_verdict(entry)
    return {
        "engine": "chromium",
        "headless": True,
        "driver": f"{'BrowserSession' if driver == 'session' else 'Playwright'}, CDP Storage.overrideQuotaForOrigin {quota_mib} MiB",
        "quota_bytes": quota_mib * MiB,
        "idb_version": idb_version(),
        **data,
    }
