"""A paced postback load: `--rate` new leads per second, evenly spaced, open loop.

Request i is sent at start + i / rate whatever happened to the ones before (a slow answer
does not delay the next send), each `POST /v1/postback` with a new email. For every request
it records when it was sent and when its answer arrived (time.time(), the machine clock the
receiver also uses), the status and the lead id of a 201, and writes them to `--out` as JSON
with the CPU seconds it used.

Usage: python bench/peers/delivery_pacer.py --url http://127.0.0.1:8080 --key KEY \
           --rate 200 --seconds 22 --out /tmp/pacer.json
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
import uuid
from dataclasses import astuple, dataclass
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from delivery_common import install_uvloop


@dataclass(slots=True)
class Sent:
    """One request: its sequence number, scheduled and actual send, answer, status, lead,
    or the error that took the place of an answer."""

    seq: int
    scheduled: float
    sent: float
    answered: float | None = None
    status: int | None = None
    lead_id: str | None = None
    error: str | None = None


def body(run: str, seq: int) -> dict[str, object]:
    return {
        "email": f"lat-{run}-{seq}@bench.example",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "source": "bench",
        "campaign": "latency",
        "custom_data": {"seq": seq},
    }


async def post(http: aiohttp.ClientSession, url: str, run: str, record: Sent) -> None:
    try:
        async with http.post(url, json=body(run, record.seq)) as response:
            payload = await response.read()
            record.answered = time.time()
            record.status = response.status
            if response.status == 201:
                record.lead_id = orjson.loads(payload)["data"]["id"]
    except (aiohttp.ClientError, TimeoutError) as e:
        record.answered = time.time()
        record.error = f"{type(e).__name__}: {e}"[:200]


async def pace(
    base_url: str, key: str, rate: float, seconds: float, connections: int
) -> list[Sent]:
    """Send rate × seconds postbacks on schedule; every record once all have answered."""
    run = uuid.uuid4().hex[:8]
    url = base_url + "/v1/postback"
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=30)
    records: list[Sent] = []
    tasks: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as http:
        loop = asyncio.get_running_loop()
        start_loop, start_wall = loop.time() + 0.05, time.time() + 0.05
        for seq in range(int(rate * seconds)):
            due = start_loop + seq / rate
            await asyncio.sleep(max(0.0, due - loop.time()))
            record = Sent(seq, start_wall + seq / rate, time.time())
            records.append(record)
            tasks.append(asyncio.create_task(post(http, url, run, record)))
        await asyncio.gather(*tasks)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="The gateway's base URL.")
    parser.add_argument("--key", required=True, help="An API key with the ingest scope.")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=22.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    install_uvloop()
    records = asyncio.run(pace(args.url, args.key, args.rate, args.seconds, args.connections))
    fields = ["seq", "scheduled", "sent", "answered", "status", "lead_id", "error"]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = usage.ru_utime + usage.ru_stime
    rows = [astuple(r) for r in records]
    args.out.write_bytes(orjson.dumps({"fields": fields, "rows": rows, "cpu_seconds": cpu_seconds}))


if __name__ == "__main__":
    main()
