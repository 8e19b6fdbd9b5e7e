"""Typed keys for what the application and each request carry, defined once."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from arq.connections import ArqRedis

from gateway.batcher import Batcher
from gateway.crypto import Cipher
from gateway.dialects.mappings import MappingCache
from gateway.events import Outbox
from gateway.keys import KeyCache, Principal
from gateway.ratelimit import RateLimiter
from gateway.settings import Settings
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

PRINCIPAL = web.RequestKey("principal", Principal)
REQUEST_ID = web.RequestKey("request_id", str)
# The sender mapping a postback went through, named in its 400s.
MAPPED_BY = web.RequestKey("mapped_by", str)
