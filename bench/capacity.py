"""Capacity: CPU per postback and per delivery, with 1 and 2 gateway processes and 1 and 2 workers.

Each configuration gets a fresh database (empty tables, nothing runs ANALYZE), a flushed
Redis database, `bench/receiver.py` (answers 200 at once), one `leadgate serve` with
LEADGATE_PROCESSES = the gateway count (one port, the kernel spreads connections), and as many
`leadgate worker` processes. wrk posts new leads (`lua/postback.lua`, `--connections` open)
for `--warmup` then `--duration` seconds; the workers deliver each `lead.created` to the
receiver all along. During the measured window it reads CPU time from /proc for every process
group (the gateway's processes, each worker, the receiver, wrk) and for Postgres, whose
backends are split by the `application_name` each Leadgate pool connects with (gateway,
worker), so a postback's and a delivery's Postgres cost are told apart.

Reported per configuration: postbacks/s (2xx from wrk), deliveries/s (webhooks the receiver
got in the window) and the backlog left when the window closed; cores used by each part;
CPU µs per postback (gateway, Postgres for the gateway) and per delivery (workers, Postgres
for the workers); WAL bytes per postback and commits per second. The reference measured in
the same run is `durable-floor` (bench/peers/durable_floor.py): one INSERT per group-committed
batch into one table, the least Postgres work a durable postback can cost here.

The machine is shared: the load average before and after each configuration is printed, and
`other` is whatever else the machine did meanwhile.

Usage: .venv/bin/python bench/capacity.py [--duration 10] [--only 1x1,2x2] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

import benchdb
import children
import leadgate_admin
import psycopg
import wrkload
from peers.delivery_harness import (
    CpuMeter,
    Watched,
    add_endpoint,
    fresh_tenant,
    infrastructure,
    leadgate_env,
    receiver,
    receiver_count,
    started,
)

BENCH_DIR = Path(__file__).resolve().parent
DATABASE = "leadgate_bench_capacity"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
CONFIGS = ("1x1", "2x1", "1x2", "2x2")  # gateway processes x workers
GATEWAY_APP = "leadgate-bench-gateway"
WORKER_APP = "leadgate-bench-worker"

# Postgres backends of the bench database, by the application name their pool connected with.
BACKENDS = """
SELECT pid, coalesce(application_name, '') FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""
WAL_BYTES = "SELECT wal_bytes FROM pg_stat_wal"
COMMITS = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
BACKLOG = "SELECT count(*) FROM deliveries WHERE state = 'pending'"


@dataclass(frozen=True)
class Options:
    database_url: str | None
    redis_url: str
    duration: int
    warmup: int
    connections: int
    threads: int
    only: tuple[str, ...]
    floor: bool
    out_dir: Path
    leadgate: Path
    json_out: Path | None
    # Each config is measured again with these variables set (e.g. a statement cache of 0).
    variant: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclass
class Row:
    """One configuration's measured window."""

    name: str
    gateways: int
    workers: int
    postbacks_per_s: float
    deliveries_per_s: float
    backlog: int
    p50_ms: float
    p99_ms: float
    non_2xx: int
    cores: dict[str, float]
    us_per_postback: dict[str, float]
    us_per_delivery: dict[str, float]
    wal_bytes_per_postback: float
    commits_per_s: float
    load_before: str
    load_after: str
    complaints: dict[str, int]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def with_app(dsn: str, name: str) -> str:
    """The DSN with `application_name`, which asyncpg passes on to Postgres."""
    separator = "&" if "?" in dsn else "?"
    return f"{dsn}{separator}application_name={name}"


def _ticks(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


@dataclass
class BackendMeter:
    """CPU seconds of the bench database's backends, summed by application name."""

    dsn: str
    before: dict[int, int] = field(default_factory=dict)

    def _apps(self) -> dict[int, str]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return {int(pid): str(app) for pid, app in conn.execute(BACKENDS)}

    def start(self) -> None:
        self.before = {pid: t for pid in self._apps() if (t := _ticks(pid)) is not None}

    def stop(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for pid, app in self._apps().items():
            ticks = _ticks(pid)
            if ticks is None:
                continue
            label = (
                "pg-gateway"
                if app in (GATEWAY_APP, "leadgate-key-listener")
                else "pg-worker"
                if app == WORKER_APP
                else "pg-other"
            )
            used[label] = used.get(label, 0.0) + (ticks - self.before.get(pid, 0))
        return {k: v / children.CLOCK_TICKS for k, v in used.items()}


def _scalar(dsn: str, query: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def wait_for_line(path: Path, text: str, child: children.Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        if child.process.poll() is not None:
            raise children.ServerFailed(f"{child.name} exited:\n" + children.log_tail(path))
        time.sleep(0.1)
    raise children.ServerFailed(f"{child.name}: no {text!r} in {timeout:.0f}s")


@contextlib.contextmanager
def deployment(
    opts: Options, gateways: int, workers: int, tag: str, extra: dict[str, str]
) -> Iterator[tuple[children.Server, list[children.Server], children.Server, str]]:
    """The receiver, a gateway of `gateways` processes and `workers` workers, ready; the key."""
    _tenant, key = fresh_tenant(opts)
    out = opts.out_dir
    port = children.free_port()
    gateway_env = leadgate_env(
        opts,
        LEADGATE_PORT=str(port),
        LEADGATE_PROCESSES=str(gateways),
        LEADGATE_DATABASE_URL=with_app(opts.database_url, GATEWAY_APP),
        **extra,
    )
    worker_env = leadgate_env(
        opts, LEADGATE_DATABASE_URL=with_app(opts.database_url, WORKER_APP), **extra
    )
    with contextlib.ExitStack() as stack:
        recv = stack.enter_context(receiver(0.0, out / f"{tag}-receiver.log"))
        argv = [str(opts.leadgate), "serve"]
        gw = stack.enter_context(
            children.running(
                "gateway", argv, gateway_env, f"http://127.0.0.1:{port}", out / f"{tag}-gw.log"
            )
        )
        add_endpoint(gw.base_url, key, recv.base_url + "/hook")
        started_workers = []
        for n in range(workers):
            log = out / f"{tag}-worker{n}.log"
            worker = stack.enter_context(
                started(f"worker{n}", [str(opts.leadgate), "worker"], worker_env, log)
            )
            wait_for_line(log, "worker_started", worker, 30)
            started_workers.append(worker)
        yield gw, started_workers, recv, key


def measure(
    opts: Options,
    gateways: int,
    workers: int,
    name: str | None = None,
    extra: dict[str, str] | None = None,
    groups_extra: dict[str, int] | None = None,
) -> Row:
    """One configuration's measured window; `extra` is added to every Leadgate process's
    environment, `groups_extra` are more process groups to account CPU for."""
    name = name or f"{gateways}x{workers}"
    load_before = loadavg()
    with deployment(opts, gateways, workers, name, extra or {}) as (gw, workers_, recv, key):
        mix = wrkload.LeadMix(key, uuid.uuid4().hex[:8], "new")
        load = wrkload.Load(opts.threads, opts.connections, opts.warmup)
        url = gw.base_url + "/v1/postback"
        wrkload.run_wrk(url, load, mix)
        groups = {"gateway": gw.pgid, "receiver": recv.pgid, **(groups_extra or {})}
        groups |= {f"worker{n}": w.pgid for n, w in enumerate(workers_)}
        meter = CpuMeter(Watched(groups, infrastructure(opts.database_url, opts.redis_url)))
        backends = BackendMeter(opts.database_url)
        wal0, commits0 = _scalar(opts.database_url, WAL_BYTES), _scalar(opts.database_url, COMMITS)
        got0 = int(receiver_count(recv.base_url)["count"])
        began = time.monotonic()
        backends.start()
        meter.start()
        load = wrkload.Load(opts.threads, opts.connections, opts.duration)
        result = wrkload.run_wrk(url, load, mix, opts.out_dir / f"{name}-wrk.txt")
        cores = meter.stop({"wrk": result.wrk_cpu_s})
        pg_split = backends.stop()
        wall = time.monotonic() - began
        got = int(receiver_count(recv.base_url)["count"]) - got0
        wal = _scalar(opts.database_url, WAL_BYTES) - wal0
        commits = _scalar(opts.database_url, COMMITS) - commits0
        backlog = _scalar(opts.database_url, BACKLOG)
    ok = result.requests - result.non_2xx
    worker_cores = sum(v for k, v in cores.items() if k.startswith("worker"))
    cores["workers"] = round(worker_cores, 2)
    for label, seconds in pg_split.items():
        cores[label] = round(seconds / wall, 2)
    per_postback = {
        "gateway": cores["gateway"] * wall / max(ok, 1) * 1e6,
        "pg-gateway": pg_split.get("pg-gateway", 0.0) / max(ok, 1) * 1e6,
        "postgres": cores.get("postgres", 0.0) * wall / max(ok, 1) * 1e6,
    }
    per_delivery = {
        "workers": worker_cores * wall / max(got, 1) * 1e6,
        "pg-worker": pg_split.get("pg-worker", 0.0) / max(got, 1) * 1e6,
        "receiver": cores.get("receiver", 0.0) * wall / max(got, 1) * 1e6,
    }
    complaints: dict[str, int] = {}
    for path in opts.out_dir.glob(f"{name}-*.log"):
        for k, v in leadgate_admin.log_complaints(path).items():
            complaints[k] = complaints.get(k, 0) + v
    return Row(
        name=name,
        gateways=gateways,
        workers=workers,
        postbacks_per_s=round(ok / result.duration_s, 1),
        deliveries_per_s=round(got / wall, 1),
        backlog=backlog,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        non_2xx=result.non_2xx + result.socket_error_count,
        cores=cores,
        us_per_postback={k: round(v) for k, v in per_postback.items()},
        us_per_delivery={k: round(v) for k, v in per_delivery.items()},
        wal_bytes_per_postback=round(wal / max(ok, 1)),
        commits_per_s=round(commits / wall, 1),
        load_before=load_before,
        load_after=loadavg(),
        complaints=complaints,
    )


def measure_floor(opts: Options) -> Row:
    """The reference: durable_floor.py, one process, on the same Postgres."""
    load_before = loadavg()
    benchdb.recreate_database(opts.database_url)
    port = children.free_port()
    argv = [sys.executable, str(BENCH_DIR / "peers" / "durable_floor.py"), "--port", str(port)]
    argv += ["--database-url", with_app(opts.database_url, GATEWAY_APP)]
    base = f"http://127.0.0.1:{port}"
    out = opts.out_dir / "floor.log"
    with children.running("durable-floor", argv, dict(os.environ), base, out) as server:
        mix = wrkload.LeadMix("none", uuid.uuid4().hex[:8], "new")
        url = base + "/v1/postback"
        wrkload.run_wrk(url, wrkload.Load(opts.threads, opts.connections, opts.warmup), mix)
        meter = CpuMeter(
            Watched({"gateway": server.pgid}, infrastructure(opts.database_url, opts.redis_url))
        )
        backends = BackendMeter(opts.database_url)
        wal0, commits0 = _scalar(opts.database_url, WAL_BYTES), _scalar(opts.database_url, COMMITS)
        began = time.monotonic()
        backends.start()
        meter.start()
        load = wrkload.Load(opts.threads, opts.connections, opts.duration)
        result = wrkload.run_wrk(url, load, mix, opts.out_dir / "floor-wrk.txt")
        cores = meter.stop({"wrk": result.wrk_cpu_s})
        pg_split = backends.stop()
        wall = time.monotonic() - began
        wal = _scalar(opts.database_url, WAL_BYTES) - wal0
        commits = _scalar(opts.database_url, COMMITS) - commits0
    ok = result.requests - result.non_2xx
    for label, seconds in pg_split.items():
        cores[label] = round(seconds / wall, 2)
    return Row(
        name="durable-floor",
        gateways=1,
        workers=0,
        postbacks_per_s=round(ok / result.duration_s, 1),
        deliveries_per_s=0.0,
        backlog=0,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        non_2xx=result.non_2xx + result.socket_error_count,
        cores=cores,
        us_per_postback={
            "gateway": round(cores["gateway"] * wall / max(ok, 1) * 1e6),
            "pg-gateway": round(pg_split.get("pg-gateway", 0.0) / max(ok, 1) * 1e6),
            "postgres": round(cores.get("postgres", 0.0) * wall / max(ok, 1) * 1e6),
        },
        us_per_delivery={},
        wal_bytes_per_postback=round(wal / max(ok, 1)),
        commits_per_s=round(commits / wall, 1),
        load_before=load_before,
        load_after=loadavg(),
        complaints={},
    )


HEADER = (
    "config", "postbacks/s", "deliveries/s", "backlog", "p50 ms", "p99 ms", "errors",
    "gw cores", "wk cores", "pg gw", "pg wk", "pg rest", "other", "µs/postback gw",
    "µs/postback pg",
    "µs/delivery wk", "µs/delivery pg", "WAL B/postback", "commits/s", "load before→after",
)  # fmt: skip


def cells(row: Row) -> list[str]:
    c = row.cores
    return [
        row.name,
        f"{row.postbacks_per_s:,.0f}",
        f"{row.deliveries_per_s:,.0f}",
        f"{row.backlog:,}",
        f"{row.p50_ms:.1f}",
        f"{row.p99_ms:.1f}",
        str(row.non_2xx),
        f"{c.get('gateway', 0):.2f}",
        f"{c.get('workers', 0):.2f}",
        f"{c.get('pg-gateway', 0):.2f}",
        f"{c.get('pg-worker', 0):.2f}",
        f"{max(0.0, c.get('postgres', 0) - c.get('pg-gateway', 0) - c.get('pg-worker', 0)):.2f}",
        f"{c.get('other', 0):.2f}",
        f"{row.us_per_postback.get('gateway', 0):,}",
        f"{row.us_per_postback.get('pg-gateway', 0):,}",
        f"{row.us_per_delivery.get('workers', 0):,}" if row.workers else "-",
        f"{row.us_per_delivery.get('pg-worker', 0):,}" if row.workers else "-",
        f"{row.wal_bytes_per_postback:,.0f}",
        f"{row.commits_per_s:,.0f}",
        f"{row.load_before} → {row.load_after}",
    ]


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--database-url",
        default=None,
        help="Dropped and recreated! Default: an embedded Postgres of its own (durable, stock "
        "settings) under --out-dir, so that Postgres' CPU is this run's alone.",
    )
    p.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="Flushed!")
    p.add_argument("--duration", type=int, default=10, help="Measured seconds per config.")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default=",".join(CONFIGS), help="Configs GATEWAYSxWORKERS.")
    p.add_argument("--no-floor", action="store_true", help="Skip the durable-floor reference.")
    p.add_argument("--out-dir", type=Path, default=Path("/tmp/leadgate-bench-capacity"))
    p.add_argument("--leadgate", type=Path, default=Path(sys.executable).parent / "leadgate")
    p.add_argument("--json", type=Path, default=None, help="Write the rows here too.")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Measure each config again with this variable set for every Leadgate process "
        "(repeatable), e.g. LEADGATE_DB_STATEMENT_CACHE_SIZE=0.",
    )
    a = p.parse_args(argv)
    return Options(
        database_url=a.database_url,
        redis_url=a.redis_url,
        duration=a.duration,
        warmup=a.warmup,
        connections=a.connections,
        threads=a.threads,
        only=tuple(c.strip() for c in a.only.split(",") if c.strip()),
        floor=not a.no_floor,
        out_dir=a.out_dir,
        leadgate=a.leadgate,
        json_out=a.json,
        variant=dict(v.split("=", 1) for v in a.variant),
    )


def exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def report_header(opts: Options) -> str:
    settings = benchdb.durability_settings(opts.database_url)
    return (
        f"capacity: {opts.duration} s measured after {opts.warmup} s warm-up, wrk -t{opts.threads}"
        f" -c{opts.connections}; nproc {os.cpu_count()}; load average {loadavg()}\n"
        f"postgres: {settings}"
    )


@contextlib.contextmanager
def postgres(opts: Options) -> Iterator[Options]:
    """The options, with the database on the given server or on an embedded one of its own."""
    if opts.database_url:
        yield opts
        return
    from urllib.parse import urlsplit, urlunsplit

    from gateway import embedded

    url, server = embedded.start_postgres(opts.out_dir / "postgres")
    try:
        own = urlunsplit(urlsplit(url)._replace(path=f"/{DATABASE}"))
        yield dataclasses.replace(opts, database_url=own)
    finally:
        server.cleanup()


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, exit_on_signal)
    with postgres(opts) as ready:
        return run(ready)


def run(opts: Options) -> int:
    print(report_header(opts), flush=True)
    rows: list[Row] = []
    if opts.floor:
        rows.append(measure_floor(opts))
        print(table(rows), flush=True)
    for config in opts.only:
        g, w = (int(n) for n in config.split("x"))
        rows.append(measure(opts, g, w))
        print(table(rows), flush=True)
        if opts.variant:
            label = ",".join(f"{k}={v}" for k, v in opts.variant.items())
            rows.append(measure(opts, g, w, f"{config} {label}", opts.variant))
            print(table(rows), flush=True)
    for row in rows:
        if row.complaints:
            print(f"warning: {row.name} logged {row.complaints}")
        if row.cores.get("other", 0) > 0.3:
            print(f"warning: {row.name} ran beside {row.cores['other']:.2f} cores of other work")
    if opts.json_out is not None:
        opts.json_out.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
