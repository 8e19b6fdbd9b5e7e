"""Rate limits per API key: GCRA in Redis, one atomic round trip per request.

GCRA (the generic cell rate algorithm) keeps one number per key — the theoretical arrival
time of the next request — so a limit of N per minute allows a burst of N and then one request
every 60/N seconds. The clock is Redis's own, so every gateway process agrees on it. The checks
of requests that arrive together go to Redis as one script call (each still judged on its own,
in arrival order), so a busy gateway pays one round trip per event-loop turn, not per request.
If Redis cannot answer, the request is let through (fail open): losing rate limiting for a
while is better than refusing leads.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

WINDOW_SECONDS = 60
KEY_PREFIX = "leadgate:rl:"

# For each key (ARGV[1] is the period, then one interval per key), five numbers: allowed,
# remaining, retry_after_us, reset_us, now_us. Times are microseconds in doubles; an interval
# below their resolution (a limit of millions a minute) rounds to zero, so a key always lives at
# least a millisecond. A key given twice is judged twice, in order.
_GCRA = """
local period = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local diff = new_tat - now
  if diff > period then
    for _, v in ipairs({0, 0, diff - period, tat - now, now}) do out[#out + 1] = v end
  else
    local ttl_ms = math.max(1, math.ceil(diff / 1000))
    redis.call('SET', key, string.format('%d', new_tat), 'PX', ttl_ms)
    for _, v in ipairs({1, math.floor((period - diff) / interval), 0, diff, now}) do
      out[#out + 1] = v
    end
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after: float  # seconds until a request would be allowed
    reset_at: int  # epoch seconds when the full quota is back
    reset_in: int  # seconds until then

    def headers(self) -> dict[str, str]:
        """GitHub-style X-RateLimit-* and the IETF RateLimit-Policy / RateLimit fields."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
            "RateLimit-Policy": f'"per-key";q={self.limit};w={WINDOW_SECONDS}',
            "RateLimit": f'"per-key";r={self.remaining};t={self.reset_in}',
        }


_PERIOD_US = WINDOW_SECONDS * 1_000_000


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_GCRA)
        self._waiting: list[tuple[str, int, asyncio.Future[Verdict | None]]] = []

    async def check(self, key_id: str, scope: str, per_minute: int) -> Verdict | None:
        """The verdict for one request, or None when Redis cannot be asked (fail open)."""
        future: asyncio.Future[Verdict | None] = asyncio.get_running_loop().create_future()
        if not self._waiting:
            # Everything asked before the loop's next turn goes in the same call.
            asyncio.get_running_loop().call_soon(self._send)
        self._waiting.append((f"{KEY_PREFIX}{key_id}:{scope}", per_minute, future))
        return await future

    def _send(self) -> None:
        waiting, self._waiting = self._waiting, []
        asyncio.get_running_loop().create_task(self._ask(waiting))

    async def _ask(self, waiting: list[tuple[str, int, asyncio.Future[Verdict | None]]]) -> None:
        try:
            flat = await self._script(
                keys=[key for key, _, _ in waiting],
                args=[_PERIOD_US, *(_PERIOD_US / limit for _, limit, _ in waiting)],
            )
        except (RedisError, OSError):
            flat = None
        for i, (_, limit, future) in enumerate(waiting):
            if not future.done():
                future.set_result(
                    None if flat is None else _verdict(limit, flat[5 * i : 5 * i + 5])
                )


def _verdict(per_minute: int, answer: list[int]) -> Verdict:
    allowed, remaining, retry_us, reset_us, now_us = answer
    return Verdict(
        allowed=bool(allowed),
        limit=per_minute,
        remaining=int(remaining),
        retry_after=int(retry_us) / 1_000_000,
        reset_at=math.ceil((int(now_us) + int(reset_us)) / 1_000_000),
        reset_in=math.ceil(int(reset_us) / 1_000_000),
    )


# Returns {allowed, wait_us}: a log of send times per key, pruned to the window.
_SLIDING = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, string.format('%d', now) .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return {1, 0}
end
local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
return {0, oldest + window - now}
"""


class SlidingWindow:
    """At most `limit` events per window for a key, across every process sharing Redis.

    Unlike a per-second counter, no two windows can be stacked at a boundary: the limit holds
    in every window, wherever it starts. A refusal says how long until a slot frees.
    """

    def __init__(self, redis: Redis, *, window: float, prefix: str) -> None:
        self._script = redis.register_script(_SLIDING)
        self._window_us = int(window * 1_000_000)
        self._prefix = prefix

    async def acquire(self, key: str, limit: int, token: str) -> float | None:
        """0 if allowed now, else seconds to wait; None when Redis cannot be asked."""
        try:
            allowed, wait_us = await self._script(
                keys=[self._prefix + key], args=[limit, self._window_us, token]
            )
        except (RedisError, OSError):
            return None
        return 0.0 if allowed else int(wait_us) / 1_000_000
