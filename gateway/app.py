"""The aiohttp application: `create_app(settings)` wires routes, middlewares and resources.

It reads no globals and no environment. Each resource (the Postgres pool, the Redis pool) has
its own cleanup context, so shutdown closes exactly what start-up opened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway import dashboard, db, jsonio
from gateway.analytics import OPERATIONS as ANALYTICS_OPERATIONS
from gateway.appkeys import KEYS, LIMITER, OUTBOX, POOL, REDIS, SETTINGS
from gateway.deliveries.views import OPERATIONS as DELIVERY_OPERATIONS
from gateway.endpoints.views import OPERATIONS as ENDPOINT_OPERATIONS
from gateway.events import Outbox
from gateway.health import OPENAPI, healthz, openapi, package_version, readyz
from gateway.inbound.views import OPERATIONS as INBOUND_OPERATIONS
from gateway.keys import KeyCache
from gateway.leads.views import OPERATIONS as LEAD_OPERATIONS
from gateway.metrics import metrics_view
from gateway.middleware import authenticate, observe
from gateway.openapi import Operation, build_document
from gateway.queue import arq_pool
from gateway.ratelimit import RateLimiter
from gateway.settings import Settings

OPERATIONS: list[Operation] = [
    *LEAD_OPERATIONS,
    *ENDPOINT_OPERATIONS,
    *DELIVERY_OPERATIONS,
    *INBOUND_OPERATIONS,
    *ANALYTICS_OPERATIONS,
]


def create_app(settings: Settings) -> web.Application:
    if not settings.database_url or not settings.redis_url:
        raise ValueError("create_app needs LEADGATE_DATABASE_URL and LEADGATE_REDIS_URL")
    app = web.Application(
        middlewares=[observe, authenticate], client_max_size=settings.max_body_bytes
    )
    app[SETTINGS] = settings
    app[OUTBOX] = Outbox(first_delay=float(settings.retry_schedule[0]))
    app[KEYS] = KeyCache(settings.auth_cache_seconds)
    app[OPENAPI] = jsonio.dumps(build_document(OPERATIONS, package_version()))
    app.cleanup_ctx.append(_postgres)
    app.cleanup_ctx.append(_redis)
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
    app[POOL] = await db.create_pool(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    yield
    await app[POOL].close()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.redis_url
    app[REDIS] = arq_pool(settings.redis_url)
    app[LIMITER] = RateLimiter(app[REDIS])
    yield
    await app[REDIS].aclose(close_connection_pool=True)
