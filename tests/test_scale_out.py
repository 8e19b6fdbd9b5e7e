"""Scale-out, proven: three `leadgate serve` and three `leadgate worker` processes on one Postgres
and one Redis.

The cluster (a database and a Redis database of its own on the suite's servers) is started
once for the module; each test makes its own tenant, endpoint and receiver (a local aiohttp
server recording every webhook), and sends its postbacks round-robin over the three gateways
from one aiohttp client (a pooled connector, 64 requests in flight). Checked:

- postbacks of one email spread across every gateway at once make one lead;
- 10,000 postbacks through the gateways are all delivered, each exactly once (no webhook-id
  twice: nothing failed), and every worker took part;
- a revocation holds on every gateway from the next request on, though each caches keys for a
  minute;
- SIGKILL to one worker of three in the middle of a burst loses nothing: every event is
  delivered, and only deliveries leased at the moment of the kill may arrive twice (their
  leases expire and a surviving worker sends them again).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import orjson
import pytest
import redis

from gateway import db
from gateway.keys import create_key
from gateway.tenants import create_tenant, update_tenant
from tests.conftest import Servers, Tenant
from tests.receivers import Receiver, start
from tests.test_revocation import all_cached, statuses
from tests.workers.helpers.processes import LEADGATE, GatewayProcess, WorkerProcess

pytestmark = pytest.mark.slow

GATEWAYS = 3
WORKERS = 3
# Every gateway caches keys for a minute: only the announcement can make a revocation hold.
# Pools are kept small, as a connection budget would: 6 pools of 10 and 3 listeners fit
# the test server's max_connections (100) with room for the test's own.
GATEWAY_ENV = {"LEADGATE_AUTH_CACHE_SECONDS": "60", "LEADGATE_DB_POOL_MAX": "10"}
# A lease is 2 × 3 s + 5 s: a killed worker's deliveries go again 11 s after their claim.
WORKER_ENV = {"LEADGATE_DELIVERY_TIMEOUT": "3", "LEADGATE_DB_POOL_MAX": "10"}
CONCURRENCY = 64
REDIS_DB = 9


@dataclass
class Cluster:
    database_url: str
    redis_url: str
    logs: Path
    gateways: list[GatewayProcess]
    workers: list[WorkerProcess]

    @property
    def bases(self) -> list[str]:
        return [g.base for g in self.gateways]

    def start_worker(self, n: int) -> WorkerProcess:
        return WorkerProcess.start(
            self.database_url, self.redis_url, self.logs / f"worker-{n}.log", **WORKER_ENV
        )


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def cluster(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    name = f"leadgate_scale_{secrets.token_hex(4)}"
    database_url = _with_path(servers.database_url, f"/{name}")
    redis_url = _with_path(servers.redis_url, f"/{REDIS_DB}")
    asyncio.run(_admin(servers.database_url, f"CREATE DATABASE {name}"))
    asyncio.run(db.migrate(database_url))
    redis.Redis.from_url(redis_url).flushdb()
    logs = tmp_path_factory.mktemp("scale-out")
    running = Cluster(database_url, redis_url, logs, [], [])
    try:
        for n in range(GATEWAYS):
            running.gateways.append(
                GatewayProcess.start(database_url, redis_url, logs / f"gateway-{n}.log",
                                     **GATEWAY_ENV)
            )  # fmt: skip
        running.workers += [running.start_worker(n) for n in range(WORKERS)]

        async def started() -> None:
            await asyncio.gather(*(g.started() for g in running.gateways))
            await asyncio.gather(*(w.started(timeout=20) for w in running.workers))

        asyncio.run(started())
        yield running
    finally:
        for gateway in running.gateways:
            with contextlib.suppress(ProcessLookupError):
                gateway.signal(signal.SIGTERM)
        for worker in running.workers:
            if worker.process.poll() is None:
                worker.signal(signal.SIGTERM)
        for process in [*running.gateways, *running.workers]:
            try:
                process.process.wait(30)
            except subprocess.TimeoutExpired:
                process.process.kill()
                process.process.wait(10)
        asyncio.run(_admin(servers.database_url, f"DROP DATABASE {name} WITH (FORCE)"))
        redis.Redis.from_url(redis_url).flushdb()


@pytest.fixture
async def cluster_conn(cluster: Cluster) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(cluster.database_url)
    await db.init_connection(conn)
    yield conn
    await conn.close()


@dataclass
class Setup:
    tenant: Tenant
    receiver: Receiver


@pytest.fixture
async def setup(cluster: Cluster, cluster_conn: asyncpg.Connection) -> AsyncIterator[Setup]:
    """A tenant of its own (rate limits out of the way), and its endpoint, to a new receiver."""
    row = await create_tenant(cluster_conn, f"scale-{secrets.token_hex(3)}")
    await update_tenant(cluster_conn, row["id"], rate_limit=10**9)
    key_row, key = await create_key(cluster_conn, row["id"], ["ingest", "read", "manage"])
    tenant = Tenant(row["id"], key, key_row["id"])
    receiver = Receiver()
    runner = await start(receiver)
    async with (
        aiohttp.ClientSession(headers=tenant.headers) as http,
        http.post(
            f"{cluster.bases[0]}/v1/endpoints",
            json={"url": receiver.url, "event_types": ["lead.created"]},
        ) as response,
    ):
        assert response.status == 201, await response.text()
    yield Setup(tenant, receiver)
    await runner.cleanup()


async def post_all(
    bases: list[str], tenant: Tenant, bodies: list[dict[str, Any]]
) -> list[tuple[int, Any]]:
    """POST every body to /v1/postback, body i to gateway i mod 3, CONCURRENCY at a time;
    each answer's status and decoded body, in order."""
    answers: list[tuple[int, Any]] = [(0, None)] * len(bodies)
    todo = iter(enumerate(bodies))
    headers = {**tenant.headers, "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def sender() -> None:
            for i, body in todo:
                url = f"{bases[i % len(bases)]}/v1/postback"
                async with http.post(url, data=orjson.dumps(body), headers=headers) as response:
                    answers[i] = (response.status, orjson.loads(await response.read()))

        await asyncio.gather(*(sender() for _ in range(CONCURRENCY)))
    return answers


async def settled(conn: asyncpg.Connection, tenant: Tenant, expected: int, patience: float) -> None:
    """Wait until `expected` deliveries of the tenant have succeeded."""
    query = "SELECT count(*) FROM deliveries WHERE tenant_id = $1 AND state = 'succeeded'"
    async with asyncio.timeout(patience):
        while await conn.fetchval(query, tenant.id) < expected:
            await asyncio.sleep(0.25)


def attempts_logged(log: Path, tenant: Tenant) -> int:
    """How many delivery attempts for the tenant a worker's log shows."""
    marker = tenant.id.encode()
    lines = log.read_bytes().splitlines()
    return sum(1 for line in lines if b'"delivery_attempt"' in line and marker in line)


@pytest.mark.timeout(120)
async def test_one_email_posted_through_every_gateway_at_once_is_one_lead(
    cluster: Cluster, setup: Setup, cluster_conn: asyncpg.Connection
) -> None:
    email = "Same.Person@Example.com"
    bodies = [
        {"email": email, "form_completion_percent": i, "custom_data": {f"k{i}": i}}
        for i in range(30)
    ]
    answers = await post_all(cluster.bases, setup.tenant, bodies)

    statuses_ = Counter(status for status, _ in answers)
    assert statuses_ == {201: 1, 200: 29}, statuses_
    assert len({body["data"]["id"] for _, body in answers}) == 1
    leads = await cluster_conn.fetch(
        "SELECT id, form_completion_percent, custom_data FROM leads WHERE tenant_id = $1",
        setup.tenant.id,
    )
    assert len(leads) == 1
    assert leads[0]["form_completion_percent"] == 29  # completion never drops
    assert leads[0]["custom_data"] == {f"k{i}": i for i in range(30)}
    await settled(cluster_conn, setup.tenant, 1, patience=20)
    (got,) = await setup.receiver.wait_for(1)
    assert got.json()["data"]["id"] == leads[0]["id"]


@pytest.mark.timeout(180)
async def test_ten_thousand_postbacks_through_three_gateways_are_each_delivered_once(
    cluster: Cluster, setup: Setup, cluster_conn: asyncpg.Connection
) -> None:
    count = 10_000
    bodies = [{"email": f"burst{i}@example.com"} for i in range(count)]
    answers = await post_all(cluster.bases, setup.tenant, bodies)

    assert Counter(status for status, _ in answers) == {201: count}
    leads = {body["data"]["id"] for _, body in answers}
    assert len(leads) == count
    await settled(cluster_conn, setup.tenant, count, patience=90)
    got = await setup.receiver.wait_for(count, timeout=10)

    ids = Counter(r.headers["webhook-id"] for r in got)
    assert len(got) == count and len(ids) == count, ids.most_common(3)  # once each
    assert {r.json()["data"]["id"] for r in got} == leads
    assert await cluster_conn.fetchval(
        "SELECT count(*) FROM deliveries WHERE tenant_id = $1 AND attempt_count <> 1",
        setup.tenant.id,
    ) == 0  # fmt: skip
    per_worker = [attempts_logged(w.log, setup.tenant) for w in cluster.workers]
    assert sum(per_worker) == count and all(per_worker), per_worker


@pytest.mark.timeout(120)
async def test_a_revocation_holds_on_every_gateway_from_the_next_request(
    cluster: Cluster, setup: Setup, cluster_conn: asyncpg.Connection
) -> None:
    await all_cached(cluster.bases, setup.tenant, cluster_conn)

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADGATE_")}
    done = await asyncio.to_thread(
        subprocess.run, [str(LEADGATE), "keys", "revoke", setup.tenant.key_id],
        env={**env, "LEADGATE_DATABASE_URL": cluster.database_url}, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr

    assert await statuses(cluster.bases, "GET", "/v1/leads", setup.tenant) == {401}


@pytest.mark.timeout(180)
async def test_killing_one_worker_of_three_mid_burst_loses_nothing(
    cluster: Cluster, setup: Setup, cluster_conn: asyncpg.Connection
) -> None:
    count = 3_000
    bodies = [{"email": f"killed{i}@example.com"} for i in range(count)]
    sending = asyncio.create_task(post_all(cluster.bases, setup.tenant, bodies))
    await setup.receiver.wait_for(count // 5, timeout=60)

    victim = cluster.workers[0]
    victim.signal(signal.SIGKILL)
    assert await victim.exited(10) == -signal.SIGKILL
    # What was in flight at the kill: the victim's leases among them, untouched until they end.
    leased = {
        r["event_id"]
        for r in await cluster_conn.fetch(
            "SELECT event_id FROM deliveries WHERE tenant_id = $1 AND state = 'pending'"
            " AND leased_until IS NOT NULL",
            setup.tenant.id,
        )
    }
    answers = await sending

    assert Counter(status for status, _ in answers) == {201: count}
    await settled(cluster_conn, setup.tenant, count, patience=90)
    events = {
        r["id"]
        for r in await cluster_conn.fetch(
            "SELECT id FROM events WHERE tenant_id = $1", setup.tenant.id
        )
    }
    received = Counter(setup.receiver.ids())
    assert set(received) == events and len(events) == count  # every event at least once
    twice = {event for event, n in received.items() if n > 1}
    assert twice <= leased, (len(twice), len(leased))  # only what the kill left in flight
    cluster.workers[0] = cluster.start_worker(WORKERS)  # the module's cluster, whole again
