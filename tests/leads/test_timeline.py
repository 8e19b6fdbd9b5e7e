"""A lead's timeline: its messages, follow-ups, changes and stage moves on its detail, newest
first, and all of them through `GET /v1/leads/{id}/events`; PATCH opted_out."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from gateway import cursors
from tests.conftest import Tenant, TenantFactory, events_of
from tests.inbound.test_inbound import add_source, inbound, signed

Client = TestClient[Any, Any]


async def add_endpoint(conn: asyncpg.Connection, tenant: Tenant) -> None:
    """An endpoint for every event, written directly: deliveries exist, nothing is sent."""
    await conn.execute(
        "INSERT INTO endpoints (id, tenant_id, url, secret)"
        " VALUES ('ep_' || $1, $1, 'http://x.example/', 'whsec_x')",
        tenant.id,
    )


async def new_lead(client: Client, tenant: Tenant, **fields: Any) -> str:
    body = {"email": "ada@example.com", **fields}
    response = await client.post("/v1/leads", json=body, headers=tenant.headers)
    assert response.status == 201, await response.text()
    lead_id: str = (await response.json())["data"]["id"]
    return lead_id


async def patch(client: Client, tenant: Tenant, lead_id: str, **fields: Any) -> dict[str, Any]:
    response = await client.patch(f"/v1/leads/{lead_id}", json=fields, headers=tenant.headers)
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    return body["data"]


async def detail(client: Client, tenant: Tenant, lead_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/leads/{lead_id}", headers=tenant.headers)
    assert response.status == 200, await response.text()
    lead: dict[str, Any] = (await response.json())["data"]
    return lead


async def publish(client: Client, tenant: Tenant, lead_id: str, kind: str, **more: Any) -> str:
    body = {"type": kind, "lead_id": lead_id, "data": {"step": kind}, **more}
    response = await client.post("/v1/events", json=body, headers=tenant.headers)
    assert response.status == 201, await response.text()
    event_id: str = (await response.json())["data"]["id"]
    return event_id


async def message(client: Client, tenant: Tenant, secret: str, lead_id: str, n: int) -> None:
    payload = {"id": f"m-{n}", "type": "customer.reply", "lead_id": lead_id,
               "channel": "whatsapp", "body": f"reply {n}"}  # fmt: skip
    body, headers = signed(secret, payload, msg_id=f"m-{n}")
    assert (await inbound(client, tenant, body, headers)).status == 201


async def walk(client: Client, tenant: Tenant, lead_id: str, limit: int) -> list[dict[str, Any]]:
    """Every item, a page of `limit` at a time, following next_cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(200):
        params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
        response = await client.get(
            f"/v1/leads/{lead_id}/events", params=params, headers=tenant.headers
        )
        page = await response.json()
        assert response.status == 200, page
        assert len(page["data"]) <= limit
        items += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the cursor never ended")


async def test_detail_timeline_has_each_kind_newest_first(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await add_endpoint(conn, tenant)
    source = await add_source(client, tenant)
    lead_id = await new_lead(client, tenant)
    await patch(client, tenant, lead_id, company="Analytical Engines")
    await patch(client, tenant, lead_id, stage="contacted")
    await message(client, tenant, source["secret"], lead_id, 1)
    follow_up = await publish(client, tenant, lead_id, "followup.day3", delay=3600)
    response = await client.post(
        "/v1/deals", json={"title": "Engine", "lead_id": lead_id}, headers=tenant.headers
    )
    deal = (await response.json())["data"]

    lead = await detail(client, tenant, lead_id)
    timeline = lead["timeline"]
    assert [(i["kind"], i.get("type") or i.get("to_stage")) for i in timeline] == [
        ("deal_change", "deal.created"),
        ("follow_up", "followup.day3"),
        ("message", "customer.reply"),
        ("stage_change", "contacted"),
        ("lead_change", "lead.updated"),
        ("stage_change", "new"),
        ("lead_change", "lead.created"),
    ]
    assert [i["at"] for i in timeline] == sorted((i["at"] for i in timeline), reverse=True)
    assert lead["timeline_next_cursor"] is None
    deal_item, follow, reply, moved, updated, first_stage, created = timeline
    assert deal_item["data"] == deal
    assert follow["id"] == follow_up
    assert follow["data"] == {"step": "followup.day3"}
    assert follow["deliver_at"] is not None
    assert [(d["endpoint_id"], d["state"]) for d in follow["deliveries"]] == [
        (f"ep_{tenant.id}", "pending")
    ]
    assert (reply["source"], reply["channel"], reply["text"]) == ("sms", "whatsapp", "reply 1")
    assert reply["payload"]["id"] == "m-1"
    assert len(reply["deliveries"]) == 1  # its fan-out event, shown once: as the message
    assert (moved["from_stage"], moved["to_stage"], moved["forced"]) == ("new", "contacted", False)
    assert moved["api_key_id"] == tenant.key_id
    assert len(moved["deliveries"]) == 1  # the lead.stage_changed webhook
    assert updated["data"]["company"] == "Analytical Engines"
    assert (first_stage["from_stage"], first_stage["to_stage"]) == (None, "new")
    assert created["data"]["id"] == lead_id


async def test_detail_shows_the_twenty_newest_and_a_cursor_for_the_rest(
    client: Client, tenant: Tenant
) -> None:
    lead_id = await new_lead(client, tenant)
    for n in range(21):
        await patch(client, tenant, lead_id, company=f"c{n}")
    lead = await detail(client, tenant, lead_id)
    assert len(lead["timeline"]) == 20
    assert lead["timeline"][0]["data"]["company"] == "c20"
    rest = await client.get(
        f"/v1/leads/{lead_id}/events",
        params={"cursor": lead["timeline_next_cursor"]},
        headers=tenant.headers,
    )
    page = await rest.json()
    assert [i["kind"] for i in page["data"]] == ["lead_change", "stage_change", "lead_change"]
    assert page["data"][0]["data"]["company"] == "c0"
    assert (page["total"], page["next_cursor"]) == (23, None)


@pytest.mark.parametrize("limit", [1, 2, 5])
async def test_events_cursor_pages_cover_every_item_once_in_order(
    client: Client, tenant: Tenant, limit: int
) -> None:
    source = await add_source(client, tenant)
    lead_id = await new_lead(client, tenant)
    other_lead = await new_lead(client, tenant, email="other@example.com")
    for n, stage in enumerate(("contacted", "qualified", "new")):
        await patch(client, tenant, lead_id, stage=stage, company=f"step {n}")
        await message(client, tenant, source["secret"], lead_id, n)
        await publish(client, tenant, lead_id, f"followup.n{n}")
        await publish(client, tenant, other_lead, "followup.elsewhere")
    everything = await walk(client, tenant, lead_id, 100)
    # created + first stage, then per step: a move, an update, a message, a follow-up
    assert len(everything) == 2 + 3 * 4
    assert await walk(client, tenant, lead_id, limit) == everything
    response = await client.get(f"/v1/leads/{lead_id}/events", headers=tenant.headers)
    assert (await response.json())["total"] == 14


async def test_events_of_another_tenants_lead_is_not_found(
    client: Client, tenant: Tenant, make_tenant: TenantFactory
) -> None:
    other = await make_tenant("other")
    their_lead = await new_lead(client, other)
    response = await client.get(f"/v1/leads/{their_lead}/events", headers=tenant.headers)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    response = await client.get("/v1/leads/lead_nope/events", headers=tenant.headers)
    assert response.status == 404


async def test_events_of_an_erased_lead_are_not_found(client: Client, tenant: Tenant) -> None:
    lead_id = await new_lead(client, tenant)
    await client.delete(f"/v1/leads/{lead_id}", headers=tenant.headers)
    response = await client.get(f"/v1/leads/{lead_id}/events", headers=tenant.headers)
    assert response.status == 404


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        cursors.encode(1),  # too short
        cursors.encode("x", 1, "evt_1", None),  # not a time
        cursors.encode("2026-01-01T00:00:00Z", 9, "x", None),  # no such rank
        cursors.encode("2026-01-01T00:00:00Z", 2, None, "7"),  # a history row is a number
    ],
)
async def test_events_reject_an_invalid_cursor(client: Client, tenant: Tenant, cursor: str) -> None:
    lead_id = await new_lead(client, tenant)
    response = await client.get(
        f"/v1/leads/{lead_id}/events", params={"cursor": cursor}, headers=tenant.headers
    )
    body = await response.json()
    assert response.status == 400, body
    assert body["error"]["fields"] == {"cursor": "invalid"}


async def test_patch_opted_out_stops_pending_follow_ups_and_emits_the_change(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await add_endpoint(conn, tenant)
    lead_id = await new_lead(client, tenant)
    await publish(client, tenant, lead_id, "followup.day3", delay=600)
    lead = await patch(client, tenant, lead_id, opted_out=True)
    assert lead["opted_out_at"] is not None
    states = await conn.fetch(
        "SELECT event_type, state FROM deliveries WHERE lead_id = $1 ORDER BY created_at", lead_id
    )
    assert [(r["event_type"], r["state"]) for r in states] == [
        ("lead.created", "cancelled"),
        ("followup.day3", "cancelled"),
        ("lead.updated", "pending"),  # the opt-out itself goes out
    ]
    event = (await events_of(conn, tenant.id))[-1]
    assert event["type"] == "lead.updated"
    assert event["body"]["data"]["opted_out_at"] == lead["opted_out_at"]
    assert lead["timeline"][0]["kind"] == "lead_change"
    assert lead["timeline"][0]["data"]["opted_out_at"] == lead["opted_out_at"]


async def test_patch_opted_out_has_the_effect_of_an_inbound_opt_out(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await add_endpoint(conn, tenant)
    source = await add_source(client, tenant)
    by_patch = await new_lead(client, tenant, email="patch@example.com")
    by_inbound = await new_lead(client, tenant, email="inbound@example.com")
    for lead_id in (by_patch, by_inbound):
        await publish(client, tenant, lead_id, "followup.day1", delay=60)
        await publish(client, tenant, lead_id, "followup.day3", delay=600)
    await patch(client, tenant, by_patch, opted_out=True)
    body, headers = signed(
        source["secret"], {"id": "o-1", "type": "customer.opt_out", "lead_id": by_inbound}
    )
    assert (await inbound(client, tenant, body, headers)).status == 201

    async def follow_up_states(lead_id: str) -> list[str]:
        rows = await conn.fetch(
            "SELECT state FROM deliveries WHERE lead_id = $1 AND event_type LIKE 'followup.%'",
            lead_id,
        )
        return [r["state"] for r in rows]

    assert await follow_up_states(by_patch) == ["cancelled", "cancelled"]
    assert await follow_up_states(by_inbound) == ["cancelled", "cancelled"]
    for lead_id in (by_patch, by_inbound):
        assert (await detail(client, tenant, lead_id))["opted_out_at"] is not None


async def test_patch_opted_out_again_changes_nothing(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead_id = await new_lead(client, tenant)
    first = await patch(client, tenant, lead_id, opted_out=True)
    before = len(await events_of(conn, tenant.id))
    again = await patch(client, tenant, lead_id, opted_out=True)
    assert again["opted_out_at"] == first["opted_out_at"]
    assert len(await events_of(conn, tenant.id)) == before


async def test_patch_opted_out_false_opts_the_lead_in_again(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead_id = await new_lead(client, tenant)
    await patch(client, tenant, lead_id, opted_out=True)
    lead = await patch(client, tenant, lead_id, opted_out=False)
    assert lead["opted_out_at"] is None
    event = (await events_of(conn, tenant.id))[-1]
    assert (event["type"], event["body"]["data"]["opted_out_at"]) == ("lead.updated", None)


async def test_patch_opted_out_with_a_stage_move_writes_both_events_once(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead_id = await new_lead(client, tenant)
    before = len(await events_of(conn, tenant.id))
    await patch(client, tenant, lead_id, opted_out=True, stage="lost", company="X")
    types = [e["type"] for e in (await events_of(conn, tenant.id))[before:]]
    assert sorted(types) == ["lead.stage_changed", "lead.updated"]


@pytest.mark.parametrize("value", [None, "maybe", 3])
async def test_patch_opted_out_must_be_true_or_false(
    client: Client, tenant: Tenant, value: Any
) -> None:
    lead_id = await new_lead(client, tenant)
    response = await client.patch(
        f"/v1/leads/{lead_id}", json={"opted_out": value}, headers=tenant.headers
    )
    body = await response.json()
    assert response.status == 400, body
    assert "opted_out" in body["error"]["fields"]
