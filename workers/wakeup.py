"""Wake-ups from Redis: an arq worker whose only jobs say "deliveries are due; look now".

arq runs the jobs; the wake-up itself happens in `after_job_end`, once arq has removed the job
from Redis, so a gateway whose wake-up was refused as a duplicate (one already waiting or
running) is sure that the look it asked for comes after its commit.

arq's worker exits when Redis fails under it; here it is run again, after a pause, for as long
as the process lives, and `connected` tells the claim loop whether wake-ups can arrive at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from arq import Worker
from arq.worker import func
from redis.exceptions import RedisError

from gateway.constants import DELIVER_JOB, QUEUE_NAME, WAKE_JOB
from gateway.settings import Settings
from gateway.wake import arq_pool, deserialize, serialize

log = structlog.get_logger("leadgate.wakeup")

_WAKE = "leadgate_wake"
# After arq lost Redis, it is started again after this long, doubling up to MAX.
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 5.0
# How long a stop waits for arq to end after a cancellation before cancelling again.
STOP_RECHECK = 0.5


async def wake(ctx: dict[str, Any], *_ids: Any) -> None:
    """arq job: nothing to do here; the look happens once the job is off the queue."""


async def _after_job(ctx: dict[str, Any]) -> None:
    ctx[_WAKE]()


class WakeListener:
    def __init__(self, settings: Settings, on_wake: Callable[[], None]) -> None:
        self._settings = settings
        self._on_wake = on_wake
        self.connected = False
        self._worker: Worker | None = None
        self._redis = arq_pool(settings.redis_url or "")
        self._stopping = False

    def _build(self) -> Worker:
        assert self._settings.redis_url
        self._redis = arq_pool(self._settings.redis_url)

        async def started(_ctx: dict[str, Any]) -> None:
            self.connected = True
            log.info("wakeups_connected")
            self._on_wake()  # whatever was signalled while we were away

        return Worker(
            # A `deliver` job is what gateways of earlier versions send: a wake-up too.
            functions=[func(wake, name=WAKE_JOB), func(wake, name=DELIVER_JOB)],
            queue_name=QUEUE_NAME,
            redis_pool=self._redis,
            on_startup=started,  # type: ignore[arg-type]  # arq's alias wants Dict[Any, Any]
            after_job_end=_after_job,
            ctx={_WAKE: self._on_wake},
            handle_signals=False,
            max_jobs=10,
            keep_result=0,
            max_tries=1,
            poll_delay=self._settings.worker_poll_delay,
            job_serializer=serialize,
            job_deserializer=deserialize,
            log_results=False,
        )

    async def run(self) -> None:
        """Listen until stopped; Redis failing restarts the listener, never the process."""
        delay = RESTART_DELAY
        while not self._stopping:
            self._worker = self._build()
            try:
                await self._worker.main()
            except (RedisError, OSError) as e:
                if self.connected:
                    log.warning("wakeups_lost", error=type(e).__name__)
                delay = RESTART_DELAY if self.connected else min(delay * 2, MAX_RESTART_DELAY)
            finally:
                self.connected = False
                await self._close()
            await asyncio.sleep(delay)

    async def stop(self, task: asyncio.Task[None]) -> None:
        """End `task` (running `run`). arq's poll loop can swallow a cancellation that lands
        inside redis-py, so it is cancelled again until it has ended."""
        self._stopping = True
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_RECHECK)

    async def _close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        with contextlib.suppress(RedisError, OSError):
            await worker.close()
        # arq's close stops short of its pool when Redis is gone; the pool goes regardless.
        await self._redis.aclose(close_connection_pool=True)
