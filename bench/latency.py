"""End-to-end delivery latency: postback accepted (201) → its webhook received, at a steady rate.

Four processes besides this driver, each its own: `leadgate serve`, `leadgate worker` (default
settings, private destinations allowed), `bench/receiver.py --record` (keeps the arrival time
of every lead id, the envelope's `data.id`) and `peers/delivery_pacer.py`, which sends
`--rate` new-lead postbacks per second, evenly spaced and open loop, for `--warmup` +
`--seconds`, and records when each 201 arrived and its lead id. All times are time.time() on
this machine, so latency = receiver arrival − 201 received. Postbacks sent during the warm-up
are left out of the figures.

The delivery's first attempt, as Leadgate recorded it (`delivery_attempts.started_at`), splits
each latency in two: 201 → attempt started (wake-up, arq pick-up, claim) and attempt started →
received (signing, HTTP). Commits stay durable; the database is dropped and created again.

Usage (from the repository root):
  .venv/bin/python bench/latency.py [--rate 200] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NamedTuple

import benchdb
import children
import psycopg
from peers.delivery_harness import (
    PEERS_DIR,
    CpuMeter,
    Watched,
    add_endpoint,
    fresh_tenant,
    gateway,
    infrastructure,
    leadgate_env,
    python,
    receiver,
    receiver_count,
    started,
    worker_argv,
)

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/leadgate_bench_delivery"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
POLL_SECONDS = 0.1
FIRST_ATTEMPTS = """
SELECT d.lead_id, extract(epoch FROM a.started_at)::float8
FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
WHERE a.attempt = 1 AND d.lead_id IS NOT NULL
"""


@dataclass(frozen=True)
class Options:
    database_url: str
    redis_url: str
    rate: float
    seconds: float
    warmup: float
    connections: int
    drain: float
    out_dir: Path
    leadgate: Path


class Posted(NamedTuple):
    """One postback as the pacer saw it (time.time() values)."""

    seq: int
    scheduled: float
    sent: float
    answered: float | None
    status: int | None
    lead_id: str | None
    error: str | None


@dataclass(frozen=True)
class Sample:
    """A postback of the measured window that got its 201, and its webhook's times, if any."""

    sent: float
    accepted: float
    attempted: float | None
    arrived: float | None


@dataclass(frozen=True)
class Observed:
    """What the run saw: the samples, CPU in cores, the deliveries' states, pacing slip."""

    measured: int
    samples: list[Sample]
    cpu: dict[str, float]
    states: dict[str, int]
    slip_max_ms: float
    statuses: dict[str, int]
    first_error: str | None
    # Resident memory (MB) of the gateway and the worker, sampled through the run.
    memory: dict[str, list[float]]


# --- running --------------------------------------------------------------------------------


def wait_for_line(child: children.Server, text: str, timeout: float) -> None:
    """Wait until the child's log shows `text`; raise with its log if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in child.log_path.read_text(errors="replace"):
            return
        if child.process.poll() is not None:
            raise children.ServerFailed(
                f"{child.name} exited with {child.process.returncode}:\n"
                + children.log_tail(child.log_path)
            )
        time.sleep(POLL_SECONDS)
    raise children.ServerFailed(f"{child.name}: no {text!r} after {timeout:.0f}s")


def wait_for_arrivals(receiver_url: str, expected: int, timeout: float) -> None:
    """Until the receiver has seen `expected` distinct webhooks, or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(receiver_count(receiver_url)["unique"]) >= expected:
            return
        time.sleep(POLL_SECONDS)


def fetch_json(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=30) as response:
        result: dict[str, float] = json.loads(response.read())
    return result


def first_attempts(dsn: str) -> dict[str, float]:
    with psycopg.connect(dsn) as conn:
        return {str(lead): float(at) for lead, at in conn.execute(FIRST_ATTEMPTS)}


def delivery_states(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall()
    return {str(state): int(n) for state, n in rows}


def run_pacer(opts: Options, gateway_url: str, key: str) -> tuple[list[Posted], float]:
    """Run the paced load to its end (bounded); what it recorded, and its CPU seconds."""
    out = opts.out_dir / "pacer.json"
    argv = [python(), str(PEERS_DIR / "delivery_pacer.py"), "--url", gateway_url, "--key", key]
    argv += ["--rate", str(opts.rate), "--seconds", str(opts.warmup + opts.seconds)]
    argv += ["--connections", str(opts.connections), "--out", str(out)]
    with started("pacer", argv, leadgate_env(opts), opts.out_dir / "pacer.log") as pacer:
        pacer.process.wait(timeout=opts.warmup + opts.seconds + 60)
        if pacer.process.returncode != 0:
            raise children.ServerFailed("pacer failed:\n" + children.log_tail(pacer.log_path))
    recorded = json.loads(out.read_bytes())
    return [Posted(*row) for row in recorded["rows"]], float(recorded["cpu_seconds"])


def observe(opts: Options) -> Observed:
    """Start everything, run the load, wait for the webhooks, gather every timestamp."""
    _tenant, key = fresh_tenant(opts)
    out = opts.out_dir
    with (
        receiver(0.0, out / "receiver.log", record=True) as recv,
        gateway(opts, out / "gateway.log") as gw,
    ):
        add_endpoint(gw.base_url, key, recv.base_url + "/hook")
        with started("worker", worker_argv(opts), leadgate_env(opts), out / "worker.log") as worker:
            wait_for_line(worker, "worker_started", 30)
            groups = {"gateway": gw.pgid, "worker": worker.pgid, "receiver": recv.pgid}
            meter = CpuMeter(Watched(groups, infrastructure(opts.database_url, opts.redis_url)))
            meter.start()
            memory: dict[str, list[float]] = {"gateway": [], "worker": []}
            sampler = RssSampler({"gateway": gw.pgid, "worker": worker.pgid}, memory)
            sampler.start()
            posted, pacer_cpu = run_pacer(opts, gw.base_url, key)
            sampler.stop()
            accepted = sum(1 for p in posted if p.status == 201)
            wait_for_arrivals(recv.base_url, accepted, opts.drain)
            cpu = meter.stop({"pacer": pacer_cpu})
            arrivals = fetch_json(recv.base_url + "/arrivals")
    window = [p for p in posted if p.scheduled - posted[0].scheduled >= opts.warmup]
    attempts = first_attempts(opts.database_url)
    return Observed(
        measured=len(window),
        samples=[join(p, attempts, arrivals) for p in window if p.status == 201 and p.lead_id],
        cpu=cpu,
        states=delivery_states(opts.database_url),
        slip_max_ms=max((p.sent - p.scheduled) * 1000 for p in posted),
        statuses=count_statuses(posted),
        first_error=next((p.error for p in posted if p.error), None),
        memory=memory,
    )


class RssSampler:
    """Samples the processes' resident memory every few seconds from a thread."""

    EVERY = 5.0

    def __init__(self, groups: dict[str, int], into: dict[str, list[float]]) -> None:
        import threading

        self._groups, self._into = groups, into
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        for name, pgid in self._groups.items():
            self._into[name].append(children.rss_of_group(pgid) / 2**20)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.EVERY)


def join(posted: Posted, attempts: dict[str, float], arrivals: dict[str, float]) -> Sample:
    """A 201's times, with its delivery's first attempt and its webhook's arrival."""
    assert posted.answered is not None and posted.lead_id is not None
    lead = posted.lead_id
    return Sample(posted.sent, posted.answered, attempts.get(lead), arrivals.get(lead))


def count_statuses(posted: list[Posted]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in posted:
        key = str(p.status) if p.status is not None else (p.error or "error").split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    return counts


# --- the report -----------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, round(p / 100 * len(values) + 0.4999))
    return values[min(rank, len(values)) - 1]


def spread(values: list[float]) -> str:
    """`p50 p90 p99 max` in milliseconds, from seconds."""
    if not values:
        return "-"
    ms = sorted(v * 1000 for v in values)
    return " ".join(f"{percentile(ms, p):7.1f}" for p in (50, 90, 99, 100))


def report(opts: Options, seen: Observed) -> str:
    s = seen.samples
    arrived = [(x, x.arrived) for x in s if x.arrived is not None]
    timed = [(x, x.attempted, at) for x, at in arrived if x.attempted is not None]
    lines = [
        f"\n{opts.rate:g} postbacks/s for {opts.seconds:g} s (after {opts.warmup:g} s warm-up)",
        f"sent {seen.measured}  201 {len(s)}  webhook received {len(arrived)}  "
        f"missing {len(s) - len(arrived)}  statuses (whole run) {seen.statuses}",
        f"deliveries in Postgres (whole run): {seen.states}",
        *([f"first error: {seen.first_error}"] if seen.first_error else []),
        f"pacing: largest send delay behind schedule {seen.slip_max_ms:.1f} ms",
        "",
        f"{'ms':<34} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}",
        f"{'postback sent → webhook received':<34} {spread([at - x.sent for x, at in arrived])}",
        f"{'201 received → webhook received':<34} {spread([at - x.accepted for x, at in arrived])}",
        f"{'  201 → attempt started':<34} {spread([t - x.accepted for x, t, _ in timed])}",
        f"{'  attempt started → received':<34} {spread([at - t for _, t, at in timed])}",
        f"{'postback sent → 201 (request)':<34} {spread([x.accepted - x.sent for x in s])}",
        "",
        "cpu (cores): " + "  ".join(f"{name} {value:.2f}" for name, value in seen.cpu.items()),
        "memory (MB, first → middle → last sample): "
        + "  ".join(
            f"{name} {m[0]:.0f} → {m[len(m) // 2]:.0f} → {m[-1]:.0f}"
            for name, m in seen.memory.items()
            if m
        ),
    ]
    return "\n".join(lines)


# --- entry point ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="Dropped and recreated!")
    p.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="Flushed!")
    p.add_argument("--rate", type=float, default=200.0, help="Postbacks per second.")
    p.add_argument("--seconds", type=float, default=20.0, help="Measured window.")
    p.add_argument("--warmup", type=float, default=2.0, help="Sent first, left out.")
    p.add_argument("--connections", type=int, default=64, help="The pacer's connection pool.")
    p.add_argument("--drain", type=float, default=30.0, help="Longest wait for the webhooks.")
    p.add_argument("--out-dir", type=Path, default=Path("/tmp/leadgate-bench-latency"))
    p.add_argument("--leadgate", type=Path, default=Path(sys.executable).parent / "leadgate")
    return Options(**vars(p.parse_args(argv)))


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM into the same unwinding as Ctrl-C, so every child is stopped.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    print(f"durability: {benchdb.durability_settings(opts.database_url)}", flush=True)
    seen = observe(opts)
    print(report(opts, seen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
