"""A browser kept on one profile across launches, in each engine: open, close or kill, reopen, go offline, clear.

:func:`harness.browser.run_page` gives every page a fresh profile and one result. Storage scenarios need more:
the same profile (and the same origin) across launches, a browser closed cleanly or SIGKILLed and started again,
the app's server going away and coming back, the origin's data cleared, a small quota. :class:`BrowserSession`
does that for Chromium, Firefox ESR and WebKitGTK's MiniBrowser:

- **One origin.** A loopback HTTP server (:class:`_Site` behind :class:`_HttpFront`) is bound once, on a port the
  kernel picks, and stays up for the whole session: every launch sees ``http://127.0.0.1:PORT``, so origin-scoped
  storage (IndexedDB, localStorage, Cache API, OPFS, service workers) is the same one. ``harness/browser.py``'s
  ``_PageServer`` serves one page and takes one result; this server also serves ``files`` with content types,
  ETags (``If-None-Match`` answers 304) and ``Service-Worker-Allowed``, answers the page's requests with Python
  handlers, keeps a message channel to the page, logs every request, and can refuse the app's data while "offline".
  (``run_page`` could later use it.)
- **The page's side** (``/__harness.js``, loaded before the page's own code): ``harnessReport(obj)`` as with
  ``run_page`` (each report is queued, not only the first); ``harness.offline`` (the server's switch, current at
  load and kept up to date); ``harness.nextMessage(type?)`` (a promise of the next message the harness sent with
  :meth:`BrowserSession.send`, optionally of one ``type``) and ``harness.onMessage(fn)``. Messages travel by long
  polling ``GET /__next?launch=L&after=N`` (held up to 20 s): no WebSocket, so the same in every engine.
- **Offline** is the server's switch, the same in every engine: while on, requests whose path starts with one of
  ``offline_prefixes`` (``/api/`` by default) get no answer (the connection is closed: ``fetch`` rejects with a
  TypeError, as it does with no network) or, with ``offline_mode="503"``, a 503. The page is told with the message
  ``{"type": "offline", "offline": true}``, which sets ``harness.offline`` and fires a ``harness:offline`` event on
  ``window``. ``navigator.onLine`` is **not** changed (the browser's network is untouched). The harness's own paths
  (``/__*``) always answer. Chromium's CDP ``Network.emulateNetworkConditions`` (through :meth:`BrowserSession.cdp`)
  would also cut the harness's channel, so it is not used here.
- **Chromium** runs plain (not through Playwright): Debian's ``/usr/bin/chromium``, **headless** (``--headless=new``),
  as a :class:`harness.process.ServerProcess` like the other engines (same close and kill), with
  ``--remote-debugging-port=0``; :meth:`BrowserSession.cdp` talks to the page's DevTools target over its WebSocket
  (``Storage.clearDataForOrigin``, ``Storage.overrideQuotaForOrigin``, ``Storage.getUsageAndQuota``...), which is
  what Playwright's ``new_cdp_session(page)`` would give, without its driver process owning the browser.
- **Firefox ESR and WebKitGTK** run on an Xvfb display started once for the session. Firefox keeps its profile with
  ``--profile DIR``; MiniBrowser keeps its data in ``$XDG_DATA_HOME/webkitgtk-4.1/MiniBrowser`` (and its cache in
  ``$XDG_CACHE_HOME``), both pointed into the session's profile directory. Clearing the origin there means deleting
  its storage directories, which is done with the browser closed (:meth:`BrowserSession.clear_origin` closes it
  first and says so). Firefox can instead be started with Marionette (``firefox_marionette=True``: its remote
  protocol on a loopback port, which also sets ``navigator.webdriver``): the origin is then cleared by Firefox's
  own clear-data service (what "Clear cookies and site data" calls) with the tab open.

``close()`` quits the browser the way it quits cleanly and waits: SIGTERM to the main process for Chromium (which
quits as from its menu) and MiniBrowser; Firefox dies at once on SIGTERM (localStorage written just before was seen
lost), so its page closes its own window instead (``window.close()``, allowed by the session's preferences) and
Firefox quits as after its last window. What is left after the grace gets SIGKILL. ``kill()`` SIGKILLs the whole
process group at once: a crash. Seen here (2026-12-01): after a clean close, IndexedDB and localStorage were both
back in all three engines; after SIGKILL right after the write, IndexedDB was back and localStorage was not, in all
three.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from harness.browser import ENGINES, BrowserError, PageResult, _argv, _require, _version, xvfb_display
from harness.process import ServerCrashed, ServerProcess, free_port, group_members

__all__ = [
    "BrowserSession",
    "CdpError",
    "Reply",
    "Request",
    "SessionResult",
    "RequestRecord",
    "content_type",
    "temporary_session",
    "firefox_origin_dirs",
    "marionette_frame",
    "marionette_unframe",
    "webkit_origin_dirs",
]

#: Content types by file suffix; anything else is ``application/octet-stream``.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".txt": "text/plain; charset=utf-8",
    ".webmanifest": "application/manifest+json",
}
#: Paths refused while offline unless the session says otherwise: the app's data, not its pages.
OFFLINE_PREFIXES = ("/api/",)
#: How long ``GET /__next`` holds a request with no message before it answers with none (the page asks again).
LONG_POLL_S = 20.0
#: How often a wait for a report checks that the browser still runs.
_POLL_S = 0.25
#: After the browser's processes are all gone, how long a report already on its way may still take to arrive.
_EXIT_GRACE_S = 1.0
#: How long a clean close waits for the browser to quit after SIGTERM before it SIGKILLs the rest.
CLOSE_GRACE_S = 15.0
#: How long Firefox's page has to close its window (and Firefox to quit) before close() falls back to SIGTERM.
PAGE_CLOSE_S = 10.0

#: Firefox preferences for a profile that is reopened, killed and reopened: no session restore, no first-run pages,
#: no safe-mode prompt after crashes, no network of its own.
_FIREFOX_PREFS = {
    "browser.sessionstore.resume_from_crash": False,
    "browser.sessionstore.max_resumed_crashes": 0,
    "toolkit.startup.max_resumed_crashes": -1,
    "browser.startup.page": 0,
    "browser.startup.homepage_override.mstone": "ignore",
    "startup.homepage_welcome_url": "",
    "startup.homepage_welcome_url.additional": "",
    "browser.tabs.warnOnClose": False,
    "browser.warnOnQuit": False,
    "dom.allow_scripts_to_close_windows": True,  # close(): the page closes its window, and Firefox quits cleanly
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.captive-portal-service.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "extensions.update.enabled": False,
}


def content_type(path: str) -> str:
    """The ``Content-Type`` the page server sends for ``path``, by its suffix."""
    return CONTENT_TYPES.get(Path(path.split("?", 1)[0]).suffix.lower(), "application/octet-stream")


class CdpError(BrowserError):
    """A DevTools protocol command failed (the error Chromium answered), or CDP is not available."""


# -- the page server, without sockets -----------------------------------------------------------------------


@dataclass
class Request:
    """A request from the page, as a handler sees it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        """The body parsed as JSON (``None`` when empty)."""
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    """An answer to the page; ``drop=True`` closes the connection without any (a network failure to ``fetch``)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False

    @classmethod
    def of_json(cls, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(status, json.dumps(obj).encode(), "application/json", dict(headers or {}))


@dataclass(frozen=True)
class RequestRecord:
    """One request the server saw: for counting what went to the network (bytes, stale reads, refusals)."""

    t: float  # time.monotonic()
    launch: int
    method: str
    path: str
    status: int  # 0: dropped (offline)
    bytes_in: int
    bytes_out: int


#: A handler answers a request: a :class:`Reply`, ``bytes``, ``None`` (204), or anything JSON can encode (200).
Handler = Callable[[Request], Any]


class _Site:
    """Everything the page server answers, without the sockets: files, handlers, the harness's channel, offline.

    :class:`_HttpFront` only moves bytes; the logic here is tested without a network.
    """

    def __init__(
        self,
        files: Mapping[str, bytes | str] | None = None,
        handlers: Mapping[str, Handler] | None = None,
        *,
        headers: Mapping[str, Mapping[str, str]] | None = None,
        cache_control: str = "no-cache",
        offline_prefixes: Iterable[str] = OFFLINE_PREFIXES,
        offline_mode: str = "drop",
    ) -> None:
        if offline_mode not in ("drop", "503"):
            raise ValueError(f"offline_mode must be 'drop' or '503', not {offline_mode!r}")
        self.files: dict[str, bytes] = {}
        for path, data in (files or {}).items():
            self.set_file(path, data)
        self.handlers = {_norm(p): h for p, h in (handlers or {}).items()}
        self.headers = {_norm(p): dict(h) for p, h in (headers or {}).items()}
        self.cache_control = cache_control
        self.offline_prefixes = tuple(offline_prefixes)
        self.offline_mode = offline_mode
        self.offline = False
        self.launch = 0
        self.requests: list[RequestRecord] = []
        self.handler_errors: list[str] = []
        self._cond = threading.Condition()
        self._messages: list[dict[str, Any]] = []
        self._reports: list[dict[str, Any]] = []
        self._closed = False

    # -- state the session changes ---------------------------------------------------------------------------
    def set_file(self, path: str, data: bytes | str) -> None:
        """Serve ``data`` at ``path`` from now on (a new version of the app: its ETag changes with its bytes)."""
        self.files[_norm(path)] = data.encode() if isinstance(data, str) else bytes(data)

    def new_launch(self) -> int:
        """A new browser launch: reports from earlier launches are dropped from now on, and the queue is emptied."""
        with self._cond:
            self.launch += 1
            self._reports.clear()
            return self.launch

    def post(self, msg: dict[str, Any]) -> int:
        """Queue a message for the page (every launch's page from now on sees it only if it was sent after it loaded)."""
        with self._cond:
            self._messages.append(msg)
            self._cond.notify_all()
            return len(self._messages)

    def set_offline(self, offline: bool) -> None:
        with self._cond:
            self.offline = offline
        self.post({"type": "offline", "offline": offline})

    def close(self) -> None:
        """Wake every held long poll: the server is going away."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- reports ----------------------------------------------------------------------------------------------
    def add_report(self, payload: dict[str, Any]) -> None:
        with self._cond:
            if int(payload.get("launch") or 0) != self.launch:
                return  # a page of an earlier (closed or killed) launch: not this one's
            self._reports.append(payload)
            self._cond.notify_all()

    def next_report(self, timeout: float, alive: Callable[[], bool] = lambda: True) -> dict[str, Any] | None:
        """The next report of this launch; ``None`` at ``timeout``, or soon after ``alive()`` turns false."""
        deadline = time.monotonic() + timeout
        gone_at: float | None = None
        with self._cond:
            while not self._reports:
                now = time.monotonic()
                if gone_at is None and not alive():
                    gone_at = now
                if now >= deadline or (gone_at is not None and now - gone_at >= _EXIT_GRACE_S):
                    return None
                self._cond.wait(min(_POLL_S, deadline - now))
            return self._reports.pop(0)

    # -- requests ---------------------------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes = b"", *, poll_s: float = LONG_POLL_S) -> Reply:
        """The answer to one request (``poll_s``: how long ``/__next`` may wait for a message)."""
        split = urllib.parse.urlsplit(raw_path)
        path = urllib.parse.unquote(split.path) or "/"
        query = dict(urllib.parse.parse_qsl(split.query))
        hdrs = {k.lower(): v for k, v in headers.items()}
        if path.startswith("/__"):
            reply = self._harness(method, path, query, body, poll_s)
        elif self.offline and path.startswith(self.offline_prefixes):
            if self.offline_mode == "drop":
                reply = Reply(0, drop=True)
            else:
                reply = Reply.of_json({"error": "offline"}, 503, {"X-Harness-Offline": "1", "Cache-Control": "no-store"})
        elif path in self.handlers:
            reply = self._call(self.handlers[path], Request(method, path, query, hdrs, body))
        elif method in ("GET", "HEAD"):
            reply = self._file(path, hdrs)
        else:
            reply = Reply(405, b"method not allowed", "text/plain")
        if not path.startswith("/__"):  # the app's traffic only: the harness's channel is not the app's network
            self.requests.append(RequestRecord(time.monotonic(), self.launch, method, path, reply.status, len(body), len(reply.body)))
        return reply

    def _call(self, handler: Handler, req: Request) -> Reply:
        try:
            out = handler(req)
        except Exception as exc:  # the page sees a 500; the session keeps the error for the scenario to report
            self.handler_errors.append(f"{req.method} {req.path}: {type(exc).__name__}: {exc}")
            return Reply(500, f"{type(exc).__name__}: {exc}".encode(), "text/plain")
        if isinstance(out, Reply):
            return out
        if out is None:
            return Reply(204)
        if isinstance(out, bytes | bytearray):
            return Reply(200, bytes(out))
        return Reply.of_json(out)

    def _file(self, path: str, headers: Mapping[str, str]) -> Reply:
        if path not in self.files and path.endswith("/") and path + "index.html" in self.files:
            path += "index.html"
        data = self.files.get(path)
        if data is None:
            return Reply(404, b"not found", "text/plain")
        etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
        extra = {"ETag": etag, "Cache-Control": self.cache_control}
        if path.endswith((".js", ".mjs")):
            extra["Service-Worker-Allowed"] = "/"  # a worker script anywhere may control the whole origin
        extra.update(self.headers.get(path, {}))
        if etag in [t.strip() for t in headers.get("if-none-match", "").split(",")]:
            return Reply(304, b"", content_type(path), extra)
        return Reply(200, data, content_type(path), extra)

    def _harness(self, method: str, path: str, query: dict[str, str], body: bytes, poll_s: float) -> Reply:
        nostore = {"Cache-Control": "no-store"}
        if path == "/__harness.js" and method in ("GET", "HEAD"):
            with self._cond:
                state = {"launch": self.launch, "after": len(self._messages), "offline": self.offline}
            return Reply(200, (_HARNESS_JS % json.dumps(state)).encode(), "text/javascript; charset=utf-8", nostore)
        if path == "/__result" and method == "POST":
            try:
                payload = json.loads(body)
            except ValueError:
                payload = {"error": f"malformed report: {body[:200]!r}", "launch": self.launch}
            if not isinstance(payload, dict):
                payload = {"error": "a report must be an object", "launch": self.launch}
            self.add_report(payload)
            return Reply(204, b"", "text/plain", nostore)
        if path == "/__next" and method == "GET":
            after = int(query.get("after", "0") or 0)
            deadline = time.monotonic() + poll_s
            with self._cond:
                while len(self._messages) <= after and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                msgs = [{"seq": i + 1, "msg": m} for i, m in enumerate(self._messages[after:], start=after)]
            return Reply.of_json({"messages": msgs}, headers=nostore)
        return Reply(404, b"not found", "text/plain", nostore)


def _norm(path: str) -> str:
    return "/" + path.lstrip("/")


#: The page's side of the session (``%s``: the server's state when the page loaded: launch, message cursor, offline).
_HARNESS_JS = r"""
(function () {
  var state = %s;
  var env = null;
  function environment() {
    if (env) return env;
    env = {userAgent: navigator.userAgent, webgl: null, renderer: null};
    try {
      var c = document.createElement("canvas");
      var gl = c.getContext("webgl2") || c.getContext("webgl");
      if (gl) {
        env.webgl = gl instanceof (window.WebGL2RenderingContext || function () {}) ? "webgl2" : "webgl";
        var ext = gl.getExtension("WEBGL_debug_renderer_info");
        env.renderer = ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
      }
    } catch (e) { env.webglError = String(e); }
    return env;
  }
  function post(body) {
    body.launch = state.launch;
    body.env = environment();
    return fetch("/__result", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  }
  var listeners = [], buffer = [], waiters = [];
  var harness = {
    launch: state.launch,
    offline: state.offline,
    onMessage: function (fn) { listeners.push(fn); },
    nextMessage: function (type) {
      for (var i = 0; i < buffer.length; i++) {
        if (!type || buffer[i].type === type) return Promise.resolve(buffer.splice(i, 1)[0]);
      }
      return new Promise(function (resolve) { waiters.push({type: type, resolve: resolve}); });
    }
  };
  function deliver(msg) {
    if (msg && msg.type === "harness:close") { window.close(); return; }
    if (msg && msg.type === "offline") {
      harness.offline = !!msg.offline;
      window.dispatchEvent(new CustomEvent("harness:offline", {detail: {offline: harness.offline}}));
    }
    listeners.forEach(function (fn) { try { fn(msg); } catch (e) { console.error(e); } });
    for (var i = 0; i < waiters.length; i++) {
      if (!waiters[i].type || waiters[i].type === msg.type) { waiters.splice(i, 1)[0].resolve(msg); return; }
    }
    buffer.push(msg);
  }
  function poll(after) {
    fetch("/__next?launch=" + state.launch + "&after=" + after, {cache: "no-store"})
      .then(function (r) { return r.json(); })
      .then(function (body) {
        body.messages.forEach(function (m) { after = Math.max(after, m.seq); deliver(m.msg); });
        poll(after);
      })
      .catch(function () { setTimeout(function () { poll(after); }, 500); });
  }
  window.harness = harness;
  window.harnessReport = function (result) { return post({result: result}); };
  window.addEventListener("error", function (e) { post({error: String(e.message || e)}); });
  window.addEventListener("unhandledrejection", function (e) {
    var r = e.reason;
    post({error: "unhandled rejection: " + (r && r.name ? r.name + ": " : "") + String(r && r.message || r)});
  });
  poll(state.after);
})();
"""


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a killed browser resets its connections: expected here, not worth a traceback


class _HttpFront:
    """The :class:`_Site` on a loopback port, bound once for the session: the origin never changes."""

    def __init__(self, site: _Site) -> None:
        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                reply = site.handle(self.command, self.path, dict(self.headers.items()), body)
                if reply.drop:
                    self.close_connection = True  # no status line at all: the page's fetch fails as without a network
                    return
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD" and reply.status not in (204, 304):
                    self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

        self.site = site
        self.httpd = _QuietServer(("127.0.0.1", 0), H)
        self.port: int = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="browser-session-server", daemon=True)

    def __enter__(self) -> _HttpFront:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.site.close()
        self.httpd.shutdown()
        self.httpd.server_close()


# -- where each engine keeps an origin's data -----------------------------------------------------------------


def firefox_origin_dirs(profile: Path, port: int, host: str = "127.0.0.1") -> list[Path]:
    """Firefox's storage directories of ``http://host:port`` in ``profile`` (IndexedDB, localStorage, Cache API, OPFS).

    ``storage/{default,temporary,permanent}/http+++HOST+PORT`` and its partitioned variants (``...^partitionKey=...``).
    """
    name = f"http+++{host}+{port}"
    out: list[Path] = []
    for repo in ("default", "temporary", "permanent"):
        base = profile / "storage" / repo
        if base.is_dir():
            out.extend(sorted(p for p in base.iterdir() if p.name == name or p.name.startswith(name + "^")))
    return out


def webkit_origin_dirs(data_dir: Path, port: int, host: str = "127.0.0.1", cache_dir: Path | None = None) -> list[Path]:
    """WebKitGTK's storage of ``http://host:port`` under its base data (and cache) directory: directories and files.

    MiniBrowser sets a base data directory, so WebKit 2.50 keeps the older layout by type, each named after the
    origin: ``localstorage/http_HOST_PORT.localstorage*``, ``databases/indexeddb/v1/http_HOST_PORT/`` (and the
    same name under a top origin's directory for third-party frames), ``CacheStorage``, ``serviceworkers``... Also
    ``storage/<hash of the top origin>/<hash of the origin>/`` directories whose ``origin`` file names the host and
    the port (as text, or as WebKit's encoder writes it: ``...127.0.0.1\\x01`` and 16 bits little-endian).
    """
    name = f"http_{host}_{port}"
    out: list[Path] = []
    for base in (data_dir, cache_dir):
        if base is None or not base.is_dir():
            continue
        for p in sorted(base.rglob(name + "*")):
            if p.name == name or p.name.startswith((name + ".", name + "-")):
                out.append(p)
    storage = data_dir / "storage"
    if storage.is_dir():
        # WebKit's encoder: the host string, then the optional port: a 1 (present) and 16 bits little-endian
        marks = (f"{host}:{port}".encode(), host.encode() + b"\x01" + port.to_bytes(2, "little"))
        for origin_file in sorted(storage.glob("*/origin")) + sorted(storage.glob("*/*/origin")):
            try:
                raw = origin_file.read_bytes()
            except OSError:
                continue
            if any(m in raw for m in marks):
                out.append(origin_file.parent)
    # a directory holds the ones below it: keep the outermost only
    return [p for p in out if not any(q != p and q in p.parents for q in out)]


def _invalidate_firefox_quota_cache(profile: Path) -> bool:
    """Make Firefox rescan its storage at the next start (its usage cache in ``storage.sqlite`` would still count the
    deleted origin). True if the cache was found and marked invalid."""
    db = profile / "storage.sqlite"
    if not db.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            if not conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='cache'").fetchone():
                return False
            conn.execute("UPDATE cache SET valid = 0")
            conn.commit()
            return True
    except sqlite3.Error:
        return False


# -- the DevTools protocol (Chromium) -----------------------------------------------------------------------


class _Cdp:
    """A DevTools protocol connection to one target's WebSocket: commands in order, answers matched by id."""

    def __init__(self, ws_url: str, timeout: float) -> None:
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(ws_url, open_timeout=timeout, max_size=None))
        self._id = 0
        self._lock = threading.Lock()

    def call(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> dict[str, Any]:
        with self._lock:
            self._id += 1
            mid = self._id
            self.ws.send(json.dumps({"id": mid, "method": method, "params": dict(params or {})}))
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CdpError(f"{method}: no answer within {timeout:.0f} s")
                msg = json.loads(self.ws.recv(timeout=left))
                if msg.get("id") != mid:
                    continue  # an event, or an answer to nobody
                if "error" in msg:
                    raise CdpError(f"{method}: {msg['error'].get('message')} ({msg['error'].get('code')})")
                return dict(msg.get("result") or {})

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()


def _devtools_port(profile: Path) -> int | None:
    """The port Chromium wrote to ``DevToolsActivePort`` (``--remote-debugging-port=0``), once it listens."""
    try:
        first = (profile / "DevToolsActivePort").read_text().splitlines()[0].strip()
        return int(first)
    except (OSError, IndexError, ValueError):
        return None


# -- Marionette (Firefox, opt-in) ------------------------------------------------------------------------------


def marionette_frame(obj: Any) -> bytes:
    """One Marionette message on the wire: ``<length>:<json>`` (the length in bytes)."""
    data = json.dumps(obj).encode()
    return str(len(data)).encode() + b":" + data


def marionette_unframe(buf: bytes) -> tuple[Any, bytes] | None:
    """The first whole message in ``buf`` and what follows it, or ``None`` while it is incomplete."""
    head, sep, rest = buf.partition(b":")
    if not sep:
        return None
    n = int(head)
    if len(rest) < n:
        return None
    return json.loads(rest[:n]), rest[n:]


#: Chrome-context script: what Firefox's "Clear cookies and site data" does for one origin, open tabs included.
_FIREFOX_CLEAR = """
const resolve = arguments[arguments.length - 1];
const principal = Services.scriptSecurityManager.createContentPrincipalFromOrigin(arguments[0]);
Services.clearData.deleteDataFromPrincipal(principal, true, Ci.nsIClearDataService.CLEAR_ALL,
  {onDataDeleted(failed) { resolve({failed: failed}); }});
"""


class _Marionette:
    """Firefox's remote control protocol on a loopback port, in chrome context: the browser's own APIs."""

    def __init__(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    raise BrowserError(f"Firefox's Marionette did not listen on port {port} within {timeout:.0f} s") from None
                time.sleep(0.2)
        self._buf = b""
        self._id = 0
        self._recv()  # the greeting: {"applicationType": "gecko", "marionetteProtocol": 3}
        self.call("WebDriver:NewSession", {"capabilities": {}})
        self.call("Marionette:SetContext", {"value": "chrome"})

    def _recv(self) -> Any:
        while (got := marionette_unframe(self._buf)) is None:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BrowserError("Firefox closed its Marionette connection")
            self._buf += chunk
        msg, self._buf = got
        return msg

    def call(self, command: str, params: Mapping[str, Any]) -> Any:
        self._id += 1
        self.sock.sendall(marionette_frame([0, self._id, command, dict(params)]))
        while True:
            msg = self._recv()
            if isinstance(msg, list) and len(msg) == 4 and msg[0] == 1 and msg[1] == self._id:
                if msg[2]:
                    raise BrowserError(f"Marionette {command}: {msg[2].get('error')}: {msg[2].get('message')}")
                return msg[3].get("value") if isinstance(msg[3], dict) else msg[3]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


# -- the session ---------------------------------------------------------------------------------------------


@dataclass
class SessionResult(PageResult):
    """A page's report, as :class:`harness.browser.PageResult`, with the launch it came from and when it arrived."""

    launch: int = 0
    seconds: float = 0.0  # from the browser's start to this report's arrival


class BrowserSession:
    """One engine on one profile and one origin, opened and closed as often as a scenario needs.

    ``files`` are served at their paths (``{"/index.html": ..., "/sw.js": ...}``); ``handlers`` answer requests to
    their paths (``{"/api/sync": fn}``, ``fn(Request)`` returns a :class:`Reply`, bytes, ``None`` or JSON data);
    ``headers`` add or replace response headers per file path; ``cache_control`` is the files' default
    (``no-cache``: revalidate with the ETag every time). ``offline_prefixes`` and ``offline_mode`` say what
    :meth:`set_offline` refuses and how. ``on_offline`` is called with the new state (to switch a proxy in front
    of another server too). One browser at a time: :meth:`open` and :meth:`open_and_keep` refuse while one runs.
    """

    def __init__(
        self,
        engine: str,
        workdir: str | Path,
        *,
        files: Mapping[str, bytes | str] | None = None,
        handlers: Mapping[str, Handler] | None = None,
        headers: Mapping[str, Mapping[str, str]] | None = None,
        cache_control: str = "no-cache",
        offline_prefixes: Iterable[str] = OFFLINE_PREFIXES,
        offline_mode: str = "drop",
        on_offline: Callable[[bool], None] | None = None,
        chromium_args: Iterable[str] = (),
        firefox_marionette: bool = False,
        close_grace: float = CLOSE_GRACE_S,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown browser engine {engine!r}; known: {', '.join(ENGINES)}")
        self.engine = engine
        self.workdir = Path(workdir)
        self.site = _Site(
            files, handlers, headers=headers, cache_control=cache_control, offline_prefixes=offline_prefixes, offline_mode=offline_mode
        )
        self.on_offline = on_offline
        self.chromium_args = tuple(chromium_args)
        self.firefox_marionette = firefox_marionette and engine == "firefox"
        self._marionette_port = 0
        self._marionette: _Marionette | None = None
        self.close_grace = close_grace
        self.profile = self.workdir / f"profile-{engine}"
        self.path: str | None = None
        self.version = ""
        self._front: _HttpFront | None = None
        self._stack = contextlib.ExitStack()
        self._display: str | None = None
        self._browser: ServerProcess | None = None
        self._started_at = 0.0
        self._cdp: _Cdp | None = None
        self._argv: list[str] = []
        self.last_close = ""  # how the browser last went: window.close(), SIGTERM, SIGKILL...

    # -- lifetime of the session -------------------------------------------------------------------------------
    def __enter__(self) -> BrowserSession:
        self.path = _require(self.engine)  # NotRunnable with the install command when the engine is missing
        self.version = _version(self.engine, self.path)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.profile.mkdir(parents=True, exist_ok=True)
        try:
            self._front = self._stack.enter_context(_HttpFront(self.site))
            if ENGINES[self.engine].needs_display:
                self._display = self._stack.enter_context(xvfb_display(self.workdir))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.running:
                self.close()
        finally:
            self._stack.close()

    # -- what the session is -------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._front is None:
            raise RuntimeError("the session is not started (use it as a context manager)")
        return self._front.port

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``: the same for every launch of the session."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/index.html") -> str:
        return self.origin + _norm(path)

    @property
    def running(self) -> bool:
        """Whether the browser (or a process it left in its group) runs."""
        b = self._browser
        return b is not None and (b.alive or (b.pid is not None and bool(group_members(b.pid))))

    @property
    def pid(self) -> int | None:
        return self._browser.pid if self._browser is not None and self.running else None

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request the page server saw, in order (launch, path, status, bytes)."""
        return list(self.site.requests)

    @property
    def handler_errors(self) -> list[str]:
        return list(self.site.handler_errors)

    @property
    def data_dir(self) -> Path:
        """Where the engine keeps the origin's data: the profile (Chromium, Firefox) or MiniBrowser's data directory."""
        if self.engine == "webkit":
            return self.profile / "data" / "webkitgtk-4.1" / "MiniBrowser"
        return self.profile

    @property
    def cache_dir(self) -> Path:
        """MiniBrowser's base cache directory (HTTP cache, and with it part of the site data); the profile otherwise."""
        if self.engine == "webkit":
            return self.profile / "cache" / "webkitgtk-4.1" / "MiniBrowser"
        return self.profile

    def set_file(self, path: str, data: bytes | str) -> None:
        """Serve new content at ``path`` (a server-side version change)."""
        self.site.set_file(path, data)

    # -- launching -----------------------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        p = self.profile
        env = {
            "NO_AT_BRIDGE": "1",
            "MOZ_CRASHREPORTER_DISABLE": "1",
            "HOME": str(p),
            "XDG_RUNTIME_DIR": str(p / "run"),
            "XDG_DATA_HOME": str(p / "data"),
            "XDG_CACHE_HOME": str(p / "cache"),
            "XDG_CONFIG_HOME": str(p / "config"),
        }
        for d in ("run", "data", "cache", "config"):
            (p / d).mkdir(parents=True, exist_ok=True)
        (p / "run").chmod(0o700)
        if self._display is not None:
            env["DISPLAY"] = self._display
        return env

    def _command(self, url: str) -> list[str]:
        assert self.path is not None
        argv = _argv(self.engine, self.path, url, self.profile, headless=self.engine == "chromium")
        if self.engine == "chromium":
            (self.profile / "DevToolsActivePort").unlink(missing_ok=True)  # a killed launch's file names a dead port
            return [argv[0], "--remote-debugging-port=0", *self.chromium_args, *argv[1:]]
        if self.engine == "firefox":
            prefs = dict(_FIREFOX_PREFS)
            if self.firefox_marionette:
                self._marionette_port = free_port()
                prefs.update({"marionette.port": self._marionette_port, "remote.prefs.recommended": False})
                argv = [argv[0], "--marionette", "--remote-allow-system-access", *argv[1:]]
            with open(self.profile / "user.js", "a", encoding="utf-8") as f:  # after _argv's own preferences
                for k, v in prefs.items():
                    f.write(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n")
        return argv

    def _launch(self, path: str) -> int:
        if self._front is None:
            raise RuntimeError("the session is not started (use it as a context manager)")
        if self.running:
            raise BrowserError(f"{ENGINES[self.engine].title} is already open in this session: close() or kill() it first")
        launch = self.site.new_launch()
        self._argv = self._command(self.url(path))
        self._browser = ServerProcess(
            self.engine,
            self._argv,
            env=self._env(),
            ready=None,
            log_path=self.workdir / f"{self.engine}.log",
            signal_group=False,  # close(): SIGTERM to the main process only, which then quits as asked to
            grace=self.close_grace,
        )
        self._started_at = time.monotonic()
        try:
            self._browser.start()
        except ServerCrashed as exc:
            raise BrowserError(f"{ENGINES[self.engine].title} exited with {exc.returncode} at start: {exc}") from None
        return launch

    def _result(self, payload: dict[str, Any], launch: int) -> SessionResult:
        env_seen = payload.get("env") or {}
        if "error" in payload:
            raise BrowserError(f"the page failed in {ENGINES[self.engine].title} {self.version}: {payload['error']}")
        return SessionResult(
            self.engine,
            self.version,
            payload.get("result"),
            user_agent=str(env_seen.get("userAgent") or ""),
            renderer=env_seen.get("renderer"),
            webgl=env_seen.get("webgl"),
            flags=self._argv[1:-1],
            launch=launch,
            seconds=time.monotonic() - self._started_at,
        )

    def wait_report(self, timeout: float = 60.0) -> SessionResult:
        """The page's next ``harnessReport(obj)`` of this launch; :class:`BrowserError` if none comes in ``timeout``
        seconds, the browser is gone, or the page reported an error."""
        payload = self.site.next_report(timeout, lambda: self.running)
        if payload is None:
            b = self._browser
            tail = "\n".join(b.last_log_lines(15)) if b is not None else ""
            state = "still running" if self.running else f"exited with {b.returncode if b else None}"
            raise BrowserError(
                f"{ENGINES[self.engine].title} sent no report within {timeout:.0f} s ({state}); its last output:\n{tail or '(none)'}"
            )
        return self._result(payload, self.site.launch)

    def open_and_keep(self, path: str = "/index.html", timeout: float = 60.0) -> SessionResult:
        """Launch the browser on the profile at ``path`` and return the page's first report ("ready"); it keeps running."""
        launch = self._launch(path)
        try:
            res = self.wait_report(timeout)
        except BaseException:
            self.kill()
            raise
        assert res.launch == launch
        return res

    def open(self, path: str = "/index.html", timeout: float = 60.0) -> SessionResult:
        """Launch, wait for the page's first report, close the browser cleanly, and return the report."""
        try:
            return self.open_and_keep(path, timeout)
        finally:
            if self.running:
                self.close()

    def send(self, msg: Mapping[str, Any]) -> None:
        """Push a message (a JSON object, conventionally with a ``type``) to the page: ``harness.nextMessage(type)``."""
        self.site.post(dict(msg))

    def close(self) -> int | None:
        """Quit the browser cleanly and wait until it is gone; how is in :attr:`last_close`.

        Chromium and WebKitGTK: SIGTERM to the main process (Chromium quits as from its menu; MiniBrowser dies, and
        its network process, which holds the storage, ends after it). Firefox dies at once on SIGTERM (localStorage
        written in the last seconds was seen lost), so its page is first asked to ``window.close()`` its window
        (allowed by the session's preferences), and Firefox quits as when its last window closes; SIGTERM only if it
        has not quit within ``PAGE_CLOSE_S``. What is left after the grace gets SIGKILL.
        """
        self._drop_cdp()
        b = self._browser
        if b is None:
            return None
        if self.engine == "firefox" and self.running:
            self.site.post({"type": "harness:close"})
            deadline = time.monotonic() + PAGE_CLOSE_S
            while self.running and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self.running:
                self.last_close = "window.close()"
                return b.stop()  # reaps it and notes the exit in its log
        self.last_close = "SIGTERM"
        code = b.stop()
        if code == -9:
            self.last_close = "SIGTERM, then SIGKILL after the grace"
        return code

    def kill(self) -> int | None:
        """Crash the browser: SIGKILL its whole process group at once."""
        self._drop_cdp()
        self.last_close = "SIGKILL"
        return self._browser.kill() if self._browser is not None else None

    # -- offline ---------------------------------------------------------------------------------------------------
    @property
    def offline(self) -> bool:
        return self.site.offline

    def set_offline(self, offline: bool) -> None:
        """Refuse (or answer again) requests under the offline prefixes, and tell the page (``harness.offline``).

        ``navigator.onLine`` does not change: the browser's network is untouched."""
        self.site.set_offline(offline)
        if self.on_offline is not None:
            self.on_offline(offline)

    # -- Chromium: the DevTools protocol --------------------------------------------------------------------------
    def _drop_cdp(self) -> None:
        if self._cdp is not None:
            self._cdp.close()
            self._cdp = None
        if self._marionette is not None:
            self._marionette.close()
            self._marionette = None

    def marionette(self, command: str, params: Mapping[str, Any] | None = None, timeout: float = 30.0) -> Any:
        """A Marionette command to the running Firefox (chrome context: ``WebDriver:ExecuteScript`` runs with the
        browser's privileges). Only with ``firefox_marionette=True``, which also sets ``navigator.webdriver``."""
        if not self.firefox_marionette:
            raise BrowserError("Marionette is off: BrowserSession('firefox', ..., firefox_marionette=True)")
        if not self.running:
            raise BrowserError("Firefox is not running: open_and_keep() first")
        if self._marionette is None:
            self._marionette = _Marionette(self._marionette_port, timeout)
        self._marionette.sock.settimeout(timeout)
        return self._marionette.call(command, params or {})

    def _page_target(self, timeout: float) -> str:
        """The WebSocket URL of the page's DevTools target (the tab showing this session's origin)."""
        deadline = time.monotonic() + timeout
        last = "DevToolsActivePort not written"
        while time.monotonic() < deadline and self.running:
            port = _devtools_port(self.profile)
            if port is not None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                        targets = json.loads(r.read())
                except (OSError, ValueError) as exc:
                    last = str(exc)
                else:
                    pages = [t for t in targets if t.get("type") == "page"]
                    ours = [t for t in pages if str(t.get("url", "")).startswith(self.origin)] or pages
                    if ours and ours[0].get("webSocketDebuggerUrl"):
                        return str(ours[0]["webSocketDebuggerUrl"])
                    last = f"no page target among {len(targets)}"
            time.sleep(0.1)
        raise CdpError(f"no DevTools page target for {self.origin}: {last}")

    def cdp(self, method: str, params: Mapping[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        """Send a DevTools protocol command to the open page's target; its result. Chromium only, while it runs.

        ``Storage.clearDataForOrigin``, ``Storage.overrideQuotaForOrigin`` and ``Storage.getUsageAndQuota`` take
        ``origin``: pass :attr:`origin`. A quota override belongs to this DevTools connection: it lasts until
        :meth:`close` or :meth:`kill` (it is not saved in the profile).
        """
        if self.engine != "chromium":
            raise CdpError(f"the DevTools protocol is Chromium's; {ENGINES[self.engine].title} has none here")
        if not self.running:
            raise CdpError("Chromium is not running: open_and_keep() first")
        if self._cdp is None:
            self._cdp = _Cdp(self._page_target(timeout), timeout)
        return self._cdp.call(method, params, timeout)

    # -- clearing the origin's data -------------------------------------------------------------------------------
    def clear_origin(self, storage_types: str = "all") -> dict[str, Any]:
        """Delete the origin's stored data, the way this engine allows; what was done.

        Chromium, open: CDP ``Storage.clearDataForOrigin`` while the tab stays open (``while_open`` true). Firefox
        with ``firefox_marionette``, open: the browser's own clear-data service through Marionette, tab open. Firefox
        otherwise, and WebKitGTK: no control channel, so the browser is closed cleanly first (``closed_first``) and the
        origin's storage directories are deleted from the profile (``removed``); Firefox's quota usage cache is
        marked stale so it rescans. Chromium, closed: it is launched for the call on ``/__harness.js`` (any page
        target will do; the origin is a parameter) and closed again (``while_open`` false).
        """
        if self.engine == "chromium":
            launched_here = False
            if not self.running:
                self._launch("/__harness.js")
                launched_here = True
            try:
                self.cdp("Storage.clearDataForOrigin", {"origin": self.origin, "storageTypes": storage_types})
            finally:
                if launched_here:
                    self.close()
            return {
                "engine": self.engine,
                "method": "cdp Storage.clearDataForOrigin",
                "while_open": not launched_here,
                "closed_first": False,
                "removed": [],
            }
        if self.engine == "firefox" and self.firefox_marionette and self.running:
            answer = self.marionette("WebDriver:ExecuteAsyncScript", {"script": _FIREFOX_CLEAR, "args": [self.origin]})
            return {
                "engine": self.engine,
                "method": "Marionette, chrome context: Services.clearData.deleteDataFromPrincipal(CLEAR_ALL)",
                "while_open": True,
                "closed_first": False,
                "removed": [],
                "failed_flags": (answer or {}).get("failed"),
            }
        closed_first = self.running
        if closed_first:
            self.close()
        removed: list[str] = []
        if self.engine == "firefox":
            dirs = firefox_origin_dirs(self.profile, self.port)
        else:
            dirs = webkit_origin_dirs(self.data_dir, self.port, cache_dir=self.cache_dir)
        for d in dirs:
            if d.is_dir():
                shutil.rmtree(d, ignore_errors=True)
            else:
                d.unlink(missing_ok=True)
            removed.append(str(d.relative_to(self.profile)))
        stale_cache = _invalidate_firefox_quota_cache(self.profile) if self.engine == "firefox" else False
        return {
            "engine": self.engine,
            "method": "delete the origin's storage directories with the browser closed",
            "while_open": False,
            "closed_first": closed_first,
            "removed": removed,
            "quota_cache_invalidated": stale_cache,
        }


@contextlib.contextmanager
def temporary_session(engine: str, **kwargs: Any) -> Iterator[BrowserSession]:
    """A :class:`BrowserSession` in a temporary directory removed afterwards (for quick checks)."""
    with tempfile.TemporaryDirectory(prefix=f"session-{engine}-") as d, BrowserSession(engine, d, **kwargs) as s:
        yield s
