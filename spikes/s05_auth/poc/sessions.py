"""Option 4: server-side sessions in Redis, several per user, revocable while connected.

Login creates ``s05:session:<sid>`` (a hash with the user, expiring after
``S05_TTL_S``) and adds the sid to ``s05:user:<user>``; the browser holds only
the opaque sid in an HttpOnly, Secure, SameSite=Strict cookie, checked at the
upgrade with the Origin header. Logout deletes the session and publishes its
sid on ``s05:revoke``: every server instance subscribed closes that session's
live connections with 4003, so revocation works across a cluster. The weak
variant's logout only clears the browser's cookie.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from spikes.s05_auth.core import COOKIE_NAME, AuthError, Principal, new_sid, recommended_cookie, weak_cookie
from spikes.s05_auth.poc.common import PAGE_CONNECT

__all__ = ["SessionAuth", "REVOKE_CHANNEL"]

REVOKE_CHANNEL = "s05:revoke"


class SessionAuth:
    first_message = False
    enforce_exp = False

    def __init__(self, server: Any):
        self.server = server
        if not server.cfg.redis_url:
            raise SystemExit("the sessions option needs S05_REDIS_URL")
        self.cookie = weak_cookie() if server.cfg.weak else recommended_cookie()
        self.redis = aioredis.from_url(server.cfg.redis_url, decode_responses=True)
        self._listener: asyncio.Task[None] | None = None

    async def on_startup(self, app: web.Application) -> None:
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(REVOKE_CHANNEL)
        self._listener = asyncio.create_task(self._listen(pubsub))

    async def on_cleanup(self, app: web.Application) -> None:
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self.redis.aclose()

    async def _listen(self, pubsub: Any) -> None:
        async for msg in pubsub.listen():
            if msg.get("type") == "message":
                await self.server.close_sid(msg["data"], 4003, "session revoked")

    async def login(self, request: web.Request, user: str) -> web.StreamResponse:
        sid = new_sid()
        ttl = int(self.server.cfg.ttl_s)
        async with self.redis.pipeline(transaction=True) as p:
            p.hset(f"s05:session:{sid}", mapping={"user": user})
            p.expire(f"s05:session:{sid}", ttl)
            p.sadd(f"s05:user:{user}", sid)
            await p.execute()
        resp = web.json_response({"ok": True, "user": user})
        resp.headers.add("Set-Cookie", self.cookie.header(sid, ttl))
        return resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        sid = request.cookies.get(COOKIE_NAME)
        if sid and not self.server.cfg.weak:
            user = await self.redis.hget(f"s05:session:{sid}", "user")
            async with self.redis.pipeline(transaction=True) as p:
                p.delete(f"s05:session:{sid}")
                if user:
                    p.srem(f"s05:user:{user}", sid)
                p.publish(REVOKE_CHANNEL, sid)
                await p.execute()
        resp = web.Response(status=204)
        resp.headers.add("Set-Cookie", self.cookie.header("", 0))
        return resp

    async def refresh(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "no-refresh"}, status=404)

    def upgrade_credential(self, request: web.Request) -> tuple[str | None, bool]:
        return request.cookies.get(COOKIE_NAME) or None, False

    async def principal(self, credential: str) -> Principal:
        user = await self.redis.hget(f"s05:session:{credential}", "user")
        if user is None:
            raise AuthError("unknown-session")
        return Principal(user, credential, None, {})

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
