"""Lead scoring: rules per tenant, scores on every write, filters, validation, the rescore."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.conftest import Tenant, TenantFactory, events_of
from tests.inbound.test_inbound import add_source, inbound, signed
from tests.scoring.helpers import RULES, Client, post, put_rules, rescored

LEADITIO_LEAD = {"email": "thabo@solar.example", "phone": "+27823456789",
                 "custom_data": {"budget": "R100,000"}}  # fmt: skip


async def test_postback_and_create_carry_score_tier_and_breakdown(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await put_rules(client, tenant)
    lead = await post(client, tenant, **LEADITIO_LEAD)
    assert (lead["score"], lead["score_tier"]) == (25, "hot")
    assert lead["score_breakdown"] == {"phone_valid": 10, "budget_provided": 10,
                                       "email_business": 5}  # fmt: skip
    created = await post(client, tenant, "/v1/leads", email="ada@gmail.com", company="Acme")
    assert (created["score"], created["score_tier"]) == (3, None)
    assert created["score_breakdown"] == {"has_company": 3}
    bodies = [e["body"]["data"] for e in await events_of(conn, tenant.id)
              if e["type"] == "lead.created"]  # fmt: skip
    assert [(b["score"], b["score_tier"]) for b in bodies] == [(25, "hot"), (3, None)]
    shown = await client.get(f"/v1/leads/{lead['id']}", headers=tenant.headers)
    assert (await shown.json())["data"]["score_breakdown"] == lead["score_breakdown"]


async def test_without_rules_score_tier_and_breakdown_are_null(
    client: Client, tenant: Tenant
) -> None:
    lead = await post(client, tenant, **LEADITIO_LEAD)
    assert (lead["score"], lead["score_tier"], lead["score_breakdown"]) == (None, None, None)


async def test_a_postback_that_changes_the_score_is_a_change(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await put_rules(client, tenant)
    await post(client, tenant, email="a@gmail.com")
    updated = await post(client, tenant, email="a@gmail.com", phone="+14155550100")
    assert (updated["score"], updated["score_tier"]) == (10, "warm")
    events = [e for e in await events_of(conn, tenant.id) if e["type"] == "lead.updated"]
    assert [e["body"]["data"]["score"] for e in events] == [10]


async def test_patch_rescores_the_lead_and_emits_lead_updated(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await put_rules(client, tenant)
    lead = await post(client, tenant, email="b@gmail.com", phone="+14155550101")
    response = await client.patch(
        f"/v1/leads/{lead['id']}", json={"phone": None, "company": "Initech"},
        headers=tenant.headers,
    )  # fmt: skip
    assert response.status == 200
    data = (await response.json())["data"]
    assert (data["score"], data["score_tier"], data["score_breakdown"]) == (
        3, None, {"has_company": 3},
    )  # fmt: skip
    updated = [e for e in await events_of(conn, tenant.id) if e["type"] == "lead.updated"]
    assert updated[-1]["body"]["data"]["score"] == 3


async def test_a_rule_that_fails_on_a_lead_does_not_hold_and_the_postback_succeeds(
    client: Client, tenant: Tenant
) -> None:
    rules = {"rules": [{"name": "big", "points": 7, "when": "$number(company) > 5"},
                       {"name": "any", "points": 1, "when": "true"}], "tiers": []}  # fmt: skip
    await put_rules(client, tenant, rules)
    lead = await post(client, tenant, email="c@example.com", company="not a number")
    assert (lead["score"], lead["score_breakdown"]) == (1, {"any": 1})


async def test_list_filters_score_tier_and_min_score_within_the_tenant(
    client: Client, tenant: Tenant, make_tenant: TenantFactory
) -> None:
    other = await make_tenant("other")
    for t in (tenant, other):
        await put_rules(client, t)
        await post(client, t, **LEADITIO_LEAD)  # 25, hot
        await post(client, t, email="w@gmail.com", phone="+14155550102")  # 10, warm
        await post(client, t, email="n@gmail.com")  # 0, no tier

    async def listed(t: Tenant, params: list[tuple[str, str]]) -> list[int]:
        response = await client.get("/v1/leads", params=params, headers=t.headers)
        body = await response.json()
        assert response.status == 200, body
        assert body["total"] == len(body["data"])
        return sorted(lead["score"] for lead in body["data"])

    assert await listed(tenant, [("score_tier", "hot")]) == [25]
    assert await listed(tenant, [("score_tier", "hot"), ("score_tier", "warm")]) == [10, 25]
    assert await listed(tenant, [("min_score", "10")]) == [10, 25]
    assert await listed(tenant, [("min_score", "11"), ("score_tier", "warm")]) == []
    assert await listed(other, [("score_tier", "warm")]) == [10]
    counts = await client.get("/v1/leads/stage-counts", params={"score_tier": "hot"},
                              headers=tenant.headers)  # fmt: skip
    assert (await counts.json())["total"] == 1
    unknown = await client.get("/v1/leads", params={"score_tier": "cold"}, headers=tenant.headers)
    assert unknown.status == 400
    assert (await unknown.json())["error"]["fields"] == {"score_tier": "must be one of: hot, warm"}
    bad = await client.get("/v1/leads", params={"min_score": "lots"}, headers=tenant.headers)
    assert bad.status == 400


async def refused(client: Client, tenant: Tenant, body: Any) -> dict[str, Any]:
    response = await client.put("/v1/scoring", json=body, headers=tenant.headers)
    error: dict[str, Any] = (await response.json())["error"]
    assert response.status == 422, error
    assert error["code"] == "invalid_rules"
    return error


async def test_put_refuses_rule_sets_that_do_not_hold_together_naming_the_field(
    client: Client, tenant: Tenant
) -> None:
    rule = {"name": "a", "points": 1, "when": "true"}
    bad_jsonata = {"rules": [rule, {**rule, "name": "b", "when": "phone = ("}]}
    assert list((await refused(client, tenant, bad_jsonata))["fields"]) == ["rules[1].when"]
    duplicate = {"rules": [rule, rule]}
    assert (await refused(client, tenant, duplicate))["fields"] == {
        "rules[1].name": "another rule has this name"
    }
    for points in (1.5, "10", True):
        body = {"rules": [{**rule, "points": points}]}
        assert list((await refused(client, tenant, body))["fields"]) == ["rules[0].points"]
    tier = {"rules": [rule], "tiers": [{"name": "hot", "min": "high"}]}
    assert list((await refused(client, tenant, tier))["fields"]) == ["tiers[0].min"]
    too_many = {"rules": [{**rule, "name": f"r{i}"} for i in range(101)]}
    assert list((await refused(client, tenant, too_many))["fields"]) == ["rules"]
    assert list((await refused(client, tenant, {"tiers": []}))["fields"]) == ["rules"]
    scoring = await client.get("/v1/scoring", headers=tenant.headers)
    assert (await scoring.json())["data"]["version"] == 0


async def test_get_shows_the_rules_and_the_same_rules_again_change_nothing(
    client: Client, tenant: Tenant
) -> None:
    empty = await client.get("/v1/scoring", headers=tenant.headers)
    assert (await empty.json())["data"] == {"rules": [], "tiers": [], "version": 0,
                                            "updated_at": None, "rescore": None}  # fmt: skip
    first = await put_rules(client, tenant)
    assert first["version"] == 1
    assert first["rules"] == RULES["rules"]
    assert first["rescore"]["state"] == "pending"
    again = await put_rules(client, tenant)
    assert again["version"] == 1


async def test_changing_rules_rescores_existing_leads_in_the_background(
    client: Client, tenant: Tenant, make_tenant: TenantFactory, conn: asyncpg.Connection
) -> None:
    """More leads than one page (500): progress counts them, each changed lead gets one
    lead.updated, written through the outbox; another tenant's leads are left alone."""
    other = await make_tenant("other")
    await conn.execute(
        """INSERT INTO leads (id, tenant_id, email, phone, stage, created_at)
           SELECT 'lead_bulk' || g, $1, 'p' || g || '@example.com',
                  CASE WHEN g % 2 = 0 THEN '+1415555' || lpad(g::text, 4, '0') END, 'new',
                  now() - make_interval(secs => g)
           FROM generate_series(1, 1200) g""",
        tenant.id,
    )
    await conn.execute(
        "UPDATE leads SET deleted_at = now() WHERE id = 'lead_bulk7'"
    )  # erased: skipped
    untouched = await post(client, other, email="o@example.com")
    await put_rules(client, tenant)
    data = await rescored(client, tenant)
    assert data["rescore"]["done"] == data["rescore"]["total"] == 1200
    assert data["rescore"]["changed"] == 1199
    scores = dict(await conn.fetch(
        "SELECT score, count(*) FROM leads WHERE tenant_id = $1 AND deleted_at IS NULL"
        " GROUP BY score", tenant.id))  # fmt: skip
    assert scores == {15: 600, 5: 599}
    updated = [e for e in await events_of(conn, tenant.id) if e["type"] == "lead.updated"]
    assert len(updated) == 1199
    assert len({e["lead_id"] for e in updated}) == 1199
    assert updated[0]["body"]["data"]["score_tier"] in ("warm", None)
    assert await conn.fetchval("SELECT score IS NULL FROM leads WHERE id = $1", untouched["id"])
    # Rules whose outcome is the same for every lead change no lead.
    same = {**RULES, "tiers": [{"name": "hot", "min": 20}, {"name": "warm", "min": 10},
                               {"name": "cold", "min": 100}]}  # fmt: skip
    await put_rules(client, tenant, same)
    again = await rescored(client, tenant)
    assert again["version"] == 2
    assert again["rescore"]["changed"] == 0


async def test_analytics_shows_the_score_tier_mix(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await post(client, tenant, email="before@gmail.com")  # no rules yet: unscored
    await conn.execute("UPDATE leads SET score = NULL")
    await put_rules(client, tenant)
    await conn.execute("UPDATE scoring_rescores SET state = 'done'")  # keep it unscored
    await post(client, tenant, **LEADITIO_LEAD)
    await post(client, tenant, email="w@gmail.com", phone="+14155550103")
    await post(client, tenant, email="z@gmail.com")
    response = await client.get("/v1/analytics", headers=tenant.headers)
    mix = (await response.json())["data"]["score_tiers"]
    assert mix == {"tiers": [{"name": "hot", "leads": 1}, {"name": "warm", "leads": 1}],
                   "below_tiers": 1, "unscored": 1}  # fmt: skip


async def test_an_inbound_opt_out_rescores_the_lead(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    rules = {"rules": [{"name": "reachable", "points": 5, "when": "$not($exists(opted_out_at))"}],
             "tiers": []}  # fmt: skip
    await put_rules(client, tenant, rules)
    lead = await post(client, tenant, email="o@example.com")
    assert lead["score"] == 5
    source = await add_source(client, tenant)
    body, headers = signed(source["secret"], {"id": "o-1", "type": "customer.opt_out",
                                              "lead_id": lead["id"]})  # fmt: skip
    assert (await inbound(client, tenant, body, headers)).status == 201
    shown = await client.get(f"/v1/leads/{lead['id']}", headers=tenant.headers)
    assert (await shown.json())["data"]["score"] == 0
    updated = [e for e in await events_of(conn, tenant.id) if e["type"] == "lead.updated"]
    assert [e["body"]["data"]["score"] for e in updated] == [0]


async def test_a_newer_change_of_rules_replaces_the_rescore_of_the_one_before(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await post(client, tenant, email="r@example.com", phone="+14155550104")
    await put_rules(client, tenant)
    newer = {"rules": [{"name": "phone_valid", "points": 1, "when": "$exists(phone)"}],
             "tiers": [{"name": "any", "min": 1}]}  # fmt: skip
    await put_rules(client, tenant, newer)
    data = await rescored(client, tenant)
    assert data["version"] == 2
    assert data["rescore"]["done"] == 1
    row = await conn.fetchrow("SELECT score, score_tier, score_breakdown FROM leads")
    assert tuple(row) == (1, "any", {"phone_valid": 1})
    updated = [e for e in await events_of(conn, tenant.id) if e["type"] == "lead.updated"]
    assert [e["body"]["data"]["score"] for e in updated] == [1]
