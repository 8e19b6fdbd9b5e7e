"""Schema migrations a cluster can run: from several replicas at once, recorded, and checkable.

`schema.sql` is the whole schema and every statement in it is idempotent; its header declares
its version (`-- schema-version: N`). `migrate` applies it in one transaction under an advisory
lock, so replicas started together apply it one after another, and records the version and the
file's checksum in `schema_version`. A run that finds this version and checksum already there
applies nothing and takes no table lock, so restarting replicas never stalls traffic. A
database already at a newer version (a newer release migrated it during a rolling upgrade) is
left alone. Releases change the schema by expand and contract (docs/MIGRATIONS.md).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import version as package_version

import asyncpg

# Shipped inside the package (a link to the top-level schema.sql), so an installed wheel has it.
SCHEMA_RESOURCE = "schema.sql"
# A fixed advisory-lock id so that two `leadgate migrate` runs never apply the schema at once.
MIGRATE_LOCK = 0x1EAD6A7E
# How long a DDL statement may wait for a table lock. A waiting ALTER TABLE queues every later
# query on that table behind it, so on a busy install it gives up soon and tries again rather
# than stall traffic behind a long transaction.
LOCK_TIMEOUT = 5.0
ATTEMPTS = 5

VERSION_LINE = re.compile(r"^-- schema-version: (\d+)$", re.MULTILINE)

TRY_LOCK = "SELECT pg_try_advisory_xact_lock($1)"
LOCK = "SELECT pg_advisory_xact_lock($1)"
SET_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', $1, true)"
HAS_VERSION_TABLE = "SELECT to_regclass('schema_version') IS NOT NULL"
NEWEST_APPLIED = """
SELECT version, checksum FROM schema_version ORDER BY version DESC, applied_at DESC LIMIT 1
"""
RECORD_APPLIED = """
INSERT INTO schema_version (version, checksum, leadgate_version) VALUES ($1, $2, $3)
ON CONFLICT (version, checksum) DO NOTHING
"""


class MigrationError(Exception):
    """The schema cannot be applied or read; the message says why and what to do."""


@dataclass(frozen=True)
class Schema:
    """This release's schema.sql: its declared version, its checksum and its text."""

    version: int
    checksum: str
    sql: str


@dataclass(frozen=True)
class Applied:
    version: int
    checksum: str


class State(enum.Enum):
    MISSING = "missing"  # no Leadgate schema at all
    BEHIND = "behind"  # an older version, or this version from a different schema.sql
    CURRENT = "current"
    NEWER = "newer"  # a later release has migrated it


@dataclass(frozen=True)
class Status:
    state: State
    schema: Schema
    applied: Applied | None

    @property
    def up_to_date(self) -> bool:
        """This release can run on it (expand/contract keeps a newer schema fit for older code)."""
        return self.state in (State.CURRENT, State.NEWER)

    def describe(self) -> str:
        want = self.schema.version
        match self.state:
            case State.MISSING:
                return f"the database has no Leadgate schema; run `leadgate migrate` (to {want})"
            case State.CURRENT:
                return f"schema is up to date (version {want})"
            case State.NEWER:
                assert self.applied is not None
                return (
                    f"the database is at schema version {self.applied.version}, newer than this "
                    f"release's {want}: nothing to apply"
                )
        assert self.applied is not None
        if self.applied.version == want:
            return (
                f"the database has schema version {want} from a different schema.sql; "
                "run `leadgate migrate`"
            )
        return (
            f"the database is behind: schema version {self.applied.version}, this release needs "
            f"{want}; run `leadgate migrate`"
        )


def load_schema() -> Schema:
    """schema.sql as shipped with this release; MigrationError if it declares no version."""
    sql = resources.files("gateway").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    declared = VERSION_LINE.search(sql)
    if declared is None:
        raise MigrationError("schema.sql declares no version: add a `-- schema-version: N` line")
    checksum = hashlib.sha256(sql.encode()).hexdigest()
    return Schema(int(declared.group(1)), checksum, sql)


def _state(schema: Schema, applied: Applied | None) -> State:
    if applied is None:
        return State.MISSING
    if applied.version > schema.version:
        return State.NEWER
    if applied.version == schema.version and applied.checksum == schema.checksum:
        return State.CURRENT
    return State.BEHIND


async def _applied(conn: asyncpg.Connection) -> Applied | None:
    if not await conn.fetchval(HAS_VERSION_TABLE):
        return None
    row = await conn.fetchrow(NEWEST_APPLIED)
    return Applied(row["version"], row["checksum"]) if row else None


async def status(dsn: str) -> Status:
    """Where the database stands against this release's schema; applies nothing."""
    schema = load_schema()
    conn = await asyncpg.connect(dsn)
    try:
        applied = await _applied(conn)
    finally:
        await conn.close()
    return Status(_state(schema, applied), schema, applied)


Progress = Callable[[str], None]


async def migrate(
    dsn: str,
    *,
    progress: Progress | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
    attempts: int = ATTEMPTS,
) -> Status:
    """Bring the database to this release's schema; returns where it stood before.

    Safe to run from any number of replicas at once. Table locks are waited for at most
    `lock_timeout` seconds per try, `attempts` times, then MigrationError says which lock.
    """
    say = progress or (lambda _message: None)
    schema = load_schema()
    conn = await asyncpg.connect(dsn)
    try:
        for attempt in range(1, attempts):
            try:
                return await _apply_once(conn, schema, say, lock_timeout)
            except asyncpg.LockNotAvailableError as e:
                say(f"a table is busy ({e}); trying again ({attempt}/{attempts - 1})")
                await asyncio.sleep(lock_timeout)
        try:
            return await _apply_once(conn, schema, say, lock_timeout)
        except asyncpg.LockNotAvailableError as e:
            raise MigrationError(
                f"gave up after {attempts} tries: a table stayed locked by another transaction "
                f"for more than {lock_timeout:g} s each time ({e}); find that transaction in "
                "pg_stat_activity, then run `leadgate migrate` again"
            ) from e
    finally:
        await conn.close()


async def _apply_once(
    conn: asyncpg.Connection, schema: Schema, say: Progress, lock_timeout: float
) -> Status:
    async with conn.transaction():
        if not await conn.fetchval(TRY_LOCK, MIGRATE_LOCK):
            say("another `leadgate migrate` is running; waiting for it to finish")
            await conn.execute(LOCK, MIGRATE_LOCK)
        applied = await _applied(conn)
        before = Status(_state(schema, applied), schema, applied)
        if before.up_to_date:
            return before
        say(f"applying schema version {schema.version}")
        await conn.execute(SET_LOCK_TIMEOUT, f"{int(lock_timeout * 1000)}ms")
        await conn.execute(schema.sql)
        await conn.execute(RECORD_APPLIED, schema.version, schema.checksum, _release())
    return before


def _release() -> str:
    return package_version("leadgate")
