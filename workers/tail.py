"""`leadgate tail`: every worker publishes its delivery outcomes on Redis pub/sub; follow them.

Publishing is best effort: tail is a live view, and every attempt is on record in Postgres.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from rich.console import Console
from rich.text import Text

from gateway.constants import OUTCOMES_CHANNEL

_STYLE = {"succeeded": "green", "retrying": "yellow", "failed": "bold red", "cancelled": "dim"}


def keep(outcome: dict[str, Any], *, endpoint: str | None, failed_only: bool) -> bool:
    if endpoint and outcome.get("endpoint_id") != endpoint:
        return False
    return not failed_only or outcome.get("outcome") in ("failed", "retrying")


def human(outcome: dict[str, Any]) -> Text:
    """One line a person can scan: time, outcome, status, latency, attempt, ids, next try."""
    status = outcome.get("status")
    latency = outcome.get("latency_ms")
    line = Text()
    line.append(str(outcome.get("at", ""))[11:23] + " ", style="dim")
    line.append(f"{outcome['outcome']:<9} ", style=_STYLE.get(outcome["outcome"], ""))
    line.append(f"{status if status is not None else '---':>3} ")
    line.append(f"{latency:>8.1f} ms " if latency is not None else " " * 12)
    line.append(f"#{outcome.get('attempt') or '-':<2} {outcome['event_type']:<20} ")
    line.append(f"{outcome['delivery_id']} → {outcome['endpoint_id']}", style="cyan")
    if outcome.get("error"):
        line.append(f"  {outcome['error']}", style="red")
    if outcome.get("next_attempt_at"):
        line.append(f"  next {outcome['next_attempt_at'][11:19]}", style="yellow")
    return line


async def follow(
    redis_url: str,
    *,
    endpoint: str | None,
    failed_only: bool,
    as_json: bool,
    out: Callable[[str], None] | None = None,
    limit: int | None = None,
) -> None:
    """Print outcomes as they happen until interrupted (or `limit` lines, for tests)."""
    console = Console(highlight=False)
    client = aioredis.Redis.from_url(redis_url)
    shown = 0
    try:
        async with client.pubsub() as pubsub:
            await pubsub.subscribe(OUTCOMES_CHANNEL)
            async for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                outcome = orjson.loads(message["data"])
                if not keep(outcome, endpoint=endpoint, failed_only=failed_only):
                    continue
                if as_json:
                    (out or print)(orjson.dumps(outcome).decode())
                elif out is not None:
                    out(human(outcome).plain)
                else:
                    console.print(human(outcome), soft_wrap=True)
                shown += 1
                if limit is not None and shown >= limit:
                    return
    finally:
        await client.aclose()


class Publisher:
    """Publishes outcomes for `leadgate tail` in pipelined batches; drops them without Redis."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._messages: list[bytes] = []
        self._task: asyncio.Task[None] | None = None

    def publish(self, message: bytes) -> None:
        self._messages.append(message)
        if self._task is None:
            self._task = asyncio.create_task(self._send())

    async def _send(self) -> None:
        try:
            while self._messages:
                messages, self._messages = self._messages, []
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for message in messages:
                            pipe.publish(OUTCOMES_CHANNEL, message)
                        await pipe.execute()
                except (RedisError, OSError):
                    pass  # tail is a live view; the attempts are on record in Postgres
        finally:
            self._task = None
