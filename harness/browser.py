"""Real browser engines for every spike: run a page, get its results back as JSON.

Three engines, one way to use them:

- **Chromium** (Debian ``chromium``), launched directly, or through Playwright
  (:func:`launch_chromium`, for spikes that drive a page step by step);
- **Firefox ESR** (Debian ``firefox-esr``);
- **WebKitGTK** (Debian ``libwebkit2gtk-4.1-0``): its MiniBrowser is the Safari
  engine's GTK port.

:func:`run_page` serves a test page from a harness HTTP server on loopback,
opens it in the engine (Firefox and WebKitGTK on a harness-started Xvfb display,
Chromium headless), and waits for the page to POST its results to
``/__result``. The page loads ``/__harness.js`` first, which adds the engine's
own view of itself to the result: its user agent and its WebGL renderer
(``WEBGL_debug_renderer_info``), so a software rasteriser such as SwiftShader
or llvmpipe is visible in every figure that depends on it. No WebDriver is
needed.

Browsers and Xvfb run as :class:`harness.process.ServerProcess`: in their own
process group, stopped with the run, and never left behind after Ctrl-C, a
SIGTERM or a crash of the harness. A missing engine raises
:class:`harness.plugin.NotRunnable` with its install command, so its
scenarios show as "not run" with the reason.
"""

from __future__ import annotations

import contextlib
import glob
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from harness import machine
from harness.plugin import NotRunnable
from harness.process import LogReady, ServerCrashed, ServerProcess, group_members

__all__ = [
    "ENGINES",
    "CHROMIUM_ARGS",
    "Engine",
    "PageResult",
    "BrowserError",
    "engine_status",
    "find_engine",
    "launch_chromium",
    "run_page",
    "software_renderer",
    "xvfb_display",
]

#: Flags for a quiet, deterministic headless Chromium driven by Playwright (no sandbox: containers run it as root;
#: no GPU process, no background traffic that would share the loopback with a measurement).
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
#: The same for a page run by :func:`run_page`, GPU process left on: WebGL then runs (SwiftShader here) and is labelled.
_PAGE_ARGS = tuple(a for a in CHROMIUM_ARGS if a != "--disable-gpu") + ("--no-default-browser-check",)
#: Renderers that are software rasterisers: figures from them are not a GPU's.
_SOFTWARE = re.compile(r"swiftshader|llvmpipe|softpipe|software|swrast|lavapipe", re.IGNORECASE)
#: Renderer strings an engine reports in place of the real one (WebKit's fixed value).
_MASKED = frozenset({"Apple GPU"})


class BrowserError(Exception):
    """A browser started but the page's result never came back (or came back malformed)."""


@dataclass(frozen=True)
class Engine:
    """One browser engine: where its binary may be, how to read its version, how to install it, whether it needs X."""

    name: str
    title: str
    binaries: tuple[str, ...]
    version_args: tuple[str, ...]
    install: str
    needs_display: bool

    def find(self) -> str | None:
        for b in self.binaries:
            if "*" in b:
                hits = sorted(glob.glob(b))
                if hits:
                    return hits[-1]
            elif found := shutil.which(b):
                return found
        return None


ENGINES: dict[str, Engine] = {
    e.name: e
    for e in (
        Engine("chromium", "Chromium", ("chromium", "chromium-browser"), ("--version",), "apt-get install -y chromium", False),
        Engine("firefox", "Firefox ESR", ("firefox-esr", "firefox"), ("--version",), "apt-get install -y firefox-esr xvfb", True),
        Engine(
            "webkit",
            "WebKitGTK MiniBrowser",
            ("/usr/lib/*/webkit2gtk-4.1/MiniBrowser", "/usr/libexec/webkit2gtk-4.1/MiniBrowser", "MiniBrowser"),
            (),
            "apt-get install -y libwebkit2gtk-4.1-0 xvfb",
            True,
        ),
    )
}

# The programs this module needs, registered with the harness's table so `spike doctor` and the scenarios'
# `requires` know them (registration, not an edit of machine.py's list).
for _tool in (
    machine.ExternalTool("chromium", ("chromium", "chromium-browser", "google-chrome"), ("--version",), "apt-get install -y chromium"),
    machine.ExternalTool("firefox-esr", ENGINES["firefox"].binaries, ("--version",), ENGINES["firefox"].install),
    machine.ExternalTool("webkitgtk", ENGINES["webkit"].binaries, (), ENGINES["webkit"].install, lambda path: _version("webkit", path)),
    machine.ExternalTool("xvfb", ("Xvfb",), (), "apt-get install -y xvfb", lambda path: _dpkg_version("xvfb")),
):
    machine.register_tool(_tool)


def find_engine(name: str) -> str | None:
    """The binary of engine ``name``, or ``None`` when it is not installed."""
    if name not in ENGINES:
        raise ValueError(f"unknown browser engine {name!r}; known: {', '.join(ENGINES)}")
    return ENGINES[name].find()


def _require(name: str) -> str:
    path = find_engine(name)
    if path is None:
        raise NotRunnable(f"{ENGINES[name].title} is not installed (install: {ENGINES[name].install})")
    if ENGINES[name].needs_display and shutil.which("Xvfb") is None:
        raise NotRunnable(f"{ENGINES[name].title} needs Xvfb here (install: apt-get install -y xvfb)")
    return path


def _dpkg_version(package: str) -> str:
    """The installed Debian package's version, or "unknown" (not a Debian system, or not installed by apt)."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def _version(name: str, path: str) -> str:
    if name == "webkit":  # MiniBrowser has no --version (it would open a window): the library's package says it
        return _dpkg_version("libwebkit2gtk-4.1-0")
    try:
        out = subprocess.run([path, *ENGINES[name].version_args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (out.stdout or out.stderr).strip()
    m = re.search(r"\d+(?:\.\d+)+", text)
    return m.group(0) if m else text.splitlines()[0] if text else "unknown"


def engine_status(name: str) -> dict[str, Any]:
    """Whether engine ``name`` is here, where, its version, and its install command (for `spike doctor`)."""
    path = find_engine(name)
    e = ENGINES[name]
    return {
        "name": name,
        "title": e.title,
        "present": path is not None,
        "path": path,
        "version": _version(name, path) if path else None,
        "install": e.install,
    }


def software_renderer(renderer: str | None) -> bool:
    """Whether a WebGL renderer string names a software rasteriser (SwiftShader, llvmpipe...)."""
    return bool(renderer and _SOFTWARE.search(renderer))


async def launch_chromium(playwright: Any, args: Sequence[str] = ()) -> Any:
    """Headless system Chromium through Playwright (``playwright install`` cannot download here): a Playwright Browser."""
    path = _require("chromium")
    return await playwright.chromium.launch(executable_path=path, args=[*CHROMIUM_ARGS, *args])


# -- the page server --------------------------------------------------------------------------------

_HARNESS_JS = r"""
(function () {
  function env() {
    var out = {userAgent: navigator.userAgent, webgl: null, renderer: null, vendor: null};
    try {
      var c = document.createElement("canvas");
      var gl = c.getContext("webgl2") || c.getContext("webgl");
      if (gl) {
        out.webgl = gl instanceof (window.WebGL2RenderingContext || function () {}) ? "webgl2" : "webgl";
        var ext = gl.getExtension("WEBGL_debug_renderer_info");
        out.renderer = ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
        out.vendor = ext ? gl.getParameter(ext.UNMASKED_VENDOR_WEBGL) : gl.getParameter(gl.VENDOR);
      }
    } catch (e) { out.webglError = String(e); }
    return out;
  }
  window.harnessReport = function (result) {
    var body = JSON.stringify({result: result, env: env()});
    return fetch("/__result", {method: "POST", headers: {"Content-Type": "application/json"}, body: body});
  };
  window.addEventListener("error", function (e) {
    fetch("/__result", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({error: String(e.message || e), env: env()})});
  });
})();
"""


@dataclass
class PageResult:
    """What a page posted back, and which engine ran it."""

    engine: str
    version: str
    data: Any
    user_agent: str = ""
    renderer: str | None = None
    webgl: str | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def software_rendering(self) -> bool:
        return software_renderer(self.renderer)

    @property
    def renderer_masked(self) -> bool:
        """WebKit reports a fixed "Apple GPU" instead of the real renderer (anti-fingerprinting): the rasteriser is unknown."""
        return self.renderer in _MASKED

    def label(self) -> str:
        """``Firefox ESR 153.0 (WebGL: llvmpipe, software)``: what every figure from this page is tagged with."""
        if not self.renderer:
            gl = "no WebGL"
        elif self.renderer_masked:
            gl = f"WebGL renderer not reported: the engine says {self.renderer!r} whatever it runs on"
        else:
            gl = f"WebGL: {self.renderer}{', software' if self.software_rendering else ''}"
        return f"{ENGINES[self.engine].title} {self.version} ({gl})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "version": self.version,
            "user_agent": self.user_agent,
            "renderer": self.renderer,
            "webgl": self.webgl,
            "software_rendering": None if self.renderer_masked else self.software_rendering,
            "renderer_masked": self.renderer_masked,
            "flags": self.flags,
        }


class _PageServer:
    """A loopback HTTP server: the page and its files at ``/``, the harness script, and the result endpoint."""

    def __init__(self, html: str, files: dict[str, bytes | str] | None = None):
        self.html = html
        self.files = {k.lstrip("/"): (v.encode() if isinstance(v, str) else v) for k, v in (files or {}).items()}
        self.result: dict[str, Any] | None = None
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet: the run's log is the browser's
                pass

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].lstrip("/")
                if path in ("", "index.html"):
                    self._send(200, outer.html.encode(), "text/html; charset=utf-8")
                elif path == "__harness.js":
                    self._send(200, _HARNESS_JS.encode(), "text/javascript")
                elif path in outer.files:
                    ctype = "text/javascript" if path.endswith((".js", ".mjs")) else "application/octet-stream"
                    self._send(200, outer.files[path], ctype)
                else:
                    self._send(404, b"not found", "text/plain")

            def do_POST(self) -> None:
                if self.path != "/__result":
                    self._send(404, b"not found", "text/plain")
                    return
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"error": f"malformed result: {body[:200]!r}"}
                if not outer.arrived.is_set():
                    outer.result = payload if isinstance(payload, dict) else {"error": "the result is not an object"}
                    outer.arrived.set()
                self._send(204, b"", "text/plain")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="browser-page-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> _PageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def xvfb_display(workdir: Path, size: str = "1280x800x24", timeout: float = 20.0) -> Iterator[str]:
    """A fresh Xvfb server for the block: yields its ``DISPLAY`` (``:N``, the number Xvfb chose itself)."""
    path = shutil.which("Xvfb")
    if path is None:
        raise NotRunnable("Xvfb is not installed (install: apt-get install -y xvfb)")
    log = workdir / "xvfb.log"
    xvfb = ServerProcess(
        "Xvfb",
        [path, "-displayfd", "1", "-screen", "0", size, "-nolisten", "tcp", "-noreset"],
        ready=LogReady(r"^\d+\s*$"),
        ready_timeout=timeout,
        log_path=log,
        grace=2.0,
    )
    with xvfb:
        m = re.search(r"^(\d+)\s*$", xvfb.log_since_start(), re.MULTILINE)
        assert m is not None  # the ready probe saw it
        yield f":{m.group(1)}"


def _argv(name: str, path: str, url: str, profile: Path, headless: bool) -> list[str]:
    if name == "chromium":
        return [path, "--headless=new", *_PAGE_ARGS, f"--user-data-dir={profile}", url]
    if name == "firefox":
        prefs = profile / "user.js"
        prefs.write_text(
            'user_pref("browser.shell.checkDefaultBrowser", false);\n'
            'user_pref("datareporting.policy.dataSubmissionEnabled", false);\n'
            'user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);\n'
            'user_pref("browser.aboutwelcome.enabled", false);\n'
            'user_pref("app.update.enabled", false);\n',
            encoding="utf-8",
        )
        return [path, *(["--headless"] if headless else []), "--no-remote", "--new-instance", "--profile", str(profile), url]
    return [path, url]  # WebKitGTK's MiniBrowser


#: How often :func:`run_page` checks that the browser still runs while it waits for the page's result.
_POLL_S = 0.25
#: After the browser's processes are all gone, how long a result already on its way may still take to arrive.
_EXIT_GRACE_S = 1.0


def _browser_running(browser: ServerProcess) -> bool:
    """The browser, or a process it left in its group (a launcher script may hand over to the real browser and exit)."""
    return browser.alive or (browser.pid is not None and bool(group_members(browser.pid)))


def _wait_result(arrived: threading.Event, browser: ServerProcess, timeout: float) -> bool:
    """Wait for the page's result; give up at ``timeout`` or soon after the browser is gone (a crash is not a 60 s wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if arrived.wait(min(_POLL_S, max(0.0, deadline - time.monotonic()))):
            return True
        if not _browser_running(browser):
            return arrived.wait(_EXIT_GRACE_S)
    return arrived.is_set()


def run_page(
    engine: str,
    html: str,
    *,
    files: dict[str, bytes | str] | None = None,
    timeout: float = 60.0,
    workdir: str | Path | None = None,
    headless_firefox: bool = False,
    chromium_args: Sequence[str] = (),
    on_start: Callable[[int], None] | None = None,
) -> PageResult:
    """Open ``html`` in ``engine`` and return what the page passed to ``harnessReport(result)``.

    The page must load ``<script src="/__harness.js"></script>`` before its own code. ``files`` are
    served next to it (``{"app.js": "..."}``). Firefox and WebKitGTK run on a fresh Xvfb display
    (Firefox headless instead with ``headless_firefox``); Chromium runs headless. Raises
    :class:`NotRunnable` when the engine (or Xvfb) is missing, :class:`BrowserError` when the page
    reported an error or nothing came back within ``timeout`` seconds; the browser is stopped in
    every case. ``chromium_args`` are added to Chromium's flags (``--enable-precise-memory-info``...;
    other engines ignore them, and the result's ``flags`` say what ran); ``on_start`` is called with
    the browser's pid once it runs, e.g. to sample its process tree while the page works.
    """
    path = _require(engine) if engine != "firefox" or not headless_firefox else find_engine("firefox")
    if path is None:
        raise NotRunnable(f"{ENGINES[engine].title} is not installed (install: {ENGINES[engine].install})")
    version = _version(engine, path)
    with contextlib.ExitStack() as stack:
        base = Path(workdir) if workdir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"browser-{engine}-")))
        base.mkdir(parents=True, exist_ok=True)
        profile = Path(tempfile.mkdtemp(prefix="profile-", dir=base))
        server = stack.enter_context(_PageServer(html, files))
        env = {"NO_AT_BRIDGE": "1", "MOZ_CRASHREPORTER_DISABLE": "1", "HOME": str(profile), "XDG_RUNTIME_DIR": str(profile)}
        headless = engine == "chromium" or (engine == "firefox" and headless_firefox)
        if not headless:
            env["DISPLAY"] = stack.enter_context(xvfb_display(base))
        argv = _argv(engine, path, server.url, profile, headless)
        if engine == "chromium" and chromium_args:
            argv = [argv[0], *chromium_args, *argv[1:]]
        browser = ServerProcess(engine, argv, env=env, ready=None, log_path=base / f"{engine}.log", grace=3.0)
        try:
            stack.enter_context(browser)
        except ServerCrashed as exc:
            raise BrowserError(f"{ENGINES[engine].title} exited with {exc.returncode} before sending a result: {exc}") from None
        if on_start is not None and browser.pid is not None:
            on_start(browser.pid)
        if not _wait_result(server.arrived, browser, timeout):
            tail = "\n".join(browser.last_log_lines(15)) or "(no output)"
            if _browser_running(browser):
                raise BrowserError(
                    f"{ENGINES[engine].title} sent no result within {timeout:.0f} s (still running); its last output:\n{tail}"
                )
            raise BrowserError(
                f"{ENGINES[engine].title} exited with {browser.returncode} before sending a result; its last output:\n{tail}"
            )
        payload = server.result or {}
    env_seen = payload.get("env") or {}
    if "error" in payload:
        raise BrowserError(f"the page failed in {ENGINES[engine].title} {version}: {payload['error']}")
    return PageResult(
        engine,
        version,
        payload.get("result"),
        user_agent=str(env_seen.get("userAgent") or ""),
        renderer=env_seen.get("renderer"),
        webgl=env_seen.get("webgl"),
        flags=argv[1:-1],
    )
