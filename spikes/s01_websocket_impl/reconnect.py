"""Reconnection measured in a real browser: headless Chromium runs each option's browser client through a fault.

The page sends an echo every ``interval_ms`` with a sequence number through
the option's client (``poc/native_ws/client.js`` as shipped; the esbuild
bundle of ``poc/socketio/client.js`` with socket.io-client; for SvelteKit its
own page, which ships the native client). Then one fault:

* ``restart``: the server is killed with SIGKILL (its whole process group: a
  crash), stays down ``down_ms`` and is started again on the same port
  (:func:`harness.faults.kill_and_restart`, which waits until it is ready);
* ``drop``: the connection is cut on the network, the server staying up: the
  client talks through a :class:`harness.faults.FaultProxy`, which resets every
  connection it carries at once (RST to both ends,
  :meth:`~harness.faults.FaultProxy.reset_connections`) and lets the next one
  through, as a dropped Wi-Fi or a load balancer would.

Each fault is a :class:`harness.faults.Fault` in the caller's
:class:`~harness.faults.FaultLog` (whose listener reports it to the run's
observers), timed on ``time.monotonic()``. The page measures on its own
``performance.now()``; a :class:`harness.faults.ClockSync` (paired readings
before and after the fault, the tightest kept) puts the fault's start and end
on that clock, and every figure is a difference on it.

Measured, on the page's clock: the time from the server being back (restart:
the end of the kill fault, when the new server passed its readiness probe) or
from the cut (drop: the start of the reset fault) until the first echo through a
new connection arrives (after the client saw the old one close); the outage
the client saw (last echo before it saw the connection close to the first
echo after); the fate of every message, in the words of the harness's
account (:mod:`harness.load.account`: sent, delivered, lost after
acknowledgement, lost without acknowledgement, duplicated, unexpected,
reordered), computed by :func:`account_of` from the page's raw records (each
message sent with its id, each echo and any other arrival, kept in the result
as ``raw``); the messages lost split into those in flight when the connection
died and those the app sent while the client knew it was disconnected (a client
that queues loses none of those, once it has had until the timeout to deliver
them); and the transport each (re)connection opened on.

The browser clients have no acknowledgement but the echo itself (the account's
"the sender's own copy"), so a message is acknowledged exactly when it was
delivered: here every loss is *lost without acknowledgement* and *lost after
acknowledgement* is 0 by construction. ``lost`` (both, as the gate reads it) is
what this scenario stored before the account, under the same name. Recovery
stays this module's own measure (the first echo through a new connection):
the account's recovery, the first delivery after the fault's end, would count
an echo still in flight on the dead connection after a cut.

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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from harness import browser as engines
from harness.faults import ClockSync, Fault, FaultLog, FaultProxy, in_thread, kill_and_restart
from harness.load.account import NO_SENDER, OUTCOMES, Account, ConnLog
from spikes.s01_websocket_impl import build

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Playwright

    from harness.process import ServerProcess

__all__ = [
    "CHROMIUM_ARGS",
    "MODES",
    "launch_chromium",
    "client_page",
    "account_of",
    "measure_reconnect",
]

#: Chromium's flags: the harness's, one set for every spike.
CHROMIUM_ARGS = list(engines.CHROMIUM_ARGS)
MODES = ("restart", "drop")
#: Marks the driver's own echoes (the SvelteKit page has a connection of its own).
_DRIVER_ID = 7777
#: The page's clock, as named in the stored fault times (``started_page_ms``).
PAGE_CLOCK = "page_ms"

# Runs in the page: connect with the page's client, send an echo every `interval` ms, record everything.
_DRIVER_JS = """
({ url, interval, id }) => {
  // echoes: this driver's own, [seq, t]; others: any other arrival, [sender, seq, t] (null where it names none).
  const rc = { sent: [], echoes: [], others: [], opens: [], transports: [], closes: [] };
  const named = (m, key) => (m && Number.isInteger(m[key]) ? m[key] : null);
  const client = window.tabletop.connect(url, {
    onOpen: () => { rc.opens.push(performance.now()); rc.transports.push(rc.transport()); },
    onClose: () => rc.closes.push(performance.now()),
    onMessage: (m) => {
      if (m && m.op === 'echo' && m.c === id && Number.isInteger(m.seq)) rc.echoes.push([m.seq, performance.now()]);
      else rc.others.push([named(m, 'c'), named(m, 'seq'), performance.now()]);
    },
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


async def launch_chromium(playwright: Playwright) -> Browser:
    """Headless Chromium from the system (``apt-get install -y chromium``), not Playwright's download."""
    return await engines.launch_chromium(playwright)


@contextlib.asynccontextmanager
async def client_page(option: str, server_url: str, bundle_dir: Path | None = None) -> AsyncIterator[str]:
    """The URL of a page that sets ``window.tabletop = {connect}`` with ``option``'s browser client.

    The client is the one the option ships (``build.BROWSER_CLIENT``): native: a
    tiny page that imports ``poc/native_ws/client.js`` as shipped. socketio (every
    Socket.IO server): the same page with the esbuild bundle of
    ``poc/socketio/client.js`` (built into ``bundle_dir``, or a temporary one; needs
    Node). sveltekit: the app's own page, served by the running server at ``server_url``.
    """
    client = build.BROWSER_CLIENT.get(option, option)
    if client == "sveltekit":
        parts = urlsplit(server_url)
        yield urlunsplit(("https" if parts.scheme == "wss" else "http", parts.netloc, "/", "", ""))
        return
    with contextlib.ExitStack() as stack:
        if client == "native":
            client_js = build.POC_DIR / "native_ws" / "client.js"
        elif client == "socketio":
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


def _via_proxy(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"{parts.hostname}:{port}", parts.path, parts.query, ""))


def _page_ns(t_ms: float) -> int:
    return round(t_ms * 1e6)


def account_of(raw: dict[str, list[Any]], sent_before: float | None = None) -> Account:
    """The harness's account (:mod:`harness.load.account`, echo mode) of the page's raw records: one connection.

    Sent: every message the page handed to its client; acknowledged: those whose echo came back (the only
    acknowledgement the browser clients get); arrivals: the echoes and every other message received, in order on the
    page's clock. ``sent_before`` (ms, page clock) accounts only for the messages sent before it (the others' echoes
    then count as unexpected, which the caller does not read).
    """
    sent = tuple(int(seq) for seq, t in raw["sent"] if sent_before is None or t < sent_before)
    echoes = [(_DRIVER_ID, int(seq), _page_ns(t)) for seq, t in raw["echoes"]]
    others = [
        (c if isinstance(c, int) else NO_SENDER, seq if isinstance(c, int) and isinstance(seq, int) else -1, _page_ns(t))
        for c, seq, t in raw.get("others", [])
    ]
    log = ConnLog(
        _DRIVER_ID,
        sent=sent,
        acked=tuple(seq for _, seq, _ in echoes),
        arrivals=tuple(sorted(echoes + others, key=lambda a: a[2])),
        reconnects=max(0, len(raw["opens"]) - 1),
    )
    return Account.of([log], "echo")


def _summarise(raw: dict[str, list[Any]], t_fault: float, t_back: float, recovered: bool, slack: float = 0.0) -> dict[str, Any]:
    """Turn the page's raw records into the measured numbers (times in ms on the page's clock); counts by :func:`account_of`.

    ``slack`` (ms) widens the search for the close the fault caused to ``t_fault - slack``: the fault's time on the
    page's clock is known within the clock sync's uncertainty, and a close seen within it must not be missed.
    """
    echo_times = [t for _, t in raw["echoes"]]
    echoed = {int(seq) for seq, _ in raw["echoes"]}
    # Sent before the client saw the connection close: in flight on a dead connection. After: the client had to keep it.
    t_close = min((t for t in raw["closes"] if t >= t_fault - slack), default=float("inf"))
    total = account_of(raw).total
    counts = total.to_dict()
    in_flight = account_of(raw, sent_before=t_close).total
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
        # The account's words (harness/load/account.py), and its counts and fractions as it stores them.
        **{name: counts[name]["count"] for name in OUTCOMES},
        "account": counts,
        "lost": total.lost,  # lost after acknowledgement + lost without: the name this scenario stored before the account
        "lost_in_flight": in_flight.lost,
        "lost_while_disconnected": total.lost - in_flight.lost,
        "lost_seqs": sorted(int(seq) for seq, _ in raw["sent"] if int(seq) not in echoed)[:100],
        "reconnects": total.reconnects,
        "reconnect_transport": reopened[0] if reopened else None,
    }


async def _page_clock(page: Page) -> ClockSync:
    """The page's ``performance.now()`` (ms) against ``time.monotonic()``, from paired readings."""
    return await ClockSync.measure(PAGE_CLOCK, lambda: page.evaluate("() => performance.now()"), scale=1000.0)


async def measure_reconnect(
    option: str,
    url: str,
    *,
    mode: str = "restart",
    server: ServerProcess | None = None,
    down_ms: float = 1000.0,
    interval_ms: float = 50,
    warmup_s: float = 1.0,
    settle_s: float = 1.0,
    timeout_s: float = 30.0,
    browser: Browser | None = None,
    bundle_dir: Path | None = None,
    faults: FaultLog | None = None,
) -> dict[str, Any]:
    """Run one fault against ``option``'s browser client connected to ``url``; return the numbers.

    ``url`` is the server's client URL (``build.server_command(...)["url"]`` with
    the port filled in). Mode ``restart`` needs the running ``server`` behind it: it is
    killed and restarted after ``down_ms`` in a thread, so the page keeps sending
    meanwhile. The fault goes into ``faults`` (a new log when None; its listener
    hears it as it begins) and, with its start and end on the page's clock, into
    the result's ``fault``. ``browser`` reuses a launched Chromium. Raises
    :class:`build.ToolMissing` when Chromium (or, for socketio, Node) is missing.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if mode == "restart" and server is None:
        raise ValueError("mode 'restart' needs the running server to kill and restart")
    from playwright.async_api import async_playwright

    log = faults if faults is not None else FaultLog()
    build.find_chromium()  # fail with the install command before starting anything
    async with contextlib.AsyncExitStack() as stack:
        client_url = url
        proxy = None
        if mode == "drop":
            parts = urlsplit(url)
            proxy = await stack.enter_async_context(FaultProxy(parts.port or 80, parts.hostname or "127.0.0.1", log=log))
            client_url = _via_proxy(url, proxy.port)
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

        clock = await _page_clock(page)
        fault: Fault
        if proxy is not None:
            fault = proxy.reset_connections()
        else:
            assert server is not None
            victim = server
            fault = await in_thread(lambda: kill_and_restart(victim, down_for=down_ms / 1000, log=log))
        clock = clock.combine(await _page_clock(page))
        assert fault.ended_mono is not None
        t_fault = clock.to_other(fault.started_mono)
        # Drop: measured from the cut (the server never went away). Restart: from the new server's readiness.
        t_back = t_fault if proxy is not None else clock.to_other(fault.ended_mono)
        times = {"fault": t_fault - clock.uncertainty, "back": t_back}
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
            "() => ({sent: __rc.sent, echoes: __rc.echoes, others: __rc.others, opens: __rc.opens, transports: __rc.transports,"
            " closes: __rc.closes})"
        )
        await page.evaluate("() => window.__rc.close()")

    out: dict[str, Any] = {"option": option, "mode": mode, "interval_ms": interval_ms, "timeout_s": timeout_s}
    out.update(_summarise(raw, t_fault, t_back, recovered, slack=clock.uncertainty))
    out["page_errors"] = errors
    out["raw"] = raw  # the page's records, on its clock: what the account was computed from
    # The fault as injected, on the harness's monotonic clock, the wall clock and the page's clock (the figures' clock).
    out["fault"] = fault.to_dict(clock)
    out["page_clock"] = clock.to_dict()
    return out
