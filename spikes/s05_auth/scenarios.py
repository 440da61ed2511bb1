"""Spike 5's scenarios: each starts the option's real POC server(s) and measures or attacks them from outside.

Every server is the option's declared one (``Option.server``, started by
``harness.poc.poc_server``), its own process on a free loopback port; the
sessions option gets a real ``redis-server``
(``harness.services.RedisService``). The JWT secret and the demo password are
generated per scenario run and reach the servers through the environment only:
they are never written to results, logs or facts.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp

from harness import browser as engines
from harness import machine
from harness import poc as _poc
from harness.plugin import NotRunnable, Option, ScenarioContext, ScenarioOutput
from harness.probes import ProcessSampler, memory_per_connection, rss_bytes
from harness.process import ServerProcess, pin_plan
from harness.services import RedisService
from spikes.s05_auth import attacks as _at
from spikes.s05_auth.core import REFRESH_COOKIE_NAME

__all__ = [
    "VARIANTS",
    "ATTACK_PARAMS",
    "ATTACK_QUICK",
    "COST_PARAMS",
    "COST_QUICK",
    "REVOCATION_PARAMS",
    "REVOCATION_QUICK",
    "Secrets",
    "poc_server",
    "poc_servers",
    "redis_for",
    "launch_chromium",
    "run_attacks",
    "run_cost",
    "run_revocation",
]

VARIANTS = ("recommended", "weak")

ATTACK_PARAMS = {"ttl_s": 2, "flood_attempts": 30}
ATTACK_QUICK = {"flood_attempts": 15}
COST_PARAMS = {"connections": 400, "rate": 100, "closed_connections": 400, "concurrency": 16, "memory_connections": 500, "logins": 50}
COST_QUICK = {"connections": 80, "rate": 80, "closed_connections": 300, "memory_connections": 100, "logins": 10}
REVOCATION_PARAMS = {"ttl_s": 6, "window_s": 8.0}
REVOCATION_QUICK = {"ttl_s": 2, "window_s": 3.0}

#: Chromium's flags: the harness's, one set for every spike.
CHROMIUM_ARGS = list(engines.CHROMIUM_ARGS)


class Secrets:
    """The per-run JWT secret and demo password: random, in memory, passed to servers by environment only."""

    def __init__(self) -> None:
        self.jwt = secrets.token_urlsafe(48)
        self.password = secrets.token_urlsafe(12)

    def __repr__(self) -> str:  # never print the values
        return "<Secrets redacted>"


@contextlib.contextmanager
def redis_for(option: str, workdir: Path) -> Iterator[RedisService | None]:
    """A real redis-server for the sessions option; nothing for the others."""
    if option != "sessions":
        yield None
        return
    if machine.find_tool("redis-server") is None:
        raise NotRunnable(f"redis-server is not installed (install: {machine.EXTERNAL_TOOLS['redis-server'].install})")
    with RedisService(base_dir=workdir) as redis:
        yield redis


def _declared(option: Option | str) -> Option:
    """The option as the plugin declares it (its ``server`` says how its POC server starts)."""
    if isinstance(option, Option):
        return option
    from spikes.s05_auth.plugin import spike  # imported here: the plugin imports this module

    return spike.option(option)


@contextlib.contextmanager
def poc_server(
    option: Option | str,
    workdir: Path,
    sec: Secrets,
    *,
    weak: bool = False,
    ttl_s: float = 60,
    redis: RedisService | None = None,
    name: str = "",
    pinned: bool = False,
) -> Iterator[tuple[ServerProcess, _at.Target]]:
    """Start one option's POC server (recommended or weak) on a free port; yield it and the attack target.

    The server is the option's declared one (``Option.server``, started by :func:`harness.poc.poc_server`); the
    secrets and settings reach it through the environment only. ``option`` is the option or its key.
    """
    opt = _declared(option)
    label = f"{opt.key}-{'weak' if weak else 'recommended'}{name}"
    access = workdir / f"access-{label}.log"
    env = {
        "S05_JWT_SECRET": sec.jwt,
        "S05_PASSWORD": sec.password,
        "S05_TTL_S": str(ttl_s),
        "S05_WEAK": "1" if weak else "0",
        "S05_ACCESS_LOG": str(access),
    }
    if redis is not None:
        env["S05_REDIS_URL"] = redis.url
    plan = pin_plan() if pinned else None
    # No port is given: the process layer chooses one, and chooses again if another socket took it before the server bound it.
    with _poc.poc_server(
        opt, workdir, name=f"s05 {label}", env=env, log_name=f"server-{label}.log", cpus=plan.server if plan else None
    ) as (server, _url):
        yield server, _at.Target(opt.key, weak, server.port or 0, sec.password, sec.jwt, access, ttl_s)


@contextlib.contextmanager
def poc_servers(
    option: Option | str, workdir: Path, sec: Secrets, specs: list[dict[str, Any]], redis: RedisService | None = None
) -> Iterator[list[_at.Target]]:
    """Several servers of one option started side by side (each start waits for its own readiness); their targets in ``specs`` order."""
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(len(specs)) as pool:
        futures = [pool.submit(stack.enter_context, poc_server(option, workdir, sec, redis=redis, **spec)) for spec in specs]
        yield [f.result()[1] for f in futures]


async def launch_chromium(playwright: Any) -> Any:
    """Headless system Chromium (``apt-get install -y chromium``), launched the harness's one way (``harness.browser``)."""
    return await engines.launch_chromium(playwright)


# -- attacks ------------------------------------------------------------------------------
def run_attacks(ctx: ScenarioContext) -> ScenarioOutput:
    """The battery against the option's recommended and weak servers; 1 = blocked, 0 = got through, per attack."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        raise NotRunnable("playwright (the Python package) is not installed (install: pip install playwright==1.64.1)") from None

    p, opt, sec = ctx.params, ctx.option.key, Secrets()
    out = ScenarioOutput()

    async def go() -> None:
        async with async_playwright() as pw:
            browser = await launch_chromium(pw)
            try:
                specs = [{"weak": variant == "weak", "ttl_s": p["ttl_s"]} for variant in VARIANTS]
                with redis_for(opt, ctx.workdir) as redis, poc_servers(ctx.option, ctx.workdir, sec, specs, redis) as targets:
                    # Outcomes, not timings: the two servers are attacked at the same time (each attack from its own address).
                    batteries = await asyncio.gather(*(_at.run_battery(t, browser, p["flood_attempts"]) for t in targets))
                    for i, (variant, (results, facts)) in enumerate(zip(VARIANTS, batteries)):
                        out.facts[variant] = {"results": [r.to_dict() for r in results], **facts}
                        for r in results:
                            if r.outcome != "not-applicable":
                                out.add(
                                    "blocked", "attack", [1 if r.outcome == "blocked" else 0], "higher", attack=r.attack, variant=variant
                                )
                        applicable = [r for r in results if r.outcome != "not-applicable"]
                        out.add("attacks_blocked", "attacks", [sum(r.outcome == "blocked" for r in applicable)], "higher", variant=variant)
                        out.add("attacks_applicable", "attacks", [len(applicable)], None, variant=variant)
                        ctx.advance((i + 1) / len(VARIANTS))
            finally:
                await browser.close()

    asyncio.run(go())
    return out


# -- cost ---------------------------------------------------------------------------------
async def _logins(t: _at.Target, n: int) -> tuple[list[_at.Login], list[float]]:
    done, ms = [], []
    for i in range(n):
        t0 = time.perf_counter()
        v = await _at.login(t, t.users[i % len(t.users)])
        ms.append((time.perf_counter() - t0) * 1000)
        if v.status != 200:
            raise RuntimeError(f"login answered HTTP {v.status}")
        done.append(v)
    return done, ms


async def _handshake(t: _at.Target, session: aiohttp.ClientSession, credential: str) -> aiohttp.ClientWebSocketResponse:
    """One authenticated connection, the option's way; returns it once the server's welcome has arrived."""
    pres = _at.presentation(t, credential)
    headers = {"Cookie": pres["cookie"]} if "cookie" in pres else {}
    ws = await session.ws_connect(t.base + "/ws", headers=headers, protocols=pres.get("protocols", ()))
    if "first" in pres:
        await ws.send_json(pres["first"])
    msg = await ws.receive(timeout=10)
    if msg.type != aiohttp.WSMsgType.TEXT or '"welcome"' not in msg.data:
        raise RuntimeError(f"connection not authenticated: {msg.type} {ws.close_code}")
    return ws


async def _open_model(t: _at.Target, creds: list[str], n: int, rate: float) -> list[float]:
    """N connect-authenticate-close cycles started at a fixed rate; latency from each one's intended start (open model)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        start = time.perf_counter() + 0.05

        async def one(i: int) -> float:
            intended = start + i / rate
            await asyncio.sleep(max(0.0, intended - time.perf_counter()))
            ws = await _handshake(t, s, creds[i % len(creds)])
            done = time.perf_counter()
            await ws.close()
            return (done - intended) * 1000

        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def _closed_loop(t: _at.Target, creds: list[str], n: int, concurrency: int) -> float:
    """Authenticated connections per second: ``concurrency`` workers connect, authenticate and close, back to back."""
    left = list(range(n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:

        async def worker() -> None:
            while left:
                i = left.pop()
                ws = await _handshake(t, s, creds[i % len(creds)])
                await ws.close()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - t0)


async def _hold(t: _at.Target, creds: list[str], n: int, pid: int) -> tuple[int, int, int]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        await asyncio.sleep(0.3)
        before = rss_bytes(pid)
        conns = []
        for i in range(n):
            conns.append(await _handshake(t, s, creds[i % len(creds)]))
        await asyncio.sleep(0.5)
        after = rss_bytes(pid)
        for ws in conns:
            await ws.close()
        return before, after, len(conns)


#: Redis commands that set a connection up or keep it alive (Redis names them so in INFO commandstats).
_SETUP_COMMANDS = frozenset(
    {"info", "subscribe", "psubscribe", "ssubscribe", "ping", "hello", "select", "client|setinfo", "client|setname"}
)


def _redis_calls(redis: RedisService | None) -> int:
    if redis is None:
        return 0
    stats = redis.info("commandstats")
    # Every command a handshake can cost, not INFO (the harness's own probe) nor a client's connection setup and
    # keep-alive: the server's revocation SUBSCRIBE may land inside the measured window on a busy machine (seen once as
    # 21 commands for 20 handshakes with two CI runs side by side), and it is not a cost per connection.
    return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_") and k.removeprefix("cmdstat_") not in _SETUP_COMMANDS)


def run_cost(ctx: ScenarioContext) -> ScenarioOutput:
    """Login and handshake latency (open model), authenticated connections per second, memory per connection, Redis commands."""
    p, opt, sec = ctx.params, ctx.option.key, Secrets()
    out = ScenarioOutput()
    with (
        redis_for(opt, ctx.workdir) as redis,
        poc_server(ctx.option, ctx.workdir, sec, ttl_s=3600, redis=redis, pinned=True) as (server, t),
    ):

        async def go() -> None:
            logins, login_ms = await _logins(t, p["logins"])
            creds = [v.credential for v in logins]
            out.add("login_ms", "ms", login_ms)
            ctx.advance(0.2)
            calls0 = _redis_calls(redis)
            lat = await _open_model(t, creds, p["connections"], p["rate"])
            calls1 = _redis_calls(redis)
            out.add("handshake_ms", "ms", lat)
            out.add("store_commands_per_connection", "commands", [(calls1 - calls0) / p["connections"]], "lower")
            ctx.advance(0.5)
            with ProcessSampler(server.pid, hz=10) as sampler:
                cpu0, wall0 = time.process_time(), time.perf_counter()
                out.add(
                    "connections_per_s",
                    "connections/s",
                    [await _closed_loop(t, creds, p["closed_connections"], p["concurrency"])],
                    "higher",
                )
                client_cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
            out.add("closed_server_cpu", "cores", [sampler.mean_cpu() / 100], None)
            out.add("closed_client_cpu", "cores", [client_cpu], None)
            ctx.advance(0.7)
            before, after, n = await _hold(t, creds, p["memory_connections"], server.pid)
            out.add("memory_per_connection_bytes", "bytes", [memory_per_connection(after, before, n)])
            if redis is not None:
                info = redis.info()
                out.facts["redis_used_memory_bytes"] = info.get("used_memory")
                out.facts["redis_keys"] = redis.command("DBSIZE")

        asyncio.run(go())
        if not server.alive:
            raise RuntimeError(f"{server.name} exited during the scenario: {' | '.join(server.last_log_lines(5))}")
    out.facts["client"] = "aiohttp in the harness process; the server pinned to its own core when there are two or more"
    return out


# -- revocation ---------------------------------------------------------------------------
async def _wait_close(ws: aiohttp.ClientWebSocketResponse, window_s: float, t0: float) -> tuple[float | None, int | None]:
    """Milliseconds from ``t0`` (perf_counter) until the server closes ``ws``, and its close code; ``(None, None)`` if it stays open."""
    while (left := window_s - (time.perf_counter() - t0)) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return (time.perf_counter() - t0) * 1000, int(msg.data)
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return (time.perf_counter() - t0) * 1000, ws.close_code
    return None, None


def run_revocation(ctx: ScenarioContext) -> ScenarioOutput:
    """Two server instances: a connection lives on B, the user logs out on A; how long until B closes it (and with which code)?"""
    p, opt, sec = ctx.params, ctx.option.key, Secrets()
    out = ScenarioOutput()
    specs = [{"ttl_s": p["ttl_s"], "name": "-A"}, {"ttl_s": p["ttl_s"], "name": "-B"}]
    with redis_for(opt, ctx.workdir) as redis, poc_servers(ctx.option, ctx.workdir, sec, specs, redis) as (a, b):

        async def go() -> None:
            v = await _at.login(a, "alice")
            cookie = "; ".join(f"{n}={c['value']}" for n, c in v.cookies.items())
            async with aiohttp.ClientSession() as s:
                ws = await _handshake(b, s, v.credential)
                # The refresh option's renewing client runs alongside: it does not touch the logged-out session.
                renewal = asyncio.create_task(_renewal(b, s, p)) if opt == "refresh" else None
                t0 = time.perf_counter()  # from sending the logout: the close may arrive before its response does
                async with s.post(a.base + "/logout", headers={"Cookie": cookie} if cookie else {}) as r:
                    status = r.status
                # At once: wait for B to close the live connection, and replay the logged-out credential on B (a new
                # connection, while the token itself is still unexpired): does B know about the logout on A?
                (ms, code), replay = await asyncio.gather(
                    _wait_close(ws, p["window_s"], t0), _at.connect_once(b, v.credential, ip=_at.SOURCE["replay"])
                )
                await ws.close()
                out.facts["replay_on_other_instance"] = {
                    "outcome": "got-through" if replay["connected"] else "blocked",
                    "evidence": f"logout on instance A, then on instance B: {_at.describe(replay)}",
                }
                out.add("replay_other_instance_blocked", "attack", [0 if replay["connected"] else 1], "higher")
                out.facts["logout_status"] = status
                out.facts["closed"] = ms is not None
                out.facts["close_code"] = code
                out.add("closed_after_logout", "connections", [1 if ms is not None else 0], "higher")
                if ms is not None:
                    out.add("revocation_ms", "ms", [ms])
                if renewal is not None:
                    out.facts["renewal"] = await renewal
                    out.add("renewed_connection_open", "connections", [1 if out.facts["renewal"]["open"] else 0], "higher")

        asyncio.run(go())
    out.facts["window_s"] = p["window_s"]
    out.facts["ttl_s"] = p["ttl_s"]
    return out


async def _renewal(t: _at.Target, s: aiohttp.ClientSession, p: dict[str, Any]) -> dict[str, Any]:
    """A client that renews its access token over the connection every quarter lifetime: does it outlive its first token?

    ``exp`` is a whole second, so a token lives between ttl - 1 and ttl seconds: a quarter keeps renewals well inside that.
    """
    v = await _at.login(t, "bob")
    refresh_cookie = v.cookies[REFRESH_COOKIE_NAME]["value"]
    ws = await _handshake(t, s, v.credential)
    renewals, t0 = 0, time.perf_counter()
    try:
        while time.perf_counter() - t0 < 2 * p["ttl_s"]:
            await asyncio.sleep(p["ttl_s"] / 4)
            async with s.post(t.base + "/refresh", json={}, headers={"Cookie": f"{REFRESH_COOKIE_NAME}={refresh_cookie}"}) as r:
                data = await r.json(content_type=None)
                refresh_cookie = r.cookies[REFRESH_COOKIE_NAME].value if REFRESH_COOKIE_NAME in r.cookies else refresh_cookie
            await ws.send_json({"type": "renew", "token": data["token"]})
            msg = await ws.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                return {"open": False, "renewals": renewals, "close_code": ws.close_code, "held_s": round(time.perf_counter() - t0, 2)}
            renewals += 1
        return {"open": not ws.closed, "renewals": renewals, "close_code": None, "held_s": round(time.perf_counter() - t0, 2)}
    finally:
        await ws.close()
