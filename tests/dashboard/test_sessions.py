"""Dashboard sessions: sign-in with a key, the cookie, CSRF, same-origin, expiry, revocation."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from gateway.constants import SESSION_COOKIE
from gateway.keys import REVOKE_KEY
from tests.conftest import Tenant, TenantFactory, add_key
from tests.dashboard.helpers import csrf_of, session_token, sign_in


async def post_lead(client: TestClient[Any, Any], tenant: Tenant, **fields: Any) -> str:
    response = await client.post("/v1/postback", json=fields, headers=tenant.headers)
    assert response.status == 201
    lead_id: str = (await response.json())["data"]["id"]
    return lead_id


async def test_signing_in_sets_an_httponly_strict_expiring_cookie(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await client.post(
        "/dashboard/login", data={"api_key": tenant.key}, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/dashboard/"
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert int(cookie["max-age"]) == 43200
    assert tenant.key not in cookie.value
    assert tenant.key not in response.headers.get("Location", "")


async def test_the_session_is_stored_only_as_a_hash_of_its_token(
    client: TestClient[Any, Any], tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await sign_in(client, tenant.key)
    token = session_token(client)
    rows = await conn.fetch("SELECT * FROM dashboard_sessions")
    assert len(rows) == 1
    assert rows[0]["key_id"] == tenant.key_id
    stored = " ".join(str(v) for v in rows[0].values())
    assert token not in stored and tenant.key not in stored


async def test_a_wrong_key_is_refused_with_401_and_no_cookie(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await client.post(
        "/dashboard/login", data={"api_key": "lg_live_nope"}, allow_redirects=False
    )
    assert response.status == 401
    assert "not valid" in await response.text()
    assert SESSION_COOKIE not in response.cookies


async def test_a_key_without_the_read_scope_cannot_sign_in(
    client: TestClient[Any, Any], make_tenant: TenantFactory
) -> None:
    ingest_only = await make_tenant("pixel", scopes=("ingest",))
    response = await client.post(
        "/dashboard/login", data={"api_key": ingest_only.key}, allow_redirects=False
    )
    assert response.status == 403
    assert "read scope" in await response.text()


async def test_a_sign_in_posted_from_another_site_is_refused(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await client.post(
        "/dashboard/login",
        data={"api_key": tenant.key},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        allow_redirects=False,
    )
    assert response.status == 403
    assert SESSION_COOKIE not in response.cookies


async def test_pages_without_a_session_send_the_browser_to_sign_in(
    client: TestClient[Any, Any],
) -> None:
    for path in ("/dashboard/", "/dashboard/leads", "/dashboard/deliveries/dlv_x"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303, path
        assert response.headers["Location"] == "/dashboard/login"


async def test_a_session_reads_the_api_as_its_key(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    lead_id = await post_lead(client, tenant, email="ada@example.com")
    await sign_in(client, tenant.key)
    response = await client.get("/v1/leads", headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status == 200
    assert [lead["id"] for lead in (await response.json())["data"]] == [lead_id]


async def test_a_change_through_a_session_needs_the_csrf_token(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    lead_id = await post_lead(client, tenant, email="ada@example.com")
    csrf = await sign_in(client, tenant.key)
    refused = await client.patch(f"/v1/leads/{lead_id}", json={"stage": "won"})
    assert refused.status == 403
    assert "X-CSRF-Token" in (await refused.json())["error"]["message"]
    wrong = await client.patch(
        f"/v1/leads/{lead_id}", json={"stage": "won"}, headers={"X-CSRF-Token": csrf + "x"}
    )
    assert wrong.status == 403
    moved = await client.patch(
        f"/v1/leads/{lead_id}", json={"stage": "won"}, headers={"X-CSRF-Token": csrf}
    )
    assert moved.status == 200
    assert (await moved.json())["data"]["stage"] == "won"


async def test_a_session_is_refused_on_requests_from_another_site(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    csrf = await sign_in(client, tenant.key)
    for site in ("cross-site", "same-site"):
        response = await client.get(
            "/v1/leads", headers={"Sec-Fetch-Site": site, "X-CSRF-Token": csrf}
        )
        assert response.status == 403, site
    forged_origin = await client.post(
        "/v1/endpoints",
        json={"url": "https://crm.example.com/hook"},
        headers={"Origin": "https://evil.example", "X-CSRF-Token": csrf},
    )
    assert forged_origin.status == 403


async def test_a_read_only_session_cannot_change_anything(
    client: TestClient[Any, Any], tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead_id = await post_lead(client, tenant, email="ada@example.com")
    csrf = await sign_in(client, await add_key(conn, tenant, ["read"]))
    response = await client.patch(
        f"/v1/leads/{lead_id}", json={"stage": "won"}, headers={"X-CSRF-Token": csrf}
    )
    assert response.status == 403
    assert "manage" in (await response.json())["error"]["message"]


async def test_revoking_the_key_ends_its_sessions_at_once(
    client: TestClient[Any, Any], tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await sign_in(client, tenant.key)
    assert (await client.get("/v1/leads")).status == 200
    await conn.execute(REVOKE_KEY, tenant.key_id)
    response = await client.get("/v1/leads")
    assert response.status == 401
    assert "session has ended" in (await response.json())["error"]["message"]
    page = await client.get("/dashboard/", allow_redirects=False)
    assert page.status == 303


async def test_signing_out_ends_the_session_for_good(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    csrf = await sign_in(client, tenant.key)
    token = session_token(client)
    response = await client.post(
        "/dashboard/logout", data={"csrf_token": csrf}, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/dashboard/login"
    assert response.cookies[SESSION_COOKIE].value == ""
    replayed = await client.get("/v1/leads", cookies={SESSION_COOKIE: token})
    assert replayed.status == 401


async def test_signing_out_needs_the_csrf_token(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    await sign_in(client, tenant.key)
    response = await client.post("/dashboard/logout", data={}, allow_redirects=False)
    assert response.status == 403
    assert (await client.get("/v1/leads")).status == 200


async def test_an_expired_session_is_refused(
    client: TestClient[Any, Any], tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await sign_in(client, tenant.key)
    await conn.execute("UPDATE dashboard_sessions SET expires_at = now() - interval '1 second'")
    assert (await client.get("/v1/leads")).status == 401


async def test_a_forged_cookie_is_refused(client: TestClient[Any, Any], tenant: Tenant) -> None:
    await sign_in(client, tenant.key)
    token = session_token(client)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    client.session.cookie_jar.clear()
    response = await client.get("/v1/leads", cookies={SESSION_COOKIE: forged})
    assert response.status == 401
    page = await client.get("/dashboard/", cookies={SESSION_COOKIE: forged}, allow_redirects=False)
    assert page.status == 303


async def test_another_tenants_lead_is_not_found_through_a_session(
    client: TestClient[Any, Any], tenant: Tenant, make_tenant: TenantFactory
) -> None:
    other = await make_tenant("other")
    theirs = await post_lead(client, other, email="grace@example.com")
    csrf = await sign_in(client, tenant.key)
    assert (await client.get(f"/v1/leads/{theirs}")).status == 404
    patched = await client.patch(
        f"/v1/leads/{theirs}", json={"stage": "won"}, headers={"X-CSRF-Token": csrf}
    )
    assert patched.status == 404
    listed = await (await client.get("/v1/leads")).json()
    assert listed["data"] == []


async def test_an_api_key_sent_with_a_cookie_wins_over_the_session(
    client: TestClient[Any, Any], tenant: Tenant, make_tenant: TenantFactory
) -> None:
    other = await make_tenant("other")
    await post_lead(client, other, email="grace@example.com")
    await sign_in(client, tenant.key)
    listed = await (await client.get("/v1/leads", headers=other.headers)).json()
    assert [lead["email"] for lead in listed["data"]] == ["grace@example.com"]


async def test_the_shell_carries_the_csrf_token_and_pipeline_but_never_the_key(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    await sign_in(client, tenant.key)
    page = await client.get("/dashboard/leads")
    text = await page.text()
    assert page.status == 200
    assert tenant.key not in text
    assert '"stages":["new","contacted","qualified","proposal","won"]' in text
    assert page.headers["Cache-Control"] == "no-store"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert await csrf_of(client)


async def test_signed_in_visitors_skip_the_sign_in_page(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    await sign_in(client, tenant.key)
    response = await client.get("/dashboard/login", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/dashboard/"
