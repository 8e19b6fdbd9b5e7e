"""The Redis side of delivery: an arq pool, and the "deliver these now" signal.

Redis carries signals only; Postgres holds every delivery's state. A signal that cannot be sent
(Redis down) is logged and dropped: the worker's relay finds the deliveries from Postgres.
"""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from gateway.constants import DELIVER_JOB, QUEUE_NAME

# Redis only carries signals; waiting longer than this on it would stall requests for nothing.
REDIS_TIMEOUT = 2.0

log = structlog.get_logger("leadgate.queue")


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


async def signal_due(redis: ArqRedis, delivery_ids: list[str]) -> bool:
    """Ask a worker to deliver these now; False (logged) when Redis cannot take the signal."""
    if not delivery_ids:
        return True
    try:
        await redis.enqueue_job(DELIVER_JOB, delivery_ids)
    except (RedisError, OSError) as e:
        log.warning("signal_failed", deliveries=len(delivery_ids), error=type(e).__name__)
        return False
    return True
