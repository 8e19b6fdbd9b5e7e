"""Account stats at a million leads: `GET /v1/stats` against one tenant with a quota.

Seeds N leads (default 1 000 000) straight into Postgres with generate_series — created over
the last three years, a fifth of them converted, scored into three tiers — and the counters as
Leadgate keeps them (`tenant_monthly_counts`: per month, spread over its shards); then VACUUM
ANALYZE, as autovacuum would. It times the endpoint over HTTP beside `GET /healthz` (the HTTP
floor) and its query alone over asyncpg; and, for the score-tier mix `GET /v1/analytics` adds,
that query alone over a 30-day window.

Usage (from the repository root):
  .venv/bin/python bench/stats.py [--leads 1000000] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
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
from analytics import percentile, psql, timed_get

from gateway.analytics import LEAD_FIGURES
from gateway.stats import STATS, month_of

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/leadgate_bench_stats"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"

SEED_LEADS = """
INSERT INTO leads (id, tenant_id, email, stage, furthest_stage, source, score, score_tier,
                   converted_at, custom_data, created_at, updated_at)
SELECT 'lead_' || g, :'tenant', 'u' || g || '@bench.example',
       CASE WHEN g % 5 = 0 THEN 'won' ELSE 'new' END,
       CASE WHEN g % 5 = 0 THEN 'won' ELSE 'new' END, 'source-' || (g % 20), g % 90,
       CASE WHEN g % 90 >= 70 THEN 'hot' WHEN g % 90 >= 45 THEN 'warm' END,
       CASE WHEN g % 5 = 0 THEN now() - (g % 1576800) * interval '1 minute' END, '{}',
       now() - (g % 1576800) * interval '1 minute', now()
FROM generate_series(1, :leads) g;
INSERT INTO tenant_monthly_counts (tenant_id, month, shard, created, converted)
SELECT tenant_id, date_trunc('month', created_at AT TIME ZONE 'UTC')::date,
       (hashtext(id) & 7)::smallint, count(*), count(converted_at)
FROM leads GROUP BY 1, 2, 3;
UPDATE tenants SET monthly_quota = 100000 WHERE id = :'tenant';
"""


async def time_query(dsn: str, tenant: str, runs: int) -> tuple[list[float], list[float]]:
    """The stats query, and the tier mix's, as the endpoints run them, without HTTP."""
    conn = await asyncpg.connect(dsn)
    try:
        month = month_of(datetime.now(UTC))
        end = datetime.now(UTC)
        start = end - timedelta(days=30)
        stats_ms, tiers_ms = [], []
        for i in range(runs + 3):
            began = time.perf_counter()
            await conn.fetchrow(STATS, tenant, month)
            middle = time.perf_counter()
            if i < 23:
                await conn.fetch(LEAD_FIGURES, tenant, start, end)
            done = time.perf_counter()
            stats_ms.append((middle - began) * 1000)
            if i < 23:
                tiers_ms.append((done - middle) * 1000)
        return stats_ms[3:], tiers_ms[3:]
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
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
    print(f"seeding {args.leads} leads and their counters…", flush=True)
    psql(args.database_url, SEED_LEADS, tenant=tenant, leads=str(args.leads))
    psql(args.database_url, "VACUUM ANALYZE;")
    print(f"seeded in {time.perf_counter() - started:.0f} s", flush=True)
    headers = {"Authorization": f"Bearer {key}"}
    port = children.free_port()
    base = f"http://127.0.0.1:{port}"
    with (
        tempfile.TemporaryDirectory(prefix="leadgate-bench-stats-") as tmp,
        children.running(
            "leadgate", leadgate.serve_argv(), leadgate.env(port), base, Path(tmp) / "serve.log"
        ),
    ):
        url = base + "/v1/stats"
        body = json.loads(
            urllib.request.urlopen(urllib.request.Request(url, headers=headers)).read()
        )
        print(f"stats: {body['data']}", flush=True)
        for _ in range(3):
            timed_get(url, headers)
        floor = [timed_get(base + "/healthz", {}) for _ in range(args.requests)]
        served = [timed_get(url, headers) for _ in range(args.requests)]
    sql_ms, tiers_ms = asyncio.run(time_query(args.database_url, tenant, args.requests))
    print()
    print(f"{'measure':<40}{'p50 ms':>10}{'p95 ms':>10}")
    for name, values in (
        ("GET /healthz (HTTP floor)", floor),
        ("the stats query alone (asyncpg)", sql_ms),
        ("GET /v1/stats", served),
        ("analytics' lead figures with the tier mix, 30 days", tiers_ms),
    ):
        print(f"{name:<40}{statistics.median(values):>10.2f}{percentile(values, 0.95):>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
