"""What the scoring and stats tests share: rule sets, and waiting for a rescore."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import Tenant

Client = TestClient[Any, Any]

RULES: dict[str, Any] = {
    "rules": [
        {"name": "phone_valid", "points": 10, "when": "$exists(phone)"},
        {"name": "budget_provided", "points": 10, "when": "$exists(custom_data.budget)"},
        {"name": "email_business", "points": 5,
         "when": "$exists(email) and $not($contains(email, '@gmail.com'))"},
        {"name": "has_company", "points": 3, "when": "$exists(company)"},
    ],
    "tiers": [{"name": "hot", "min": 20}, {"name": "warm", "min": 10}],
}  # fmt: skip


async def put_rules(client: Client, tenant: Tenant, rules: dict[str, Any] = RULES) -> Any:
    response = await client.put("/v1/scoring", json=rules, headers=tenant.headers)
    body = await response.json()
    assert response.status == 200, body
    return body["data"]


async def post(client: Client, tenant: Tenant, path: str = "/v1/postback", **fields: Any) -> Any:
    response = await client.post(path, json=fields, headers=tenant.headers)
    body = await response.json()
    assert response.status in (200, 201), body
    return body["data"]


async def rescored(client: Client, tenant: Tenant, timeout: float = 20.0) -> Any:
    """The scoring view once its rescore is done."""
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get("/v1/scoring", headers=tenant.headers)
        data = (await response.json())["data"]
        if data["rescore"] is not None and data["rescore"]["state"] == "done":
            return data
        assert time.monotonic() < deadline, f"the rescore did not finish: {data['rescore']}"
        await asyncio.sleep(0.1)
