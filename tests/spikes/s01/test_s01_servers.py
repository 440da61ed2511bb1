"""Each POC server speaks the protocol over real loopback sockets, and starts and stops as the harness expects."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import socketio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from spikes.s01_websocket_impl import build
from tests.utils import UNIT

pytestmark = pytest.mark.slow

OPTIONS = build.OPTIONS


async def _ws_echo_and_broadcast(url: str) -> None:
    async with connect(url, proxy=None, open_timeout=5 * UNIT) as a, connect(url, proxy=None, open_timeout=5 * UNIT) as b:
        echo = {"op": "echo", "seq": 7, "t": time.time_ns(), "c": 1, "d": "xxxx"}
        await a.send(json.dumps(echo))
        assert json.loads(await asyncio.wait_for(a.recv(), 5 * UNIT)) == echo

        await a.send(bytes(range(256)))
        assert await asyncio.wait_for(a.recv(), 5 * UNIT) == bytes(range(256))

        for ws in (a, b):
            await ws.send(json.dumps({"op": "join", "room": "r1"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5 * UNIT)) == {"op": "joined", "room": "r1"}
        msg = {"op": "broadcast", "room": "r1", "seq": 1, "t": time.time_ns(), "c": 1, "d": "roll"}
        await b.send(json.dumps(msg))
        for ws in (a, b):  # the sender included
            assert json.loads(await asyncio.wait_for(ws.recv(), 5 * UNIT)) == msg


async def _sio_echo_and_broadcast(url: str) -> None:
    got: asyncio.Queue = asyncio.Queue()
    clients = [socketio.AsyncClient(reconnection=False) for _ in range(2)]
    for name, client in zip("ab", clients):
        for event in ("echo", "joined", "broadcast"):
            client.on(event, lambda data, name=name, event=event: got.put_nowait((name, event, data)))
        await client.connect(url, transports=["websocket"], wait_timeout=5 * UNIT)
    a, b = clients
    try:
        echo = {"seq": 7, "t": time.time_ns(), "c": 1, "d": "xxxx"}
        await a.emit("echo", echo)
        assert await asyncio.wait_for(got.get(), 5 * UNIT) == ("a", "echo", echo)
        assert await a.call("echo", echo, timeout=5 * UNIT) == echo  # the acknowledgement carries the data
        await asyncio.wait_for(got.get(), 5 * UNIT)  # and the echo event came too

        await a.emit("echo", bytes(range(256)))
        assert await asyncio.wait_for(got.get(), 5 * UNIT) == ("a", "echo", bytes(range(256)))

        await a.emit("join", {"room": "r1"})
        await b.emit("join", {"room": "r1"})
        joined = [await asyncio.wait_for(got.get(), 5 * UNIT) for _ in range(2)]
        assert sorted(joined, key=lambda r: r[0]) == [("a", "joined", {"room": "r1"}), ("b", "joined", {"room": "r1"})]
        msg = {"room": "r1", "seq": 1, "t": time.time_ns(), "c": 1, "d": "roll"}
        await b.emit("broadcast", msg)
        received = [await asyncio.wait_for(got.get(), 5 * UNIT) for _ in range(2)]
        assert sorted(received, key=lambda r: r[0]) == [("a", "broadcast", msg), ("b", "broadcast", msg)]
    finally:
        for client in clients:
            await client.disconnect()


@pytest.mark.parametrize("option", OPTIONS)
def test_server_echoes_and_broadcasts_to_the_room(start_server, option):
    server = start_server(option)
    if server.transport == "socketio":
        asyncio.run(_sio_echo_and_broadcast(server.url))
    else:
        asyncio.run(_ws_echo_and_broadcast(server.url))


@pytest.mark.parametrize("option", ["native", "sveltekit"])
def test_websocket_servers_close_a_connection_that_sends_no_json_object(start_server, option):
    server = start_server(option)

    async def scenario() -> int:
        async with connect(server.url, proxy=None) as ws:
            await ws.send("not json")
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5 * UNIT)
            return info.value.rcvd.code

    assert asyncio.run(scenario()) == 1007  # invalid frame payload data


@pytest.mark.parametrize("option", ["native", "sveltekit"])
def test_rooms_are_isolated_and_forgotten_when_members_leave(start_server, option):
    server = start_server(option)

    async def scenario() -> None:
        async with connect(server.url, proxy=None) as outsider:
            async with connect(server.url, proxy=None) as member:
                await member.send(json.dumps({"op": "join", "room": "r2"}))
                await asyncio.wait_for(member.recv(), 5 * UNIT)
            # The member left: a broadcast to its room reaches nobody and breaks nothing.
            await outsider.send(json.dumps({"op": "broadcast", "room": "r2", "seq": 1, "t": 0, "c": 0, "d": "x"}))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(outsider.recv(), 0.2 * UNIT)
            echo = {"op": "echo", "seq": 2, "t": 0, "c": 0, "d": "still alive"}
            await outsider.send(json.dumps(echo))
            assert json.loads(await asyncio.wait_for(outsider.recv(), 5 * UNIT)) == echo

    asyncio.run(scenario())


@pytest.mark.parametrize("option", OPTIONS)
def test_server_stops_on_sigterm_and_says_going_away(start_server, option):
    server = start_server(option)

    async def scenario() -> int | None:
        if server.transport == "socketio":
            client = socketio.AsyncClient(reconnection=False)
            gone = asyncio.Event()
            client.on("disconnect", lambda *reason: gone.set())
            await client.connect(server.url, transports=["websocket"])
            os.kill(server.process.pid, signal.SIGTERM)
            await asyncio.wait_for(gone.wait(), 5 * UNIT)
            return None
        async with connect(server.url, proxy=None) as ws:
            os.kill(server.process.pid, signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5 * UNIT)
            return info.value.rcvd.code if info.value.rcvd else None

    code = asyncio.run(scenario())
    if server.transport == "ws":
        assert code == 1001  # going away
    deadline = time.monotonic() + 5 * UNIT
    while server.process.alive and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.process.returncode == 0  # it exited by itself, cleanly


@pytest.mark.parametrize("script", ["native_ws", "socketio"])
def test_python_server_prints_the_port_it_bound_when_given_port_0(script):
    proc = subprocess.Popen(
        [sys.executable, str(build.POC_DIR / script / "server.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(r"READY port=(\d+)\n", line)
        assert match, line
        port = int(match.group(1))
        assert port > 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5 * UNIT)
        conn.request("GET", "/health")
        assert conn.getresponse().status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10 * UNIT) == 0


def test_sveltekit_server_prints_the_port_it_bound_when_given_port_0(sveltekit_dir):
    proc = subprocess.Popen(["node", "server.js", "--port", "0"], cwd=sveltekit_dir, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert re.fullmatch(r"READY port=[1-9]\d*\n", line), line
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10 * UNIT) == 0
