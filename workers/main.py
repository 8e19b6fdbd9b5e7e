"""The worker process: the claim loop, the completer and the wake-up listener, together.

`leadgate worker` runs them until SIGTERM or SIGINT; `leadgate dev` and the tests run them
inside their own event loop (`running_in_loop`). On stop, the worker claims nothing more, lets
the attempts in flight finish for up to one attempt timeout and a margin, hands the rest back
to Postgres, and writes every outcome it holds before it closes. Neither Redis nor Postgres
going away ends the process: it waits for them and carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import aiohttp
import structlog

from gateway import db
from gateway.crypto import Cipher
from gateway.ratelimit import SlidingWindow
from gateway.settings import Settings
from gateway.tracing import WORKER_SERVICE, Tracing, from_environment, untraced
from gateway.wake import Waker, arq_pool
from workers import metricsweb, retention, sender
from workers.claimer import Claimer
from workers.completer import Completer
from workers.state import RATE_WINDOW, WorkerState
from workers.tail import Publisher
from workers.wakeup import WakeListener

log = structlog.get_logger("leadgate.worker")

# How long a stopping worker keeps trying to write the outcomes it holds.
CLOSE_TIMEOUT = 10.0


async def _open_state(
    settings: Settings, http: aiohttp.ClientSession | None, tracing: Tracing | None
) -> WorkerState:
    assert settings.database_url and settings.redis_url
    redis = arq_pool(settings.redis_url)
    traced = [] if tracing is None else [tracing.client_trace_config()]
    return WorkerState(
        settings=settings,
        # No connection is made before one is needed: the worker starts without Postgres.
        pool=await db.create_pool(
            settings.database_url,
            min_size=0,
            max_size=settings.db_pool_max,
            statement_cache_size=settings.db_statement_cache_size,
        ),
        redis=redis,
        http=http
        or sender.session(
            settings.worker_concurrency,
            allow_private=settings.allow_private_destinations,
            proxy=settings.egress_proxy,
            trace_configs=traced,
        ),
        endpoint_rate=SlidingWindow(redis, window=RATE_WINDOW, prefix="leadgate:rate:"),
        publisher=Publisher(redis),
        cipher=Cipher.from_settings(settings),
        tracing=tracing,
    )


@contextlib.asynccontextmanager
async def running_in_loop(
    settings: Settings,
    *,
    http: aiohttp.ClientSession | None = None,
    tracing: Tracing | None = None,
) -> AsyncIterator[asyncio.Task[None]]:
    """Run a worker inside the current event loop for a block (`leadgate dev`, tests).

    Leaving the block stops it as SIGTERM would. Yields a task that ends with an error only if
    one of the worker's loops died of one, so a caller can check that none did. `http` is the
    session attempts go out on (tests pass one with a resolver of their own). `tracing` traces
    each attempt (gateway/tracing.py); the loops themselves make no spans.
    """
    state = await _open_state(settings, http, tracing)
    peers = Waker(state.redis)
    claimer: Claimer
    completer = Completer(state, on_ended=lambda: claimer.wake())
    listener = WakeListener(settings, on_wake=lambda: claimer.wake())
    claimer = Claimer(state, completer, peers, wakeups_arrive=lambda: listener.connected)
    with untraced():  # claims, records and prunes belong to no request's trace
        tasks = [
            asyncio.create_task(claimer.run(), name="claimer"),
            asyncio.create_task(completer.run(), name="completer"),
            asyncio.create_task(listener.run(), name="wakeups"),
            asyncio.create_task(retention.run(state), name="retention"),
        ]
    watch = asyncio.create_task(_watch(tasks))
    metrics = await metricsweb.start(settings)
    log.info("worker_started", concurrency=settings.worker_concurrency)
    try:
        yield watch
    finally:
        await claimer.stop(tasks[0], drain=settings.delivery_timeout + 5)
        await listener.stop(tasks[2])
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        await completer.close(patience=CLOSE_TIMEOUT)
        watch.cancel()
        await metricsweb.stop(metrics)
        await peers.close()
        await state.http.close()
        await state.redis.aclose(close_connection_pool=True)
        await state.pool.close()
        log.info("worker_stopped")


async def _watch(tasks: list[asyncio.Task[None]]) -> None:
    """Ends when any loop ends by itself: that is an error, which it passes on."""
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error


def run_worker(settings: Settings) -> None:
    from gateway.logs import configure_logging
    from gateway.server import install_uvloop

    configure_logging(settings.log_format, settings.log_level)
    install_uvloop()
    asyncio.run(_run(settings, from_environment(WORKER_SERVICE)))


async def _run(settings: Settings, tracing: Tracing | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running_in_loop(settings, tracing=tracing) as watch:
        await asyncio.wait([watch, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED")
        if watch.done() and not watch.cancelled() and watch.exception() is not None:
            log.error("worker_failed", exc_info=watch.exception())
