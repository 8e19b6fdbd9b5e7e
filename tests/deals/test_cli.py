"""`leadgate tenants update ID --currency CODE`: the currency a tenant's deals default to."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import Servers
from tests.test_cli import bearer, json_of, leadgate, new_key, new_tenant


async def test_tenants_update_currency_sets_the_default_of_new_deals(
    servers: Servers, client: TestClient[Any, Any]
) -> None:
    tenant_id = await new_tenant(servers)
    key = (await new_key(servers, tenant_id, "manage"))["key"]
    before = await client.post("/v1/deals", json={"title": "a"}, headers=bearer(key))
    assert (await before.json())["data"]["currency"] == "USD"

    shown = json_of(
        await leadgate(servers, "tenants", "update", tenant_id, "--currency", "eur", "--json")
    )
    assert (shown["id"], shown["default_currency"]) == (tenant_id, "EUR")
    after = await client.post("/v1/deals", json={"title": "b"}, headers=bearer(key))
    assert (await after.json())["data"]["currency"] == "EUR"
    named = await client.post(
        "/v1/deals", json={"title": "c", "currency": "GBP"}, headers=bearer(key)
    )
    assert (await named.json())["data"]["currency"] == "GBP"


async def test_tenants_update_refuses_a_currency_that_is_not_iso_4217(servers: Servers) -> None:
    tenant_id = await new_tenant(servers)
    result = await leadgate(servers, "tenants", "update", tenant_id, "--currency", "EURO")
    assert result.exit_code == 2
    assert "--currency" in result.output
    assert "ISO 4217" in result.output
