"""Leadgate through a real PgBouncer in transaction mode (docs/SCALING.md).

PgBouncer (Debian's, 1.18 here) pools the suite's Postgres into a handful of server
connections shared by every client. asyncpg's named prepared statements cannot live there: one
made on one server connection is looked for on another. With LEADGATE_DB_STATEMENT_CACHE_SIZE=0
asyncpg uses unnamed statements, and a gateway and a worker run through it under concurrency;
the key listener's LISTEN, which needs a session of its own, goes to Postgres directly
(LEADGATE_LISTEN_DATABASE_URL), so a revocation still holds at once despite a one-minute key
cache. Skipped only where no pgbouncer binary is installed (CI installs it: .ci/run).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest

from gateway.embedded import free_port
from tests.conftest import Servers, Tenant
from tests.receivers import Receiver, start
from tests.workers.helpers.processes import LEADGATE, GatewayProcess, WorkerProcess

PGBOUNCER = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        PGBOUNCER is None, reason="no pgbouncer binary (apt-get install -y pgbouncer)"
    ),
]

# Few server connections for many clients: every statement of every process shares them.
SERVER_CONNECTIONS = 3
DATABASE = "leadgate"


def _ini(servers: Servers, port: int, folder: Path) -> tuple[str, str | None]:
    """pgbouncer.ini for the suite's Postgres; and the user PgBouncer should run as, if root."""
    url = urlsplit(servers.database_url)
    socket_dir = parse_qs(url.query).get("host", [None])[0]
    host = socket_dir or url.hostname or "127.0.0.1"
    user = url.username or "postgres"
    password = f" password={url.password}" if url.password else ""
    (folder / "users.txt").write_text(f'"{user}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{DATABASE} = host={host} port={url.port or 5432} dbname={url.path.lstrip('/')} "
        f"user={user}{password}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {SERVER_CONNECTIONS}\n"
        "max_client_conn = 500\n"
    )
    for path in (folder, *folder.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    if os.geteuid() != 0:
        return str(folder / "pgbouncer.ini"), None
    # PgBouncer refuses to run as root; it becomes the user that can reach the server's socket.
    owner = pwd.getpwuid(os.stat(socket_dir).st_uid).pw_name if socket_dir else "nobody"
    return str(folder / "pgbouncer.ini"), owner


@pytest.fixture
def pgbouncer(servers: Servers) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of the suite's Postgres; its URL."""
    assert PGBOUNCER is not None
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="leadgate-pgbouncer-") as tmp:
        ini, user = _ini(servers, port, Path(tmp))
        argv = [PGBOUNCER, *(["-u", user] if user else []), ini]
        log = Path(tmp) / "pgbouncer.log"
        with log.open("wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        url = f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"
        try:
            asyncio.run(_until_up(url, process, log))
            yield url
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


async def _until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    async with asyncio.timeout(15):
        while True:
            assert process.poll() is None, "pgbouncer exited: see " + str(log)
            try:
                conn = await asyncpg.connect(url, statement_cache_size=0)
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(0.05)
                continue
            await conn.close()
            return


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()
    runner = await start(got)
    yield got
    await runner.cleanup()


async def _reuse_across_servers(url: str, cache: int) -> None:
    """Prepare a statement, then run it again while its server connection is busy elsewhere."""
    client = await asyncpg.connect(url, statement_cache_size=cache)
    holder = await asyncpg.connect(url, statement_cache_size=0)
    try:
        assert await client.fetchval("SELECT $1::int + 1", 1) == 2
        async with holder.transaction():  # pins the server connection the statement is on
            await holder.fetchval("SELECT 1")
            assert await client.fetchval("SELECT $1::int + 1", 2) == 3
    finally:
        await client.close()
        await holder.close()


async def test_named_prepared_statements_fail_through_transaction_pooling(pgbouncer: str) -> None:
    """Why the setting exists: asyncpg's cache of named statements breaks there..."""
    with pytest.raises(asyncpg.InvalidSQLStatementNameError):
        await _reuse_across_servers(pgbouncer, cache=100)
    # ... and unnamed statements (LEADGATE_DB_STATEMENT_CACHE_SIZE=0) do not.
    await _reuse_across_servers(pgbouncer, cache=0)


async def _post(http: aiohttp.ClientSession, base: str, i: int) -> int:
    if i % 4 == 3:  # reads, outside any transaction, between the writes
        async with http.get(f"{base}/v1/leads", params={"limit": "5"}) as r:
            await r.read()
            return r.status
    async with http.post(f"{base}/v1/postback", json={"email": f"b{i}@example.com"}) as r:
        await r.read()
        return r.status


async def test_a_gateway_and_a_worker_run_through_pgbouncer_in_transaction_mode(
    pgbouncer: str,
    servers: Servers,
    conn: asyncpg.Connection,
    tenant: Tenant,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    pooled = {"LEADGATE_DB_STATEMENT_CACHE_SIZE": "0"}
    gateway = GatewayProcess.start(
        pgbouncer, servers.redis_url, tmp_path / "gateway.log", **pooled,
        LEADGATE_LISTEN_DATABASE_URL=servers.database_url, LEADGATE_AUTH_CACHE_SECONDS="60",
    )  # fmt: skip
    worker = WorkerProcess.start(pgbouncer, servers.redis_url, tmp_path / "worker.log", **pooled)
    try:
        await gateway.started()
        await worker.started()
        connector = aiohttp.TCPConnector(limit=32)
        async with aiohttp.ClientSession(headers=tenant.headers, connector=connector) as http:
            async with http.post(f"{gateway.base}/v1/endpoints", json={"url": receiver.url}) as r:
                assert r.status == 201, await r.text()
            statuses = Counter(
                await asyncio.gather(*(_post(http, gateway.base, i) for i in range(800)))
            )
            assert statuses == {201: 600, 200: 200}, statuses
            await receiver.wait_for(600, timeout=30)
            assert len(set(receiver.ids())) == 600

            # The key listener's LISTEN goes to Postgres directly: a revocation holds at once.
            done = await asyncio.to_thread(
                subprocess.run, [str(LEADGATE), "keys", "revoke", tenant.key_id],
                env={**os.environ, "LEADGATE_DATABASE_URL": pgbouncer,
                     "LEADGATE_DB_STATEMENT_CACHE_SIZE": "0"},
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            async with http.get(f"{gateway.base}/v1/leads") as r:
                assert r.status == 401
        for log in (gateway.log, worker.log):
            assert b'"level":"error"' not in log.read_bytes(), log.read_text()[-3000:]
    finally:
        await gateway.stop()
        worker.stop()
