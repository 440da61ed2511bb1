"""harness.browser: a page run in each real engine posts its JSON back, with the engine's version and renderer."""

from __future__ import annotations

import json
import os
import urllib.request

import psutil
import pytest

from harness import browser, machine
from harness.browser import BrowserError, PageResult, run_page, software_renderer
from harness.plugin import NotRunnable
from tests.utils import UNIT

PAGE = """<!doctype html><html><head><script src="/__harness.js"></script></head><body>
<script src="/app.js"></script></body></html>"""
APP = "harnessReport({sum: [1, 2, 3].reduce(function (a, b) { return a + b; }, 0), text: document.title + 'ok'});"


def need(engine: str) -> None:
    """Skip where the engine is missing, except in CI, which installs all three: there a missing engine fails."""
    missing = browser.find_engine(engine) is None or (browser.ENGINES[engine].needs_display and browser.shutil.which("Xvfb") is None)
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{engine} is missing in CI ({browser.ENGINES[engine].install})")
        pytest.skip(f"{engine} is not installed here")


_NAMES = ("chromium", "chrome", "firefox", "MiniBrowser", "WebKitWebProcess", "WebKitNetworkProcess", "Xvfb")


def _browsers() -> set[int]:
    """Live browser (and Xvfb) processes; zombies are gone (PID 1 in a container may reap them late)."""
    out = set()
    for p in psutil.process_iter(["name", "status"]):
        if any(n.lower() in (p.info["name"] or "").lower() for n in _NAMES) and p.info["status"] != psutil.STATUS_ZOMBIE:
            out.add(p.pid)
    return out


def _no_browser_left(before: set[int]) -> bool:
    return not (_browsers() - before)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["chromium", "firefox", "webkit"])
def test_each_engine_runs_the_page_and_posts_its_result_back(engine, tmp_path):
    need(engine)
    before = _browsers()
    res = run_page(engine, PAGE, files={"app.js": APP}, timeout=90 * UNIT, workdir=tmp_path)
    assert res.data == {"sum": 6, "text": "ok"}
    assert res.engine == engine and res.version[:1].isdigit() and res.user_agent
    assert res.label().startswith(browser.ENGINES[engine].title)
    if engine == "chromium":  # headless Chromium's WebGL is SwiftShader here: it must say software
        assert res.renderer and res.software_rendering and "software" in res.label()
    assert json.loads(json.dumps(res.to_dict()))["engine"] == engine
    assert _no_browser_left(before)  # the browser (and its Xvfb) stopped with the page


def test_a_missing_engine_is_not_runnable_with_its_install_command(monkeypatch):
    monkeypatch.setattr(browser.Engine, "find", lambda self: None)
    with pytest.raises(NotRunnable, match=r"apt-get install -y firefox-esr"):
        run_page("firefox", PAGE)


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="unknown browser engine"):
        browser.find_engine("netscape")


def test_the_page_server_takes_the_first_result_and_serves_the_harness_script():
    with browser._PageServer(PAGE, {"app.js": APP}) as srv:
        with urllib.request.urlopen(srv.url + "__harness.js", timeout=5 * UNIT) as r:
            assert b"harnessReport" in r.read()
        with urllib.request.urlopen(srv.url + "app.js", timeout=5 * UNIT) as r:
            assert r.read().decode() == APP
        for body in (b'{"result": 1, "env": {"renderer": "x"}}', b'{"result": 2}'):
            req = urllib.request.Request(srv.url + "__result", data=body, headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=5 * UNIT).close()
        assert srv.arrived.is_set() and srv.result == {"result": 1, "env": {"renderer": "x"}}


def test_a_page_that_never_reports_is_a_browser_error_naming_the_engine(tmp_path):
    need("chromium")
    with pytest.raises(BrowserError, match="Chromium sent no result within"):
        run_page("chromium", "<!doctype html><p>silent</p>", timeout=3 * UNIT, workdir=tmp_path)


@pytest.mark.parametrize("after", ["0", "1"])
def test_a_browser_that_exits_without_a_result_is_reported_at_once_not_after_the_timeout(tmp_path, monkeypatch, after):
    # A real program that exits in place of the browser (at once, or once started): the wait ends on its exit, not at the
    # 10-minute timeout.
    script = tmp_path / "crashes.sh"
    script.write_text(f"#!/bin/sh\nsleep {after}\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setattr(browser, "_require", lambda engine: str(script))
    monkeypatch.setattr(browser, "_version", lambda engine, path: "test")
    import time

    t0 = time.monotonic()
    with pytest.raises(BrowserError, match="Chromium exited with 1 before sending a result"):
        run_page("chromium", "<!doctype html><p>never shown</p>", timeout=600 * UNIT, workdir=tmp_path)
    # The message alone also fits a wait that ran out the timeout: only the time taken shows the wait ended on the exit.
    assert time.monotonic() - t0 < 30 * UNIT


def test_a_launcher_that_hands_over_and_exits_is_still_waited_for(tmp_path, monkeypatch):
    # A wrapper script that starts the real browser in the background and exits (as some launchers do): the page still reports.
    import sys

    poster = tmp_path / "post.py"
    poster.write_text(
        "import sys, urllib.request\nurllib.request.urlopen(sys.argv[1] + '/__result', data=b'{\"result\": {\"ok\": true}}')\n"
    )
    script = tmp_path / "launcher.sh"
    script.write_text(f'#!/bin/sh\n(sleep 2; {sys.executable} {poster} "$3") &\nsleep 0.5\nexit 0\n')
    script.chmod(0o755)
    monkeypatch.setattr(browser, "_require", lambda engine: str(script))
    monkeypatch.setattr(browser, "_version", lambda engine, path: "test")
    monkeypatch.setattr(browser, "_argv", lambda name, path, url, profile, headless: [path, "--a", "--b", url.rstrip("/")])
    assert run_page("chromium", "<!doctype html>", timeout=30 * UNIT, workdir=tmp_path).data == {"ok": True}


def test_a_page_error_is_reported_not_hidden(tmp_path):
    need("chromium")
    page = '<!doctype html><script src="/__harness.js"></script><script>throw new Error("boom in page")</script>'
    with pytest.raises(BrowserError, match="boom in page"):
        run_page("chromium", page, timeout=60 * UNIT, workdir=tmp_path)


@pytest.mark.parametrize(
    ("renderer", "software"),
    [
        ("ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero)), SwiftShader driver)", True),
        ("llvmpipe (LLVM 19.1.7, 256 bits)", True),
        ("Mesa Intel(R) UHD Graphics 620", False),
        (None, False),
    ],
)
def test_software_rasterisers_are_named(renderer, software):
    assert software_renderer(renderer) is software
    label = PageResult("chromium", "156.0", {}, renderer=renderer).label()
    assert ("software" in label) is software


def test_a_masked_renderer_is_said_to_be_unknown_not_a_gpu():
    res = PageResult("webkit", "2.50.6", {}, renderer="Apple GPU")
    assert res.renderer_masked and "not reported" in res.label() and res.to_dict()["software_rendering"] is None


def test_the_browsers_are_registered_as_programs_for_doctor():
    for name in ("firefox-esr", "webkitgtk", "xvfb", "chromium"):
        assert name in machine.EXTERNAL_TOOLS


def test_chromium_flags_are_passed_and_the_browser_pid_is_handed_over(tmp_path):
    need("chromium")
    pids: list[int] = []
    page = PAGE.replace("/app.js", "/flags.js")
    js = "harnessReport({memory: !!(performance.memory && performance.memory.usedJSHeapSize)});"
    res = run_page(
        "chromium",
        page,
        files={"flags.js": js},
        timeout=60 * UNIT,
        workdir=tmp_path,
        chromium_args=("--enable-precise-memory-info",),
        on_start=pids.append,
    )
    assert "--enable-precise-memory-info" in res.flags
    assert len(pids) == 1 and pids[0] > 0
    assert res.data == {"memory": True}
