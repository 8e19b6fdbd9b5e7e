"""The ceiling for delivery: a plain aiohttp client posting every signed payload, 100 in flight.

It keeps no state at all (no queue, no database, no retries): it reads the payload file, then
posts each payload, signed as Leadgate signs it, through one pooled `ClientSession` under a
semaphore of `--concurrency`. It prints one JSON line: statuses, errors, seconds.

Usage: python bench/peers/delivery_plain.py --payloads FILE [--concurrency 100]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from delivery_common import (
    TIMEOUT_SECONDS,
    Payload,
    install_uvloop,
    read_payloads,
    signed_headers,
)


async def post_one(
    http: aiohttp.ClientSession, slots: asyncio.Semaphore, payload: Payload, tally: Counter[str]
) -> None:
    async with slots:
        body = payload["body"].encode()
        try:
            async with http.post(
                payload["url"],
                data=body,
                headers=signed_headers(payload, body),
                allow_redirects=False,
            ) as response:
                await response.read()
                tally[str(response.status)] += 1
        except (aiohttp.ClientError, TimeoutError) as e:
            tally[type(e).__name__] += 1


async def post_all(payloads: list[Payload], concurrency: int) -> Counter[str]:
    """Post every payload, `concurrency` at a time; count statuses and errors."""
    tally: Counter[str] = Counter()
    slots = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await asyncio.gather(*(post_one(http, slots, p, tally) for p in payloads))
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payloads", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    install_uvloop()
    payloads = read_payloads(args.payloads)
    began = time.perf_counter()
    tally = asyncio.run(post_all(payloads, args.concurrency))
    seconds = time.perf_counter() - began
    print(orjson.dumps({"sent": len(payloads), "seconds": seconds, "outcomes": tally}).decode())


if __name__ == "__main__":
    main()
