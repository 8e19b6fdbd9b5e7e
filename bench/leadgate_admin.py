"""Prepare Leadgate for a run through its own CLI: schema, a tenant, an API key, seed leads.

Everything goes through the `leadgate` console script and the HTTP API, as an operator
would do it, so the benchmark also exercises the documented interface.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from gateway.crypto import generate_key

SEED_CONCURRENCY = 16
# The key every Leadgate process of one bench run encrypts secrets at rest with (they must
# share it: one process writes an endpoint's secret, another signs with it).
SECRET_KEYS = os.environ.get("LEADGATE_SECRET_KEYS") or generate_key()


class AdminFailed(RuntimeError):
    """A `leadgate` command failed or printed something unexpected."""


@dataclass(frozen=True)
class Leadgate:
    """Where the console script is and what it is told through the environment."""

    executable: Path
    database_url: str
    redis_url: str

    def env(self, port: int | None = None) -> dict[str, str]:
        """The process environment for any `leadgate` command."""
        env = dict(os.environ)
        env.update(
            LEADGATE_DATABASE_URL=self.database_url,
            LEADGATE_REDIS_URL=self.redis_url,
            LEADGATE_HOST="127.0.0.1",
            LEADGATE_LOG_FORMAT="json",
            LEADGATE_SECRET_KEYS=SECRET_KEYS,
        )
        if port is not None:
            env["LEADGATE_PORT"] = str(port)
        return env

    def serve_argv(self) -> list[str]:
        return [str(self.executable), "serve"]

    def run(self, args: Sequence[str], timeout: float = 60.0) -> str:
        """Run `leadgate ARGS`, return its stdout, raise AdminFailed with its output on error."""
        argv = [str(self.executable), *args]
        done = subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise AdminFailed(
                f"`leadgate {' '.join(args)}` exited with {done.returncode}:\n"
                f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
        return done.stdout

    def run_json(self, args: Sequence[str]) -> dict[str, str]:
        """Run a `--json` command and parse the JSON object it prints."""
        out = self.run(args)
        for line in reversed(out.strip().splitlines()):
            if line.startswith("{"):
                return dict(json.loads(line))
        try:
            return dict(json.loads(out))
        except ValueError as e:
            raise AdminFailed(f"`leadgate {' '.join(args)}` printed no JSON:\n{out}") from e


# Requests per minute per key for the bench tenant: the limiter still runs on every request
# (its Redis round trip is part of the cost) but never refuses one.
RATE_LIMIT_PER_MINUTE = 1_000_000_000


# The ten-rule scoring set of the scored scenarios: Leaditio's score breakdown.
SCORING_RULES = Path(__file__).resolve().parent.parent / "config" / "scoring.leaditio.json"


def prepare(leadgate: Leadgate, scoring: Path | None = None, *, migrate: bool = True) -> str:
    """Apply the schema, create a tenant that is never rate limited (scored by the rules in
    `scoring`, if given), and an ingest key."""
    if migrate:
        leadgate.run(["migrate"])
    tenant = leadgate.run_json(["tenants", "create", "bench", "--json"])
    leadgate.run(["tenants", "update", tenant["id"], "--rate-limit", str(RATE_LIMIT_PER_MINUTE)])
    if scoring is not None:
        leadgate.run(["scoring", "set", str(scoring), "--tenant", tenant["id"]])
    key = leadgate.run_json(
        ["keys", "create", "--tenant", tenant["id"], "--scopes", "ingest,read,manage", "--json"]
    )
    return key["key"]


def seed_body(index: int) -> dict[str, object]:
    """The first postback of pooled lead `index`, the one matched later."""
    return {
        "email": f"m{index}@bench.example",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "source": "bench",
        "campaign": "c1",
        "utm_source": "google",
        "form_completion_percent": 10,
    }


async def _seed(base_url: str, api_key: str, count: int) -> dict[int, int]:
    statuses: dict[int, int] = {}
    limit = asyncio.Semaphore(SEED_CONCURRENCY)
    headers = {"Authorization": f"Bearer {api_key}"}
    timeout = aiohttp.ClientTimeout(total=30)

    async def one(session: aiohttp.ClientSession, index: int) -> None:
        async with (
            limit,
            session.post(
                f"{base_url}/v1/postback", json=seed_body(index), headers=headers
            ) as response,
        ):
            await response.read()
            statuses[response.status] = statuses.get(response.status, 0) + 1

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(one(session, i) for i in range(count)))
    return statuses


def seed_pool(base_url: str, api_key: str, count: int) -> dict[int, int]:
    """Create the pooled leads m0..m<count-1>@bench.example; return the count per status."""
    statuses = asyncio.run(_seed(base_url, api_key, count))
    created = sum(n for status, n in statuses.items() if 200 <= status < 300)
    if created != count:
        raise AdminFailed(f"seeding {count} leads at {base_url} answered {statuses}")
    return statuses


def log_complaints(log_path: Path) -> dict[str, int]:
    """Count the warning and error events of a JSON log, by "level: event".

    A gateway that fails open (a rate limiter that cannot reach Redis, say) still answers
    2xx; its log is where that shows.
    """
    counts: dict[str, int] = {}
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return counts
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        level = str(record.get("level", ""))
        if level in ("warning", "error", "critical"):
            name = f"{level}: {record.get('event', '?')}"
            counts[name] = counts.get(name, 0) + 1
    return counts
