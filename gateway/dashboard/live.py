"""The live view's feed: delivery outcomes as server-sent events, the signed-in tenant's alone.

Workers publish each attempt's outcome on the Redis channel `leadgate tail` follows
(`OUTCOMES_CHANNEL`), each message naming its tenant. One subscriber per gateway process (the
`LiveHub`, started with the first viewer) reads that channel and hands each message to the
viewers of its tenant only, so a hundred open dashboards cost one Redis connection, and no
viewer ever receives another tenant's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
import structlog
from aiohttp import web
from arq.connections import ArqRedis

from gateway.appkeys import PRINCIPAL, REDIS
from gateway.constants import (
    LIVE_KEEPALIVE_SECONDS,
    LIVE_QUEUE_SIZE,
    LIVE_RECONNECT_SECONDS,
    OUTCOMES_CHANNEL,
)
from gateway.middleware import requires

log = structlog.get_logger("leadgate.dashboard")

# What a viewer's queue yields: one outcome as JSON bytes, or None when the gateway stops.
Item = bytes | None


class LiveHub:
    """Fans the outcomes channel out to this process's viewers, by tenant."""

    def __init__(self, redis: ArqRedis) -> None:
        self._redis = redis
        self._viewers: dict[asyncio.Queue[Item], str] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.closed = False

    async def join(self, tenant_id: str) -> asyncio.Queue[Item]:
        """A queue of the tenant's outcomes from now on; the subscriber is live on return."""
        queue: asyncio.Queue[Item] = asyncio.Queue(LIVE_QUEUE_SIZE)
        self._viewers[queue] = tenant_id
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="leadgate-live-hub")
        with contextlib.suppress(TimeoutError):
            # Returns at once when subscribed; never hangs a viewer if Redis is away.
            await asyncio.wait_for(self._subscribed.wait(), LIVE_RECONNECT_SECONDS)
        return queue

    def leave(self, queue: asyncio.Queue[Item]) -> None:
        self._viewers.pop(queue, None)

    def dispatch(self, data: bytes) -> None:
        try:
            tenant_id = orjson.loads(data).get("tenant_id")
        except (orjson.JSONDecodeError, AttributeError):
            return
        for queue, viewer_tenant in list(self._viewers.items()):
            if viewer_tenant != tenant_id:
                continue
            if queue.full():  # a viewer this far behind loses the oldest outcome, not the newest
                queue.get_nowait()
            queue.put_nowait(data)

    async def _run(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(OUTCOMES_CHANNEL)
                    self._subscribed.set()
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self.dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._subscribed.clear()
                log.warning("live_view_unsubscribed", error=type(e).__name__)
                await asyncio.sleep(LIVE_RECONNECT_SECONDS)

    async def close(self) -> None:
        """End every viewer's stream (so shutdown need not wait for them), then unsubscribe."""
        self.closed = True
        for queue in list(self._viewers):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


HUB = web.AppKey("live_hub", LiveHub)


async def hub_context(app: web.Application) -> AsyncIterator[None]:
    app[HUB] = LiveHub(app[REDIS])
    yield
    await app[HUB].close()


async def _close_viewers(app: web.Application) -> None:
    await app[HUB].close()


def install(app: web.Application) -> None:
    app.cleanup_ctx.append(hub_context)
    # on_shutdown runs before aiohttp waits for open requests: streams end instead of holding
    # a graceful shutdown for its whole timeout.
    app.on_shutdown.append(_close_viewers)


@requires("read")
async def outcomes_stream(request: web.Request) -> web.StreamResponse:
    """`text/event-stream` of the tenant's delivery outcomes (`event: outcome`, JSON data)."""
    hub = request.app[HUB]
    tenant_id = request[PRINCIPAL].tenant_id
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx would otherwise hold events back
        }
    )
    queue = await hub.join(tenant_id)
    try:
        await response.prepare(request)
        await response.write(b"retry: 3000\n: connected\n\n")
        while not hub.closed:
            try:
                item = await asyncio.wait_for(queue.get(), LIVE_KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if item is None:
                break
            await response.write(b"event: outcome\ndata: " + item + b"\n\n")
    except ConnectionResetError:
        pass  # the viewer left
    finally:
        hub.leave(queue)
    return response
