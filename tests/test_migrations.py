"""Migrations a cluster can run: many replicas at once, a recorded version, no stall on a
running install, and `leadgate migrate --check` for readiness and CI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from click.testing import CliRunner, Result

from gateway import migrations
from gateway.cli import main
from gateway.migrations import MigrationError, State
from tests.conftest import Servers

LEADGATE = Path(sys.executable).parent / "leadgate"
REPLICAS = 4


async def leadgate(database_url: str, *args: str) -> Result:
    """`leadgate ARGS` in-process (in a thread: it runs its own event loop)."""
    env = {"LEADGATE_DATABASE_URL": database_url, "LEADGATE_CONFIG": None}
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env)


@pytest.fixture
async def db(fresh_database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(fresh_database)
    yield conn
    await conn.close()


async def test_migrate_records_the_declared_version_and_checksum(
    fresh_database: str, db: asyncpg.Connection
) -> None:
    schema = migrations.load_schema()
    before = await migrations.migrate(fresh_database)
    rows = await db.fetch("SELECT version, checksum, leadgate_version FROM schema_version")
    assert before.state is State.MISSING
    assert [(r["version"], r["checksum"]) for r in rows] == [(schema.version, schema.checksum)]
    assert schema.version >= 1 and len(schema.checksum) == 64
    assert (await migrations.status(fresh_database)).state is State.CURRENT


async def test_replicas_migrating_at_once_apply_the_schema_exactly_once(
    fresh_database: str, db: asyncpg.Connection
) -> None:
    """Without the lock, concurrent CREATE TABLE IF NOT EXISTS collide in the catalog."""
    results = await asyncio.gather(
        *(migrations.migrate(fresh_database) for _ in range(REPLICAS)), return_exceptions=True
    )
    states = sorted(r.state.value if isinstance(r, migrations.Status) else repr(r) for r in results)
    assert states == ["current"] * (REPLICAS - 1) + ["missing"]
    assert await db.fetchval("SELECT count(*) FROM schema_version") == 1


def test_leadgate_migrate_processes_started_together_all_succeed(
    fresh_database: str,
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LEADGATE_")},
        "LEADGATE_DATABASE_URL": fresh_database,
        "COLUMNS": "200",  # one line per message, however rich would wrap it
    }
    procs = [
        subprocess.Popen(
            [LEADGATE, "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(REPLICAS)
    ]
    try:
        outputs = [p.communicate(timeout=60)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    assert [p.returncode for p in procs] == [0] * REPLICAS, outputs
    applied = [o for o in outputs if "applied schema version" in o]
    assert len(applied) == 1, outputs
    assert sum("schema is up to date" in o for o in outputs) == REPLICAS - 1, outputs


async def test_migrate_on_an_up_to_date_database_takes_no_table_lock(
    fresh_database: str, db: asyncpg.Connection
) -> None:
    """Restarting replicas on a busy install must not queue traffic behind an ALTER TABLE."""
    await migrations.migrate(fresh_database)
    async with db.transaction():
        await db.execute("LOCK TABLE leads IN ACCESS SHARE MODE")  # as a long report would
        again = await migrations.migrate(fresh_database, lock_timeout=0.2, attempts=1)
    assert again.state is State.CURRENT


async def test_migrate_gives_up_on_a_table_kept_locked_and_says_so(
    fresh_database: str, db: asyncpg.Connection
) -> None:
    await migrations.migrate(fresh_database)
    await db.execute("UPDATE schema_version SET version = version - 1")  # an older release's
    said: list[str] = []
    async with db.transaction():
        await db.execute("LOCK TABLE leads IN ACCESS SHARE MODE")
        with pytest.raises(MigrationError, match="pg_stat_activity") as refused:
            await migrations.migrate(
                fresh_database, progress=said.append, lock_timeout=0.2, attempts=2
            )
    assert "gave up after 2 tries" in str(refused.value)
    assert any(m.startswith("a table is busy") for m in said), said
    assert (await migrations.migrate(fresh_database)).state is State.BEHIND
    assert (await migrations.status(fresh_database)).state is State.CURRENT


async def test_migrate_leaves_a_newer_schema_alone(
    fresh_database: str, db: asyncpg.Connection
) -> None:
    """A rolling upgrade: the new release has migrated; an old replica restarts."""
    await migrations.migrate(fresh_database)
    await db.execute("UPDATE schema_version SET version = version + 1, checksum = 'newer'")
    await db.execute("ALTER TABLE leads DROP COLUMN furthest_stage")  # a contract step
    result = await leadgate(fresh_database, "migrate")
    assert result.exit_code == 0, result.output
    assert "newer than this release" in result.output
    columns = await db.fetch(
        "SELECT 1 FROM information_schema.columns"
        " WHERE table_name = 'leads' AND column_name = 'furthest_stage'"
    )
    assert columns == []


async def test_check_fails_on_an_empty_database_and_passes_after_migrate(
    fresh_database: str,
) -> None:
    empty = await leadgate(fresh_database, "migrate", "--check")
    assert empty.exit_code == 1
    assert "no Leadgate schema" in empty.output and "leadgate migrate" in empty.output
    assert (await migrations.status(fresh_database)).state is State.MISSING  # applied nothing
    assert (await leadgate(fresh_database, "migrate")).exit_code == 0
    done = await leadgate(fresh_database, "migrate", "--check")
    assert done.exit_code == 0, done.output
    assert "up to date" in done.output


async def test_check_fails_while_the_database_is_at_an_older_version(
    fresh_database: str, db: asyncpg.Connection
) -> None:
    await migrations.migrate(fresh_database)
    version = migrations.load_schema().version
    await db.execute("UPDATE schema_version SET version = $1", version - 1)
    behind = await leadgate(fresh_database, "migrate", "--check")
    assert behind.exit_code == 1
    assert f"schema version {version - 1}, this release needs {version}" in behind.output


async def test_check_fails_when_schema_sql_changed_without_a_new_version(
    fresh_database: str, db: asyncpg.Connection
) -> None:
    await migrations.migrate(fresh_database)
    await db.execute("UPDATE schema_version SET checksum = 'an-earlier-file'")
    changed = await leadgate(fresh_database, "migrate", "--check")
    assert changed.exit_code == 1
    assert "from a different schema.sql" in changed.output
    assert (await leadgate(fresh_database, "migrate")).exit_code == 0
    assert (await leadgate(fresh_database, "migrate", "--check")).exit_code == 0


async def test_check_names_an_unreachable_database(servers: Servers) -> None:
    gone = urlunsplit(urlsplit(servers.database_url)._replace(path="/no_such_database"))
    result = await leadgate(gone, "migrate", "--check")
    assert result.exit_code == 1
    assert "database error" in result.output and "no_such_database" in result.output
