"""The Redis side of delivery: an arq pool, and the coalesced "deliveries are due" wake-up.

Redis carries wake-ups only; Postgres holds every delivery's state, and a worker finds what is
due there by itself within LEADGATE_RELAY_INTERVAL. A wake-up is one arq job under one fixed
job id, so at most one waits in Redis at any time whoever sent it (arq refuses a second job with
the same id while the first exists); a gateway sends at most one per committed batch, and never
more than one at a time. A wake-up that cannot be sent (Redis down) is dropped with a warning.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import structlog
from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from gateway.constants import QUEUE_NAME, WAKE_JOB, WAKE_JOB_ID

# Redis only carries signals; waiting longer than this on it would stall callers for nothing.
REDIS_TIMEOUT = 2.0
# While Redis is failing, one warning per this many seconds says so, not one per batch.
WARN_EVERY = 10.0

log = structlog.get_logger("leadgate.wake")


def serialize(job: dict[str, Any]) -> bytes:
    return orjson.dumps(job)


def deserialize(raw: bytes) -> dict[str, Any]:
    job: dict[str, Any] = orjson.loads(raw)
    return job


def arq_pool(redis_url: str, *, timeout: float = REDIS_TIMEOUT) -> ArqRedis:
    """An arq pool that connects lazily, so its owner starts (and keeps going) without Redis."""
    pool = ConnectionPool.from_url(
        redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
    )
    return ArqRedis(
        pool,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=QUEUE_NAME,
    )


async def send_wake(redis: ArqRedis) -> bool:
    """Enqueue the wake-up job (a no-op when one is already waiting); False if Redis failed."""
    try:
        await redis.enqueue_job(WAKE_JOB, _job_id=WAKE_JOB_ID)
    except (RedisError, OSError):
        return False
    return True


class Waker:
    """Sends wake-ups without ever making a request wait for Redis.

    `wake()` returns at once. One send is in flight at a time; wake-ups asked for meanwhile
    are folded into one more send after it.
    """

    def __init__(self, redis: ArqRedis) -> None:
        self._redis = redis
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._warned_at = -WARN_EVERY

    def wake(self) -> None:
        if self._task is not None:
            self._again = True
            return
        self._task = asyncio.create_task(self._send())

    async def _send(self) -> None:
        try:
            while True:
                self._again = False
                if not await send_wake(self._redis):
                    self._warn()
                if not self._again:
                    return
        finally:
            self._task = None

    def _warn(self) -> None:
        if time.monotonic() - self._warned_at >= WARN_EVERY:
            self._warned_at = time.monotonic()
            log.warning("wake_failed", reason="redis unavailable; workers will poll Postgres")

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=REDIS_TIMEOUT)
