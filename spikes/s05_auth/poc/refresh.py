"""Option 3: short-lived access tokens renewed over the open connection.

Login returns an access token (lifetime ``S05_TTL_S``, 60 s in the full
profile) in the body and sets a refresh token cookie (HttpOnly, Secure,
SameSite=Strict). The client authenticates the WebSocket with
its first message, fetches a new access token from ``POST /refresh`` before the
old one expires and sends it over the connection (``{"type": "renew"}``); the
server closes a connection whose token expired unrenewed with 4001. Refresh
tokens rotate: each is good once, and presenting a used one revokes its whole
session (reuse detection). Logout revokes the session's refresh tokens; access
tokens already issued live until they expire. The revocation list is in this
process's memory.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from spikes.s05_auth.core import REFRESH_COOKIE_NAME, REFRESH_TTL_S, AuthError, Principal, new_sid, recommended_cookie, weak_cookie
from spikes.s05_auth.poc.common import PAGE_CONNECT, Conn

__all__ = ["RefreshAuth"]


class RefreshAuth:
    first_message = True
    enforce_exp = True

    def __init__(self, server: Any):
        self.server = server
        weak = server.cfg.weak
        self.cookie = weak_cookie(REFRESH_COOKIE_NAME, "/") if weak else recommended_cookie(REFRESH_COOKIE_NAME)
        self.used: set[str] = set()  # refresh token ids already exchanged
        self.revoked: set[str] = set()  # session ids logged out, or caught reusing a refresh token

    def _issue(self, user: str, sid: str) -> web.Response:
        issuer = self.server.issuer
        access = issuer.issue(user, sid, use="access")
        refresh = issuer.issue(user, sid, use="refresh", ttl_s=REFRESH_TTL_S)
        resp = web.json_response({"token": access, "expires_in": self.server.cfg.ttl_s})
        resp.headers.add("Set-Cookie", self.cookie.header(refresh, REFRESH_TTL_S))
        return resp

    async def login(self, request: web.Request, user: str) -> web.StreamResponse:
        return self._issue(user, new_sid())

    async def refresh(self, request: web.Request) -> web.StreamResponse:
        token = request.cookies.get(REFRESH_COOKIE_NAME)
        if not token:
            return self.server.refuse(request, 401, "no-credential")
        try:
            claims = self.server.issuer.verify(token, use="refresh")
        except AuthError as exc:
            return self.server.refuse(request, 401, exc.reason)
        sid = claims["sid"]
        if sid in self.revoked:
            return self.server.refuse(request, 401, "revoked")
        if not self.server.cfg.weak:
            if claims["jti"] in self.used:
                self.revoked.add(sid)  # a refresh token used twice was copied: end the session
                await self.server.close_sid(sid, 4003, "refresh token reuse")
                return self.server.refuse(request, 401, "reuse")
            self.used.add(claims["jti"])
        return self._issue(claims["sub"], sid)

    async def logout(self, request: web.Request) -> web.StreamResponse:
        token = request.cookies.get(REFRESH_COOKIE_NAME)
        if token and not self.server.cfg.weak:
            try:
                self.revoked.add(self.server.issuer.verify(token, use="refresh")["sid"])
            except AuthError:
                pass
        resp = web.Response(status=204)
        resp.headers.add("Set-Cookie", self.cookie.header("", 0))
        return resp

    def upgrade_credential(self, request: web.Request) -> tuple[str | None, bool]:
        if self.server.cfg.weak and "token" in request.query:
            return request.query["token"], False
        return None, False

    async def principal(self, credential: str) -> Principal:
        claims = self.server.issuer.verify(credential, use="access")
        if claims["sid"] in self.revoked:
            raise AuthError("revoked")
        return Principal(claims["sub"], claims["sid"], claims.get("exp"), claims)

    async def renew(self, conn: Conn, token: str) -> None:
        try:
            p = await self.principal(token)
        except AuthError as exc:
            await conn.ws.close(code=4001 if exc.reason == "expired" else 4003, message=exc.reason.encode())
            return
        if p.sid != conn.principal.sid or p.user != conn.principal.user:
            await conn.ws.close(code=4003, message=b"renewal for another session")
            return
        conn.principal = p
        await conn.ws.send_json({"type": "renewed", "exp": p.exp})

    def page_js(self) -> str:
        weak = self.server.cfg.weak
        keep = "localStorage.setItem('tt_token', token); window.ttToken = token;" if weak else ""
        connect = "open(`${wsBase}?token=${token}`)" if weak else "open(wsBase, null, { type: 'auth', token })"
        return (
            PAGE_CONNECT
            + f"""
let token = null;  // module scope: not a property of window
async function loginAndConnect(user, password) {{
  const r = await post('/login', {{ user, password }});
  token = r.body.token; {keep}
  return await {connect};
}}
"""
        )
