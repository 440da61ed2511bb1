"""Reconnection measured in a real browser: headless Chromium runs each option's browser client through a fault.

The page sends an echo every ``interval_ms`` with a sequence number through
the option's client (``poc/native_ws/client.js`` as shipped; the esbuild
bundle of ``poc/socketio/client.js`` with socket.io-client; for SvelteKit its
own page, which ships the native client). Then one fault:

* ``restart``: the caller's ``restart`` callable kills the server and starts it
  again (blocking until it is ready; :func:`kill_and_restart` makes one);
* ``drop``: the connection is cut on the network, the server staying up: the
  client talks through :class:`CuttableProxy`, which aborts every connection
  it carries (RST to both ends), as a dropped Wi-Fi or a load balancer would.

Measured, on the page's ``performance.now()`` clock: the time from the server
being back (restart) or from the cut (drop) until the first echo through a
new connection arrives (after the client saw the old one close); the outage
the client saw (last echo before it saw the connection close to the first
echo after); and the messages lost (sent through the client, never echoed),
split into those in flight when the connection died and those the app sent
while the client knew it was disconnected (a client that queues loses none
of those, once it has had until the timeout to deliver them), and the
transport each (re)connection opened on.

Socket.IO can lose what it queued: socket.io-client flushes its send buffer
the moment the Socket.IO connect completes, and when that happens before the
upgrade to WebSocket (a busy machine) the whole buffer goes in one HTTP
long-polling POST. python-engineio refuses a payload of more than 16 packets
(``engineio.payload.Payload.max_decode_packets``), logs "Too many packets in
payload" and still answers 200, so the client never learns that the buffer
(17 or more messages: an outage over about 0.8 s at one message per 50 ms)
was dropped: ``reconnect_transport`` is then ``polling`` and those messages
count as lost while disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from harness import browser as engines
from spikes.s01_websocket_impl import build

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Playwright

    from harness.process import ServerProcess

__all__ = [
    "CHROMIUM_ARGS",
    "MODES",
    "CuttableProxy",
    "launch_chromium",
    "client_page",
    "kill_and_restart",
    "measure_reconnect",
]

#: Chromium's flags: the harness's, one set for every spike.
CHROMIUM_ARGS = list(engines.CHROMIUM_ARGS)
MODES = ("restart", "drop")
#: Marks the driver's own echoes (the SvelteKit page has a connection of its own).
_DRIVER_ID = 7777

# Runs in the page: connect with the page's client, send an echo every `interval` ms, record everything.
_DRIVER_JS = """
({ url, interval, id }) => {
  const rc = { sent: [], echoes: [], opens: [], transports: [], closes: [] };
  const client = window.tabletop.connect(url, {
    onOpen: () => { rc.opens.push(performance.now()); rc.transports.push(rc.transport()); },
    onClose: () => rc.closes.push(performance.now()),
    onMessage: (m) => { if (m && m.op === 'echo' && m.c === id) rc.echoes.push([m.seq, performance.now()]); },
  });
  let seq = 0;
  const timer = setInterval(() => {
    rc.sent.push([seq, performance.now()]);
    client.send({ op: 'echo', seq: seq++, t: Date.now(), c: id, d: 'reconnect' });
  }, interval);
  rc.stop = () => clearInterval(timer);
  rc.close = () => client.close();
  // Only Socket.IO's client reports a transport (it starts on HTTP long-polling and upgrades).
  rc.transport = () => (client.transport === undefined ? 'websocket' : client.transport);
  window.__rc = rc;
}
"""

# Recovered: an echo arrived through a new connection, i.e. after the client saw the close that followed the fault
# (a closed WebSocket or Socket.IO socket delivers nothing more) and after the server was back. An echo of a message
# in flight when the fault struck can arrive just after t_fault; counting it ended the wait before the client had
# reconnected, and what Socket.IO had buffered for the reconnect was then miscounted as lost while disconnected.
_RECOVERED_JS = """
({ fault, back }) => {
  const rc = window.__rc;
  const closed = rc.closes.find((t) => t >= fault);
  if (closed === undefined) return false;
  const from = Math.max(closed, back);
  return rc.echoes.some((e) => e[1] > from);
}
"""

# Drained (called once the sender stopped): every message the app sent after the client saw the close (the ones a
# client must keep) has been echoed, or the last message sent has: every client here delivers in order, so what is still
# missing then was dropped (Socket.IO's long-polling flush refused by the server), not slow; waiting the whole timeout
# for it would only make the run longer. The caller still waits a little for stragglers.
_DRAINED_JS = """
({ fault }) => {
  const rc = window.__rc;
  const closed = rc.closes.find((t) => t >= fault);
  if (closed === undefined) return true;
  const echoed = new Set(rc.echoes.map((e) => e[0]));
  if (rc.sent.length && echoed.has(rc.sent[rc.sent.length - 1][0])) return true;
  return rc.sent.every(([seq, t]) => t < closed || echoed.has(seq));
}
"""

_PAGE_HTML = """<!doctype html>
<meta charset="utf-8"><title>{title}</title>
<script type="module">
  import {{ connect }} from './client.js';
  window.tabletop = {{ connect }};
</script>
<h1>{title}</h1>
"""


class CuttableProxy:
    """A loopback TCP proxy whose live connections can all be cut at once: a dropped network, not a dead server."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target_host, self.target_port = target_host, target_port
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        """Listen on a free loopback port; return it."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()  # as the server itself would: connection refused, or reset
            return
        pair = {writer, up_writer}
        self._writers |= pair
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers -= pair
            for w in pair:
                w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

    def cut(self) -> int:
        """Abort every connection the proxy carries (RST to both ends); return how many were cut."""
        writers = list(self._writers)
        for w in writers:
            w.transport.abort()
        return len(writers) // 2

    async def close(self) -> None:
        """Stop listening and cut what is left."""
        if self._server is not None:
            self._server.close()
        self.cut()


async def launch_chromium(playwright: Playwright) -> Browser:
    """Headless Chromium from the system (``apt-get install -y chromium``), not Playwright's download."""
    return await engines.launch_chromium(playwright)


@contextlib.asynccontextmanager
async def client_page(option: str, server_url: str, bundle_dir: Path | None = None) -> AsyncIterator[str]:
    """The URL of a page that sets ``window.tabletop = {connect}`` with ``option``'s browser client.

    native: a tiny page that imports ``poc/native_ws/client.js`` as shipped.
    socketio: the same page with the esbuild bundle of ``poc/socketio/client.js``
    (built into ``bundle_dir``, or a temporary one; needs Node). sveltekit: the
    app's own page, served by the running server at ``server_url``.
    """
    if option == "sveltekit":
        parts = urlsplit(server_url)
        yield urlunsplit(("https" if parts.scheme == "wss" else "http", parts.netloc, "/", "", ""))
        return
    with contextlib.ExitStack() as stack:
        if option == "native":
            client_js = build.POC_DIR / "native_ws" / "client.js"
        elif option == "socketio":
            if bundle_dir is None:
                bundle_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="s01-bundles-")))
            client_js = Path(bundle_dir) / "socketio.js"
            if not client_js.is_file():
                await asyncio.to_thread(build.bundle_sizes, write_dir=Path(bundle_dir), sveltekit=False)
        else:
            raise KeyError(f"unknown option {option!r}")
        html = _PAGE_HTML.format(title=f"Spike 1 client: {option}")

        async def index(request: web.Request) -> web.Response:
            return web.Response(text=html, content_type="text/html")

        async def client(request: web.Request) -> web.FileResponse:
            return web.FileResponse(client_js, headers={"Content-Type": "text/javascript"})

        app = web.Application()
        app.router.add_get("/", index)
        app.router.add_get("/client.js", client)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
        finally:
            await runner.cleanup()


def kill_and_restart(server: ServerProcess, down_ms: float) -> Callable[[], None]:
    """A ``restart`` for :func:`measure_reconnect`: SIGKILL the server (a crash), wait ``down_ms``, start it on the same port."""

    def restart() -> None:
        server.kill()
        time.sleep(down_ms / 1000)
        server.start()

    return restart


def _via_proxy(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"{parts.hostname}:{port}", parts.path, parts.query, ""))


def _summarise(raw: dict[str, list[Any]], t_fault: float, t_back: float, recovered: bool) -> dict[str, Any]:
    """Turn the page's raw records into the measured numbers (times in ms on the page's clock)."""
    sent_at = {int(seq): t for seq, t in raw["sent"]}
    echo_times = [t for _, t in raw["echoes"]]
    echoed = [int(seq) for seq, _ in raw["echoes"]]
    lost = sorted(set(sent_at) - set(echoed))
    # Sent before the client saw the connection close: in flight on a dead connection. After: the client had to keep it.
    t_close = min((t for t in raw["closes"] if t >= t_fault), default=float("inf"))
    # The outage pivots on that close: an echo may still arrive between t_fault and the kill itself.
    pivot = t_close if t_close != float("inf") else t_fault
    before = [t for t in echo_times if t <= pivot]
    after_pivot = [t for t in echo_times if t > pivot]
    # Recovery is the first echo through a new connection: after the server was back and after the client saw the close.
    # An echo that was in flight when the fault struck can still arrive a few ms after t_fault; it proves nothing.
    after_back = [t for t in echo_times if t > max(t_back, t_close if t_close != float("inf") else t_back)]
    # The transport the first (re)connection after the close opened on: Socket.IO flushes its send buffer on it.
    transports = raw.get("transports", [])
    reopened = [tr for t, tr in zip(raw["opens"], transports) if t > t_close]
    return {
        "recovered": recovered,
        "recovery_ms": (min(after_back) - t_back) if recovered and after_back else None,
        "outage_ms": (min(after_pivot) - max(before)) if before and after_pivot else None,
        "down_ms": t_back - t_fault,
        "sent": len(sent_at),
        "echoed": len(set(echoed)),
        "lost": len(lost),
        "lost_in_flight": sum(1 for seq in lost if sent_at[seq] < t_close),
        "lost_while_disconnected": sum(1 for seq in lost if sent_at[seq] >= t_close),
        "lost_seqs": lost[:100],
        "duplicates": len(echoed) - len(set(echoed)),
        "reconnects": max(0, len(raw["opens"]) - 1),
        "reconnect_transport": reopened[0] if reopened else None,
    }


async def measure_reconnect(
    option: str,
    url: str,
    *,
    mode: str = "restart",
    restart: Callable[[], Any] | None = None,
    interval_ms: float = 50,
    warmup_s: float = 1.0,
    settle_s: float = 1.0,
    timeout_s: float = 30.0,
    browser: Browser | None = None,
    bundle_dir: Path | None = None,
) -> dict[str, Any]:
    """Run one fault against ``option``'s browser client connected to ``url``; return the numbers.

    ``url`` is the server's client URL (``build.server_command(...)["url"]`` with
    the port filled in). ``restart`` (mode ``restart``) kills and restarts the
    server and returns once it is ready; it runs in a thread, so the page keeps
    sending meanwhile. ``browser`` reuses a launched Chromium. Raises
    :class:`build.ToolMissing` when Chromium (or, for socketio, Node) is missing.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if mode == "restart" and restart is None:
        raise ValueError("mode 'restart' needs a restart callable (see kill_and_restart)")
    from playwright.async_api import async_playwright

    build.find_chromium()  # fail with the install command before starting anything
    async with contextlib.AsyncExitStack() as stack:
        client_url = url
        proxy = None
        if mode == "drop":
            parts = urlsplit(url)
            proxy = CuttableProxy(parts.port or 80, parts.hostname or "127.0.0.1")
            client_url = _via_proxy(url, await proxy.start())
            stack.push_async_callback(proxy.close)
        page_url = await stack.enter_async_context(client_page(option, url, bundle_dir))
        if browser is None:
            playwright = await stack.enter_async_context(async_playwright())
            browser = await launch_chromium(playwright)
            stack.push_async_callback(browser.close)
        page: Page = await browser.new_page()
        stack.push_async_callback(page.close)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        await page.goto(page_url)
        await page.wait_for_function("() => window.tabletop && window.tabletop.connect", timeout=timeout_s * 1000)
        await page.evaluate(_DRIVER_JS, {"url": client_url, "interval": interval_ms, "id": _DRIVER_ID})
        await page.wait_for_function("() => window.__rc.echoes.length > 0", timeout=timeout_s * 1000)
        await asyncio.sleep(warmup_s)
        # Fault the WebSocket, not a long-polling session still waiting for its upgrade: a drop during
        # polling is survived without any reconnect, which is not the fault this measures.
        await page.wait_for_function("() => window.__rc.transport() === 'websocket'", timeout=timeout_s * 1000)

        now = "() => performance.now()"
        t_fault = await page.evaluate(now)
        if proxy is not None:
            proxy.cut()
            t_back = t_fault
        else:
            assert restart is not None
            await asyncio.to_thread(restart)
            t_back = await page.evaluate(now)
        times = {"fault": t_fault, "back": t_back}
        try:
            await page.wait_for_function(_RECOVERED_JS, arg=times, timeout=timeout_s * 1000, polling=10)
            recovered = True
        except Exception:  # Playwright's TimeoutError: the client never came back
            recovered = False
        await asyncio.sleep(settle_s)
        await page.evaluate("() => window.__rc.stop()")
        if recovered:
            # What the client queued while disconnected is sent on the new connection; give it until the timeout (or
            # until the last message sent is back) to come back, so a slow flush is not miscounted as a loss.
            with contextlib.suppress(Exception):
                await page.wait_for_function(_DRAINED_JS, arg=times, timeout=timeout_s * 1000, polling=20)
        await asyncio.sleep(max(0.5, 10 * interval_ms / 1000))  # let the last echoes arrive
        raw = await page.evaluate(
            "() => ({sent: __rc.sent, echoes: __rc.echoes, opens: __rc.opens, transports: __rc.transports, closes: __rc.closes})"
        )
        await page.evaluate("() => window.__rc.close()")

    out = {"option": option, "mode": mode, "interval_ms": interval_ms, "timeout_s": timeout_s}
    out.update(_summarise(raw, t_fault, t_back, recovered))
    out["page_errors"] = errors
    return out
