"""The worker process: an arq worker running the deliver job, with the relay beside it.

`build_worker(settings)` makes the arq Worker; `leadgate worker` runs it with signal handling,
and `leadgate dev` runs it inside the gateway's event loop. On SIGTERM arq stops taking jobs
and waits for running ones up to one attempt timeout; a job cancelled after that hands its
unsent deliveries back to Postgres, and leases bound what a killed worker leaves behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from arq import Worker
from arq.worker import func

from gateway import db
from gateway.constants import DELIVER_JOB, QUEUE_NAME
from gateway.crypto import Cipher
from gateway.queue import arq_pool, deserialize, serialize
from gateway.ratelimit import SlidingWindow
from gateway.settings import Settings
from workers import metricsweb, relay, retention, sender
from workers.delivery import deliver
from workers.state import RATE_WINDOW, STATE, WorkerState

log = structlog.get_logger("leadgate.worker")

SETTINGS_KEY = "leadgate_settings"
RELAY_TASK = "leadgate_relay"
RETENTION_TASK = "leadgate_retention"
METRICS_RUNNER = "leadgate_metrics"


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx[SETTINGS_KEY]
    assert settings.database_url and settings.redis_url
    state = WorkerState(
        settings=settings,
        pool=await db.create_pool(settings.database_url, min_size=1, max_size=settings.db_pool_max),
        redis=ctx["redis"],
        http=sender.session(
            settings.worker_concurrency,
            allow_private=settings.allow_private_destinations,
            proxy=settings.egress_proxy,
        ),
        slots=asyncio.Semaphore(settings.worker_concurrency),
        endpoint_rate=SlidingWindow(ctx["redis"], window=RATE_WINDOW, prefix="leadgate:rate:"),
        cipher=Cipher.from_settings(settings),
    )
    ctx[STATE] = state
    ctx[RELAY_TASK] = asyncio.create_task(relay.run(state))
    ctx[RETENTION_TASK] = asyncio.create_task(retention.run(state))
    ctx[METRICS_RUNNER] = await metricsweb.start(settings)
    log.info("worker_started", concurrency=settings.worker_concurrency)


async def shutdown(ctx: dict[str, Any]) -> None:
    for name in (RELAY_TASK, RETENTION_TASK):
        task: asyncio.Task[None] | None = ctx.get(name)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await metricsweb.stop(ctx.get(METRICS_RUNNER))
    state: WorkerState | None = ctx.get(STATE)
    if state is not None:
        await state.http.close()
        await state.pool.close()
    log.info("worker_stopped")


def build_worker(settings: Settings, *, handle_signals: bool = True) -> Worker:
    assert settings.redis_url
    return Worker(
        functions=[func(deliver, name=DELIVER_JOB)],
        queue_name=QUEUE_NAME,
        redis_pool=arq_pool(settings.redis_url),
        on_startup=startup,
        on_shutdown=shutdown,
        ctx={SETTINGS_KEY: settings},
        handle_signals=handle_signals,
        max_jobs=settings.worker_concurrency,
        # Results live in Postgres; arq keeps none, so nothing in Redis outlives its job.
        keep_result=0,
        poll_delay=settings.worker_poll_delay,
        job_completion_wait=int(settings.delivery_timeout) + 5,
        job_serializer=serialize,
        job_deserializer=deserialize,
        log_results=False,
    )


@contextlib.asynccontextmanager
async def running_in_loop(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    """Run a worker inside the current event loop (`leadgate dev`, tests) for a block.

    Leaving the block stops it as SIGTERM would: it takes no more jobs, the jobs in flight
    finish (up to one attempt timeout and a margin), then it closes. Yields the worker's main
    task, so a caller can see whether it died of an error.
    """
    worker = build_worker(settings, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        yield task
    finally:
        await _stop_in_loop(worker, task, drain=settings.delivery_timeout + 5)


async def _stop_in_loop(worker: Worker, task: asyncio.Task[None], *, drain: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(drain):
            # arq's poll loop can outlive one cancel (it may be between awaits that swallow
            # it); ask until it has stopped, then let the jobs it started finish.
            while not task.done():
                task.cancel()
                # Long enough for a cancelled Redis pipeline to reset before any second cancel.
                await asyncio.wait({task}, timeout=2.0)
            if running := [job for job in worker.tasks.values() if not job.done()]:
                await asyncio.wait(running)
    await worker.close()  # cancels what is still running, then runs on_shutdown


def run_worker(settings: Settings) -> None:
    from gateway.logs import configure_logging
    from gateway.server import install_uvloop

    configure_logging(settings.log_format, settings.log_level)
    install_uvloop()
    asyncio.run(_run(settings))


async def _run(settings: Settings) -> None:
    # Built inside the running loop: arq binds a Worker (and its signal handlers) to the loop
    # that exists when it is made.
    worker = build_worker(settings)
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        pass  # SIGTERM or SIGINT: arq has let running jobs finish, up to job_completion_wait
    finally:
        await worker.close()
