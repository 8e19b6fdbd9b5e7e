"""`GET /metrics`: Prometheus text with requests, ingest outcomes and delivery gauges."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Tenant

Client = TestClient[Any, Any]


async def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_requests_are_counted_by_route_and_status(client: Client, tenant: Tenant) -> None:
    before = await scrape(client)
    await client.get("/v1/leads/lead_x", headers=tenant.headers)
    after = await scrape(client)
    labels = {"method": "GET", "route": "/v1/leads/{lead_id}", "status": "404"}
    key = "leadgate_http_requests_total"
    assert value(after, key, **labels) - value(before, key, **labels) == 1
    hist = "leadgate_http_request_duration_seconds_count"
    route = {"method": "GET", "route": "/v1/leads/{lead_id}"}
    assert value(after, hist, **route) - value(before, hist, **route) == 1


async def test_ingest_outcomes_are_counted(client: Client, tenant: Tenant) -> None:
    before = await scrape(client)
    headers = {**tenant.headers, "Idempotency-Key": "m-1"}
    await client.post("/v1/postback", json={"email": "m@example.com"}, headers=headers)
    await client.post("/v1/postback", json={"email": "m@example.com"}, headers=headers)
    await client.post("/v1/postback", json={"email": "m@example.com"}, headers=tenant.headers)
    await client.post("/v1/postback", json={"email": "not-an-email"}, headers=tenant.headers)
    await client.post(
        "/v1/postback", data=b"{", headers={**tenant.headers, "Content-Type": "application/json"}
    )
    after = await scrape(client)
    name = "leadgate_ingest_total"
    delta = {o: value(after, name, outcome=o) - value(before, name, outcome=o)
             for o in ("created", "matched", "replayed", "rejected")}  # fmt: skip
    assert delta == {"created": 1, "matched": 1, "replayed": 1, "rejected": 2}


async def test_due_deliveries_and_open_circuits_are_gauged_from_postgres(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await conn.execute(
        """INSERT INTO endpoints (id, tenant_id, url, secret, circuit_open_until)
           VALUES ('ep_a', $1, 'http://a.example/', 'whsec_x', now() + interval '1 minute')""",
        tenant.id,
    )
    await client.post("/v1/postback", json={"email": "g@example.com"}, headers=tenant.headers)
    await client.post("/v1/postback", json={"email": "h@example.com"}, headers=tenant.headers)
    samples = await scrape(client)
    assert value(samples, "leadgate_deliveries_due_waiting") == 2
    assert value(samples, "leadgate_open_circuits") == 1
