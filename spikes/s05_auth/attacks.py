"""The attack battery: each attack runs over loopback against a live POC server and says what happened.

Every attack returns an :class:`AttackResult`: ``blocked``, ``got-through`` or
``not-applicable``, with the evidence (HTTP status, close code, access-log
line; credentials in evidence are replaced by ``<credential>``). Attacks that
need a browser's cookie behaviour apply the browser's rule
(:func:`~spikes.s05_auth.core.browser_sends_cookie`) to the cookie attributes
the server actually set; XSS token theft runs in real Chromium.

Each attack comes from its own loopback source address (127.0.0.x), so the
failed-authentication limiter, keyed by client address, sees each attack as a
separate client, as it would see separate attackers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt

from spikes.s05_auth.core import (
    ALGORITHMS,
    COOKIE_NAME,
    REFRESH_COOKIE_NAME,
    SUBPROTOCOL,
    browser_sends_cookie,
    parse_set_cookie,
)

__all__ = [
    "ATTACKS",
    "ATTACK_TITLES",
    "OUTCOMES",
    "Target",
    "AttackResult",
    "login",
    "open_ws",
    "connect_once",
    "run_battery",
    "xss_token_theft",
    "redact",
    "describe",
    "presentation",
    "tampered_tokens",
    "cswsh",
    "csrf",
    "leakage",
    "replay",
    "tampering",
    "flood",
]

OUTCOMES = ("blocked", "got-through", "not-applicable")
ATTACK_TITLES = {
    "cswsh": "Cross-site WebSocket hijacking",
    "csrf": "CSRF on login / refresh",
    "xss": "XSS token theft (Chromium)",
    "leakage": "Token leakage (access log, URLs)",
    "replay": "Replay (after logout, after expiry, message)",
    "tampering": "Tampering (alg none, signature, aud, iss, exp)",
    "flood": "Handshake flood (rate limiting)",
}
ATTACKS = tuple(ATTACK_TITLES)
EVIL_ORIGIN = "http://evil.example"
#: One loopback source address per attack (the limiter keys on the client address).
SOURCE = {
    "victim": "127.0.0.1",
    "cswsh": "127.0.0.2",
    "csrf": "127.0.0.3",
    "replay": "127.0.0.4",
    "tampering": "127.0.0.5",
    "flood": "127.0.0.6",
    "leakage": "127.0.0.7",
}
TOKEN_OPTIONS = ("jwt-param", "refresh")
COOKIE_OPTIONS = ("cookie", "sessions")


@dataclass
class Target:
    """A running POC server and what the attacker-side harness knows about it."""

    option: str
    weak: bool
    port: int
    password: str = field(repr=False)
    secret: str = field(repr=False)  # lets the harness play "another service of the same issuer"; never stored
    access_log: Path
    ttl_s: float
    users: tuple[str, ...] = ("alice", "bob")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def own_origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class AttackResult:
    attack: str
    outcome: str
    evidence: str
    cases: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Login:
    status: int
    token: str | None
    cookies: dict[str, dict[str, Any]]

    @property
    def credential(self) -> str:
        """The string that authenticates the WebSocket: the access token, or the session cookie's value."""
        if self.token:
            return self.token
        return self.cookies[COOKIE_NAME]["value"]

    def secrets(self) -> list[str]:
        return [s for s in [self.token, *(c["value"] for c in self.cookies.values())] if s]


def redact(text: str, secrets: list[str]) -> str:
    for s in sorted(set(filter(None, secrets)), key=len, reverse=True):
        text = text.replace(s, "<credential>").replace(quote(s, safe=""), "<credential>")
    return text


def _session(ip: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(ip, 0), force_close=True), cookie_jar=aiohttp.DummyCookieJar())


async def login(
    t: Target,
    user: str = "alice",
    ip: str = SOURCE["victim"],
    *,
    form: bool = False,
    origin: str | None = None,
    password: str | None = None,
) -> Login:
    """POST /login as JSON (a page's fetch) or as a form (a cross-site HTML form); the cookies come back parsed."""
    headers = {"Origin": origin} if origin else {}
    body = {"user": user, "password": t.password if password is None else password}
    async with _session(ip) as s:
        kw: dict[str, Any] = {"data": body} if form else {"json": body}
        async with s.post(t.base + "/login", headers=headers, **kw) as r:
            data = await r.json(content_type=None) if r.content_length != 0 else {}
            return Login(r.status, (data or {}).get("token"), parse_set_cookie(r.headers.getall("Set-Cookie", [])))


def presentation(t: Target, credential: str) -> dict[str, Any]:
    """How the option's client presents a credential at the upgrade (the weak clients put tokens in the URL)."""
    if t.option == "jwt-param":
        return {"query_token": credential} if t.weak else {"protocols": (SUBPROTOCOL, credential)}
    if t.option == "refresh":
        return {"query_token": credential} if t.weak else {"first": {"type": "auth", "token": credential}}
    return {"cookie": f"{COOKIE_NAME}={credential}"}


@contextlib.asynccontextmanager
async def open_ws(
    t: Target,
    *,
    ip: str = SOURCE["victim"],
    origin: str | None = None,
    cookie: str | None = None,
    query_token: str | None = None,
    protocols: tuple[str, ...] = (),
    first: dict[str, Any] | None = None,
    timeout: float = 5.0,
) -> AsyncIterator[tuple[dict[str, Any], Any]]:
    """Open a WebSocket and wait for the welcome; yield ``(info, ws)``: info has status, connected, close_code, user."""
    headers = {}
    if origin:
        headers["Origin"] = origin
    if cookie:
        headers["Cookie"] = cookie
    url = t.base + "/ws" + (f"?token={query_token}" if query_token else "")
    async with _session(ip) as s:
        try:
            ws = await s.ws_connect(
                url, headers=headers, protocols=protocols, autoping=True, timeout=aiohttp.ClientWSTimeout(ws_close=timeout)
            )
        except aiohttp.WSServerHandshakeError as exc:
            yield {"status": exc.status, "connected": False, "close_code": None, "user": None}, None
            return
        info: dict[str, Any] = {"status": 101, "connected": False, "close_code": None, "user": None}
        try:
            if first is not None:
                await ws.send_json(first)
            try:
                msg = await ws.receive(timeout=timeout)
            except TimeoutError:
                info["evidence"] = f"no welcome within {timeout:g} s"
                yield info, ws
                return
            if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data).get("type") == "welcome":
                info.update(connected=True, user=json.loads(msg.data).get("user"))
            else:
                info["close_code"] = int(msg.data) if msg.type == aiohttp.WSMsgType.CLOSE else ws.close_code
            yield info, ws
        finally:
            await ws.close()


async def connect_once(t: Target, credential: str | None, **kw: Any) -> dict[str, Any]:
    """Present a credential the option's way (or none) and report what the server did."""
    pres = presentation(t, credential) if credential is not None else {}
    pres.update(kw)
    async with open_ws(t, **pres) as (info, _):
        return info


def describe(info: dict[str, Any]) -> str:
    """What the server did with a connection attempt, in words (for evidence)."""
    if info["connected"]:
        return f"connected (101, welcome as {info['user']})"
    if info["status"] != 101:
        return f"HTTP {info['status']} at the upgrade"
    if info.get("evidence"):
        return f"upgraded, then {info['evidence']}"
    return f"upgraded, then closed with {info['close_code']}"


def _verdict(cases: list[dict[str, str]], applicable: bool = True) -> str:
    if not applicable or not cases:
        return "not-applicable"
    return "got-through" if any(c["outcome"] == "got-through" for c in cases) else "blocked"


def _summary(cases: list[dict[str, str]]) -> str:
    return "; ".join(f"{c['case']}: {c['evidence']}" for c in cases)


# -- the attacks --------------------------------------------------------------------------
async def cswsh(t: Target, victim: Login) -> AttackResult:
    """A page on a foreign origin opens a WebSocket to the server; the browser attaches whatever cookies it would."""
    sent = {
        n: a["value"] for n, a in victim.cookies.items() if browser_sends_cookie(a, cross_site=True) and a.get("path", "/") in ("/", "/ws")
    }
    cookie = "; ".join(f"{n}={v}" for n, v in sent.items()) or None
    # A first-message client page would send its token now; the attacker's page has none to send.
    first = {"type": "hello"} if t.option in TOKEN_OPTIONS else None
    async with open_ws(t, ip=SOURCE["cswsh"], origin=EVIL_ORIGIN, cookie=cookie, first=first) as (info, _):
        pass
    which = f"browser attaches {', '.join(sent) or 'no cookie'} cross-site"
    case = {
        "case": f"Origin {EVIL_ORIGIN}",
        "outcome": "got-through" if info["connected"] else "blocked",
        "evidence": f"{which}; {describe(info)}",
    }
    return AttackResult("cswsh", case["outcome"], case["evidence"], [case])


async def csrf(t: Target, victim: Login) -> AttackResult:
    """Cross-site form POSTs: login CSRF (the attacker's account planted in the victim's browser) and a refresh with the victim's cookie."""
    cases = []
    r = await login(t, "bob", SOURCE["csrf"], form=True, origin=EVIL_ORIGIN)
    planted = r.status < 300 and bool(r.cookies)
    cases.append(
        {
            "case": "form POST /login",
            "outcome": "got-through" if planted else "blocked",
            "evidence": f"HTTP {r.status}" + (f", Set-Cookie {', '.join(r.cookies)}" if r.cookies else ", no cookie set"),
        }
    )
    if t.option == "refresh":
        rc = victim.cookies.get(REFRESH_COOKIE_NAME, {})
        attach = bool(rc) and browser_sends_cookie(rc, cross_site=True)
        headers = {"Origin": EVIL_ORIGIN, "Content-Type": "application/x-www-form-urlencoded"}
        if attach:
            headers["Cookie"] = f"{REFRESH_COOKIE_NAME}={rc['value']}"
        async with _session(SOURCE["csrf"]) as s, s.post(t.base + "/refresh", data="x=1", headers=headers) as resp:
            status = resp.status
        cases.append(
            {
                "case": "form POST /refresh",
                "outcome": "got-through" if status < 300 else "blocked",
                "evidence": f"browser attaches {'the' if attach else 'no'} refresh cookie (SameSite={rc.get('samesite') or 'unset'}); HTTP {status}",
            }
        )
    return AttackResult("csrf", _verdict(cases), _summary(cases), cases)


async def leakage(t: Target) -> AttackResult:
    """Log in, connect, refresh and log out the way the option's client does; then look for credentials in the access log."""
    ip = SOURCE["leakage"]
    v = await login(t, "bob", ip)
    secrets = [*v.secrets(), t.password]
    await connect_once(t, v.credential, ip=ip)
    if t.option == "refresh":
        rc = v.cookies[REFRESH_COOKIE_NAME]["value"]
        async with _session(ip) as s, s.post(t.base + "/refresh", json={}, headers={"Cookie": f"{REFRESH_COOKIE_NAME}={rc}"}) as resp:
            data = await resp.json(content_type=None)
            secrets += [data.get("token", "")] if isinstance(data, dict) else []
            secrets += [c["value"] for c in parse_set_cookie(resp.headers.getall("Set-Cookie", [])).values()]
    await asyncio.sleep(0.2)  # the access log line is written after the response
    lines = t.access_log.read_text(encoding="utf-8", errors="replace").splitlines() if t.access_log.exists() else []
    hits = [ln for ln in lines if any(s and (s in ln or quote(s, safe="") in ln) for s in secrets)]
    if hits:
        return AttackResult(
            "leakage", "got-through", f"{len(hits)} access-log line(s) hold a credential, e.g. `{redact(hits[0], secrets)}`"
        )
    return AttackResult("leakage", "blocked", f"none of {len(lines)} access-log lines holds the token, cookie or password")


async def replay(t: Target, early: Login, early_at: float) -> AttackResult:
    """A captured credential reused after logout and after expiry; a captured message re-sent."""
    ip = SOURCE["replay"]
    cases = []
    v = await login(t, "alice", ip)
    cookie = "; ".join(f"{n}={a['value']}" for n, a in v.cookies.items())
    async with _session(ip) as s, s.post(t.base + "/logout", headers={"Cookie": cookie} if cookie else {}) as r:
        out_status = r.status
    info = await connect_once(t, v.credential, ip=ip)
    cases.append(
        {
            "case": "after logout",
            "outcome": "got-through" if info["connected"] else "blocked",
            "evidence": f"logout HTTP {out_status}; then {describe(info)}",
        }
    )
    # A captured message sent twice on a live connection: the second must not be applied.
    fresh = await login(t, "alice", ip)
    pres = presentation(t, fresh.credential)
    async with open_ws(t, ip=ip, **pres) as (info, ws):
        if info["connected"]:
            frame = {"type": "act", "seq": 1, "data": {"move": "token-7", "x": 3, "y": 4}}
            replies = []
            for _ in range(2):
                await ws.send_json(frame)
                replies.append(json.loads((await ws.receive(timeout=5)).data))
            applied = replies[1].get("type") == "ack"
            cases.append(
                {
                    "case": "message re-sent",
                    "outcome": "got-through" if applied else "blocked",
                    "evidence": f"first copy: {replies[0]['type']}; second copy: {replies[1]['type']}"
                    + (f" ({replies[1].get('reason')})" if not applied else ""),
                }
            )
    wait = early_at + t.ttl_s + 1.2 - time.time()
    if wait > 0:
        await asyncio.sleep(wait)
    info = await connect_once(t, early.credential, ip=ip)
    cases.append(
        {
            "case": "after expiry",
            "outcome": "got-through" if info["connected"] else "blocked",
            "evidence": f"{time.time() - early_at:.1f} s after issue, lifetime {t.ttl_s:g} s; {describe(info)}",
        }
    )
    return AttackResult("replay", _verdict(cases), _summary(cases), cases)


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()


def tampered_tokens(token: str, secret: str) -> dict[str, str]:
    """Forgeries of a captured JWT: alg none, a changed payload on the old signature, and tokens the same issuer's key signed wrongly."""
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = {**claims, "sub": "admin", "exp": int(time.time()) + 3600}
    sig = token.rsplit(".", 1)[1]
    now = int(time.time())

    def signed(**over: Any) -> str:
        return jwt.encode({**claims, "iat": now, "exp": now + 3600, **over}, secret, algorithm=ALGORITHMS[0])

    return {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(forged)}.",
        "payload changed, old signature": f"{_b64(header)}.{_b64(forged)}.{sig}",
        "wrong audience": signed(aud="tabletop-billing"),
        "wrong issuer": signed(iss="https://other-issuer.example"),
        "expired exp": signed(iat=now - 7200, exp=now - 3600),
    }


async def tampering(t: Target, victim: Login) -> AttackResult:
    ip = SOURCE["tampering"]
    cases = []
    if t.option == "sessions":
        sid = victim.credential
        forged = {"random session id": "A" * len(sid), "one character changed": sid[:-1] + ("A" if sid[-1] != "A" else "B")}
    else:
        forged = tampered_tokens(victim.credential, t.secret)
    for name, tok in forged.items():
        info = await connect_once(t, tok, ip=ip)
        cases.append({"case": name, "outcome": "got-through" if info["connected"] else "blocked", "evidence": describe(info)})
    return AttackResult("tampering", _verdict(cases), _summary(cases), cases)


async def flood(t: Target, attempts: int) -> AttackResult:
    """Many failed authentications from one client address: is it throttled?"""
    ip = SOURCE["flood"]
    seen = []
    for i in range(attempts):
        info = await connect_once(t, "not-a-valid-credential", ip=ip)
        seen.append(info)
        if info["status"] == 429 or info["close_code"] == 4029:
            return AttackResult(
                "flood", "blocked", f"attempts 1-{i} refused with {describe(seen[0])}; attempt {i + 1} throttled: {describe(info)}"
            )
    if any(s["connected"] for s in seen):
        return AttackResult("flood", "got-through", "a garbage credential was accepted")
    return AttackResult("flood", "got-through", f"all {attempts} failed attempts answered alike ({describe(seen[-1])}); never throttled")


XSS_PAYLOAD = """() => {
  const out = [];
  for (let i = 0; i < localStorage.length; i++) { const k = localStorage.key(i); out.push(['localStorage.' + k, String(localStorage.getItem(k))]); }
  out.push(['document.cookie', document.cookie]);
  for (const k of Object.keys(window)) { try { const v = window[k]; if (typeof v === 'string') out.push(['window.' + k, v]); } catch (e) {} }
  return out;
}"""


async def xss_token_theft(t: Target, browser: Any) -> tuple[AttackResult, dict[str, Any]]:
    """In Chromium, the option's page logs in and connects; then injected script reads what it can.

    The page is served on http://localhost: Chromium treats localhost as a
    secure context, so it keeps Secure cookies over plain http there. Returns
    the result and facts about the browser (cookies kept, connection made).
    """
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(f"http://localhost:{t.port}/app")
        async with page.expect_response(lambda r: r.url.endswith("/login")) as resp_info:
            connected = await page.evaluate("([u, p]) => window.tt.loginAndConnect(u, p)", ["alice", t.password])
        resp = await resp_info.value
        body = await resp.json()
        cookies = await context.cookies()
        creds = [c for c in [body.get("token"), *(c["value"] for c in cookies if c["name"] in (COOKIE_NAME, REFRESH_COOKIE_NAME))] if c]
        stolen = await page.evaluate(XSS_PAYLOAD)
    finally:
        await context.close()
    kept = {c["name"]: {"httpOnly": c["httpOnly"], "secure": c["secure"], "sameSite": c["sameSite"]} for c in cookies}
    facts: dict[str, Any] = {"page_connected": bool(connected.get("ok")), "close_code": connected.get("code"), "cookies_kept": kept}
    if t.option in COOKIE_OPTIONS or t.option == "refresh":
        facts["secure_cookie_kept"] = {
            "localhost": any(c["secure"] for c in cookies),
            "127.0.0.1": await _secure_cookie_kept(t, browser, "127.0.0.1"),
        }
    found = sorted({where for where, value in stolen if any(c in value for c in creds)})
    looked = f"read localStorage ({sum(1 for w, _ in stolen if w.startswith('localStorage'))} keys), document.cookie, {sum(1 for w, _ in stolen if w.startswith('window.'))} string globals"
    if not creds:
        return AttackResult("xss", "not-applicable", f"the page held no credential ({looked})"), facts
    if found:
        return AttackResult("xss", "got-through", f"injected script {looked}: credential found in {', '.join(found)}"), facts
    return AttackResult(
        "xss", "blocked", f"injected script {looked}: no credential found; page connected: {'yes' if connected.get('ok') else 'no'}"
    ), facts


async def _secure_cookie_kept(t: Target, browser: Any, host: str) -> bool:
    """Whether Chromium keeps the server's Secure cookie when the page is served over plain http from ``host``."""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(f"http://{host}:{t.port}/app")
        await page.evaluate("([u, p]) => window.tt.loginAndConnect(u, p)", ["alice", t.password])
        return any(c["secure"] for c in await context.cookies())
    finally:
        await context.close()


async def run_battery(t: Target, browser: Any | None = None, flood_attempts: int = 30) -> tuple[list[AttackResult], dict[str, Any]]:
    """Every attack against one running server, in an order where none disturbs the next; facts about the run."""
    early = await login(t, "alice")
    early_at = time.time()
    victim = await login(t, "alice")
    facts: dict[str, Any] = {
        "login_status": victim.status,
        "set_cookie": {n: {k: v for k, v in a.items() if k != "value"} for n, a in victim.cookies.items()},
    }
    if victim.token:
        claims = jwt.decode(victim.token, options={"verify_signature": False})
        facts["token_lifetime_s"] = claims["exp"] - claims["iat"]
        facts["token_claims"] = sorted(claims)
    results = [await cswsh(t, victim), await csrf(t, victim)]
    if browser is not None:
        res, facts["browser"] = await xss_token_theft(t, browser)
        results.append(res)
    results += [await leakage(t), await tampering(t, victim), await replay(t, early, early_at), await flood(t, flood_attempts)]
    return results, facts
