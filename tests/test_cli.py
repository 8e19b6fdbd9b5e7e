"""The `leadgate` command's scripting contract: tenants, keys and pipelines, run in-process.

Each command runs its own event loop (`asyncio.run`), so it is invoked in a worker thread while
the test's loop keeps serving the app the created keys are tried against.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiohttp.test_utils import TestClient
from click.testing import CliRunner, Result

from gateway.cli import main
from tests.conftest import TEST_SECRET_KEYS, Servers


async def leadgate(
    servers: Servers, *args: str, env: dict[str, str | None] | None = None
) -> Result:
    """Run `leadgate ARGS` against the test database; settings come from `env` alone."""
    environment: dict[str, str | None] = {
        "LEADGATE_DATABASE_URL": servers.database_url,
        "LEADGATE_REDIS_URL": servers.redis_url,
        "LEADGATE_SECRET_KEYS": TEST_SECRET_KEYS,
        "LEADGATE_CONFIG": None,
        **(env or {}),
    }
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, main, list(args), env=environment)


def json_of(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


async def new_tenant(servers: Servers, name: str = "acme") -> str:
    tenant_id: str = json_of(await leadgate(servers, "tenants", "create", name, "--json"))["id"]
    return tenant_id


async def new_key(servers: Servers, tenant_id: str, scopes: str) -> dict[str, str]:
    created: dict[str, str] = json_of(
        await leadgate(
            servers, "keys", "create", "--tenant", tenant_id, "--scopes", scopes, "--json"
        )
    )
    return created


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_tenants_create_json_prints_exactly_id_and_name(
    servers: Servers, conn: asyncpg.Connection
) -> None:
    result = await leadgate(servers, "tenants", "create", "Acme Loans", "--json")
    printed = json_of(result)
    assert list(printed) == ["id", "name"]
    assert printed["name"] == "Acme Loans"
    assert result.stdout == orjson.dumps(printed).decode() + "\n"
    stored = await conn.fetchrow("SELECT id, name FROM tenants")
    assert dict(stored) == printed


async def test_keys_create_json_prints_exactly_id_and_key(
    servers: Servers, conn: asyncpg.Connection
) -> None:
    tenant_id = await new_tenant(servers)
    result = await leadgate(servers, "keys", "create", "--tenant", tenant_id, "--json")
    printed = json_of(result)
    assert list(printed) == ["id", "key"]
    assert printed["key"].startswith("lg_live_")
    assert len(printed["key"]) > len("lg_live_") + 32
    assert result.stdout == orjson.dumps(printed).decode() + "\n"
    row = await conn.fetchrow("SELECT tenant_id, scopes FROM api_keys WHERE id = $1", printed["id"])
    assert (row["tenant_id"], sorted(row["scopes"])) == (tenant_id, ["ingest", "manage", "read"])


async def test_created_key_works_with_exactly_its_scopes(
    servers: Servers, client: TestClient[Any, Any]
) -> None:
    tenant_id = await new_tenant(servers)
    key = (await new_key(servers, tenant_id, "ingest,read"))["key"]

    created = await client.post(
        "/v1/postback", json={"email": "ada@example.com"}, headers=bearer(key)
    )
    assert created.status == 201
    lead_id = (await created.json())["data"]["id"]
    listed = await client.get("/v1/leads", headers=bearer(key))
    assert listed.status == 200
    assert [lead["id"] for lead in (await listed.json())["data"]] == [lead_id]
    patched = await client.patch(f"/v1/leads/{lead_id}", json={"stage": "won"}, headers=bearer(key))
    assert patched.status == 403
    assert (await patched.json())["error"]["code"] == "forbidden"


async def test_read_only_key_cannot_ingest(servers: Servers, client: TestClient[Any, Any]) -> None:
    tenant_id = await new_tenant(servers)
    key = (await new_key(servers, tenant_id, "read"))["key"]
    response = await client.post("/v1/postback", json={"email": "a@b.co"}, headers=bearer(key))
    assert response.status == 403
    assert (await client.get("/v1/leads", headers=bearer(key))).status == 200


async def test_created_key_is_stored_only_as_its_sha256_hash(
    servers: Servers, conn: asyncpg.Connection
) -> None:
    tenant_id = await new_tenant(servers)
    created = await new_key(servers, tenant_id, "ingest")
    key = created["key"]
    row = await conn.fetchrow("SELECT * FROM api_keys WHERE id = $1", created["id"])
    assert row["key_hash"] == hashlib.sha256(key.encode()).digest()
    as_text = await conn.fetchval("SELECT k::text FROM api_keys k WHERE id = $1", created["id"])
    assert key not in as_text
    assert key[len(row["hint"]) :] not in as_text
    assert key.encode().hex() not in as_text


async def test_keys_list_json_shows_a_hint_never_the_key(
    servers: Servers, conn: asyncpg.Connection
) -> None:
    tenant_id = await new_tenant(servers)
    created = await new_key(servers, tenant_id, "ingest,read")
    result = await leadgate(servers, "keys", "list", "--tenant", tenant_id, "--json")
    [listed] = json_of(result)
    assert listed["id"] == created["id"]
    assert listed["hint"] == created["key"][: len(listed["hint"])]
    assert len(listed["hint"]) <= len("lg_live_") + 4
    assert "key" not in listed and "key_hash" not in listed
    assert created["key"] not in result.output
    assert created["key"][len(listed["hint"]) :] not in result.output


async def test_keys_revoke_makes_the_key_401(
    servers: Servers, client: TestClient[Any, Any]
) -> None:
    tenant_id = await new_tenant(servers)
    created = await new_key(servers, tenant_id, "read")
    assert (await client.get("/v1/leads", headers=bearer(created["key"]))).status == 200

    result = await leadgate(servers, "keys", "revoke", created["id"])
    assert result.exit_code == 0, result.output

    response = await client.get("/v1/leads", headers=bearer(created["key"]))
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"


async def test_unknown_scope_exits_non_zero_naming_scopes(
    servers: Servers, conn: asyncpg.Connection
) -> None:
    tenant_id = await new_tenant(servers)
    result = await leadgate(
        servers, "keys", "create", "--tenant", tenant_id, "--scopes", "ingest,admin", "--json"
    )
    assert result.exit_code == 2, result.output
    assert "--scopes" in result.output
    assert "admin" in result.output
    assert result.stdout == ""
    assert await conn.fetchval("SELECT count(*) FROM api_keys") == 0


async def test_tenants_update_stages_sets_the_pipeline_postbacks_validate_against(
    servers: Servers, client: TestClient[Any, Any]
) -> None:
    tenant_id = await new_tenant(servers)
    key = (await new_key(servers, tenant_id, "ingest,read"))["key"]
    result = await leadgate(
        servers, "tenants", "update", tenant_id,
        "--stages", "Form Started,Application Submitted,Paid", "--exit-stages", "lost,rejected",
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    paid = await client.post(
        "/v1/postback", json={"email": "ada@example.com", "stage": "paid"}, headers=bearer(key)
    )
    assert paid.status == 201
    assert (await paid.json())["data"]["stage"] == "Paid"

    won = await client.post(
        "/v1/postback", json={"email": "bob@example.com", "stage": "won"}, headers=bearer(key)
    )
    assert won.status == 400
    error = (await won.json())["error"]
    assert error["fields"] == {
        "stage": "must be one of: Form Started, Application Submitted, Paid, lost, rejected"
    }


async def test_new_lead_starts_at_the_first_stage_of_an_updated_pipeline(
    servers: Servers, client: TestClient[Any, Any]
) -> None:
    tenant_id = await new_tenant(servers)
    key = (await new_key(servers, tenant_id, "ingest"))["key"]
    result = await leadgate(
        servers, "tenants", "update", tenant_id, "--stages", "Form Started,Paid"
    )
    assert result.exit_code == 0, result.output
    response = await client.post("/v1/postback", json={"email": "a@b.co"}, headers=bearer(key))
    assert (await response.json())["data"]["stage"] == "Form Started"


async def test_updated_exit_stage_is_reachable_from_any_stage(
    servers: Servers, client: TestClient[Any, Any]
) -> None:
    tenant_id = await new_tenant(servers)
    key = (await new_key(servers, tenant_id, "ingest"))["key"]
    result = await leadgate(
        servers, "tenants", "update", tenant_id,
        "--stages", "Form Started,Application Submitted,Paid", "--exit-stages", "lost,rejected",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lead = {"email": "ada@example.com"}
    await client.post("/v1/postback", json={**lead, "stage": "Paid"}, headers=bearer(key))
    response = await client.post(
        "/v1/postback", json={**lead, "stage": "REJECTED"}, headers=bearer(key)
    )
    assert response.status == 200
    body = await response.json()
    assert (body["data"]["stage"], body["stage_ignored"]) == ("rejected", False)


async def test_match_phone_merges_postbacks_with_the_same_phone_in_any_format(
    servers: Servers, client: TestClient[Any, Any], conn: asyncpg.Connection
) -> None:
    tenant_id = await new_tenant(servers)
    key = (await new_key(servers, tenant_id, "ingest"))["key"]
    result = await leadgate(servers, "tenants", "update", tenant_id, "--match-phone")
    assert result.exit_code == 0, result.output

    first = await client.post(
        "/v1/postback", json={"phone": "+1 415 555 0123", "first_name": "Ada"}, headers=bearer(key)
    )
    second = await client.post(
        "/v1/postback",
        json={"phone": "+1 (415) 555-0123", "last_name": "Lovelace"},
        headers=bearer(key),
    )
    assert (first.status, second.status) == (201, 200)
    merged = (await second.json())["data"]
    assert merged["id"] == (await first.json())["data"]["id"]
    assert (merged["phone"], merged["first_name"], merged["last_name"]) == (
        "+14155550123",
        "Ada",
        "Lovelace",
    )
    assert await conn.fetchval("SELECT count(*) FROM leads WHERE tenant_id = $1", tenant_id) == 1


async def test_phone_matching_is_off_until_match_phone(
    servers: Servers, client: TestClient[Any, Any], conn: asyncpg.Connection
) -> None:
    tenant_id = await new_tenant(servers)
    key = (await new_key(servers, tenant_id, "ingest"))["key"]
    for phone in ("+1 415 555 0123", "+1 (415) 555-0123"):
        response = await client.post("/v1/postback", json={"phone": phone}, headers=bearer(key))
        assert response.status == 201
    assert await conn.fetchval("SELECT count(*) FROM leads WHERE tenant_id = $1", tenant_id) == 2


async def test_missing_database_url_is_an_error_naming_leadgate_database_url(
    servers: Servers, tmp_path: Path
) -> None:
    result = await leadgate(
        servers,
        "tenants",
        "create",
        "acme",
        "--json",
        env={"LEADGATE_DATABASE_URL": None, "LEADGATE_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 2
    assert "LEADGATE_DATABASE_URL is not set" in result.output
    assert result.stdout == ""
