"""`leadgate scoring set|show` and `leadgate tenants update --converted-stages/--monthly-quota`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import Servers
from tests.scoring.helpers import Client
from tests.test_cli import bearer, json_of, leadgate, new_key, new_tenant

LEADITIO = Path(__file__).resolve().parents[2] / "config" / "scoring.leaditio.json"


async def test_scoring_set_saves_the_leaditio_rules_and_a_gateway_rescores(
    servers: Servers,
    aiohttp_client: Callable[..., Awaitable[Client]],
    settings: Settings,
    conn: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    # A gateway that looks for rescores left to it often (a CLI change wakes no gateway).
    client = await aiohttp_client(create_app(settings.model_copy(update={"rescore_interval": 0.2})))
    tenant_id = await new_tenant(servers)
    key = (await new_key(servers, tenant_id, "ingest,read"))["key"]
    before = await client.post("/v1/postback", headers=bearer(key), json={
        "email": "thabo@solar.example", "phone": "+27823456789", "first_name": "Thabo",
        "last_name": "Mokoena", "form_completion_percent": 100, "urgency": "ASAP",
        "budget_range": "R100,000", "suburb": "Sandton", "province": "Gauteng",
        "service_type": "Solar Installation 10kW+",
    })  # fmt: skip
    assert (await before.json())["data"]["score"] is None
    saved = json_of(await leadgate(servers, "scoring", "set", str(LEADITIO), "--tenant",
                                   tenant_id, "--json"))  # fmt: skip
    assert saved["version"] == 1
    assert [t["name"] for t in saved["tiers"]] == ["hot", "warm", "qualified"]
    assert len(saved["rules"]) == 10
    # Polled through the API: the CLI's output is captured from this process's stdout, where
    # the in-process gateway's rescore logs its lines too.
    shown: dict[str, Any] = {}
    for _ in range(100):
        shown = (await (await client.get("/v1/scoring", headers=bearer(key))).json())["data"]
        if shown["rescore"]["state"] == "done":
            break
        await asyncio.sleep(0.2)
    assert shown["rescore"]["state"] == "done"
    lead = (await (await client.get("/v1/leads", headers=bearer(key))).json())["data"][0]
    assert (lead["score"], lead["score_tier"]) == (76, "hot")
    text = await leadgate(servers, "scoring", "show", "--tenant", tenant_id)
    assert "phone_valid" in text.output and "hot ≥ 70" in text.output

    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps({"rules": [{"name": "x", "points": 1, "when": "("}]}))
    refused = await leadgate(servers, "scoring", "set", str(bad), "--tenant", tenant_id)
    assert refused.exit_code == 2
    assert "rules[0].when" in refused.output


async def test_tenants_update_sets_the_quota_and_the_converted_stages(
    servers: Servers, client: Client
) -> None:
    tenant_id = await new_tenant(servers)
    key = (await new_key(servers, tenant_id, "ingest,read"))["key"]
    updated = json_of(await leadgate(
        servers, "tenants", "update", tenant_id, "--monthly-quota", "1",
        "--converted-stages", "WON,qualified", "--json",
    ))  # fmt: skip
    assert (updated["monthly_quota"], updated["converted_stages"]) == (1, ["won", "qualified"])
    first = await client.post("/v1/postback", json={"email": "a@example.com", "stage": "qualified"},
                              headers=bearer(key))  # fmt: skip
    assert first.status == 201
    second = await client.post("/v1/postback", json={"email": "b@example.com"}, headers=bearer(key))
    assert second.status == 429
    stats = (await (await client.get("/v1/stats", headers=bearer(key))).json())["data"]
    assert (stats["leads_converted"], stats["quota_remaining"]) == (1, 0)
    unknown = await leadgate(servers, "tenants", "update", tenant_id, "--converted-stages", "paid")
    assert unknown.exit_code == 2 and "--converted-stages" in unknown.output
    reset = json_of(await leadgate(servers, "tenants", "update", tenant_id, "--monthly-quota",
                                   "0", "--converted-stages", "", "--json"))  # fmt: skip
    assert (reset["monthly_quota"], reset["converted_stages"]) == (None, ["won"])
