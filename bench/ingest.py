"""Postback ingestion benchmark: Leadgate against a ceiling and a conventional stack.

Each scenario starts its server as a child process, waits for /healthz, warms up, then runs
wrk (its own process, a Lua script building each request) for --duration seconds and stops
the server. Scenarios run one after the other, never together:

  bare-aiohttp                aiohttp that only parses the JSON and answers 202: the ceiling
  durable-floor               aiohttp + asyncpg group-committing each postback's JSON into one
                              table (one INSERT … SELECT unnest … ON CONFLICT (email) per
                              batch), answering after the commit: the least a durable
                              gateway on this stack can do
  leadgate-new                POST /v1/postback, a new lead on every request (201)
  leadgate-matched            POST /v1/postback on a pool of existing leads: match + merge (200)
  leadgate-new-scored         leadgate-new for a tenant with config/scoring.leaditio.json's ten
                              rules: every lead scored before its write
  leadgate-matched-scored     leadgate-matched for that tenant
  sync-flask-psycopg          Flask + psycopg 3 under gunicorn sync workers, new leads
  sync-flask-psycopg-matched  the same on a pool of existing leads

The bench database is dropped and created again at the start, so every run starts from empty
tables, as a deployment does; nothing runs ANALYZE (`--analyze` does, after each warm-up).
`--growth N` runs leadgate-new N times in a row on the same, growing tables and reports the
last round's rate against the first's. Commits stay durable: nothing here changes fsync or
synchronous_commit. The table at the end gives throughput, latency, non-2xx answers, socket
errors and where the CPU went; warnings follow it when other processes took CPU during a
scenario or Leadgate logged warnings or errors.

Usage (from the repository root):
  .venv/bin/python bench/ingest.py [--duration 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import benchdb
import children
import leadgate_admin
import wrkload
from peers.flask_psycopg import create_table as create_flask_table

BENCH_DIR = Path(__file__).resolve().parent
PEERS_DIR = BENCH_DIR / "peers"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/leadgate_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
SCENARIOS = (
    "bare-aiohttp",
    "durable-floor",
    "leadgate-new",
    "leadgate-matched",
    "leadgate-new-scored",
    "leadgate-matched-scored",
    "sync-flask-psycopg",
    "sync-flask-psycopg-matched",
)
# `--scoring`: each Leadgate scenario beside the same one for a tenant with ten scoring rules.
SCORING_SCENARIOS = ("leadgate-new", "leadgate-new-scored", "leadgate-matched",
                     "leadgate-matched-scored")  # fmt: skip
SCORED = "-scored"
CEILING = "bare-aiohttp"
FLOOR = "durable-floor"
# CPU (in cores) outside the measured processes above which a scenario's figures are suspect;
# the kernel's loopback networking alone stays well below it.
OTHER_CPU_WARNING = 0.3


@dataclass(frozen=True)
class Options:
    """Everything a run is told on the command line."""

    duration: int
    warmup: int
    connections: int
    threads: int
    database_url: str
    redis_url: str
    pool: int
    gunicorn_workers: int
    scenarios: tuple[str, ...]
    out_dir: Path
    leadgate: Path
    analyze: bool
    growth: int


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server under test."""

    argv: list[str]
    env: dict[str, str]


@dataclass
class Snapshot:
    """Cumulative resource counters at one instant."""

    at: float
    server_cpu: dict[int, int]
    postgres_cpu: dict[int, int]
    redis_cpu: dict[int, int]
    busy: float
    total: float
    iowait: float
    pg: benchdb.PgCounters


@dataclass
class Outcome:
    """One measured scenario."""

    scenario: str
    result: wrkload.WrkResult
    usage: dict[str, float]
    # Warning and error events in the server's log, by "level: event" (Leadgate only).
    log_complaints: dict[str, int] = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description="Benchmark Leadgate's postback ingestion against two references.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per scenario")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per scenario")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (-c)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (-t)")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="bench database; dropped and created again at start",
    )
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help="Redis database for Leadgate; flushed at start",
    )
    parser.add_argument(
        "--pool", type=int, default=1000, help="existing leads the matched scenarios cycle through"
    )
    parser.add_argument(
        "--gunicorn-workers",
        type=int,
        default=5,
        help="gunicorn sync workers for the Flask reference (2 x cores + 1)",
    )
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help="comma-separated scenarios to run, in this order",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("/tmp/leadgate-bench"),
        help="server logs, raw wrk output and results.json",
    )
    parser.add_argument(
        "--leadgate",
        type=Path,
        default=Path(sys.executable).parent / "leadgate",
        help="the leadgate console script",
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="run ANALYZE after each warm-up (a deployment growing from empty gets none)",
    )
    parser.add_argument(
        "--scoring",
        action="store_true",
        help=f"run {','.join(SCORING_SCENARIOS)} (scoring's cost) instead of --only",
    )
    parser.add_argument(
        "--growth",
        type=int,
        default=1,
        help="rounds of leadgate-new on the same growing tables (the first is the reference)",
    )
    args = parser.parse_args(argv)
    scenarios = tuple(s.strip() for s in args.only.split(",") if s.strip())
    if args.scoring:
        scenarios = SCORING_SCENARIOS
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    if args.duration < 1 or args.warmup < 0 or args.connections < args.threads:
        parser.error("need --duration >= 1, --warmup >= 0 and --connections >= --threads")
    return Options(
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        threads=args.threads,
        database_url=args.database_url,
        redis_url=args.redis_url,
        pool=args.pool,
        gunicorn_workers=args.gunicorn_workers,
        scenarios=scenarios,
        out_dir=args.out_dir,
        leadgate=args.leadgate,
        analyze=args.analyze,
        growth=max(1, args.growth),
    )


def exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so every child is stopped on the way out."""
    raise KeyboardInterrupt(f"signal {signum}")


def bare_spec(port: int) -> ServerSpec:
    argv = [sys.executable, str(PEERS_DIR / "bare_aiohttp.py"), "--port", str(port)]
    return ServerSpec(argv, dict(os.environ))


def flask_spec(port: int, opts: Options, api_key: str) -> ServerSpec:
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(opts.gunicorn_workers),
        "--worker-class",
        "sync",
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(PEERS_DIR),
        "--access-logfile",
        "-",
        "flask_psycopg:app",
    ]
    env = dict(os.environ, BENCH_DATABASE_URL=opts.database_url, BENCH_API_KEY=api_key)
    return ServerSpec(argv, env)


def floor_spec(port: int, opts: Options) -> ServerSpec:
    argv = [sys.executable, str(PEERS_DIR / "durable_floor.py"), "--port", str(port),
            "--database-url", opts.database_url]  # fmt: skip
    return ServerSpec(argv, dict(os.environ))


def server_spec(scenario: str, port: int, opts: Options, api_key: str) -> ServerSpec:
    if scenario == CEILING:
        return bare_spec(port)
    if scenario == FLOOR:
        return floor_spec(port, opts)
    if scenario.startswith("sync-flask"):
        return flask_spec(port, opts, api_key)
    lg = leadgate_admin.Leadgate(opts.leadgate, opts.database_url, opts.redis_url)
    return ServerSpec(lg.serve_argv(), lg.env(port))


@dataclass(frozen=True)
class Services:
    """The PIDs of the shared servers whose CPU use a run accounts (None: not local)."""

    postgres: int | None
    redis: int | None


def postgres_cpu(postmaster: int | None, database_url: str) -> dict[int, int]:
    """CPU ticks of the postmaster, the bench database's sessions and the shared helpers."""
    if postmaster is None:
        return {}
    return children.cpu_of_pids({postmaster} | benchdb.server_pids(database_url))


def snapshot(pgid: int, services: Services, database_url: str) -> Snapshot:
    busy, total = children.machine_busy()
    return Snapshot(
        at=time.monotonic(),
        server_cpu=children.cpu_by_group(pgid),
        postgres_cpu=postgres_cpu(services.postgres, database_url),
        redis_cpu=children.cpu_of_family(services.redis),
        busy=busy,
        total=total,
        iowait=children.iowait_seconds(),
        pg=benchdb.pg_counters(database_url),
    )


def usage_between(a: Snapshot, b: Snapshot, wrk_cpu: float, requests: int) -> dict[str, float]:
    """Where the CPU went during a measurement, in cores, plus commit and WAL-flush rates."""
    wall = b.at - a.at
    commits = b.pg.xact_commit - a.pg.xact_commit
    syncs = b.pg.wal_sync - a.pg.wal_sync
    cores = {
        "server_cores": children.cpu_seconds_between(a.server_cpu, b.server_cpu) / wall,
        "postgres_cores": children.cpu_seconds_between(a.postgres_cpu, b.postgres_cpu) / wall,
        "redis_cores": children.cpu_seconds_between(a.redis_cpu, b.redis_cpu) / wall,
        "wrk_cores": wrk_cpu / wall,
    }
    busy_cores = (b.busy - a.busy) / wall
    return {
        "wall_s": wall,
        **cores,
        # Everything else: other processes, kernel threads, this driver.
        "other_cores": max(busy_cores - sum(cores.values()), 0.0),
        "machine_busy_pct": 100 * (b.busy - a.busy) / max(b.total - a.total, 1e-9),
        "iowait_cores": (b.iowait - a.iowait) / wall,
        "commits_per_s": commits / wall,
        "wal_syncs_per_s": syncs / wall,
        "wal_records_per_request": (b.pg.wal_records - a.pg.wal_records) / max(requests, 1),
        "requests_per_wal_sync": requests / syncs if syncs else 0.0,
    }


@dataclass(frozen=True)
class Run:
    """What every scenario of a run shares."""

    opts: Options
    api_key: str
    services: Services
    # The key of the tenant with the ten-rule scoring set (the *-scored scenarios).
    scored_key: str = ""

    def key_for(self, scenario: str) -> str:
        return self.scored_key if scenario.endswith(SCORED) else self.api_key


def measure(scenario: str, server: children.Server, run: Run) -> Outcome:
    """Warm up, then run wrk for the measured duration while sampling resource use."""
    opts, api_key = run.opts, run.key_for(scenario)
    mode = "matched" if "matched" in scenario else "new"
    load = wrkload.Load(opts.threads, opts.connections, opts.duration)
    run_id = uuid.uuid4().hex[:8]
    if opts.warmup:
        warm = wrkload.Load(opts.threads, opts.connections, opts.warmup)
        mix = wrkload.LeadMix(api_key, f"w{run_id}", mode, opts.pool)
        w = wrkload.run_wrk(server.base_url, warm, mix, opts.out_dir / f"{scenario}.warmup.txt")
        say(f"  warm-up: {w.requests} requests, statuses {w.statuses}")
    if opts.analyze:
        benchdb.analyze(opts.database_url)
    mix = wrkload.LeadMix(api_key, f"r{run_id}", mode, opts.pool)
    before = snapshot(server.pgid, run.services, opts.database_url)
    result = wrkload.run_wrk(server.base_url, load, mix, opts.out_dir / f"{scenario}.wrk.txt")
    after = snapshot(server.pgid, run.services, opts.database_url)
    return Outcome(
        scenario, result, usage_between(before, after, result.wrk_cpu_s, result.requests)
    )


def run_scenario(scenario: str, run: Run) -> Outcome:
    opts, api_key = run.opts, run.key_for(scenario)
    port = children.free_port()
    spec = server_spec(scenario, port, opts, api_key)
    base_url = f"http://127.0.0.1:{port}"
    log_path = opts.out_dir / f"{scenario}.log"
    say(f"{scenario}: starting on {base_url} (log: {log_path})")
    with children.running(scenario, spec.argv, spec.env, base_url, log_path) as server:
        if "matched" in scenario:
            seeded = leadgate_admin.seed_pool(base_url, api_key, opts.pool)
            say(f"  seeded {opts.pool} leads: statuses {seeded}")
        outcome = measure(scenario, server, run)
    r, u = outcome.result, outcome.usage
    say(
        f"  measured: {r.requests} requests in {r.duration_s:.1f}s, statuses {r.statuses}, "
        f"socket errors {r.socket_errors}; machine {u['machine_busy_pct']:.0f}% busy"
    )
    if scenario.startswith("leadgate"):
        complaints = leadgate_admin.log_complaints(log_path)
        outcome.log_complaints = complaints
        if complaints:
            say(f"  WARNING: Leadgate logged {complaints} (see {log_path})")
    return outcome


def prepare(opts: Options) -> tuple[str, str]:
    """Recreate the bench database, apply Leadgate's schema, and return an ingest key (and one
    of a tenant with the ten-rule scoring set, when a scored scenario runs)."""
    benchdb.recreate_database(opts.database_url)
    benchdb.flush_redis(opts.redis_url)
    create_flask_table(opts.database_url)
    if not any(s.startswith("leadgate") for s in opts.scenarios):
        return "lg_bench_" + uuid.uuid4().hex, ""
    if not opts.leadgate.exists():
        raise leadgate_admin.AdminFailed(f"the leadgate console script is missing: {opts.leadgate}")
    lg = leadgate_admin.Leadgate(opts.leadgate, opts.database_url, opts.redis_url)
    key = leadgate_admin.prepare(lg)
    if not any(s.endswith(SCORED) for s in opts.scenarios):
        return key, ""
    return key, leadgate_admin.prepare(lg, scoring=leadgate_admin.SCORING_RULES, migrate=False)


def fmt_row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(
        c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def table(outcomes: list[Outcome]) -> str:
    """The result table: throughput, latency, errors, share of the ceiling, CPU use."""
    ceiling = next((o.result.rps for o in outcomes if o.scenario == CEILING), 0.0)
    floor = next((o.result.rps for o in outcomes if o.scenario == FLOOR), 0.0)
    header = [
        "scenario",
        "req/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "sock err",
        "% of bare",
        "% of floor",
        "server cpu",
        "pg cpu",
        "wrk cpu",
        "other cpu",
        "xact/s",
    ]
    rows = [header]
    for o in outcomes:
        r, u = o.result, o.usage
        share = f"{100 * r.rps / ceiling:.1f}%" if ceiling else "-"
        of_floor = f"{100 * r.rps / floor:.1f}%" if floor else "-"
        rows.append(
            [
                o.scenario,
                f"{r.rps:,.0f}",
                f"{r.p50_ms:.2f}",
                f"{r.p99_ms:.2f}",
                str(r.non_2xx),
                str(r.socket_error_count),
                share,
                of_floor,
                f"{u['server_cores']:.2f}",
                f"{u['postgres_cores']:.2f}",
                f"{u['wrk_cores']:.2f}",
                f"{u['other_cores']:.2f}",
                f"{u['commits_per_s']:,.0f}",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [fmt_row(row, widths) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def disturbance_warning(outcomes: list[Outcome]) -> str | None:
    """A warning naming the scenarios during which something else used much CPU."""
    busy = [o.scenario for o in outcomes if o.usage["other_cores"] > OTHER_CPU_WARNING]
    if not busy:
        return None
    return (
        f"warning: more than {OTHER_CPU_WARNING:.2f} cores went to other processes during "
        f"{', '.join(busy)}; those figures are disturbed, run again on a quiet machine"
    )


def complaint_warning(outcomes: list[Outcome]) -> str | None:
    """A warning naming the scenarios whose server logged warnings or errors."""
    noisy = [f"{o.scenario} {o.log_complaints}" for o in outcomes if o.log_complaints]
    if not noisy:
        return None
    return "warning: the server logged warnings or errors during " + "; ".join(noisy)


def say(message: str) -> None:
    print(message, flush=True)


def save(outcomes: list[Outcome], opts: Options, settings: dict[str, str]) -> Path:
    path = opts.out_dir / "results.json"
    data: dict[str, Any] = {
        "argv": sys.argv,
        "nproc": os.cpu_count(),
        "postgres": settings,
        "scenarios": [
            {
                "scenario": o.scenario,
                "rps": o.result.rps,
                **asdict(o.result),
                "usage": o.usage,
                "log_complaints": o.log_complaints,
            }
            for o in outcomes
        ],
    }
    path.write_text(json.dumps(data, indent=2))
    return path


def run_all(opts: Options, on_result: Callable[[Outcome], None]) -> None:
    api_key, scored_key = prepare(opts)
    services = Services(
        benchdb.postmaster_pid(opts.database_url), benchdb.redis_pid(opts.redis_url)
    )
    run = Run(opts, api_key, services, scored_key)
    for scenario in opts.scenarios:
        rounds = opts.growth if scenario == "leadgate-new" else 1
        for n in range(1, rounds + 1):
            on_result(run_scenario(scenario if rounds == 1 else f"{scenario}#{n}", run))


def scoring_lines(outcomes: list[Outcome]) -> list[str]:
    """Each scored scenario's rate against the same scenario without rules."""
    rates = {o.scenario: o.result.rps for o in outcomes}
    lines = []
    for name, rps in rates.items():
        plain = rates.get(name.removesuffix(SCORED)) if name.endswith(SCORED) else None
        if plain:
            lines.append(
                f"scoring: {name} ran at {100 * rps / plain:.1f}% of "
                f"{name.removesuffix(SCORED)} ({rps:,.0f} against {plain:,.0f} req/s)"
            )
    return lines


def growth_line(outcomes: list[Outcome]) -> str | None:
    """The last growth round's new-lead rate against the first's, and the table's size."""
    rounds = [o for o in outcomes if o.scenario.startswith("leadgate-new#")]
    if len(rounds) < 2:
        return None
    first, last = rounds[0].result.rps, rounds[-1].result.rps
    return (
        f"growth: leadgate-new round {len(rounds)} ran at {100 * last / first:.1f}% of round 1 "
        f"({last:,.0f} against {first:,.0f} req/s), with no ANALYZE"
    )


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    previous = {s: signal.signal(s, exit_on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        wrkload.wrk_path()
    except wrkload.WrkMissing as e:
        print(e, file=sys.stderr)
        return 2
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    settings = benchdb.durability_settings(opts.database_url)
    say(
        f"cores: {os.cpu_count()}; wrk -t{opts.threads} -c{opts.connections}, "
        f"{opts.warmup}s warm-up + {opts.duration}s per scenario; postgres {settings}"
    )
    outcomes: list[Outcome] = []
    try:
        with signals_as_interrupts():
            run_all(opts, outcomes.append)
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        return 130
    except (children.ServerFailed, wrkload.WrkFailed, leadgate_admin.AdminFailed) as e:
        print(f"\nbenchmark failed: {e}", file=sys.stderr)
        return 1
    finally:
        if outcomes:
            say("\n" + table(outcomes))
            for warning in (
                *scoring_lines(outcomes),
                growth_line(outcomes),
                disturbance_warning(outcomes),
                complaint_warning(outcomes),
            ):
                if warning:
                    say(warning)
            say(f"\nraw output, logs and results.json in {save(outcomes, opts, settings).parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
