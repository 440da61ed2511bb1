"""Option 2: a session cookie set by the login endpoint, checked at the upgrade with the Origin header.

The cookie holds a signed JWT (stateless), flagged HttpOnly, Secure and
SameSite=Strict; the upgrade is refused unless Origin is on the allow-list,
which is what stops cross-site WebSocket hijacking (browsers attach cookies to
WebSocket handshakes, and CORS does not apply to them). Logout clears the
browser's cookie; the server keeps no state, so a copied cookie value stays
valid until it expires. The weak variant sets SameSite=None without HttpOnly
and checks no Origin.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from spikes.s05_auth.core import COOKIE_NAME, Principal, new_sid, recommended_cookie, weak_cookie
from spikes.s05_auth.poc.common import PAGE_CONNECT

__all__ = ["CookieAuth"]


class CookieAuth:
    first_message = False
    enforce_exp = False

    def __init__(self, server: Any):
        self.server = server
        self.cookie = weak_cookie() if server.cfg.weak else recommended_cookie()

    async def login(self, request: web.Request, user: str) -> web.StreamResponse:
        token = self.server.issuer.issue(user, new_sid(), use="session")
        resp = web.json_response({"ok": True, "user": user})
        resp.headers.add("Set-Cookie", self.cookie.header(token, int(self.server.cfg.ttl_s)))
        return resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        resp = web.Response(status=204)
        resp.headers.add("Set-Cookie", self.cookie.header("", 0))
        return resp

    async def refresh(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "no-refresh"}, status=404)

    def upgrade_credential(self, request: web.Request) -> tuple[str | None, bool]:
        return request.cookies.get(COOKIE_NAME) or None, False

    async def principal(self, credential: str) -> Principal:
        claims = self.server.issuer.verify(credential, use="session")
        return Principal(claims["sub"], claims["sid"], claims.get("exp"), claims)

    def page_js(self) -> str:
        return (
            PAGE_CONNECT
            + """
async function loginAndConnect(user, password) {
  await post('/login', { user, password });
  return await open(wsBase);
}
"""
        )
