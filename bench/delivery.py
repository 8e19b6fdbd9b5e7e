"""Delivery throughput: one `leadgate worker` against three references, per kind of receiver.

For each receiver (`bench/receiver.py`, its own process: answering at once, then after
`--slow-delay` seconds) the run prepares a backlog of deliveries with Leadgate's own outbox
code, then measures, one scenario at a time, how fast each sender empties it:

  leadgate       `leadgate worker` (claims from Postgres in batches, woken by arq): start →
                 every delivery `succeeded` in Postgres, polled every 0.1 s. Durable state
                 per delivery.
  plain-aiohttp  `peers/delivery_plain.py`: an aiohttp client, semaphore of 100. No state:
                 the ceiling.
  naive-arq      `peers/delivery_arq.py`: one arq job per webhook, max_jobs=100.
  celery-8       `peers/delivery_celery.py`: Celery prefork, 8 processes, Redis broker,
                 `requests`.

The backlog is posted as postbacks through a `leadgate serve` while no worker runs (each
postback committed and followed by its wake-up, as in production; `--backlog outbox` writes it
with the outbox code directly instead). Nothing runs ANALYZE (`--analyze` does).

Every reference sends the payloads stored in Leadgate's events table, signed with Leadgate's
`sign_headers`, to the same receiver. A reference's time runs from its start until the
receiver has counted every payload. Commits stay durable: nothing here changes fsync or
synchronous_commit. The bench database is dropped and created again for each receiver.

Usage (from the repository root):
  .venv/bin/python bench/delivery.py [--count 20000] [--slow-count 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import benchdb
import leadgate_admin
import psycopg
from peers.delivery_harness import (
    PEERS_DIR,
    CpuMeter,
    Watched,
    add_endpoint,
    analyze,
    fresh_tenant,
    gateway,
    infrastructure,
    leadgate_env,
    python,
    receiver,
    receiver_count,
    receiver_reset,
    started,
    wait_until,
    worker_argv,
)

from gateway.crypto import Cipher
from gateway.events import Event, Outbox
from gateway.ids import new_id
from gateway.leads.ingest import STORED

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/leadgate_bench_delivery"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
SCENARIOS = ("leadgate", "plain-aiohttp", "naive-arq", "celery-8")
CEILING = "plain-aiohttp"
# Events written per outbox statement while preparing the backlog.
WRITE_BATCH = 500
# The usual advice for a Redis broker: start without waiting to meet other workers.
CELERY_QUIET = ("--without-gossip", "--without-mingle", "--without-heartbeat")
# CPU (in cores) outside the measured processes above which a scenario's figures are suspect.
OTHER_CPU_WARNING = 0.3


@dataclass(frozen=True)
class Options:
    database_url: str
    redis_url: str
    count: int
    slow_count: int
    slow_delay: float
    concurrency: int
    celery_processes: int
    backlog: str
    analyze: bool
    timeout: float
    repeat: int
    only: tuple[str, ...]
    receivers: tuple[str, ...]
    out_dir: Path
    leadgate: Path


@dataclass
class Result:
    """One scenario's figures."""

    scenario: str
    receiver_delay: float
    expected: int
    delivered: int
    seconds: float
    from_first_seconds: float | None
    received: int
    unique: int
    cpu: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0

    @property
    def steady_rate(self) -> float | None:
        if not self.from_first_seconds:
            return None
        return self.delivered / self.from_first_seconds


# --- Leadgate: database, tenant, endpoint, backlog -----------------------------------------


def lead_data(index: int, at: datetime) -> dict[str, Any]:
    """A lead as `lead.created` carries it: every writable field, a realistic half filled."""
    lead: dict[str, Any] = {"id": new_id("lead")}
    lead.update(dict.fromkeys(STORED))
    lead.update(
        email=f"d{index}@bench.example",
        first_name="Ada",
        last_name="Lovelace",
        phone="+14155550123",
        company="Analytical Engines",
        source="bench",
        campaign="c1",
        utm_source="google",
        utm_medium="cpc",
        stage="new",
        form_completion_percent=100.0,
        custom_data={"plan": "pro", "seq": index},
        created_at=at,
        updated_at=at,
    )
    return lead


async def post_backlog(base_url: str, api_key: str, count: int, concurrency: int = 64) -> None:
    """`count` new leads posted as a form or a network would: each committed, then woken."""
    import aiohttp

    headers = {"Authorization": f"Bearer {api_key}"}
    queue = iter(range(count))
    async with aiohttp.ClientSession(headers=headers) as http:

        async def poster() -> None:
            for i in queue:
                lead = {
                    k: v
                    for k, v in lead_data(i, datetime.now(UTC)).items()
                    if k not in ("id", "created_at", "updated_at", "stage") and v is not None
                }
                async with http.post(f"{base_url}/v1/postback", json=lead) as response:
                    if response.status != 201:
                        raise RuntimeError(
                            f"postback {i}: {response.status} {await response.text()}"
                        )

        await asyncio.gather(*(poster() for _ in range(concurrency)))


async def write_backlog(dsn: str, tenant_id: str, count: int, at: datetime) -> None:
    """`count` lead.created events and their deliveries, written by Leadgate's Outbox."""
    outbox = Outbox()
    conn = await asyncpg.connect(dsn)
    try:
        for first in range(0, count, WRITE_BATCH):
            events = []
            for i in range(first, min(first + WRITE_BATCH, count)):
                lead = lead_data(i, at)
                events.append(Event("lead.created", lead, at, lead["id"]))
            async with conn.transaction():
                await outbox.write(conn, [(tenant_id, e) for e in events])
    finally:
        await conn.close()


# The references sign with the endpoint's secret as Leadgate's worker does: decrypted.
CIPHER = Cipher([leadgate_admin.SECRET_KEYS])

EXPORT = """
SELECT ep.url, e.id AS event_id, e.body, ep.secret, ep.signature
FROM deliveries d JOIN events e ON e.id = d.event_id JOIN endpoints ep ON ep.id = d.endpoint_id
ORDER BY d.next_attempt_at, d.id
"""


def export_payloads(dsn: str, path: Path) -> int:
    """Write the stored envelopes, one JSON line per delivery, for the references."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with psycopg.connect(dsn) as conn, path.open("w") as out:
        for url, event_id, body, secret, signature in conn.execute(EXPORT):
            row = {
                "url": url,
                "event_id": event_id,
                "body": body,
                "secret": CIPHER.decrypt_text(secret),
                "signature": signature,
            }
            out.write(json.dumps(row) + "\n")
            written += 1
    return written


def delivery_states(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall()
    return {str(state): int(n) for state, n in rows}


def succeeded(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM deliveries WHERE state = 'succeeded'").fetchone()
    return int(row[0]) if row else 0


def measure(
    name: str, argv: list[str], env: dict[str, str], done: Callable[[], bool], ctx: RunContext
) -> tuple[float, float, dict[str, float]]:
    """Start a sender, wait for `done`; (seconds, wall time of the start, CPU in cores)."""
    meter = CpuMeter(Watched({"sender": 0, **ctx.groups}, ctx.families))
    wall_start = time.time()
    began = time.monotonic()
    meter.start()
    with started(name, argv, env, ctx.opts.out_dir / f"{name}-{ctx.tag}.log") as child:
        meter.watched.groups["sender"] = child.pgid
        ended = wait_until(done, child, ctx.opts.timeout)
        cpu = meter.stop()
    return ended - began, wall_start, cpu


@dataclass
class RunContext:
    """What every scenario of one receiver shares."""

    opts: Options
    delay: float
    count: int
    receiver_url: str
    payloads: Path
    groups: dict[str, int]
    families: dict[str, int]

    @property
    def tag(self) -> str:
        return receiver_tag(self.delay)

    @property
    def concurrency(self) -> int:
        return self.opts.concurrency

    def result(
        self, scenario: str, seconds: float, wall_start: float, cpu: dict[str, float]
    ) -> Result:
        seen = receiver_count(self.receiver_url)
        first = seen.get("first")
        from_first = seconds - (first - wall_start) if first else None
        delivered = min(int(seen["unique"]), self.count)
        return Result(
            scenario,
            self.delay,
            self.count,
            delivered,
            seconds,
            from_first,
            int(seen["count"]),
            int(seen["unique"]),
            cpu,
        )


# --- scenarios ------------------------------------------------------------------------------


def run_leadgate(ctx: RunContext) -> Result:
    env = leadgate_env(ctx.opts, LEADGATE_WORKER_CONCURRENCY=str(ctx.opts.concurrency))
    argv = worker_argv(ctx.opts)
    with psycopg.connect(ctx.opts.database_url, autocommit=True) as conn:
        seconds, wall_start, cpu = measure(
            "leadgate", argv, env, lambda: succeeded(conn) >= ctx.count, ctx
        )
    result = ctx.result("leadgate", seconds, wall_start, cpu)
    result.delivered = delivery_states(ctx.opts.database_url).get("succeeded", 0)
    result.notes.append(f"states {delivery_states(ctx.opts.database_url)}")
    return result


def received_all(ctx: RunContext) -> Callable[[], bool]:
    return lambda: int(receiver_count(ctx.receiver_url)["unique"]) >= ctx.count


def peer(script: str, *args: object) -> list[str]:
    """The command line of a reference script in bench/peers."""
    return [python(), str(PEERS_DIR / script), *map(str, args)]


def run_plain(ctx: RunContext) -> Result:
    argv = peer("delivery_plain.py", "--payloads", ctx.payloads, "--concurrency", ctx.concurrency)
    seconds, wall_start, cpu = measure(CEILING, argv, dict(os.environ), received_all(ctx), ctx)
    return ctx.result(CEILING, seconds, wall_start, cpu)


def run_arq(ctx: RunContext) -> Result:
    redis_url = ctx.opts.redis_url
    enqueue = peer(
        "delivery_arq.py", "enqueue", "--payloads", ctx.payloads, "--redis-url", redis_url
    )
    subprocess.run(enqueue, check=True, timeout=ctx.opts.timeout)
    argv = peer(
        "delivery_arq.py", "worker", "--redis-url", redis_url, "--max-jobs", ctx.concurrency
    )
    seconds, wall_start, cpu = measure("naive-arq", argv, dict(os.environ), received_all(ctx), ctx)
    return ctx.result("naive-arq", seconds, wall_start, cpu)


def run_celery(ctx: RunContext) -> Result:
    env = dict(os.environ, BENCH_CELERY_BROKER=ctx.opts.redis_url, PYTHONPATH=str(PEERS_DIR))
    enqueue = peer("delivery_celery.py", "enqueue", "--payloads", ctx.payloads)
    subprocess.run(enqueue, check=True, timeout=ctx.opts.timeout, env=env)
    processes = str(ctx.opts.celery_processes)
    argv = [python(), "-m", "celery", "-A", "delivery_celery", "worker", "--pool", "prefork"]
    argv += ["--concurrency", processes, "--loglevel", "WARNING", *CELERY_QUIET]
    seconds, wall_start, cpu = measure("celery-8", argv, env, received_all(ctx), ctx)
    return ctx.result("celery-8", seconds, wall_start, cpu)


RUNNERS: dict[str, Callable[[RunContext], Result]] = {
    "leadgate": run_leadgate,
    "plain-aiohttp": run_plain,
    "naive-arq": run_arq,
    "celery-8": run_celery,
}


# --- one receiver ---------------------------------------------------------------------------


def receiver_tag(delay: float) -> str:
    return "instant" if delay == 0 else f"delay{delay:g}"


def prepare_backlog(opts: Options, receiver_url: str, count: int, tag: str) -> Path:
    """A fresh database whose one endpoint is the receiver, `count` deliveries due on it, made
    while no worker runs. Returns the payload file."""
    tenant_id, api_key = fresh_tenant(opts)
    with gateway(opts, opts.out_dir / f"gateway-setup-{tag}.log") as server:
        add_endpoint(server.base_url, api_key, receiver_url)
        if opts.backlog == "api":
            print(f"[{tag}] posting {count} leads through the gateway …", flush=True)
            asyncio.run(post_backlog(server.base_url, api_key, count))
    if opts.backlog == "outbox":
        at = datetime.now(UTC) - timedelta(seconds=5)
        print(f"[{tag}] writing {count} deliveries through Leadgate's outbox …", flush=True)
        asyncio.run(write_backlog(opts.database_url, tenant_id, count, at))
    if opts.analyze:
        analyze(opts.database_url)
    payloads = opts.out_dir / f"payloads-{tag}.jsonl"
    export_payloads(opts.database_url, payloads)
    return payloads


def run_receiver(opts: Options, delay: float) -> list[Result]:
    """Start the receiver; per round, a fresh backlog and every scenario, one at a time."""
    count = opts.count if delay == 0 else opts.slow_count
    tag = receiver_tag(delay)
    results: list[Result] = []
    with receiver(delay, opts.out_dir / f"receiver-{tag}.log") as server:
        for round_ in range(1, opts.repeat + 1):
            payloads = prepare_backlog(opts, server.base_url + "/hook", count, tag)
            families = infrastructure(opts.database_url, opts.redis_url)
            groups = {"receiver": server.pgid}
            ctx = RunContext(opts, delay, count, server.base_url, payloads, groups, families)
            for scenario in opts.only:
                receiver_reset(server.base_url)
                if scenario != "leadgate":
                    benchdb.flush_redis(opts.redis_url)
                print(f"[{tag} {round_}/{opts.repeat}] {scenario} …", flush=True)
                results.append(RUNNERS[scenario](ctx))
                print(f"[{tag}] {scenario}: {results[-1].rate:.0f} deliveries/s", flush=True)
                time.sleep(1)  # let the stopped sender's sockets and processes settle
    return results


def best_of(results: list[Result]) -> list[Result]:
    """Per receiver and scenario, the round with the highest rate (the least disturbed),
    noting every round's rate; in the order the scenarios ran."""
    best: dict[tuple[float, str], Result] = {}
    rates: dict[tuple[float, str], list[float]] = {}
    for r in results:
        key = (r.receiver_delay, r.scenario)
        rates.setdefault(key, []).append(r.rate)
        if key not in best or r.rate > best[key].rate:
            best[key] = r
    for key, r in best.items():
        r.notes.append("rounds: " + ", ".join(f"{rate:.0f}" for rate in rates[key]))
    return list(best.values())


# --- the report -----------------------------------------------------------------------------


def bound(opts: Options, delay: float) -> float | None:
    """The worker's concurrency bound: requests in flight ÷ the receiver's answer time."""
    return opts.concurrency / delay if delay > 0 else None


def table(opts: Options, results: list[Result]) -> str:
    """One table per receiver: rate, share of the ceiling, bound and Celery, where time went."""
    lines = []
    for delay in sorted({r.receiver_delay for r in results}):
        rows = [r for r in results if r.receiver_delay == delay]
        ceiling = next((r.rate for r in rows if r.scenario == CEILING), None)
        celery = next((r.rate for r in rows if r.scenario == "celery-8"), None)
        limit = bound(opts, delay)
        lines.append(
            f"\nreceiver answering after {delay * 1000:.0f} ms, {rows[0].expected} deliveries"
        )
        if limit:
            lines.append(
                f"concurrency bound: {opts.concurrency} in flight / {delay:g} s = {limit:.0f}/s"
            )
        head = (
            f"{'scenario':<14} {'delivered':>9} {'seconds':>8} {'deliv/s':>8} {'% plain':>8} "
            f"{'% bound':>8} {'x celery':>8} {'1st→done/s':>10} {'dup':>5} {'sender':>7} "
            f"{'receiver':>8} {'pg':>5} {'redis':>6} {'driver':>6} {'other':>6} {'iowait':>6}"
        )
        lines += [head, "-" * len(head)]
        for r in rows:
            lines.append(row_text(r, ceiling, celery, limit))
    return "\n".join(lines)


def _pct(value: float | None, of: float | None) -> str:
    return f"{100 * value / of:.0f}%" if value is not None and of else "-"


def row_text(r: Result, ceiling: float | None, celery: float | None, limit: float | None) -> str:
    steady = f"{r.steady_rate:.0f}" if r.steady_rate else "-"
    times = f"{r.rate / celery:.1f}x" if celery and r.scenario != "celery-8" else "-"
    c = r.cpu
    return (
        f"{r.scenario:<14} {r.delivered:>9} {r.seconds:>8.2f} {r.rate:>8.0f} "
        f"{_pct(r.rate, ceiling):>8} {_pct(r.rate, limit):>8} {times:>8} {steady:>10} "
        f"{r.received - r.unique:>5} {c.get('sender', 0):>7.2f} {c.get('receiver', 0):>8.2f} "
        f"{c.get('postgres', 0):>5.2f} {c.get('redis', 0):>6.2f} {c.get('driver', 0):>6.2f} "
        f"{c.get('other', 0):>6.2f} {c.get('iowait', 0):>6.2f}"
    )


def warnings(results: list[Result]) -> list[str]:
    out = []
    for r in results:
        if r.delivered < r.expected:
            out.append(
                f"{r.scenario} ({r.receiver_delay:g} s): {r.delivered}/{r.expected} delivered"
            )
        if r.cpu.get("other", 0) > OTHER_CPU_WARNING:
            out.append(
                f"{r.scenario} ({r.receiver_delay:g} s): other processes took "
                f"{r.cpu['other']:.2f} cores; figures disturbed"
            )
    return out


# --- entry point ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="Dropped and recreated!")
    p.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="Flushed!")
    p.add_argument("--count", type=int, default=20_000, help="Deliveries, instant receiver.")
    p.add_argument("--slow-count", type=int, default=5_000, help="Deliveries, slow receiver.")
    p.add_argument("--slow-delay", type=float, default=0.1, help="The slow receiver's delay, s.")
    p.add_argument("--concurrency", type=int, default=100, help="Requests in flight per sender.")
    p.add_argument("--celery-processes", type=int, default=8)
    p.add_argument(
        "--backlog",
        choices=("api", "outbox"),
        default="api",
        help="How the backlog is made: postbacks through a gateway, or the outbox.",
    )
    p.add_argument("--analyze", action="store_true", help="ANALYZE after making the backlog.")
    p.add_argument("--timeout", type=float, default=300.0, help="Per scenario, seconds.")
    p.add_argument("--repeat", type=int, default=1, help="Rounds; the table shows the best.")
    p.add_argument("--only", default=",".join(SCENARIOS), help="Comma-separated scenarios.")
    p.add_argument("--receivers", default="instant,slow", help="instant, slow, or both.")
    p.add_argument("--out-dir", type=Path, default=Path("/tmp/leadgate-bench-delivery"))
    p.add_argument("--leadgate", type=Path, default=Path(sys.executable).parent / "leadgate")
    a = p.parse_args(argv)
    only = tuple(s.strip() for s in a.only.split(",") if s.strip())
    if unknown := set(only) - set(SCENARIOS):
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    receivers = tuple(s.strip() for s in a.receivers.split(",") if s.strip())
    if unknown := set(receivers) - {"instant", "slow"}:
        p.error(f"unknown receivers: {', '.join(sorted(unknown))}")
    return Options(**{**vars(a), "only": only, "receivers": receivers})


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM into the same unwinding as Ctrl-C, so every child is stopped.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    print(f"durability: {benchdb.durability_settings(opts.database_url)}", flush=True)
    delays = [0.0] if "instant" in opts.receivers else []
    delays += [opts.slow_delay] if "slow" in opts.receivers else []
    results: list[Result] = []
    for delay in delays:
        results += run_receiver(opts, delay)
    best = best_of(results)
    print(table(opts, best))
    if opts.repeat > 1:
        print("\nevery round, deliveries/s:")
        for r in best:
            print(f"  {r.receiver_delay * 1000:>4.0f} ms {r.scenario:<14} {r.notes[-1]}")
    for warning in warnings(best):
        print(f"warning: {warning}")
    (opts.out_dir / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
