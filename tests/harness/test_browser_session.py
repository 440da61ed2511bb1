"""harness.browser_session: one profile and one origin across launches; offline, clearing and quota in each engine.

The first tests need no socket (the page server's logic, the engines' storage layouts); the ``slow`` ones start
real browsers, one at a time.
"""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from harness import browser
from harness.browser import BrowserError
from harness.browser_session import (
    BrowserSession,
    CdpError,
    Reply,
    _devtools_port,
    _invalidate_firefox_quota_cache,
    _Site,
    content_type,
    firefox_origin_dirs,
    marionette_frame,
    marionette_unframe,
    webkit_origin_dirs,
)
from tests.utils import UNIT, missing_program

# -- the page server, without sockets ------------------------------------------------------------------------


def test_files_are_served_with_their_content_types_and_an_etag_that_revalidates():
    site = _Site({"index.html": "<p>hi</p>", "/sw.js": "self.x=1", "/a.wasm": b"\0asm", "/m.png": b"\x89PNG", "/d.json": "{}"})
    r = site.handle("GET", "/index.html?v=1", {})
    assert (r.status, r.body, r.content_type) == (200, b"<p>hi</p>", "text/html; charset=utf-8")
    assert r.headers["Cache-Control"] == "no-cache" and r.headers["ETag"].startswith('"')
    assert site.handle("GET", "/", {}).body == b"<p>hi</p>"
    again = site.handle("GET", "/index.html", {"If-None-Match": r.headers["ETag"]})
    assert again.status == 304 and again.body == b""
    sw = site.handle("GET", "/sw.js", {})
    assert sw.content_type.startswith("text/javascript") and sw.headers["Service-Worker-Allowed"] == "/"
    assert [content_type(p) for p in ("/a.wasm", "/m.png", "/d.json", "/x.bin")] == [
        "application/wasm",
        "image/png",
        "application/json",
        "application/octet-stream",
    ]
    assert site.handle("GET", "/missing.js", {}).status == 404


def test_a_new_version_of_a_file_has_a_new_etag_and_per_path_headers_apply():
    site = _Site({"/app.js": "v1"}, headers={"/app.js": {"Cache-Control": "max-age=60"}})
    first = site.handle("GET", "/app.js", {})
    site.set_file("/app.js", "v2")
    second = site.handle("GET", "/app.js", {"If-None-Match": first.headers["ETag"]})
    assert second.status == 200 and second.body == b"v2" and second.headers["ETag"] != first.headers["ETag"]
    assert second.headers["Cache-Control"] == "max-age=60"


def test_handlers_answer_json_bytes_nothing_or_a_reply_and_a_failing_one_is_a_500_kept_for_the_report():
    def boom(req):
        raise RuntimeError("bad")

    site = _Site(
        handlers={
            "/api/echo": lambda req: {"got": req.json(), "q": req.query, "m": req.method},
            "api/raw": lambda req: b"\1\2",
            "/api/none": lambda req: None,
            "/api/etag": lambda req: (
                Reply(304) if req.headers.get("if-none-match") == '"1"' else Reply(200, b"x", "text/plain", {"ETag": '"1"'})
            ),
            "/api/boom": boom,
        }
    )
    r = site.handle("POST", "/api/echo?a=1", {"Content-Type": "application/json"}, b'{"k": 2}')
    assert r.status == 200 and json.loads(r.body) == {"got": {"k": 2}, "q": {"a": "1"}, "m": "POST"}
    assert site.handle("GET", "/api/raw", {}).body == b"\1\2"
    assert site.handle("POST", "/api/none", {}).status == 204
    assert site.handle("GET", "/api/etag", {"If-None-Match": '"1"'}).status == 304
    assert site.handle("GET", "/api/boom", {}).status == 500 and "RuntimeError: bad" in site.handler_errors[0]
    assert [(q.method, q.path, q.status) for q in site.requests][:2] == [("POST", "/api/echo", 200), ("GET", "/api/raw", 200)]


@pytest.mark.parametrize("mode", ["drop", "503"])
def test_offline_refuses_the_apps_data_not_its_pages_nor_the_harness_and_tells_the_page(mode):
    site = _Site({"/index.html": "x"}, {"/api/x": lambda req: {"ok": True}}, offline_mode=mode)
    site.set_offline(True)
    r = site.handle("GET", "/api/x", {})
    assert (r.drop, r.status) == ((True, 0) if mode == "drop" else (False, 503))
    assert site.handle("GET", "/index.html", {}).status == 200
    js = site.handle("GET", "/__harness.js", {}).body.decode()
    assert '"offline": true' in js
    told = json.loads(site.handle("GET", "/__next?after=0", {}, poll_s=0).body)
    assert told["messages"] == [{"seq": 1, "msg": {"type": "offline", "offline": True}}]
    site.set_offline(False)
    assert site.handle("GET", "/api/x", {}).status == 200
    assert [q.status for q in site.requests if q.path == "/api/x"] == [0 if mode == "drop" else 503, 200]


def test_an_unknown_offline_mode_is_refused():
    with pytest.raises(ValueError, match="offline_mode"):
        _Site(offline_mode="slow")


def test_the_harness_script_starts_the_page_after_the_messages_sent_before_it_loaded():
    site = _Site()
    site.post({"type": "old"})
    launch = site.new_launch()
    js = site.handle("GET", "/__harness.js", {}).body.decode()
    assert f'"launch": {launch}' in js and '"after": 1' in js and "harnessReport" in js
    assert json.loads(site.handle("GET", "/__next?after=1", {}, poll_s=0).body) == {"messages": []}
    site.post({"type": "cmd", "op": "read"})
    body = json.loads(site.handle("GET", "/__next?after=1", {}, poll_s=0).body)
    assert body["messages"] == [{"seq": 2, "msg": {"type": "cmd", "op": "read"}}]
    assert site.requests == []  # the harness's channel is not the app's traffic


def test_a_long_poll_returns_as_soon_as_a_message_is_posted():
    site = _Site()
    got = {}
    t = threading.Thread(target=lambda: got.update(r=site.handle("GET", "/__next?after=0", {}, poll_s=30 * UNIT)))
    t.start()
    site.post({"type": "go"})
    t.join(10 * UNIT)
    assert not t.is_alive() and json.loads(got["r"].body)["messages"][0]["msg"] == {"type": "go"}


def test_reports_are_queued_per_launch_and_an_earlier_launchs_are_dropped():
    site = _Site()
    one = site.new_launch()
    site.handle("POST", "/__result", {}, json.dumps({"result": 1, "launch": one}).encode())
    two = site.new_launch()
    site.handle("POST", "/__result", {}, json.dumps({"result": "late", "launch": one}).encode())
    for i in (1, 2):
        site.handle("POST", "/__result", {}, json.dumps({"result": i, "launch": two}).encode())
    site.handle("POST", "/__result", {}, b"not json")
    assert [site.next_report(0)["result"] for _ in range(2)] == [1, 2]
    assert "malformed" in site.next_report(0)["error"]
    assert site.next_report(0) is None
    assert site.next_report(30 * UNIT, alive=lambda: False) is None  # a gone browser ends the wait soon


# -- where the engines keep an origin's data ----------------------------------------------------------------


def test_firefox_origin_directories_are_found_with_their_partitioned_variants_only_for_that_port(tmp_path):
    for name in ("http+++127.0.0.1+8080", "http+++127.0.0.1+8080^partitionKey=x", "http+++127.0.0.1+80801", "moz-extension+++x"):
        (tmp_path / "storage" / "default" / name).mkdir(parents=True)
    (tmp_path / "storage" / "temporary" / "http+++127.0.0.1+8080").mkdir(parents=True)
    found = [p.relative_to(tmp_path).as_posix() for p in firefox_origin_dirs(tmp_path, 8080)]
    assert found == [
        "storage/default/http+++127.0.0.1+8080",
        "storage/default/http+++127.0.0.1+8080^partitionKey=x",
        "storage/temporary/http+++127.0.0.1+8080",
    ]


def test_webkit_origin_directories_are_found_by_their_origin_file(tmp_path):
    ours = tmp_path / "storage" / "top1" / "frame1"
    other = tmp_path / "storage" / "top2" / "frame2"
    for d, port in ((ours, 8080), (other, 9090)):
        d.mkdir(parents=True)
        one = b"\x04\x00\x00\x00\x01http\x09\x00\x00\x00\x01127.0.0.1\x01" + port.to_bytes(2, "little")  # as WebKit 2.50 writes it
        (d / "origin").write_bytes(one + one)  # the top origin, then the frame's
    assert webkit_origin_dirs(tmp_path, 8080) == [ours]
    assert webkit_origin_dirs(tmp_path / "nowhere", 8080) == []


def test_webkit_origin_data_in_the_layout_by_type_is_found_by_name(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    idb = data / "databases" / "indexeddb" / "v1" / "http_127.0.0.1_8080"
    (idb / "HASH").mkdir(parents=True)
    (data / "databases" / "indexeddb" / "v1" / "http_127.0.0.1_80801").mkdir()
    (data / "localstorage").mkdir()
    for suffix in (".localstorage", ".localstorage-wal"):
        (data / "localstorage" / f"http_127.0.0.1_8080{suffix}").write_bytes(b"")
    (cache / "CacheStorage" / "http_127.0.0.1_8080").mkdir(parents=True)
    found = [p.relative_to(tmp_path).as_posix() for p in webkit_origin_dirs(data, 8080, cache_dir=cache)]
    assert found == [
        "data/databases/indexeddb/v1/http_127.0.0.1_8080",
        "data/localstorage/http_127.0.0.1_8080.localstorage",
        "data/localstorage/http_127.0.0.1_8080.localstorage-wal",
        "cache/CacheStorage/http_127.0.0.1_8080",
    ]


def test_firefoxs_quota_cache_is_marked_stale(tmp_path):
    with sqlite3.connect(tmp_path / "storage.sqlite") as db:
        db.execute("CREATE TABLE cache (valid INTEGER, build_id TEXT)")
        db.execute("INSERT INTO cache VALUES (1, 'x')")
    assert _invalidate_firefox_quota_cache(tmp_path)
    with sqlite3.connect(tmp_path / "storage.sqlite") as db:
        assert db.execute("SELECT valid FROM cache").fetchone() == (0,)
    assert not _invalidate_firefox_quota_cache(tmp_path / "nowhere")


def test_the_devtools_port_is_read_from_the_profile(tmp_path):
    assert _devtools_port(tmp_path) is None
    (tmp_path / "DevToolsActivePort").write_text("41234\n/devtools/browser/abc\n")
    assert _devtools_port(tmp_path) == 41234


def test_chromium_is_launched_headless_with_a_devtools_port_on_the_sessions_profile(tmp_path):
    s = BrowserSession("chromium", tmp_path, chromium_args=["--x-test"])
    s.path = "/usr/bin/chromium"
    (s.profile).mkdir(parents=True)
    (s.profile / "DevToolsActivePort").write_text("1\n")
    argv = s._command("http://127.0.0.1:1/index.html")
    assert argv[0] == "/usr/bin/chromium" and "--headless=new" in argv and "--remote-debugging-port=0" in argv and "--x-test" in argv
    assert f"--user-data-dir={s.profile}" in argv and argv[-1] == "http://127.0.0.1:1/index.html"
    assert not (s.profile / "DevToolsActivePort").exists()  # a killed launch's port is not read back


def test_firefox_gets_the_session_preferences_on_its_profile(tmp_path):
    s = BrowserSession("firefox", tmp_path)
    s.path = "/usr/bin/firefox-esr"
    s.profile.mkdir(parents=True)
    argv = s._command("http://127.0.0.1:1/")
    assert argv[argv.index("--profile") + 1] == str(s.profile)
    prefs = (s.profile / "user.js").read_text()
    assert 'user_pref("browser.sessionstore.resume_from_crash", false);' in prefs and "checkDefaultBrowser" in prefs


def test_marionette_messages_are_length_prefixed_and_read_whole():
    wire = marionette_frame([0, 1, "WebDriver:NewSession", {"é": 1}]) + marionette_frame({"a": 2})
    assert int(wire.split(b":", 1)[0]) == len(json.dumps([0, 1, "WebDriver:NewSession", {"é": 1}]).encode())
    first, rest = marionette_unframe(wire)
    assert first == [0, 1, "WebDriver:NewSession", {"é": 1}] and marionette_unframe(rest) == ({"a": 2}, b"")
    assert marionette_unframe(wire[:5]) is None and marionette_unframe(b"12") is None


def test_cdp_is_chromiums_only_and_an_unknown_engine_is_refused(tmp_path):
    with pytest.raises(CdpError, match="Chromium"):
        BrowserSession("firefox", tmp_path).cdp("Storage.getUsageAndQuota")
    with pytest.raises(ValueError, match="unknown browser engine"):
        BrowserSession("netscape", tmp_path)
    with pytest.raises(BrowserError, match="Marionette is off"):
        BrowserSession("firefox", tmp_path).marionette("WebDriver:GetTitle")


# -- real engines (one browser at a time) ----------------------------------------------------------------------

PAGE = """<!doctype html><html><head><script src="/__harness.js"></script></head><body><script src="/app.js"></script></body></html>"""

#: The test app: ``?phase=write&v=X`` writes X to IndexedDB and localStorage and reports; ``?phase=read`` reports what
#: is there; then it obeys ``cmd`` messages (read, fetch /api/x, fill IndexedDB with random MiB, estimate).
APP = r"""
(async function () {
  function openDb() {
    return new Promise(function (res, rej) {
      var r = indexedDB.open("t", 1);
      r.onupgradeneeded = function () { r.result.createObjectStore("kv"); };
      r.onsuccess = function () { res(r.result); };
      r.onerror = function () { rej(r.error); };
    });
  }
  async function tx(mode, fn) {
    var db = await openDb();
    try {
      return await new Promise(function (res, rej) {
        var t = db.transaction("kv", mode), req = fn(t.objectStore("kv"));
        t.oncomplete = function () { res(req && req.result); };
        t.onerror = function () { rej(t.error); };
        t.onabort = function () { rej(t.error || new Error("aborted")); };
      });
    } finally { db.close(); }
  }
  async function read() {
    return {idb: (await tx("readonly", function (s) { return s.get("v"); })) || null,
            ls: localStorage.getItem("v"), count: await tx("readonly", function (s) { return s.count(); })};
  }
  async function estimate() {
    var e = navigator.storage && navigator.storage.estimate ? await navigator.storage.estimate() : {};
    return {usage: e.usage, quota: e.quota};
  }
  async function fill(mib) {
    var written = 0, error = null;
    try {
      for (var i = 0; i < mib; i++) {
        var buf = new Uint8Array(1 << 20);
        for (var o = 0; o < buf.length; o += 65536) crypto.getRandomValues(buf.subarray(o, o + 65536));
        await tx("readwrite", function (s) { return s.put(buf.buffer, "blob" + i); });
        written++;
      }
    } catch (e) { error = e.name; }
    return {written: written, error: error};
  }
  var q = new URLSearchParams(location.search);
  if (q.get("phase") === "write") {
    await tx("readwrite", function (s) { return s.put(q.get("v"), "v"); });
    localStorage.setItem("v", q.get("v"));
  }
  await harnessReport(Object.assign({ready: true, offline: harness.offline}, await read()));
  for (;;) {
    var m = await harness.nextMessage("cmd");
    var out = {op: m.op, offline: harness.offline, onLine: navigator.onLine};
    if (m.op === "read") Object.assign(out, await read());
    if (m.op === "estimate") Object.assign(out, await estimate());
    if (m.op === "fill") Object.assign(out, await fill(m.mib), await estimate());
    if (m.op === "fetch") {
      try { var r = await fetch("/api/x", {cache: "no-store"}); out.status = r.status; out.body = await r.json(); }
      catch (e) { out.failed = e.name; }
    }
    await harnessReport(out);
  }
})();
"""

ENGINES = ["chromium", "firefox", "webkit"]
T = 60 * UNIT


def need(engine: str) -> None:
    if browser.find_engine(engine) is None or (browser.ENGINES[engine].needs_display and browser.shutil.which("Xvfb") is None):
        missing_program(f"{browser.ENGINES[engine].title} is not installed")


def session(engine, tmp_path, **kw) -> BrowserSession:
    need(engine)
    return BrowserSession(engine, tmp_path, files={"/index.html": PAGE, "/app.js": APP}, handlers={"/api/x": lambda req: {"x": 1}}, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_data_survives_a_clean_close_and_a_reopen_on_the_same_profile_and_origin(engine, tmp_path):
    with session(engine, tmp_path) as s:
        wrote = s.open("/index.html?phase=write&v=one", timeout=T)
        origin = s.origin
        assert wrote.data["idb"] == "one" and wrote.launch == 1 and not s.running
        back = s.open("/index.html?phase=read", timeout=T)
        assert s.origin == origin and back.launch == 2
        assert (back.data["idb"], back.data["ls"]) == ("one", "one")
        assert back.engine == engine and back.version and back.user_agent


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_a_killed_browser_reopens_on_its_profile(engine, tmp_path):
    """What survives SIGKILL is the engine's business (printed for the report); the session must reopen in any case."""
    with session(engine, tmp_path) as s:
        s.open_and_keep("/index.html?phase=write&v=two", timeout=T)
        s.kill()
        assert not s.running
        back = s.open("/index.html?phase=read", timeout=T)
        print(f"{engine} after SIGKILL: idb={back.data['idb']!r} localStorage={back.data['ls']!r}")
        assert back.data["ready"]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_offline_makes_the_apps_fetch_fail_and_the_page_learns_it(engine, tmp_path):
    with session(engine, tmp_path) as s:
        ready = s.open_and_keep("/index.html?phase=read", timeout=T)
        assert ready.data["offline"] is False
        s.send({"type": "cmd", "op": "fetch"})
        assert s.wait_report(T).data["status"] == 200
        s.set_offline(True)
        s.send({"type": "cmd", "op": "fetch"})
        off = s.wait_report(T).data
        assert off["offline"] is True and off["failed"] == "TypeError" and off["onLine"] is True
        s.set_offline(False)
        s.send({"type": "cmd", "op": "fetch"})
        on = s.wait_report(T).data
        assert on["offline"] is False and on["body"] == {"x": 1}
        s.close()
        statuses = [r.status for r in s.requests if r.path == "/api/x"]
        # a browser may retry a request whose connection closed without an answer: one fetch, one or more drops
        assert statuses[0] == 200 and statuses[-1] == 200 and set(statuses[1:-1]) == {0}


@pytest.mark.slow
def test_chromium_clears_the_origin_while_the_tab_is_open(tmp_path):
    with session("chromium", tmp_path) as s:
        ready = s.open_and_keep("/index.html?phase=write&v=three", timeout=T)
        assert ready.data["count"] == 1
        done = s.clear_origin()
        assert done["while_open"] and s.running
        s.send({"type": "cmd", "op": "read"})
        after = s.wait_report(T).data
        assert (after["idb"], after["count"], after["ls"]) == (None, 0, None)


@pytest.mark.slow
def test_chromiums_quota_override_is_enforced(tmp_path):
    with session("chromium", tmp_path) as s:
        s.open_and_keep("/index.html?phase=read", timeout=T)
        s.cdp("Storage.overrideQuotaForOrigin", {"origin": s.origin, "quotaSize": 4 * 2**20})
        s.send({"type": "cmd", "op": "fill", "mib": 8})
        filled = s.wait_report(T).data
        usage = s.cdp("Storage.getUsageAndQuota", {"origin": s.origin})
        print(f"chromium under a 4 MiB override: {filled}; CDP says {usage.get('usage')} of {usage.get('quota')}")
        assert filled["error"] == "QuotaExceededError" and filled["written"] < 8


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["firefox", "webkit"])
def test_clearing_the_origin_closes_the_browser_and_the_data_is_gone_at_the_reopen(engine, tmp_path):
    with session(engine, tmp_path) as s:
        s.open_and_keep("/index.html?phase=write&v=four", timeout=T)
        done = s.clear_origin()
        print(f"{engine} clear: {done}")
        assert done["closed_first"] and not done["while_open"] and done["removed"] and not s.running
        back = s.open("/index.html?phase=read", timeout=T)
        assert (back.data["idb"], back.data["count"], back.data["ls"]) == (None, 0, None)


@pytest.mark.slow
def test_a_page_error_is_a_browser_error_naming_the_engine(tmp_path):
    need("chromium")
    with BrowserSession("chromium", tmp_path, files={"/index.html": PAGE, "/app.js": "throw new Error('kaput')"}) as s:
        with pytest.raises(BrowserError, match="kaput"):
            s.open(timeout=T)
        assert not s.running


SW_PAGE = """<!doctype html><html><head><script src="/__harness.js"></script></head><body><script>
(async function () {
  var controlled = !!navigator.serviceWorker.controller;
  var reg = await navigator.serviceWorker.register("/sw.js", {scope: "/"});
  await navigator.serviceWorker.ready;
  var echo = await (await fetch("/sw-echo")).text();
  harnessReport({scope: reg.scope, controlled: controlled, echo: echo});
})();
</script></body></html>"""
SW = """
self.addEventListener("install", function () { self.skipWaiting(); });
self.addEventListener("activate", function (e) { e.waitUntil(self.clients.claim()); });
self.addEventListener("fetch", function (e) {
  if (new URL(e.request.url).pathname === "/sw-echo") e.respondWith(new Response("from the worker"));
});
"""


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_a_service_worker_registered_at_the_root_controls_the_page_after_a_relaunch(engine, tmp_path):
    need(engine)
    with BrowserSession(engine, tmp_path, files={"/sw.html": SW_PAGE, "/sw.js": SW}) as s:
        first = s.open("/sw.html", timeout=T)
        assert first.data["scope"] == s.origin + "/" and not first.data["controlled"]
        again = s.open("/sw.html", timeout=T)
        assert again.data["controlled"] and again.data["echo"] == "from the worker"


@pytest.mark.slow
def test_firefox_with_marionette_clears_the_origin_while_the_tab_is_open(tmp_path):
    with session("firefox", tmp_path, firefox_marionette=True) as s:
        ready = s.open_and_keep("/index.html?phase=write&v=five", timeout=T)
        assert ready.data["count"] == 1
        done = s.clear_origin()
        assert done["while_open"] and s.running and not done["failed_flags"]
        s.send({"type": "cmd", "op": "read"})
        after = s.wait_report(T).data
        assert (after["idb"], after["count"], after["ls"]) == (None, 0, None)
