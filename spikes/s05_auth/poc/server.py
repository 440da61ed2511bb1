"""The shared aiohttp server of Spike 5's POCs: login/logout/refresh over HTTP and a WebSocket, on one port.

Each option plugs an ``Auth`` object in (``jwt_param.py``, ``cookie.py``,
``refresh.py``, ``sessions.py``) that decides how a credential is issued,
presented and checked; this module does the I/O and the checks every option
shares: the Origin allow-list, the failed-authentication limiter, message
sequence numbers against replay, and aiohttp's access log (default format) in
a file the token-leakage attack reads.

Run: ``python -m spikes.s05_auth.poc.server --option cookie --port 8080``.
Environment: ``S05_JWT_SECRET`` (required; never logged), ``S05_PASSWORD``,
``S05_TTL_S`` (token or session lifetime), ``S05_WEAK=1`` (the deliberately
weak variant), ``S05_REDIS_URL`` (sessions), ``S05_ACCESS_LOG`` (file).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from spikes.s05_auth.core import (
    AUTH_TIMEOUT_S,
    SUBPROTOCOL,
    AuthError,
    FailureLimiter,
    Principal,
    ReplayGuard,
    TokenIssuer,
    allowed_origins,
    origin_allowed,
)
from spikes.s05_auth.poc.common import Auth, Conn

__all__ = ["Config", "Conn", "AuthServer", "main"]  # Conn re-exported from common

USERS = ("alice", "bob")


@dataclass
class Config:
    option: str
    port: int
    secret: str
    password: str
    ttl_s: float
    weak: bool
    redis_url: str | None = None

    @property
    def origins(self) -> tuple[str, ...]:
        return allowed_origins(self.port)


class AuthServer:
    """The HTTP and WebSocket endpoints around one option's ``Auth``."""

    def __init__(self, cfg: Config, auth_factory: Callable[[AuthServer], Auth]):
        self.cfg = cfg
        self.issuer = TokenIssuer(cfg.secret, cfg.ttl_s, weak=cfg.weak)
        self.limiter = FailureLimiter(enabled=not cfg.weak)
        self.replay = ReplayGuard(enabled=not cfg.weak)
        self.conns: set[Conn] = set()
        self.auth: Any = auth_factory(self)  # an Auth; renew, on_startup and on_cleanup are looked up as optional

    # -- shared checks -----------------------------------------------------------
    def origin_ok(self, request: web.Request) -> bool:
        # Browsers always send Origin on WebSocket upgrades and POSTs; a request without one is not from a page.
        return self.cfg.weak or origin_allowed(request.headers.get("Origin"), self.cfg.origins, missing_ok=True)

    def refuse(self, request: web.Request, status: int, reason: str) -> web.Response:
        if status == 401:
            self.limiter.fail(request.remote or "?")
        return web.json_response({"error": reason}, status=status)

    async def close_sid(self, sid: str, code: int, reason: str) -> int:
        """Close every live connection of one session; return how many."""
        doomed = [c for c in self.conns if c.principal.sid == sid]
        for c in doomed:
            await c.ws.close(code=code, message=reason.encode())
        return len(doomed)

    # -- HTTP --------------------------------------------------------------------
    async def login(self, request: web.Request) -> web.StreamResponse:
        if not self.origin_ok(request):
            return self.refuse(request, 403, "origin")
        if self.limiter.blocked(request.remote or "?"):
            return self.refuse(request, 429, "rate-limited")
        if request.content_type == "application/json":
            data = await request.json()
        elif self.cfg.weak:
            data = dict(await request.post())
        else:
            # A cross-site HTML form cannot send JSON without a CORS preflight, which this server never grants.
            return self.refuse(request, 415, "json-only")
        user, password = str(data.get("user", "")), str(data.get("password", ""))
        if user not in USERS or not hmac.compare_digest(password.encode(), self.cfg.password.encode()):
            return self.refuse(request, 401, "bad-credentials")
        return await self.auth.login(request, user)

    async def logout(self, request: web.Request) -> web.StreamResponse:
        if not self.origin_ok(request):
            return self.refuse(request, 403, "origin")
        return await self.auth.logout(request)

    async def refresh(self, request: web.Request) -> web.StreamResponse:
        if not self.origin_ok(request):
            return self.refuse(request, 403, "origin")
        return await self.auth.refresh(request)

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE.replace("__CLIENT__", self.auth.page_js()), content_type="text/html")

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "option": self.cfg.option, "weak": self.cfg.weak})

    # -- WebSocket ---------------------------------------------------------------
    async def ws(self, request: web.Request) -> web.StreamResponse:
        ip = request.remote or "?"
        if self.limiter.blocked(ip):
            return self.refuse(request, 429, "rate-limited")
        if not self.origin_ok(request):
            return self.refuse(request, 403, "origin")
        principal: Principal | None = None
        credential, subprotocol = self.auth.upgrade_credential(request)
        if credential is not None:
            try:
                principal = await self.auth.principal(credential)
            except AuthError as exc:
                return self.refuse(request, 401, exc.reason)
        elif not self.auth.first_message:
            return self.refuse(request, 401, "no-credential")
        ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,) if subprotocol else (), heartbeat=None)
        await ws.prepare(request)
        if principal is None:
            principal = await self._first_message_auth(ws, ip)
            if principal is None:
                return ws
        conn = Conn(ws, principal)
        self.conns.add(conn)
        try:
            if self.auth.enforce_exp:
                conn.tasks.append(asyncio.create_task(self._expire(conn)))
            await ws.send_json({"type": "welcome", "user": principal.user, "exp": principal.exp})
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await ws.close(code=1003, message=b"binary frames are not accepted")
                    break
                if msg.type != WSMsgType.TEXT:
                    continue
                await self._message(conn, msg.data)
        finally:
            self.conns.discard(conn)
            for t in conn.tasks:
                t.cancel()
        return ws

    async def _first_message_auth(self, ws: web.WebSocketResponse, ip: str) -> Principal | None:
        try:
            msg = await ws.receive(timeout=AUTH_TIMEOUT_S)
            data = json.loads(msg.data) if msg.type == WSMsgType.TEXT else {}
            if not isinstance(data, dict) or data.get("type") != "auth" or not isinstance(data.get("token"), str):
                raise AuthError("no-credential")
            return await self.auth.principal(data["token"])
        except (TimeoutError, AuthError, ValueError, RecursionError) as exc:
            self.limiter.fail(ip)
            code = 4029 if self.limiter.blocked(ip) else 4000
            await ws.close(code=code, message=getattr(exc, "reason", "timeout").encode())
            return None

    async def _expire(self, conn: Conn) -> None:
        # Sleep until the current access token expires; a renewal moves principal.exp and the loop sleeps again.
        while True:
            left = (conn.principal.exp or 0) - time.time()
            if left <= 0:
                await conn.ws.close(code=4001, message=b"token expired")
                return
            await asyncio.sleep(left + 0.01)

    async def _message(self, conn: Conn, raw: str) -> None:
        # Every frame gets an answer: a hostile or broken one an error message, never a traceback or silence.
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            await conn.ws.send_json({"type": "error", "reason": "not-json"})
            return
        if not isinstance(data, dict):
            await conn.ws.send_json({"type": "error", "reason": "not-an-object"})
            return
        kind = data.get("type")
        if kind == "act":
            seq = data.get("seq")
            if not isinstance(seq, int) or isinstance(seq, bool):
                await conn.ws.send_json({"type": "error", "reason": "bad-seq"})
            elif self.replay.accept(conn.principal.sid, seq):
                await conn.ws.send_json({"type": "ack", "seq": seq})
            else:
                await conn.ws.send_json({"type": "reject", "seq": seq, "reason": "replay"})
        elif kind == "renew" and self.auth.enforce_exp:
            await self.auth.renew(conn, str(data.get("token", "")))
        else:
            await conn.ws.send_json({"type": "error", "reason": "unknown-type"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_post("/refresh", self.refresh)
        app.router.add_get("/ws", self.ws)
        app.router.add_get("/app", self.page)
        app.router.add_get("/health", self.health)
        start: Callable[[web.Application], Awaitable[None]] | None = getattr(self.auth, "on_startup", None)
        if start:
            app.on_startup.append(start)
        stop = getattr(self.auth, "on_cleanup", None)
        if stop:
            app.on_cleanup.append(stop)
        return app


# The page Chromium loads for the XSS attack: the option's client logs in and connects; `window.tt` drives it.
PAGE = """<!doctype html>
<meta charset="utf-8"><title>tabletop</title>
<script type="module">
__CLIENT__
window.tt = { loginAndConnect };
</script>
"""


def _auth_factory(option: str) -> Callable[[AuthServer], Auth]:
    if option == "jwt-param":
        from spikes.s05_auth.poc.jwt_param import JwtParamAuth as cls
    elif option == "cookie":
        from spikes.s05_auth.poc.cookie import CookieAuth as cls
    elif option == "refresh":
        from spikes.s05_auth.poc.refresh import RefreshAuth as cls
    elif option == "sessions":
        from spikes.s05_auth.poc.sessions import SessionAuth as cls
    else:
        raise SystemExit(f"unknown option {option!r}: choose jwt-param, cookie, refresh or sessions")
    return cls


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--option", required=True)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    secret = os.environ.get("S05_JWT_SECRET")
    if not secret:
        raise SystemExit("S05_JWT_SECRET is not set: give the server a random secret through the environment")
    cfg = Config(
        option=args.option,
        port=args.port,
        secret=secret,
        password=os.environ.get("S05_PASSWORD", "correct horse"),
        ttl_s=float(os.environ.get("S05_TTL_S", "60")),
        weak=os.environ.get("S05_WEAK") == "1",
        redis_url=os.environ.get("S05_REDIS_URL"),
    )
    factory = _auth_factory(args.option)
    access = logging.getLogger("aiohttp.access")
    access.setLevel(logging.INFO)
    log_path = os.environ.get("S05_ACCESS_LOG")
    handler: logging.Handler = logging.FileHandler(log_path) if log_path else logging.StreamHandler(sys.stdout)
    access.addHandler(handler)
    server = AuthServer(cfg, factory)
    print(f"s05 {cfg.option} ({'weak' if cfg.weak else 'recommended'}) listening on 127.0.0.1:{cfg.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(server.app(), host="127.0.0.1", port=cfg.port, access_log=access, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
