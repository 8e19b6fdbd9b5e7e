"""A worker's state built by hand around a given HTTP session, to run the real deliver path
(`workers.delivery.deliver_batch`) with a resolver the test controls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp

from gateway import db
from gateway.crypto import Cipher
from gateway.queue import arq_pool
from gateway.ratelimit import SlidingWindow
from gateway.settings import Settings
from workers.state import RATE_WINDOW, WorkerState


@contextlib.asynccontextmanager
async def worker_state(
    settings: Settings, http: aiohttp.ClientSession
) -> AsyncIterator[WorkerState]:
    assert settings.database_url and settings.redis_url
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=4)
    redis = arq_pool(settings.redis_url)
    try:
        yield WorkerState(
            settings=settings,
            pool=pool,
            redis=redis,
            http=http,
            slots=asyncio.Semaphore(10),
            endpoint_rate=SlidingWindow(redis, window=RATE_WINDOW, prefix="leadgate:rate:"),
            cipher=Cipher.from_settings(settings),
        )
    finally:
        await http.close()
        await pool.close()
        await redis.aclose(close_connection_pool=True)
