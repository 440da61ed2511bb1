"""In headless Chromium: each option's browser client talks to its server, reconnects, and queues while disconnected."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from harness.faults import FaultLog
from harness.load.account import OUTCOMES
from harness.poc import server_process
from harness.process import free_port
from spikes.s01_websocket_impl import build, reconnect
from tests.spikes.s01.conftest import option_of, require
from tests.utils import UNIT

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _browser_tools():
    require("playwright")
    require("chromium")


@contextlib.asynccontextmanager
async def _page(option: str, server_url: str, bundle_dir=None):
    from playwright.async_api import async_playwright

    async with async_playwright() as pw, reconnect.client_page(option, server_url, bundle_dir) as page_url:
        browser = await reconnect.launch_chromium(pw)
        try:
            page = await browser.new_page()
            await page.goto(page_url)
            await page.wait_for_function("() => window.tabletop && window.tabletop.connect", timeout=10_000 * UNIT)
            yield page
        finally:
            await browser.close()


# Connect, join, echo a JSON message and bytes, broadcast; return what came back.
_ROUND_TRIP_JS = """
async ({ url, wait }) => {
  const got = [];
  let opened;
  const open = new Promise((resolve) => (opened = resolve));
  const client = window.tabletop.connect(url, { onOpen: () => opened(), onMessage: (m) => got.push(m) });
  await open;
  client.join('room-1');
  client.send({ op: 'echo', seq: 1, t: 0, c: 0, d: 'hi' });
  client.send(new Uint8Array([1, 2, 3]));
  client.send({ op: 'broadcast', room: 'room-1', seq: 2, t: 0, c: 0, d: 'to all' });
  const deadline = performance.now() + wait;
  while (got.length < 4 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  client.close();
  return got.map((m) => (m instanceof ArrayBuffer ? { bytes: Array.from(new Uint8Array(m)) } : m));
}
"""


@pytest.mark.parametrize("option", build.OPTIONS)
def test_chromium_talks_to_the_server_through_the_option_client(start_server, option, tmp_path):
    if build.BROWSER_CLIENT[option] == "socketio":
        require("node")  # the page loads the esbuild bundle of socket.io-client
    server = start_server(option)

    async def scenario() -> list[dict]:
        async with _page(option, server.url, tmp_path) as page:
            got = await page.evaluate(_ROUND_TRIP_JS, {"url": server.url, "wait": 5000 * UNIT})
            if option == "sveltekit":
                # The page's own connection, through the same client: connected, and its hello echoed.
                await page.wait_for_function("() => document.querySelector('#status').textContent === 'connected'")
                await page.wait_for_function("() => document.querySelector('#messages').textContent.includes('hello')")
            return got

    got = asyncio.run(scenario())
    ops = sorted(m.get("op", "bytes") for m in got)
    assert ops == ["broadcast", "bytes", "echo", "joined"], got
    by_op = {m.get("op", "bytes"): m for m in got}
    assert by_op["joined"]["room"] == "room-1"
    assert by_op["echo"]["d"] == "hi" and by_op["broadcast"]["d"] == "to all"
    assert by_op["bytes"]["bytes"] == [1, 2, 3]


def test_native_client_reconnects_after_a_server_restart(start_server):
    server = start_server("native")
    heard = []
    log = FaultLog(on_fault=heard.append)
    result = asyncio.run(
        reconnect.measure_reconnect(
            "native",
            server.url,
            mode="restart",
            server=server.process,
            down_ms=300 * UNIT,
            warmup_s=0.5 * UNIT,
            settle_s=0.5 * UNIT,
            timeout_s=20 * UNIT,
            faults=log,
        )
    )
    assert result["recovered"], result
    assert result["reconnects"] >= 1 and result["recovery_ms"] >= 0
    assert result["page_errors"] == []
    # What the app sent while the client knew it was disconnected was queued and delivered after the reconnect.
    assert result["lost_while_disconnected"] == 0, result
    assert result["lost"] == result["lost_in_flight"], result  # only what was in flight on the dead connection
    assert server.process.starts == 2
    # The harness's kill-and-restart, heard as it began, timed on the page's clock: down at least down_ms.
    [fault] = log.faults
    assert heard == [fault] and fault.kind == "kill" and fault.details["signal"] == "SIGKILL" and fault.details["restarted"]
    stored = result["fault"]
    assert stored["kind"] == "kill" and stored["ended_page_ms"] - stored["started_page_ms"] >= 300 * UNIT
    assert result["down_ms"] == pytest.approx(stored["ended_page_ms"] - stored["started_page_ms"])
    assert result["page_clock"]["uncertainty"] < 50, result["page_clock"]  # ms: a round trip to the page


def test_native_client_queues_while_disconnected_keeping_the_newest(tmp_path):
    port = free_port()  # known before the server starts: the page connects first
    server, url = server_process(option_of("native"), tmp_path, name="s01-native-late", port=port)
    url = url.replace("{host}", server.host).replace("{port}", str(port))

    async def scenario() -> list[int]:
        async with _page("native", url) as page:
            # The server is not up yet: everything goes to the client's queue, bounded at 10.
            await page.evaluate(
                """(url) => {
                  window.echoed = [];
                  const c = window.tabletop.connect(url, {
                    maxQueue: 10,
                    onMessage: (m) => m.op === 'echo' && window.echoed.push(m.seq),
                  });
                  for (let seq = 0; seq < 30; seq++) c.send({ op: 'echo', seq, t: 0, c: 0, d: 'queued' });
                }""",
                url,
            )
            await asyncio.to_thread(server.start)
            await page.wait_for_function("() => window.echoed.length >= 10", timeout=20_000 * UNIT)
            await asyncio.sleep(0.2 * UNIT)
            return await page.evaluate("() => window.echoed")

    try:
        echoed = asyncio.run(scenario())
    finally:
        server.stop()
    assert echoed == list(range(20, 30))  # the oldest 20 were dropped, the rest sent in order


@pytest.mark.parametrize("option", build.OPTIONS)
def test_every_client_reconnects_after_the_network_drops_the_connection(start_server, option, tmp_path):
    if build.BROWSER_CLIENT[option] == "socketio":
        require("node")  # the page loads the esbuild bundle of socket.io-client
    server = start_server(option)
    log = FaultLog()
    result = asyncio.run(
        reconnect.measure_reconnect(
            option, server.url, mode="drop", warmup_s=0.3 * UNIT, settle_s=0.3 * UNIT, timeout_s=20 * UNIT, bundle_dir=tmp_path, faults=log
        )
    )
    assert result["recovered"] and result["reconnects"] >= 1, result
    # One cut by the harness's proxy: every open connection reset (the page's, and SvelteKit's own page connection).
    [fault] = log.faults
    assert fault.kind == "proxy-reset" and fault.details["connections"] >= 1 and result["fault"]["kind"] == "proxy-reset"
    assert result["down_ms"] == 0 and result["fault"]["started_page_ms"] <= result["fault"]["ended_page_ms"]
    if option == "socketio" and result["lost_while_disconnected"]:
        # A real loss, not a measuring error (see reconnect's docstring): the Socket.IO connect completed before the
        # upgrade, so socket.io-client flushed its send buffer in one long-polling payload of more than 16 packets,
        # which python-engineio refused while answering 200. Any other loss of what it buffered fails here.
        assert result["reconnect_transport"] == "polling" and result["lost_while_disconnected"] > 16, result
        assert "Too many packets in payload" in server.process.log_path.read_text(), result
    else:
        # Every client queues what the app sends while it knows it is disconnected, and delivers it after the reconnect.
        assert result["lost_while_disconnected"] == 0, result
    assert server.process.alive and server.process.starts == 1  # the server never went away


@pytest.mark.parametrize("packets", [16, 17])
def test_the_socketio_server_drops_a_long_polling_payload_of_more_than_16_packets(start_server, packets):
    # Why socket.io-client can lose what it buffered: its flush after a reconnect on long-polling is one POST.
    import aiohttp

    server = start_server("socketio")
    base = f"{server.http_url}/socket.io/?EIO=4&transport=polling"
    echo = '42["echo",{{"seq":{},"t":0,"c":0,"d":"x"}}]'

    async def scenario() -> list[int]:
        timeout = aiohttp.ClientTimeout(total=10 * UNIT)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.get(base) as r:
                sid = json.loads((await r.text())[1:])["sid"]
            url = f"{base}&sid={sid}"
            for body in ("40", "\x1e".join(echo.format(i) for i in range(packets)), echo.format(999)):
                async with http.post(url, data=body) as r:
                    assert r.status == 200, await r.text()  # the refused payload is answered 200 all the same
            got: list[int] = []
            while 999 not in got:  # the last POST's echo comes after anything the server kept from the one before
                async with http.get(url) as r:
                    for pkt in (await r.text()).split("\x1e"):
                        if pkt.startswith('42["echo"'):
                            got.append(json.loads(pkt[2:])[1]["seq"])
            return got

    got = asyncio.run(scenario())
    assert sorted(got) == ([*range(packets), 999] if packets <= 16 else [999])
    assert ("Too many packets in payload" in server.process.log_path.read_text()) == (packets > 16)


def test_summary_splits_losses_at_the_moment_the_client_saw_the_close():
    raw = {
        "sent": [[0, 0.0], [1, 50.0], [2, 100.0], [3, 150.0], [4, 200.0]],
        "echoes": [[0, 1.0], [3, 301.0], [4, 302.0], [4, 303.0]],
        "opens": [0.0, 300.0],
        "closes": [120.0],
    }
    out = reconnect._summarise(raw, t_fault=90.0, t_back=250.0, recovered=True)
    assert out["recovery_ms"] == pytest.approx(51.0)  # 250 -> first echo at 301
    assert out["outage_ms"] == pytest.approx(300.0)  # last echo before the fault at 1, first after at 301
    assert out["lost_seqs"] == [1, 2] and out["lost_in_flight"] == 2 and out["lost_while_disconnected"] == 0
    assert out["duplicated"] == 1 and out["reconnects"] == 1 and out["sent"] == 5


def test_the_summary_counts_with_the_harness_account_in_its_words():
    # Echoed 0, 3 and 4 (4 twice), 2 after 3; another connection's echo and a frame naming nothing also arrived.
    raw = {
        "sent": [[0, 0.0], [1, 50.0], [2, 100.0], [3, 150.0], [4, 200.0]],
        "echoes": [[0, 1.0], [3, 301.0], [2, 301.5], [4, 302.0], [4, 303.0]],
        "others": [[12, 3, 5.0], [None, None, 6.0]],
        "opens": [0.0, 300.0],
        "closes": [120.0],
    }
    out = reconnect._summarise(raw, t_fault=90.0, t_back=250.0, recovered=True)
    counts = {n: out[n] for n in OUTCOMES}
    assert counts == {
        "sent": 5,
        "delivered": 4,
        "lost_after_ack": 0,  # an echo is the only acknowledgement: what was acknowledged was delivered
        "lost_without_ack": 1,
        "duplicated": 1,
        "unexpected": 2,
        "reordered": 1,  # 2 after 3
    }
    assert out["lost"] == 1 and out["lost_seqs"] == [1] and out["lost_in_flight"] == 1 and out["lost_while_disconnected"] == 0
    assert out["account"] == reconnect.account_of(raw).total.to_dict() and out["account"]["delivered"]["fraction"] == 0.8
    # Only the messages sent before the close: 0, 1 and 2 (1 lost); the echoes of 3 and 4 are not theirs.
    before = reconnect.account_of(raw, sent_before=120.0).total
    assert (before.sent, before.delivered, before.lost) == (3, 2, 1)
    # A page from before "others" was recorded: the same counts but nothing unexpected.
    assert reconnect._summarise({k: v for k, v in raw.items() if k != "others"}, 90.0, 250.0, True)["unexpected"] == 0


def test_an_echo_that_was_in_flight_at_the_fault_is_not_the_recovery():
    # seq 1's echo lands 10 ms after t_fault but before the client saw the close: the old connection, not a new one.
    raw = {
        "sent": [[0, 0.0], [1, 85.0], [2, 150.0], [3, 200.0]],
        "echoes": [[0, 1.0], [1, 100.0], [2, 900.0], [3, 901.0]],
        "opens": [0.0, 880.0],
        "closes": [120.0],
    }
    out = reconnect._summarise(raw, t_fault=90.0, t_back=90.0, recovered=True)
    assert out["recovery_ms"] == pytest.approx(810.0)  # 90 -> 900, the first echo after the close at 120
    assert out["lost"] == 0 and out["reconnects"] == 1
    assert out["reconnect_transport"] is None  # a page that did not record transports


def test_summary_names_the_transport_the_reconnection_opened_on():
    raw = {
        "sent": [[0, 0.0], [1, 150.0]],
        "echoes": [[0, 1.0], [1, 901.0]],
        "opens": [0.0, 880.0],
        "transports": ["websocket", "polling"],
        "closes": [120.0],
    }
    out = reconnect._summarise(raw, t_fault=90.0, t_back=90.0, recovered=True)
    assert out["reconnect_transport"] == "polling"  # the first open after the close, not the first open


def test_a_close_within_the_clock_uncertainty_before_the_fault_is_still_the_faults():
    # The fault's time on the page's clock is known within the clock sync's uncertainty: a close seen 0.3 ms "before"
    # it (on the estimate) is the close the fault caused, so losses still split there.
    raw = {
        "sent": [[0, 0.0], [1, 50.0], [2, 100.0], [3, 150.0]],
        "echoes": [[0, 1.0], [1, 51.0], [3, 301.0]],
        "opens": [0.0, 290.0],
        "closes": [89.7],
    }
    without = reconnect._summarise(raw, t_fault=90.0, t_back=90.0, recovered=True)
    out = reconnect._summarise(raw, t_fault=90.0, t_back=90.0, recovered=True, slack=0.5)
    assert without["lost_in_flight"] == 1 and without["lost_while_disconnected"] == 0  # the close was missed
    # Seq 2 was sent after the client saw the close: a client that queues should have kept it.
    assert out["lost_in_flight"] == 0 and out["lost_while_disconnected"] == 1 and out["recovery_ms"] == pytest.approx(211.0)
