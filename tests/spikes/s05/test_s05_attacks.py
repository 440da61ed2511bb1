"""Each attack against real POC servers: the weak variant lets it through (so the attack is real), the recommended one blocks it."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest

from spikes.s05_auth import attacks
from spikes.s05_auth.core import COOKIE_NAME, REFRESH_COOKIE_NAME
from tests.spikes.s05.conftest import require
from tests.utils import UNIT

pytestmark = pytest.mark.slow


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60 * UNIT))


def both(start, option: str, **kw) -> tuple[attacks.Target, attacks.Target]:
    """The recommended and the weak server of an option, started side by side (each waits for its own readiness)."""
    with ThreadPoolExecutor(2) as pool:
        rec, weak = pool.submit(start, option, **kw), pool.submit(start, option, weak=True, **kw)
        return rec.result(), weak.result()


async def _victim_then(t: attacks.Target, attack):
    victim = await attacks.login(t)
    assert victim.status == 200
    return await attack(t, victim)


@pytest.mark.parametrize("option", ["cookie", "sessions"])
def test_cross_site_websocket_hijacking(start, option):
    rec, weak = both(start, option)
    got = run(_victim_then(weak, attacks.cswsh))
    assert got.outcome == "got-through" and f"attaches {COOKIE_NAME}" in got.evidence
    blocked = run(_victim_then(rec, attacks.cswsh))
    assert blocked.outcome == "blocked" and "HTTP 403" in blocked.evidence


def test_csrf_on_login_and_refresh(start):
    rec, weak = both(start, "refresh")
    got = run(_victim_then(weak, attacks.csrf))
    assert [c["outcome"] for c in got.cases] == ["got-through", "got-through"]
    assert f"Set-Cookie {REFRESH_COOKIE_NAME}" in got.cases[0]["evidence"]
    blocked = run(_victim_then(rec, attacks.csrf))
    assert blocked.outcome == "blocked" and [c["outcome"] for c in blocked.cases] == ["blocked", "blocked"]
    assert "HTTP 403" in blocked.cases[0]["evidence"] and "no refresh cookie" in blocked.cases[1]["evidence"]


def test_token_leakage_into_the_access_log(start):
    rec, weak = both(start, "jwt-param")
    got = run(attacks.leakage(weak))
    assert got.outcome == "got-through" and "/ws?token=<credential>" in got.evidence
    # The evidence never carries the credential itself.
    assert weak.password not in got.evidence and "eyJ" not in got.evidence
    assert run(attacks.leakage(rec)).outcome == "blocked"


def test_tampering(start):
    rec, weak = both(start, "jwt-param")
    got = run(_victim_then(weak, attacks.tampering))
    assert all(c["outcome"] == "got-through" for c in got.cases) and len(got.cases) == 5
    assert "welcome as admin" in got.cases[0]["evidence"]  # alg none impersonates another user
    blocked = run(_victim_then(rec, attacks.tampering))
    assert all(c["outcome"] == "blocked" and "HTTP 401" in c["evidence"] for c in blocked.cases) and len(blocked.cases) == 5


def test_tampering_with_a_session_id_is_blocked(start):
    rec = start("sessions")
    blocked = run(_victim_then(rec, attacks.tampering))
    assert blocked.outcome == "blocked" and {c["case"] for c in blocked.cases} == {"random session id", "one character changed"}


def _case(result: attacks.AttackResult, name: str) -> dict[str, str]:
    return next(c for c in result.cases if c["case"] == name)


def test_replay_after_logout_and_of_a_message(start):
    rec, weak = both(start, "sessions", ttl_s=1)

    async def go(t):
        early = await attacks.login(t)
        return await attacks.replay(t, early, time.time())

    async def both_at_once():  # each waits out the token lifetime: wait once
        return await asyncio.gather(go(weak), go(rec))

    got, blocked = run(both_at_once())
    assert _case(got, "after logout")["outcome"] == "got-through" and _case(got, "message re-sent")["outcome"] == "got-through"
    assert _case(blocked, "after logout")["outcome"] == "blocked" and "HTTP 401" in _case(blocked, "after logout")["evidence"]
    assert _case(blocked, "message re-sent")["evidence"].endswith("reject (replay)")
    assert blocked.outcome == "blocked"


def test_replay_after_expiry(start):
    rec, weak = both(start, "jwt-param", ttl_s=1)

    async def go(t):
        early = await attacks.login(t)
        return await attacks.replay(t, early, time.time())

    async def both_at_once():
        return await asyncio.gather(go(weak), go(rec))

    got, blocked = run(both_at_once())
    assert _case(got, "after expiry")["outcome"] == "got-through"
    assert _case(blocked, "after expiry")["outcome"] == "blocked" and "HTTP 401" in _case(blocked, "after expiry")["evidence"]


def test_a_stateless_token_survives_logout(start):
    """Not a weak variant: the recommended jwt-param server cannot revoke, and the battery says so."""
    rec = start("jwt-param", ttl_s=1)

    async def go():
        return await attacks.replay(rec, await attacks.login(rec), time.time())

    assert _case(run(go()), "after logout")["outcome"] == "got-through"


@pytest.mark.parametrize("option", ["cookie", "refresh"])
def test_handshake_flood(start, option):
    rec, weak = both(start, option)

    async def both_at_once():
        return await asyncio.gather(attacks.flood(weak, 12), attacks.flood(rec, 12))

    got, blocked = run(both_at_once())
    assert got.outcome == "got-through" and "never throttled" in got.evidence
    assert blocked.outcome == "blocked" and ("HTTP 429" in blocked.evidence or "closed with 4029" in blocked.evidence)


def test_refresh_closes_an_unrenewed_connection_with_4001_and_keeps_a_renewed_one(start):
    ttl = 2 * max(1, round(UNIT))  # exp is a whole second: the first token lives between ttl - 1 and ttl s
    t = start("refresh", ttl_s=ttl)

    async def go():
        idle, renewing = await attacks.login(t, "alice"), await attacks.login(t, "bob")
        async with (
            attacks.open_ws(t, **attacks.presentation(t, idle.credential)) as (i1, ws1),
            attacks.open_ws(t, **attacks.presentation(t, renewing.credential)) as (i2, ws2),
            aiohttp.ClientSession() as s,
        ):
            assert i1["connected"] and i2["connected"]
            cookie = renewing.cookies[REFRESH_COOKIE_NAME]["value"]
            for _ in range(5):  # renewals every ttl / 4, for 1.25 ttl in all: past the idle token's expiry
                await asyncio.sleep(ttl / 4)
                async with s.post(t.base + "/refresh", json={}, headers={"Cookie": f"{REFRESH_COOKIE_NAME}={cookie}"}) as r:
                    assert r.status == 200
                    token = (await r.json())["token"]
                    cookie = r.cookies[REFRESH_COOKIE_NAME].value
                await ws2.send_json({"type": "renew", "token": token})
                assert (await ws2.receive(timeout=5 * UNIT)).json()["type"] == "renewed"
            msg = await ws1.receive(timeout=5 * UNIT)
            return msg.type, msg.data, ws2.closed

    kind, code, renewed_closed = run(go())
    assert kind == aiohttp.WSMsgType.CLOSE and code == 4001
    assert not renewed_closed


def test_a_reused_refresh_token_revokes_the_session(start):
    t = start("refresh")

    async def go():
        v = await attacks.login(t)
        stolen = v.cookies[REFRESH_COOKIE_NAME]["value"]
        async with aiohttp.ClientSession() as s:
            statuses, fresh = [], None
            for _ in range(2):  # the legitimate refresh, then the thief's copy of the same token
                async with s.post(t.base + "/refresh", json={}, headers={"Cookie": f"{REFRESH_COOKIE_NAME}={stolen}"}) as r:
                    statuses.append(r.status)
                    if r.status == 200:
                        fresh = r.cookies[REFRESH_COOKIE_NAME].value
            # The legitimate user's new token, never used: refused only because the reuse revoked the session.
            assert fresh is not None
            async with s.post(t.base + "/refresh", json={}, headers={"Cookie": f"{REFRESH_COOKIE_NAME}={fresh}"}) as r:
                statuses.append(r.status)
        return statuses

    assert run(go()) == [200, 401, 401]


def test_logout_closes_only_that_sessions_connections(start):
    t = start("sessions")

    async def go():
        one, two = await attacks.login(t), await attacks.login(t)
        async with (
            attacks.open_ws(t, **attacks.presentation(t, one.credential)) as (i1, ws1),
            attacks.open_ws(t, **attacks.presentation(t, two.credential)) as (i2, ws2),
            aiohttp.ClientSession() as s,
        ):
            assert i1["connected"] and i2["connected"] and i1["user"] == i2["user"] == "alice"
            async with s.post(t.base + "/logout", headers={"Cookie": f"{COOKIE_NAME}={one.credential}"}) as r:
                assert r.status == 204
            msg = await ws1.receive(timeout=5 * UNIT)
            code = msg.data
            await ws2.send_json({"type": "act", "seq": 1})
            reply = (await ws2.receive(timeout=5 * UNIT)).json()
            return msg.type, code, reply

    kind, code, reply = run(go())
    assert kind == aiohttp.WSMsgType.CLOSE and code == 4003
    assert reply == {"type": "ack", "seq": 1}


def test_xss_token_theft_in_chromium(start):
    require("playwright")
    require("chromium")
    from playwright.async_api import async_playwright

    from spikes.s05_auth.scenarios import launch_chromium

    targets = {
        ("jwt-param", False): start("jwt-param"),
        ("jwt-param", True): start("jwt-param", weak=True),
        ("cookie", False): start("cookie"),
        ("cookie", True): start("cookie", weak=True),
    }

    async def go():
        async with async_playwright() as pw:
            browser = await launch_chromium(pw)
            try:
                return {k: await attacks.xss_token_theft(t, browser) for k, t in targets.items()}
            finally:
                await browser.close()

    out = run(go())
    assert out[("jwt-param", True)][0].outcome == "got-through" and "localStorage.tt_token" in out[("jwt-param", True)][0].evidence
    assert out[("cookie", True)][0].outcome == "got-through" and "document.cookie" in out[("cookie", True)][0].evidence
    for option in ("jwt-param", "cookie"):
        result, facts = out[(option, False)]
        assert result.outcome == "blocked" and facts["page_connected"]
    assert out[("cookie", False)][1]["cookies_kept"][COOKIE_NAME]["httpOnly"] is True
