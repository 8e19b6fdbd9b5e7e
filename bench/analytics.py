"""Analytics latency at a million leads: `GET /v1/analytics?range=30d` against one tenant.

Seeds N leads (default 1 000 000) straight into Postgres with generate_series — created over
the last 90 days, a spread of stages, furthest stages, 20 sources and 50 campaigns — and
200 000 delivery attempts (no stage history: the funnel reads `furthest_stage`); then
VACUUM ANALYZE, as autovacuum would. It times the endpoint over HTTP beside two
baselines measured in the same run: `GET /healthz` (the HTTP floor) and the endpoint's two
queries run alone over asyncpg (what Postgres itself needs).

Usage (from the repository root):
  .venv/bin/python bench/analytics.py [--leads 1000000] [--requests 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import benchdb
import children
import leadgate_admin

from gateway.analytics import DELIVERY_FIGURES, LEAD_FIGURES

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/leadgate_bench_analytics"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"

SEED_LEADS = """
INSERT INTO leads (id, tenant_id, email, stage, furthest_stage, source, campaign, custom_data,
                   created_at, updated_at)
SELECT 'lead_' || g, :'tenant', 'u' || g || '@bench.example',
       (ARRAY['new','contacted','qualified','proposal','won','lost'])[1 + (g % 6)],
       (ARRAY['new','contacted','qualified','proposal','won'])[1 + (g % 5)],
       'source-' || (g % 20), 'campaign-' || (g % 50), '{}',
       now() - (g % 129600) * interval '1 minute', now()
FROM generate_series(1, :leads) g;
"""

SEED_ATTEMPTS = """
INSERT INTO endpoints (id, tenant_id, url, secret)
VALUES ('ep_bench', :'tenant', 'http://x.example/', 'whsec_x');
INSERT INTO events (id, tenant_id, type, body)
VALUES ('evt_bench', :'tenant', 'lead.created', '{}');
INSERT INTO deliveries (id, tenant_id, event_id, endpoint_id, event_type, state)
VALUES ('dlv_bench', :'tenant', 'evt_bench', 'ep_bench', 'lead.created', 'succeeded');
INSERT INTO delivery_attempts (delivery_id, tenant_id, attempt, started_at, status,
                               latency_ms, outcome)
SELECT 'dlv_bench', :'tenant', g, now() - (g % 43200) * interval '1 minute', 200, 5 + (g % 200),
       CASE WHEN g % 20 = 0 THEN 'retrying' ELSE 'succeeded' END
FROM generate_series(1, 200000) g;
"""


def psql(dsn: str, sql: str, **variables: str) -> str:
    argv = ["psql", dsn, "-v", "ON_ERROR_STOP=1", "-q", "-At"]
    for name, value in variables.items():
        argv += ["-v", f"{name}={value}"]
    done = subprocess.run(argv, input=sql, capture_output=True, text=True, check=True)
    return done.stdout


def timed_get(url: str, headers: dict[str, str]) -> float:
    request = urllib.request.Request(url, headers=headers)
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        assert response.status == 200
    return (time.perf_counter() - started) * 1000


async def time_queries(dsn: str, tenant: str, runs: int) -> list[float]:
    """The endpoint's two queries, run as it runs them, without HTTP or Python around them."""
    conn = await asyncpg.connect(dsn)
    try:
        end = datetime.now(UTC)
        start = end - timedelta(days=30)
        times = []
        for _ in range(runs + 3):
            began = time.perf_counter()
            await conn.fetch(LEAD_FIGURES, tenant, start, end)
            await conn.fetchrow(DELIVERY_FIGURES, tenant, start, end)
            times.append((time.perf_counter() - began) * 1000)
        return times[3:]
    finally:
        await conn.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args(argv)
    leadgate = leadgate_admin.Leadgate(
        Path(sys.executable).with_name("leadgate"), args.database_url, args.redis_url
    )
    benchdb.recreate_database(args.database_url)
    leadgate.run(["migrate"])
    tenant = leadgate.run_json(["tenants", "create", "bench", "--json"])["id"]
    key = leadgate.run_json(["keys", "create", "--tenant", tenant, "--scopes", "read",
                             "--json"])["key"]  # fmt: skip
    started = time.perf_counter()
    print(f"seeding {args.leads} leads and 200000 attempts…", flush=True)
    psql(args.database_url, SEED_LEADS, tenant=tenant, leads=str(args.leads))
    psql(args.database_url, SEED_ATTEMPTS, tenant=tenant)
    psql(args.database_url, "VACUUM ANALYZE;")
    print(f"seeded in {time.perf_counter() - started:.0f} s", flush=True)
    headers = {"Authorization": f"Bearer {key}"}
    port = children.free_port()
    base = f"http://127.0.0.1:{port}"
    with (
        tempfile.TemporaryDirectory(prefix="leadgate-bench-an-") as tmp,
        children.running(
            "leadgate", leadgate.serve_argv(), leadgate.env(port), base, Path(tmp) / "serve.log"
        ),
    ):
        url = base + "/v1/analytics?range=30d"
        body = json.loads(
            urllib.request.urlopen(urllib.request.Request(url, headers=headers)).read()
        )
        print(f"30-day window: {body['data']['leads']} leads", flush=True)
        for _ in range(3):
            timed_get(url, headers)  # warm the caches and the prepared statements
        floor = [timed_get(base + "/healthz", {}) for _ in range(args.requests)]
        analytics = [timed_get(url, headers) for _ in range(args.requests)]
    sql_ms = asyncio.run(time_queries(args.database_url, tenant, args.requests))
    print()
    print(f"{'measure':<34}{'p50 ms':>10}{'p95 ms':>10}")
    print(f"{'GET /healthz (HTTP floor)':<34}{statistics.median(floor):>10.2f}"
          f"{percentile(floor, 0.95):>10.2f}")  # fmt: skip
    print(f"{'the two queries alone (asyncpg)':<34}{statistics.median(sql_ms):>10.2f}"
          f"{percentile(sql_ms, 0.95):>10.2f}")  # fmt: skip
    print(f"{'GET /v1/analytics?range=30d':<34}{statistics.median(analytics):>10.2f}"
          f"{percentile(analytics, 0.95):>10.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
