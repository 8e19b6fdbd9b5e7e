"""The benchmark's database and Redis: start each run clean, and read Postgres counters.

The bench database is dropped and created again at the start of a run, so every run starts
from empty tables. Counters from pg_stat_database and pg_stat_wal, read before and after a
measurement, tell how many transactions were committed and how many WAL flushes it took.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

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


def analyze(dsn: str) -> None:
    """Refresh the planner's statistics of every table in the bench database.

    A run starts from empty tables and lasts less than autovacuum's first visit, so without
    this the planner would keep planning for empty tables while they fill up.
    """
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute("ANALYZE")


def server_pids(dsn: str) -> set[int]:
    """The Postgres processes working for the bench database, and the shared helpers.

    That is the sessions connected to it plus the background processes (WAL writer,
    checkpointer, autovacuum...), but not the sessions of other databases on the same server.
    """
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE (datname = current_database() OR datname IS NULL)"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return {int(row[0]) for row in rows}


def postmaster_pid(dsn: str) -> int | None:
    """The PID of the server's postmaster, if it runs on this machine (else None)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    try:
        stat = Path(f"/proc/{int(row[0])}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def redis_pid(url: str) -> int | None:
    """The PID of the Redis server, if it runs on this machine (else None)."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        info = cast(dict[str, Any], client.info("server"))
        pid = int(info["process_id"])
    finally:
        client.close()
    return pid if Path(f"/proc/{pid}").exists() else None


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
