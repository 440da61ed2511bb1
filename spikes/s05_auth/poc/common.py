"""What the POC server and the four options share: a live connection, the page's connect helper, the ``Auth`` protocol.

Its own module so the options and the server import it, not each other (no import cycle).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from spikes.s05_auth.core import Principal

__all__ = ["Auth", "Conn", "PAGE_CONNECT"]


@dataclass(eq=False)
class Conn:
    ws: web.WebSocketResponse
    principal: Principal
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


class Auth(Protocol):
    """One option's authentication, as the server calls it (``renew``, ``on_startup`` and ``on_cleanup`` are optional)."""

    first_message: bool
    enforce_exp: bool

    async def login(self, request: web.Request, user: str) -> web.StreamResponse: ...

    async def logout(self, request: web.Request) -> web.StreamResponse: ...

    async def refresh(self, request: web.Request) -> web.StreamResponse: ...

    def upgrade_credential(self, request: web.Request) -> tuple[str | None, bool]: ...

    async def principal(self, credential: str) -> Principal: ...

    def page_js(self) -> str: ...


# Shared by the page clients: open the WebSocket and resolve with the welcome (or the refusal).
PAGE_CONNECT = """
function open(url, protocols, first) {
  return new Promise((resolve) => {
    const ws = protocols ? new WebSocket(url, protocols) : new WebSocket(url);
    ws.onopen = () => { if (first) ws.send(JSON.stringify(first)); };
    ws.onmessage = (e) => { const m = JSON.parse(e.data); if (m.type === 'welcome') resolve({ ok: true, user: m.user }); };
    ws.onclose = (e) => resolve({ ok: false, code: e.code });
  });
}
const wsBase = `ws://${location.host}/ws`;
async function post(path, body) {
  const r = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body || {}), credentials: 'same-origin' });
  return { status: r.status, body: await r.json().catch(() => ({})) };
}
"""
