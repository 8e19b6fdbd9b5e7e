"""Liveness, readiness and the API description: the routes that need no key."""

from __future__ import annotations

import asyncio
from importlib.metadata import version

from aiohttp import web

from gateway.appkeys import POOL, REDIS
from gateway.errors import Unavailable
from gateway.http import json_response

# A readiness probe that hangs is worse than one that fails: each check gets this long.
READY_TIMEOUT = 2.0

OPENAPI = web.AppKey("openapi", bytes)


async def healthz(request: web.Request) -> web.Response:
    """The process is up and serving."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Postgres and Redis both answer; a load balancer should send traffic only then."""
    failures = []
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await request.app[POOL].fetchval("SELECT 1")
    except Exception as e:
        failures.append(f"postgres: {type(e).__name__}")
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await request.app[REDIS].ping()
    except Exception as e:
        failures.append(f"redis: {type(e).__name__}")
    if failures:
        raise Unavailable("not ready: " + "; ".join(failures))
    return json_response({"status": "ready"})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


def package_version() -> str:
    return version("leadgate")
