"""The long-polling feed client: a joining poll, then one held ``GET /poll`` after another from the cursor."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import aiohttp
import orjson

from harness.feed.client import FeedClient, http_error
from harness.load.clients import ConnectError

__all__ = ["LongPollClient"]


class LongPollClient(FeedClient):
    """One activity-feed "connection" over long polling: polls in a loop, broadcasts POSTed.

    The join is the poll without a cursor (answered at once with ``joined``
    and the room's HEAD); then each poll asks for what came after the
    cursor, held up to ``hold_s`` by the server, and the next one goes out
    as soon as the answer is in. A resumed client makes the joining poll
    (the engine waits for ``joined``), then polls from its own cursor, not
    the HEAD. The cursor is the server's (``E-N`` text, or a plain number from
    a server without epochs), sent back as it came (``last_id``). aiohttp
    retries a GET once when a kept-alive connection turns out closed; for a
    poll that is harmless (the cursor did not move).
    """

    transport = "longpoll"
    #: How long the server may hold a poll (it caps it); a subclass registered under another name may change it.
    hold_s: ClassVar[float] = 20.0
    #: How much longer than ``hold_s`` an answer may take before the poll counts as failed.
    slack_s: ClassVar[float] = 10.0

    #: Polls answered (the joining one included).
    polls = 0

    async def _get(self, params: dict[str, str]) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.hold_s + self.slack_s)
        async with self.session.get(f"{self.base}/poll", params=params, timeout=timeout) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise ConnectError(http_error("poll", resp.status, body))
        self.polls += 1
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ConnectError("poll: the answer is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("events", []), list):
            raise ConnectError("poll: the answer is not {'events': [...], 'cursor': N}")
        return data

    def _deliver_answer(self, data: dict[str, Any]) -> Any:
        """Deliver a poll's message (``joined``, ``reset``) and events; return its cursor."""
        if "op" in data:
            self.deliver({k: v for k, v in data.items() if k not in ("events", "cursor")})
        for event in data.get("events") or ():
            self.deliver(event if isinstance(event, dict) else {"op": "error", "error": "a poll event is not a JSON object"})
        if "cursor" not in data:
            raise ConnectError("poll: the answer has no cursor")
        self.last_id = str(data["cursor"])
        return data["cursor"]

    async def receive(self, room: str, after: Any, opened: asyncio.Future[None] | None) -> str:
        head = self._deliver_answer(await self._get({"room": room}))
        if opened is not None and not opened.done():
            opened.set_result(None)
        cursor = head if after is None else after
        hold = f"{self.hold_s:g}"
        while True:
            cursor = self._deliver_answer(await self._get({"room": room, "cursor": str(cursor), "hold_s": hold}))
