"""The naive queue: one arq job per webhook, each job posting its payload with aiohttp.

What a team would write first on arq: enqueue a job per webhook when it is due; a worker with
`max_jobs=100` runs them, each posting once through a shared `ClientSession`. The queue is the
only state: nothing records an attempt or a delivery's outcome, and a lost Redis loses them.
Apart from `max_jobs` it keeps arq's defaults (results kept for an hour, a log line per job
start and end), except the poll delay, set to Leadgate's own 10 ms: with arq's 0.5 s a full
worker would wait up to half a second before taking the next job.

Usage:
  python bench/peers/delivery_arq.py enqueue --payloads FILE --redis-url URL
  python bench/peers/delivery_arq.py worker --redis-url URL [--max-jobs 100]
"""

from __future__ import annotations

import argparse
import asyncio
import logging.config
import sys
from pathlib import Path
from typing import Any

import aiohttp
from arq import Worker, create_pool
from arq.connections import RedisSettings
from arq.logs import default_log_config

sys.path.insert(0, str(Path(__file__).resolve().parent))

from delivery_common import (
    TIMEOUT_SECONDS,
    Payload,
    install_uvloop,
    read_payloads,
    signed_headers,
)

# A queue of its own, so that Leadgate's worker never sees these jobs (nor this one Leadgate's).
QUEUE = "bench:arq:webhooks"
HTTP = "http"
POLL_DELAY = 0.01


async def post_webhook(ctx: dict[str, Any], payload: Payload) -> int:
    """arq job: post one signed payload; a non-2xx answer fails the job."""
    body = payload["body"].encode()
    http: aiohttp.ClientSession = ctx[HTTP]
    async with http.post(
        payload["url"], data=body, headers=signed_headers(payload, body), allow_redirects=False
    ) as response:
        await response.read()
        response.raise_for_status()
        return response.status


async def startup(ctx: dict[str, Any]) -> None:
    connector = aiohttp.TCPConnector(limit=ctx["max_jobs"], limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    ctx[HTTP] = aiohttp.ClientSession(connector=connector, timeout=timeout)


async def shutdown(ctx: dict[str, Any]) -> None:
    if HTTP in ctx:
        await ctx[HTTP].close()


async def enqueue(payloads: list[Payload], redis_url: str) -> None:
    """One job per payload, queued before any worker runs."""
    redis = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=QUEUE)
    try:
        for payload in payloads:
            await redis.enqueue_job("post_webhook", payload)
    finally:
        await redis.aclose()


def run_worker(redis_url: str, max_jobs: int) -> None:
    """Run the worker until SIGTERM, logging as the `arq` command does."""
    logging.config.dictConfig(default_log_config(verbose=False))
    install_uvloop()
    worker = Worker(
        functions=[post_webhook],
        queue_name=QUEUE,
        redis_settings=RedisSettings.from_dsn(redis_url),
        on_startup=startup,
        on_shutdown=shutdown,
        ctx={"max_jobs": max_jobs},
        max_jobs=max_jobs,
        poll_delay=POLL_DELAY,
        job_timeout=TIMEOUT_SECONDS + 5,
    )
    worker.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("enqueue", "worker"))
    parser.add_argument("--payloads", type=Path)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--max-jobs", type=int, default=100)
    args = parser.parse_args()
    if args.command == "enqueue":
        if args.payloads is None:
            parser.error("enqueue needs --payloads")
        asyncio.run(enqueue(read_payloads(args.payloads), args.redis_url))
    else:
        run_worker(args.redis_url, args.max_jobs)


if __name__ == "__main__":
    main()
