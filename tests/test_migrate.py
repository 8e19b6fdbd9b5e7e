"""`leadgate migrate`: schema.sql applied to a fresh database, and applied again to no effect.

Applying it again is forced by forgetting the recorded version (a migrate that finds its version
recorded applies nothing: tests/test_migrations.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from gateway import db

# The catalog as far as schema.sql can change it: columns, indexes, constraints, triggers,
# functions and sequences of the public schema, each in a stable order.
CATALOG = {
    "columns": """
        SELECT table_name, column_name, ordinal_position, data_type, udt_name, is_nullable,
               column_default, is_identity
        FROM information_schema.columns WHERE table_schema = 'public'
        ORDER BY table_name, ordinal_position""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
        ORDER BY tablename, indexname""",
    "constraints": """
        SELECT conrelid::regclass::text AS on_table, conname, contype,
               pg_get_constraintdef(oid) AS definition
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        ORDER BY on_table, conname""",
    "triggers": """
        SELECT tgrelid::regclass::text AS on_table, tgname, pg_get_triggerdef(oid) AS definition
        FROM pg_trigger WHERE NOT tgisinternal ORDER BY on_table, tgname""",
    "functions": """
        SELECT proname, pg_get_function_identity_arguments(oid) AS args, md5(prosrc) AS body
        FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY proname, args""",
    "sequences": """
        SELECT sequencename, data_type, start_value, increment_by FROM pg_sequences
        WHERE schemaname = 'public' ORDER BY sequencename""",
}

CONTRACT_TABLES = {
    "tenants",
    "api_keys",
    "leads",
    "stage_history",
    "events",
    "idempotency_keys",
    "endpoints",
    "deliveries",
    "delivery_attempts",
}
LEAD_FIELDS = {
    "external_id", "email", "phone", "first_name", "last_name", "company", "stage", "source",
    "domain", "campaign", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
    "referrer", "ip_address", "user_agent", "browser", "device_type", "form_completion_percent",
    "form_fields_completed", "form_fields_total", "estimated_value", "custom_data",
}  # fmt: skip


async def forget_version(conn: asyncpg.Connection) -> None:
    """Make the next migrate apply schema.sql again, as over an older version."""
    await conn.execute("DELETE FROM schema_version")


async def snapshot(conn: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    return {name: [dict(r) for r in await conn.fetch(query)] for name, query in CATALOG.items()}


@pytest.fixture
async def migrated(fresh_database: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a fresh database that schema.sql has been applied to once."""
    await db.migrate(fresh_database)
    conn = await asyncpg.connect(fresh_database)
    yield conn
    await conn.close()


async def test_migrate_twice_changes_no_table_index_or_constraint(
    fresh_database: str, migrated: asyncpg.Connection
) -> None:
    before = await snapshot(migrated)
    await forget_version(migrated)
    await db.migrate(fresh_database)
    after = await snapshot(migrated)
    assert after == before
    assert before["columns"] and before["indexes"] and before["constraints"]


async def test_migrate_again_keeps_existing_rows(
    fresh_database: str, migrated: asyncpg.Connection
) -> None:
    await migrated.execute("INSERT INTO tenants (id, name) VALUES ('ten_1', 'acme')")
    await forget_version(migrated)
    await db.migrate(fresh_database)
    rows = await migrated.fetch("SELECT id, name, stages FROM tenants")
    assert [tuple(r) for r in rows] == [
        ("ten_1", "acme", ["new", "contacted", "qualified", "proposal", "won"])
    ]


async def test_schema_has_the_tables_the_contract_needs(migrated: asyncpg.Connection) -> None:
    tables = {
        r["table_name"]
        for r in await migrated.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    }
    assert CONTRACT_TABLES - tables == set()


async def test_leads_table_has_every_contract_field(migrated: asyncpg.Connection) -> None:
    columns = {
        r["column_name"]: r["data_type"]
        for r in await migrated.fetch(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = 'leads'"
        )
    }
    assert LEAD_FIELDS - set(columns) == set()
    assert columns["custom_data"] == "jsonb"
    assert {"id", "tenant_id", "created_at", "updated_at"} - set(columns) == set()


async def test_every_tenant_owned_table_carries_tenant_id(migrated: asyncpg.Connection) -> None:
    without = await migrated.fetch(
        """SELECT t.table_name FROM information_schema.tables t
           WHERE t.table_schema = 'public' AND t.table_name <> 'tenants'
             AND NOT EXISTS (SELECT 1 FROM information_schema.columns c
                             WHERE c.table_schema = 'public' AND c.table_name = t.table_name
                               AND c.column_name = 'tenant_id')"""
    )
    # schema_version belongs to the installation, not to a tenant.
    assert {r["table_name"] for r in without} <= {"delivery_attempts", "schema_version"}


async def test_api_keys_table_stores_a_hash_and_no_key(migrated: asyncpg.Connection) -> None:
    columns = {
        r["column_name"]: r["data_type"]
        for r in await migrated.fetch(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = 'api_keys'"
        )
    }
    assert columns["key_hash"] == "bytea"
    assert "key" not in columns


async def test_leads_are_unique_per_tenant_by_email_and_by_external_id(
    migrated: asyncpg.Connection,
) -> None:
    unique = {
        r["indexdef"].split(" USING ")[1]
        for r in await migrated.fetch(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'leads'"
            " AND indexdef LIKE 'CREATE UNIQUE INDEX%'"
        )
    }
    assert "btree (email, tenant_id) WHERE (email IS NOT NULL)" in unique
    assert "btree (external_id, tenant_id) WHERE (external_id IS NOT NULL)" in unique
