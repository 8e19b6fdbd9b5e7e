"""The transactional outbox: which changes write which events, and that they commit together."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from gateway.leads.models import DETAIL_ONLY
from tests.conftest import Tenant, events_of

Client = TestClient[Any, Any]
Event = dict[str, Any]


async def postback(client: Client, tenant: Tenant, **fields: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post("/v1/postback", json=fields, headers=tenant.headers)
    return response.status, await response.json()


async def create(client: Client, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    status, body = await postback(client, tenant, **fields)
    assert status == 201, body
    lead: dict[str, Any] = body["data"]
    return lead


async def shown(client: Client, tenant: Tenant, lead_id: str) -> dict[str, Any]:
    """The lead exactly as `GET /v1/leads/{id}` returns it, without what only the detail has
    (history, deliveries, timeline, deals)."""
    response = await client.get(f"/v1/leads/{lead_id}", headers=tenant.headers)
    assert response.status == 200, await response.text()
    lead: dict[str, Any] = (await response.json())["data"]
    return {k: v for k, v in lead.items() if k not in DETAIL_ONLY}


async def new_events(conn: asyncpg.Connection, tenant: Tenant, before: list[Event]) -> list[Event]:
    """The tenant's events that were not in `before`."""
    seen = {event["id"] for event in before}
    return [event for event in await events_of(conn, tenant.id) if event["id"] not in seen]


def types(events: list[Event]) -> list[str]:
    # Two events written by one request share a millisecond, and ids order only by millisecond,
    # so their relative order is compared as a sorted list.
    return sorted(event["type"] for event in events)


def one(events: list[Event], type_: str) -> Event:
    matching = [event for event in events if event["type"] == type_]
    assert len(matching) == 1, [event["type"] for event in events]
    return matching[0]


# --- which change writes which event ----------------------------------------------------------


async def test_new_lead_writes_one_lead_created_with_the_lead_as_get_shows_it(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead = await create(
        client, tenant, email="Ada@Example.com", phone="+14155550123", first_name="Ada",
        form_completion_percent=60, estimated_value=1250.5, custom_data={"vertical": "solar"},
        utm_campaign="spring", tier=3,
    )  # fmt: skip
    events = await events_of(conn, tenant.id)
    assert [(e["type"], e["lead_id"]) for e in events] == [("lead.created", lead["id"])]
    body = events[0]["body"]
    assert list(body) == ["id", "type", "timestamp", "data"]
    assert body["id"] == events[0]["id"]
    assert body["id"].startswith("evt_")
    assert body["type"] == "lead.created"
    assert body["timestamp"] == lead["created_at"]
    assert body["timestamp"].endswith("Z")
    assert body["data"] == await shown(client, tenant, lead["id"])


async def test_postback_changing_a_field_writes_one_lead_updated_with_the_updated_lead(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead = await create(client, tenant, email="ada@example.com", company="Acme")
    before = await events_of(conn, tenant.id)
    status, body = await postback(
        client, tenant, email="ada@example.com", company="Engines", custom_data={"tier": 2}
    )
    assert status == 200
    events = await new_events(conn, tenant, before)
    assert [(e["type"], e["lead_id"]) for e in events] == [("lead.updated", lead["id"])]
    updated = await shown(client, tenant, lead["id"])
    assert updated["company"] == "Engines"
    assert events[0]["body"]["data"] == updated == body["data"]
    assert events[0]["body"]["timestamp"] == updated["updated_at"]


async def test_postback_moving_stage_forward_writes_stage_changed_with_previous_stage(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead = await create(client, tenant, email="ada@example.com")
    before = await events_of(conn, tenant.id)
    status, _ = await postback(client, tenant, email="ada@example.com", stage="qualified")
    assert status == 200
    events = await new_events(conn, tenant, before)
    assert [(e["type"], e["lead_id"]) for e in events] == [("lead.stage_changed", lead["id"])]
    moved = await shown(client, tenant, lead["id"])
    assert moved["stage"] == "qualified"
    assert events[0]["body"]["data"] == {**moved, "previous_stage": "new"}


async def test_postback_changing_field_and_stage_writes_both_events(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead = await create(client, tenant, email="ada@example.com")
    before = await events_of(conn, tenant.id)
    status, _ = await postback(
        client, tenant, email="ada@example.com", company="Engines", stage="contacted"
    )
    assert status == 200
    events = await new_events(conn, tenant, before)
    assert types(events) == ["lead.stage_changed", "lead.updated"]
    now = await shown(client, tenant, lead["id"])
    assert one(events, "lead.updated")["body"]["data"] == now
    assert one(events, "lead.stage_changed")["body"]["data"] == {**now, "previous_stage": "new"}


async def test_postback_resending_the_same_values_writes_no_event(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    fields = {
        "email": "ada@example.com", "phone": "+14155550123", "company": "Acme",
        "stage": "contacted", "form_completion_percent": 60, "custom_data": {"tier": 2},
    }  # fmt: skip
    lead = await create(client, tenant, **fields)
    before = await events_of(conn, tenant.id)
    status, body = await postback(client, tenant, **fields)
    assert status == 200
    assert body["data"] == lead
    assert await new_events(conn, tenant, before) == []


async def test_backward_stage_postback_writes_no_event(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead = await create(client, tenant, email="ada@example.com", stage="qualified")
    before = await events_of(conn, tenant.id)
    status, body = await postback(client, tenant, email="ada@example.com", stage="contacted")
    assert status == 200
    assert body["stage_ignored"] is True
    assert body["data"] == lead
    assert await new_events(conn, tenant, before) == []


async def test_backward_stage_postback_with_a_changed_field_writes_only_lead_updated(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead = await create(client, tenant, email="ada@example.com", stage="qualified")
    before = await events_of(conn, tenant.id)
    status, body = await postback(
        client, tenant, email="ada@example.com", stage="new", company="Engines"
    )
    assert status == 200
    assert body["stage_ignored"] is True
    events = await new_events(conn, tenant, before)
    assert [(e["type"], e["lead_id"]) for e in events] == [("lead.updated", lead["id"])]
    assert events[0]["body"]["data"]["stage"] == "qualified"
    assert events[0]["body"]["data"] == await shown(client, tenant, lead["id"])


async def test_forced_backward_stage_postback_writes_stage_changed(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead = await create(client, tenant, email="ada@example.com", stage="qualified")
    before = await events_of(conn, tenant.id)
    status, body = await postback(
        client, tenant, email="ada@example.com", stage="new", force_stage=True
    )
    assert status == 200
    assert body["stage_ignored"] is False
    events = await new_events(conn, tenant, before)
    assert [(e["type"], e["lead_id"]) for e in events] == [("lead.stage_changed", lead["id"])]
    assert events[0]["body"]["data"] == {
        **await shown(client, tenant, lead["id"]),
        "previous_stage": "qualified",
    }


async def test_delete_writes_lead_deleted(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead = await create(client, tenant, email="ada@example.com", first_name="Ada")
    before = await events_of(conn, tenant.id)
    response = await client.delete(f"/v1/leads/{lead['id']}", headers=tenant.headers)
    assert response.status == 200
    events = await new_events(conn, tenant, before)
    assert [(e["type"], e["lead_id"]) for e in events] == [("lead.deleted", lead["id"])]
    data = events[0]["body"]["data"]
    assert data["id"] == lead["id"]
    # The event announces the erasure; it does not carry the personal data it erased.
    assert (data["email"], data["first_name"]) == (None, None)


# --- atomicity --------------------------------------------------------------------------------


async def history_of(conn: asyncpg.Connection, lead_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM stage_history WHERE lead_id = $1 ORDER BY id", lead_id
    )
    return rows


async def test_failed_postback_leaves_no_event_and_no_change(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead = await create(client, tenant, external_id="crm-1", email="ada@example.com")
    await create(client, tenant, email="grace@example.com")
    lead_before = await shown(client, tenant, lead["id"])
    history_before = await history_of(conn, lead["id"])
    before = await events_of(conn, tenant.id)
    # Matched by external id, the postback would give the lead another lead's email: 409.
    status, body = await postback(
        client, tenant, external_id="crm-1", email="grace@example.com", first_name="Changed",
        stage="qualified",
    )  # fmt: skip
    assert status == 409
    assert body["error"]["code"] == "conflict"
    assert await events_of(conn, tenant.id) == before
    assert await shown(client, tenant, lead["id"]) == lead_before
    assert await history_of(conn, lead["id"]) == history_before


async def test_failed_patch_leaves_no_event_and_no_change(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead = await create(client, tenant, email="ada@example.com")
    await create(client, tenant, email="grace@example.com")
    lead_before = await shown(client, tenant, lead["id"])
    history_before = await history_of(conn, lead["id"])
    before = await events_of(conn, tenant.id)
    response = await client.patch(
        f"/v1/leads/{lead['id']}",
        json={"email": "grace@example.com", "company": "Changed", "stage": "won"},
        headers=tenant.headers,
    )
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "conflict"
    assert await events_of(conn, tenant.id) == before
    assert await shown(client, tenant, lead["id"]) == lead_before
    assert await history_of(conn, lead["id"]) == history_before


async def test_change_and_its_events_are_written_by_one_transaction(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    # Every row version carries in `xmin` the id of the transaction that wrote it. The updated
    # lead row, its new stage-history row and both events must share it; an event written
    # before or after the change in a transaction of its own would carry a different id.
    lead = await create(client, tenant, email="ada@example.com")
    before = await events_of(conn, tenant.id)
    status, _ = await postback(
        client, tenant, email="ada@example.com", company="Engines", stage="won"
    )
    assert status == 200
    new_ids = [event["id"] for event in await new_events(conn, tenant, before)]
    assert len(new_ids) == 2
    writers = await conn.fetch(
        """
        SELECT xmin::text AS tx FROM leads WHERE id = $1
        UNION ALL SELECT xmin::text FROM stage_history WHERE lead_id = $1 AND to_stage = 'won'
        UNION ALL SELECT xmin::text FROM events WHERE id = ANY ($2::text[])
        """,
        lead["id"],
        new_ids,
    )
    assert len(writers) == 4
    assert len({row["tx"] for row in writers}) == 1


async def wait_for_a_blocked_events_insert(conn: asyncpg.Connection) -> bool:
    for _ in range(500):
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE relation = 'events'::regclass AND NOT granted"
        )
        if waiting:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_lead_is_neither_visible_nor_acknowledged_before_its_event_is_written(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    # This connection locks the events table against writes (reads still work), so the
    # postback stops at its event insert. Had the lead been committed on its own before that,
    # it would be visible here while the event waits; with a transactional outbox neither the
    # lead nor its history exists until the event can be written, and no response is sent.
    async def send() -> ClientResponse:
        return await client.post(
            "/v1/postback", json={"email": "ada@example.com"}, headers=tenant.headers
        )

    async with conn.transaction():
        await conn.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        pending = asyncio.create_task(send())
        blocked = await wait_for_a_blocked_events_insert(conn)
        leads_seen = await conn.fetchval("SELECT count(*) FROM leads")
        history_seen = await conn.fetchval("SELECT count(*) FROM stage_history")
        answered = pending.done()
    response = await pending  # the lock is released: the postback completes
    assert blocked, "the postback never reached its events insert"
    assert (leads_seen, history_seen, answered) == (0, 0, False)
    assert response.status == 201
    lead = (await response.json())["data"]
    events = await events_of(conn, tenant.id)
    assert [(e["type"], e["lead_id"]) for e in events] == [("lead.created", lead["id"])]
    assert await conn.fetchval("SELECT count(*) FROM leads") == 1


# --- the stored events ------------------------------------------------------------------------


async def test_event_ids_are_unique_and_name_their_envelope(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    for n in range(3):
        lead = await create(client, tenant, email=f"lead{n}@example.com")
        await postback(client, tenant, email=f"lead{n}@example.com", company="X", stage="won")
        await client.delete(f"/v1/leads/{lead['id']}", headers=tenant.headers)
    events = await events_of(conn, tenant.id)
    assert len(events) == 12  # created, updated, stage_changed, deleted for each of 3 leads
    assert len({event["id"] for event in events}) == 12
    assert len({event["body"]["id"] for event in events}) == 12
    for event in events:
        assert event["id"].startswith("evt_")
        assert (event["body"]["id"], event["body"]["type"]) == (event["id"], event["type"])


async def test_event_body_is_stored_once_and_never_rewritten(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead = await create(client, tenant, email="ada@example.com", company="Acme")
    (created,) = await events_of(conn, tenant.id)
    query = "SELECT body FROM events WHERE id = $1"
    first_read = await conn.fetchval(query, created["id"])
    # Later changes to the lead leave the event that recorded its creation as it was.
    await postback(client, tenant, email="ada@example.com", company="Engines", stage="won")
    response = await client.patch(
        f"/v1/leads/{lead['id']}", json={"first_name": "Ada"}, headers=tenant.headers
    )
    assert response.status == 200
    second_read = await conn.fetchval(query, created["id"])
    assert isinstance(first_read, str)
    assert second_read == first_read
    assert orjson.loads(second_read) == orjson.loads(first_read) == created["body"]
    assert created["body"]["data"]["company"] == "Acme"
