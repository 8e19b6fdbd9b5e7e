"""The aiohttp application: `create_app(settings)` wires routes, middlewares and resources.

It reads no globals and no environment. Each resource (the Postgres pool, the Redis pool) has
its own cleanup context, so shutdown closes exactly what start-up opened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from gateway import dashboard, db, jsonio
from gateway.analytics import OPERATIONS as ANALYTICS_OPERATIONS
from gateway.appkeys import (
    BATCHER,
    CIPHER,
    KEYS,
    LIMITER,
    MAPPINGS,
    OUTBOX,
    POOL,
    REDIS,
    RESCORER,
    SETTINGS,
    TRACING,
    WAKER,
)  # fmt: skip
from gateway.batcher import Batcher
from gateway.crypto import Cipher
from gateway.deals.views import OPERATIONS as DEAL_OPERATIONS
from gateway.deliveries.views import OPERATIONS as DELIVERY_OPERATIONS
from gateway.dialects.mappings import MappingCache
from gateway.dialects.views import OPERATIONS as DIALECT_OPERATIONS
from gateway.endpoints.views import OPERATIONS as ENDPOINT_OPERATIONS
from gateway.events import Outbox
from gateway.health import OPENAPI, healthz, openapi, package_version, readyz
from gateway.inbound.views import OPERATIONS as INBOUND_OPERATIONS
from gateway.invalidation import key_listener
from gateway.keys import KeyCache
from gateway.leads.views import OPERATIONS as LEAD_OPERATIONS
from gateway.metrics import metrics_view
from gateway.middleware import authenticate, observe
from gateway.openapi import Operation, build_document
from gateway.ratelimit import RateLimiter
from gateway.scoring.rescore import Rescorer
from gateway.scoring.views import OPERATIONS as SCORING_OPERATIONS
from gateway.settings import Settings
from gateway.stats import OPERATIONS as STATS_OPERATIONS
from gateway.timeline.views import OPERATIONS as TIMELINE_OPERATIONS
from gateway.tracing import Tracing
from gateway.wake import Waker, arq_pool

log = structlog.get_logger("leadgate")

OPERATIONS: list[Operation] = [
    *LEAD_OPERATIONS,
    *ENDPOINT_OPERATIONS,
    *DELIVERY_OPERATIONS,
    *INBOUND_OPERATIONS,
    *ANALYTICS_OPERATIONS,
    *DIALECT_OPERATIONS,
    *SCORING_OPERATIONS,
    *STATS_OPERATIONS,
    *TIMELINE_OPERATIONS,
    *DEAL_OPERATIONS,
]


def create_app(settings: Settings, tracing: Tracing | None = None) -> web.Application:
    """The gateway's application; `tracing` (gateway/tracing.py) traces its requests, None
    (the default) traces nothing at no cost."""
    if not settings.database_url or not settings.redis_url:
        raise ValueError("create_app needs LEADGATE_DATABASE_URL and LEADGATE_REDIS_URL")
    traced = [] if tracing is None else [tracing.middleware()]
    app = web.Application(
        middlewares=[*traced, observe, authenticate], client_max_size=settings.max_body_bytes
    )
    app[SETTINGS] = settings
    app[TRACING] = tracing
    app[OUTBOX] = Outbox(first_delay=float(settings.retry_schedule[0]))
    app[KEYS] = KeyCache(settings.auth_cache_seconds)
    app[CIPHER] = Cipher.from_settings(settings)
    app[MAPPINGS] = MappingCache(settings.auth_cache_seconds)
    app[OPENAPI] = jsonio.dumps(build_document(OPERATIONS, package_version()))
    app.cleanup_ctx.append(_postgres)
    app.cleanup_ctx.append(_redis)
    app.cleanup_ctx.append(_batcher)
    app.cleanup_ctx.append(key_listener)
    app.cleanup_ctx.append(_rescorer)
    for op in OPERATIONS:
        app.router.add_route(op.method, op.path, op.handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_get("/metrics", metrics_view)
    dashboard.install(app)
    return app


async def _postgres(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.database_url
    try:
        app[POOL] = await db.create_pool(
            settings.database_url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            statement_cache_size=settings.db_statement_cache_size,
        )
    except Exception as e:
        if not db.is_unavailable(e):
            raise
        # Postgres is not up yet: serve anyway (503 until it is), connecting when needed.
        log.warning("postgres_unavailable_at_start", error=type(e).__name__)
        app[POOL] = await db.create_pool(
            settings.database_url,
            min_size=0,
            max_size=settings.db_pool_max,
            statement_cache_size=settings.db_statement_cache_size,
        )
    yield
    await app[POOL].close()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.redis_url
    app[REDIS] = arq_pool(settings.redis_url)
    app[LIMITER] = RateLimiter(app[REDIS])
    app[WAKER] = Waker(app[REDIS])
    yield
    await app[WAKER].close()
    await app[REDIS].aclose(close_connection_pool=True)


async def _batcher(app: web.Application) -> AsyncIterator[None]:
    """The write path's batcher; on shutdown it applies what is queued before Postgres closes."""
    settings = app[SETTINGS]
    app[BATCHER] = Batcher(
        app[POOL],
        app[OUTBOX],
        app[WAKER],
        app[CIPHER],
        max_items=settings.batch_max_items,
        max_wait=settings.batch_max_wait,
        concurrency=settings.batch_concurrency,
        idempotency_ttl=settings.idempotency_ttl_seconds,
        tracing=app[TRACING],
    )
    yield
    await app[BATCHER].drain()


async def _rescorer(app: web.Application) -> AsyncIterator[None]:
    """This process's background rescore (gateway/scoring/rescore.py), until shutdown."""
    rescorer = Rescorer(app[POOL], app[OUTBOX], app[WAKER], app[SETTINGS].rescore_interval)
    app[RESCORER] = rescorer
    task = asyncio.create_task(rescorer.run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
