"""Typed keys for what the application and each request carry, defined once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web
from arq.connections import ArqRedis

from gateway.batcher import Batcher
from gateway.crypto import Cipher
from gateway.dialects.mappings import MappingCache
from gateway.events import Outbox
from gateway.keys import KeyCache, Principal
from gateway.ratelimit import RateLimiter
from gateway.scoring.rescore import Rescorer
from gateway.settings import Settings
from gateway.tracing import Tracing
from gateway.wake import Waker

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
REDIS = web.AppKey("redis", ArqRedis)
OUTBOX = web.AppKey("outbox", Outbox)
LIMITER = web.AppKey("limiter", RateLimiter)
KEYS = web.AppKey("keys", KeyCache)
WAKER = web.AppKey("waker", Waker)
BATCHER = web.AppKey("batcher", Batcher)
CIPHER = web.AppKey("cipher", Cipher)
MAPPINGS = web.AppKey("mappings", MappingCache)
RESCORER = web.AppKey("rescorer", Rescorer)
# The process's tracing (gateway/tracing.py); None when it is off.
TRACING: web.AppKey[Tracing | None] = web.AppKey("tracing")
# Who a request without an API key is, from a dashboard session cookie; set by the dashboard.
SESSION_AUTH: web.AppKey[Callable[[web.Request], Awaitable[Principal | None]]] = web.AppKey(
    "session_auth"
)

PRINCIPAL = web.RequestKey("principal", Principal)
REQUEST_ID = web.RequestKey("request_id", str)
# The sender mapping a postback went through, named in its 400s.
MAPPED_BY = web.RequestKey("mapped_by", str)
