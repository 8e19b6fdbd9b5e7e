"""Retention: table sizes under a steady load, with the worker pruning and without it.

Two scenarios, one after the other, each on a fresh database: `leadgate serve` and
`leadgate worker` (delivering to `receiver.py`) under the same steady stream of new-lead
postbacks (each one lead.created event, one delivery, one attempt; every postback carries an
Idempotency-Key), for the same length of time:

- `pruned`: LEADGATE_RETENTION_DAYS set to `--retention` seconds, LEADGATE_RETENTION_INTERVAL
  to `--interval` seconds, LEADGATE_IDEMPOTENCY_TTL_SECONDS to 60 (its minimum);
- `kept` (the reference): LEADGATE_RETENTION_DAYS=0, so nothing is pruned.

Every `--sample` seconds it records the rows and the total size (heap, indexes and TOAST:
pg_total_relation_size) of events, deliveries, delivery_attempts and idempotency_keys. The
worker logs each prune (`pruned`, with rows per table and elapsed ms); their sum gives the
prune's cost per row. Postback latency (p50/p99) of both scenarios shows what pruning costs
the hot path. (That every prune statement walks an index at a realistic size, whatever the
plan cache holds, is checked by EXPLAIN in tests/workers/test_retention.py: tables kept this
small are scanned whole by the planner, rightly.)

Usage: .venv/bin/python bench/retention.py [--rate 150] [--duration 150] [--retention 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import children
import redis.asyncio as aioredis
from leadgate_admin import Leadgate

from gateway import embedded

BENCH_DIR = Path(__file__).resolve().parent
TABLES = ("events", "deliveries", "delivery_attempts", "idempotency_keys")
BENCH_DATABASE = "leadgate_bench_retention"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
SIZES = """
SELECT relname, n_live_tup, pg_total_relation_size(relid) AS bytes
FROM pg_stat_user_tables WHERE relname = ANY ($1::text[])
"""


@dataclass
class Sample:
    at: float
    rows: dict[str, int]
    bytes: dict[str, int]


@dataclass
class Scenario:
    name: str
    samples: list[Sample] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    prunes: list[dict[str, Any]] = field(default_factory=list)


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=150.0, help="postbacks per second")
    parser.add_argument("--duration", type=float, default=150.0, help="seconds per scenario")
    parser.add_argument("--retention", type=float, default=30.0, help="seconds kept")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between prunes")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument(
        "--database-url",
        help="a Postgres with autovacuum on (dropped and recreated); default: an embedded one "
        "started under --out-dir with Postgres's default settings",
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/leadgate-bench-retention"))
    parser.add_argument("--only", default="pruned,kept")
    parser.add_argument("--leadgate", type=Path, default=Path(sys.executable).parent / "leadgate")
    return parser.parse_args()


async def recreate(dsn: str) -> None:
    """Drop the bench database and create it empty (the DSN's database is never kept)."""
    conn = await asyncpg.connect(dsn)
    name = await conn.fetchval("SELECT current_database()")
    await conn.close()
    conn = await asyncpg.connect(dsn, database="postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def create_empty(url: str, name: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@contextlib.contextmanager
def worker(lg: Leadgate, env: dict[str, str], log_path: Path) -> Iterator[None]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(lg.executable), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while b'"worker_started"' not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise children.ServerFailed(children.log_tail(log_path))
            time.sleep(0.1)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


async def sample(conn: asyncpg.Connection, began: float) -> Sample:
    rows = await conn.fetch(SIZES, list(TABLES))
    return Sample(
        round(time.monotonic() - began, 1),
        {r["relname"]: r["n_live_tup"] for r in rows},
        {r["relname"]: r["bytes"] for r in rows},
    )


async def load(base: str, key: str, opts: argparse.Namespace, result: Scenario) -> None:
    """`--rate` new-lead postbacks a second for `--duration` seconds, each timed."""
    headers = {"Authorization": f"Bearer {key}"}
    run = uuid.uuid4().hex[:8]
    pending: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def one(i: int) -> None:
            began = time.perf_counter()
            body = {"email": f"r{run}-{i}@bench.example", "source": "retention"}
            try:
                async with http.post(
                    f"{base}/v1/postback", json=body,
                    headers={**headers, "Idempotency-Key": f"{run}-{i}"},
                ) as response:  # fmt: skip
                    await response.read()
                    ok = response.status in (200, 201)
            except aiohttp.ClientError:
                ok = False
            if ok:
                result.latencies.append(time.perf_counter() - began)
            else:
                result.errors += 1

        start = time.monotonic()
        i = 0
        while (elapsed := time.monotonic() - start) < opts.duration:
            while i < elapsed * opts.rate:
                task = asyncio.create_task(one(i))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
            await asyncio.sleep(0.005)
        await asyncio.gather(*pending)


async def run_scenario(name: str, opts: argparse.Namespace) -> Scenario:
    result = Scenario(name)
    await recreate(opts.database_url)
    redis = aioredis.from_url(opts.redis_url)
    await redis.flushdb()
    await redis.aclose()
    lg = Leadgate(opts.leadgate, opts.database_url, opts.redis_url)
    lg.run(["migrate"])
    tenant = lg.run_json(["tenants", "create", "bench-retention", "--json"])
    lg.run(["tenants", "update", tenant["id"], "--rate-limit", "1000000000"])
    key = lg.run_json(["keys", "create", "--tenant", tenant["id"], "--json"])["key"]
    out = opts.out_dir / name
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "LEADGATE_ALLOW_PRIVATE_DESTINATIONS": "true",
        "LEADGATE_RETENTION_DAYS": str(opts.retention / 86_400 if name == "pruned" else 0),
        "LEADGATE_RETENTION_INTERVAL": str(opts.interval),
        "LEADGATE_IDEMPOTENCY_TTL_SECONDS": "60" if name == "pruned" else "86400",
    }
    env = {**lg.env(), **settings}
    gateway_port, receiver_port = children.free_port(), children.free_port()
    receiver_argv = [sys.executable, str(BENCH_DIR / "receiver.py"), "--port", str(receiver_port)]
    gateway_env = {**env, "LEADGATE_PORT": str(gateway_port)}
    base = f"http://127.0.0.1:{gateway_port}"
    with (
        children.running("receiver", receiver_argv, dict(os.environ),
                         f"http://127.0.0.1:{receiver_port}", out / "receiver.log"),
        children.running("gateway", lg.serve_argv(), gateway_env, base, out / "gateway.log"),
        worker(lg, env, out / "worker.log"),
    ):  # fmt: skip
        async with aiohttp.ClientSession() as http, http.post(
            f"{base}/v1/endpoints", json={"url": f"http://127.0.0.1:{receiver_port}/hook"},
            headers={"Authorization": f"Bearer {key}"},
        ) as response:  # fmt: skip
            assert response.status == 201, await response.text()
        conn = await asyncpg.connect(opts.database_url)
        try:
            began = time.monotonic()
            loader = asyncio.create_task(load(base, key, opts, result))
            while not loader.done():
                await asyncio.wait({loader}, timeout=opts.sample)
                await conn.execute(f"ANALYZE {', '.join(TABLES)}")
                result.samples.append(await sample(conn, began))
            await loader
        finally:
            await conn.close()
    result.prunes = prunes(out / "worker.log")
    return result


def prunes(log_path: Path) -> list[dict[str, Any]]:
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == "pruned":
                found.append(record)
    return found


def report(results: list[Scenario], opts: argparse.Namespace) -> None:
    print(f"\nrate {opts.rate}/s, {opts.duration:.0f} s per scenario, retention "
          f"{opts.retention:.0f} s, prune every {opts.interval:.0f} s\n")  # fmt: skip
    for result in results:
        print(f"== {result.name}: total size of {', '.join(TABLES)} (MB) and rows, by time")
        print("   t s   " + "  ".join(f"{t[:12]:>12}" for t in TABLES) + "   total MB")
        for s in result.samples:
            sizes = "  ".join(
                f"{s.bytes.get(t, 0) / 1e6:6.2f}/{s.rows.get(t, 0):<5}" for t in TABLES
            )
            print(f"  {s.at:5.0f}   {sizes}   {sum(s.bytes.values()) / 1e6:7.2f}")
        if len(result.samples) >= 4:
            mid, last = result.samples[len(result.samples) // 2], result.samples[-1]
            grown = (sum(last.bytes.values()) - sum(mid.bytes.values())) / 1e6
            per_minute = grown / max(last.at - mid.at, 1) * 60
            print(f"   growth over the second half: {per_minute:+.2f} MB/min "
                  f"({mid.at:.0f} s to {last.at:.0f} s)")  # fmt: skip
        lat = sorted(result.latencies)
        if lat:
            p50, p99 = statistics.median(lat), lat[int(len(lat) * 0.99) - 1]
            print(f"   postbacks {len(lat)} ok, {result.errors} failed; "
                  f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")  # fmt: skip
        if result.prunes:
            keys = ("events", "deliveries", "delivery_attempts", "idempotency_keys")
            rows = sum(sum(p.get(k, 0) for k in keys) for p in result.prunes)
            ms = sum(p["elapsed_ms"] for p in result.prunes)
            print(f"   prunes {len(result.prunes)}: {rows} rows in {ms:.0f} ms, "
                  f"{ms * 1000 / max(rows, 1):.1f} µs per row")  # fmt: skip
        print()


async def main() -> None:
    opts = options()
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if opts.database_url is None:
            # Table sizes stay flat only if (auto)vacuum reclaims what the prune frees: an
            # embedded server has Postgres's defaults (autovacuum on, a one-minute naptime).
            url, server = embedded.start_postgres(opts.out_dir / "postgres")
            stack.callback(server.cleanup)
            opts.database_url = url.replace("/postgres?", f"/{BENCH_DATABASE}?")
            await create_empty(url, BENCH_DATABASE)
        results = [await run_scenario(name, opts) for name in opts.only.split(",")]
    (opts.out_dir / "results.json").write_text(
        json.dumps([asdict(r) | {"latencies": len(r.latencies)} for r in results], indent=1)
    )
    report(results, opts)


if __name__ == "__main__":
    asyncio.run(main())
