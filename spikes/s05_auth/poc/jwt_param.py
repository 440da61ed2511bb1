"""Option 1: a JWT in the connection parameters.

Login returns a signed token in the response body; the client keeps it in
memory and presents it in the ``Sec-WebSocket-Protocol`` header
(``[tabletop.v1, <token>]``) or as the first message. The query string
(``/ws?token=...``) is accepted only by the weak variant: URLs end up in
access logs, proxies and browser history. Logout is stateless: the server
keeps nothing, so a copied token stays valid until it expires.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from spikes.s05_auth.core import SUBPROTOCOL, Principal, new_sid
from spikes.s05_auth.poc.common import PAGE_CONNECT

__all__ = ["JwtParamAuth", "subprotocol_token"]


def subprotocol_token(header: str | None) -> str | None:
    """The token offered after ``tabletop.v1`` in a Sec-WebSocket-Protocol header, if any."""
    if not header:
        return None
    offered = [p.strip() for p in header.split(",")]
    if len(offered) == 2 and offered[0] == SUBPROTOCOL and offered[1]:
        return offered[1]
    return None


class JwtParamAuth:
    first_message = True
    enforce_exp = False

    def __init__(self, server: Any):
        self.server = server

    async def login(self, request: web.Request, user: str) -> web.StreamResponse:
        token = self.server.issuer.issue(user, new_sid())
        return web.json_response({"token": token, "expires_in": self.server.cfg.ttl_s})

    async def logout(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)  # stateless: nothing to forget

    async def refresh(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "no-refresh"}, status=404)

    def upgrade_credential(self, request: web.Request) -> tuple[str | None, bool]:
        token = subprotocol_token(request.headers.get("Sec-WebSocket-Protocol"))
        if token is not None:
            return token, True
        if self.server.cfg.weak and "token" in request.query:
            return request.query["token"], False
        return None, False

    async def principal(self, credential: str) -> Principal:
        claims = self.server.issuer.verify(credential)
        return Principal(claims["sub"], claims["sid"], claims.get("exp"), claims)

    def page_js(self) -> str:
        keep = "localStorage.setItem('tt_token', token); window.ttToken = token;" if self.server.cfg.weak else ""
        connect = "open(`${wsBase}?token=${token}`)" if self.server.cfg.weak else f"open(wsBase, ['{SUBPROTOCOL}', token])"
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
