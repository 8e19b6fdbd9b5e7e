"""What a worker process holds: settings, pools, the HTTP session, its publisher of outcomes."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import asyncpg
from arq.connections import ArqRedis

from gateway.crypto import Cipher
from gateway.ratelimit import SlidingWindow
from gateway.settings import Settings
from gateway.tracing import Tracing
from workers.tail import Publisher

# An endpoint's rate limit is per second; the window is a little longer, so that jitter on the
# way to the receiver cannot squeeze one more request into any second it sees.
RATE_WINDOW = 1.05


@dataclass
class WorkerState:
    settings: Settings
    pool: asyncpg.Pool
    redis: ArqRedis
    http: aiohttp.ClientSession
    # Endpoints' `rate_limit` (per second), shared by every worker through Redis.
    endpoint_rate: SlidingWindow
    publisher: Publisher
    # Decrypts the endpoints' signing secrets, stored encrypted.
    cipher: Cipher
    # Traces each attempt in its event's trace (gateway/tracing.py); None when off.
    tracing: Tracing | None = None

    @property
    def lease_seconds(self) -> float:
        """How long a claim holds: two attempt timeouts and a margin for queueing and writing.

        An attempt starts only while more than one timeout of its lease remains, so it ends
        before the lease does; a worker that dies leaves leases that expire this soon.
        """
        return self.settings.delivery_timeout * 2 + 5
