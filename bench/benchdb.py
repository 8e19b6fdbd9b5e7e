"""The benchmark's database and Redis: start each run clean, and read Postgres counters.

The bench database is dropped and created again at the start of a run, so every run starts
from empty tables. Counters from pg_stat_database and pg_stat_wal, read before and after a
measurement, tell how many transactions were committed and how many WAL flushes it took.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


@dataclass(frozen=True)
class PgCounters:
    """Cumulative Postgres counters at one instant."""

    xact_commit: int
    wal_records: int
    wal_sync: int
    wal_write: int


def database_name(dsn: str) -> str:
    """The database a DSN names."""
    name = conninfo_to_dict(dsn).get("dbname")
    if not name:
        raise ValueError(f"the database URL names no database: {dsn}")
    return str(name)


def maintenance_dsn(dsn: str) -> str:
    """The same server and user, but the `postgres` database."""
    return make_conninfo(dsn, dbname="postgres")


def recreate_database(dsn: str) -> None:
    """Drop the bench database (closing its sessions) and create it empty."""
    name = database_name(dsn)
    with psycopg.connect(maintenance_dsn(dsn), autocommit=True, connect_timeout=10) as conn:
        ident = sql.Identifier(name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))


def durability_settings(dsn: str) -> dict[str, str]:
    """The settings that decide whether a commit is durable, as the server reports them."""
    names = ("fsync", "synchronous_commit", "wal_sync_method", "full_page_writes")
    with psycopg.connect(maintenance_dsn(dsn), autocommit=True, connect_timeout=10) as conn:
        return {name: str(conn.execute(f"SHOW {name}").fetchone()[0]) for name in names}  # type: ignore[index]


def flush_redis(url: str) -> None:
    """Empty the Redis database the run uses."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


def pg_counters(dsn: str) -> PgCounters:
    """Commits of the bench database and the server's WAL counters, now."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        commits = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        wal = conn.execute("SELECT wal_records, wal_sync, wal_write FROM pg_stat_wal").fetchone()
    assert commits is not None and wal is not None
    return PgCounters(int(commits[0]), int(wal[0]), int(wal[1]), int(wal[2]))
