"""Real local webhook receivers: aiohttp servers that record every request they get.

A receiver answers from a script (a list of statuses, or a function), so a test can say
"500, then 500, then 200" and then read exactly what arrived, headers and body as sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

Reply = Callable[["Received"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """Answers each request with the next scripted status (the last one repeats)."""

    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    reply: Reply | None = None
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        got = Received(
            request.path,
            dict(request.headers),
            await request.read(),
            asyncio.get_running_loop().time(),
        )
        self.received.append(got)
        self._arrived.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.reply is not None:
            return await self.reply(got)
        status = self.statuses[min(len(self.received) - 1, len(self.statuses) - 1)]
        return web.Response(status=status, text=f"status {status}", headers=self.headers)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least `count` requests arrived; fail the test if they do not."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.received

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.received]


async def start(receiver: Receiver) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    return runner
