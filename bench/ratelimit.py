"""What per-key rate limiting costs on the ingest path: new-lead postbacks with and without it.

Two `leadgate serve` runs on the same database, one after the other, driven by wrk at the
same load: LEADGATE_RATE_LIMIT=1000000000 (the GCRA script runs in Redis on every request but
never refuses) and LEADGATE_RATE_LIMIT=0 (no limiter at all). The pair is measured twice in
alternating order (on, off, off, on), after one unmeasured round, so that drift on a noisy
machine falls on both sides.

Usage (from the repository root):
  .venv/bin/python bench/ratelimit.py [--duration 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

import benchdb
import children
import leadgate_admin
import wrkload

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/leadgate_bench_ratelimit"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
NEVER_TRIPS = "1000000000"
ORDER = ("limited", "unlimited", "unlimited", "limited")


def run_once(leadgate: leadgate_admin.Leadgate, label: str, key: str, load: wrkload.Load,
             logs: Path) -> wrkload.WrkResult:  # fmt: skip
    """One measured run, after a warm-up and ANALYZE (a fresh table's plans are for no rows)."""
    port = children.free_port()
    env = leadgate.env(port)
    env["LEADGATE_RATE_LIMIT"] = NEVER_TRIPS if label == "limited" else "0"
    base = f"http://127.0.0.1:{port}"
    with children.running(label, leadgate.serve_argv(), env, base, logs / f"{label}.log"):
        mix = wrkload.LeadMix(api_key=key, nonce=uuid.uuid4().hex[:8], mode="new")
        warm = wrkload.Load(load.threads, load.connections, 3)
        wrkload.run_wrk(base + "/v1/postback", warm, mix)
        benchdb.analyze(leadgate.database_url)
        mix = wrkload.LeadMix(api_key=key, nonce=uuid.uuid4().hex[:8], mode="new")
        return wrkload.run_wrk(base + "/v1/postback", load, mix)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args(argv)
    executable = Path(sys.executable).with_name("leadgate")
    leadgate = leadgate_admin.Leadgate(executable, args.database_url, args.redis_url)
    benchdb.recreate_database(args.database_url)
    benchdb.flush_redis(args.redis_url)
    # The bench tenant's own limit would override the default; keep it at the default.
    leadgate.run(["migrate"])
    tenant = leadgate.run_json(["tenants", "create", "bench", "--json"])
    key = leadgate.run_json(["keys", "create", "--tenant", tenant["id"], "--json"])["key"]
    load = wrkload.Load(threads=2, connections=args.connections, duration_s=args.duration)
    results: dict[str, list[wrkload.WrkResult]] = {"limited": [], "unlimited": []}
    with tempfile.TemporaryDirectory(prefix="leadgate-bench-rl-") as tmp:
        # One unmeasured round first: the tables and caches of a fresh database take a while
        # to settle, and would otherwise weigh on whichever side runs first.
        run_once(leadgate, "unlimited", key, load, Path(tmp))
        for label in ORDER:
            result = run_once(leadgate, label, key, load, Path(tmp))
            results[label].append(result)
            print(f"{label:<10} {result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                  f"p99 {result.p99_ms:6.2f} ms  non-2xx {result.non_2xx}", flush=True)  # fmt: skip
    limited = statistics.mean(r.rps for r in results["limited"])
    unlimited = statistics.mean(r.rps for r in results["unlimited"])
    print(f"\nmean: with limiter {limited:.0f} req/s, without {unlimited:.0f} req/s; "
          f"the limiter costs {100 * (1 - limited / unlimited):.1f}% of throughput")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
