"""No input to the dashboard's own routes yields a server error, signed in or not."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.constants import SESSION_COOKIE
from tests.conftest import Tenant
from tests.dashboard.helpers import session_token, sign_in
from tests.test_fuzz import CONTENT_TYPES, header_text, text

EXAMPLES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ROUTES = (
    ("POST", "/dashboard/login"), ("GET", "/dashboard/login"), ("POST", "/dashboard/logout"),
    ("GET", "/dashboard/"), ("GET", "/dashboard/leads/{}"), ("GET", "/dashboard/deliveries/{}"),
    ("GET", "/dashboard/static/{}"), ("GET", "/dashboard"),
)  # fmt: skip


@EXAMPLES
@given(data=st.data())
async def test_any_request_to_a_dashboard_route_is_answered_below_500(
    client: TestClient[Any, Any], tenant: Tenant, data: st.DataObject
) -> None:
    if not client.session.cookie_jar.filter_cookies(client.make_url("/")):
        await sign_in(client, tenant.key)
    token = session_token(client)
    method, path = data.draw(st.sampled_from(ROUTES))
    path = path.replace("{}", quote(data.draw(text.filter(bool)), safe=""))
    cookie = data.draw(st.sampled_from([token, "", "x" * 80]) | header_text)
    headers = {
        "Content-Type": data.draw(st.sampled_from(CONTENT_TYPES) | header_text),
        "Sec-Fetch-Site": data.draw(st.sampled_from(["same-origin", "cross-site", "none"])),
        "Origin": data.draw(st.sampled_from(["", "https://evil.example"]) | header_text),
        "X-CSRF-Token": data.draw(header_text),
    }
    pairs = st.lists(st.tuples(st.sampled_from(["api_key", "csrf_token"]) | text, text), max_size=4)
    body = data.draw(st.builds(lambda p: urlencode(p).encode(), pairs) | st.binary(max_size=200))
    response = await client.request(
        method,
        path,
        data=body,
        headers=headers,
        cookies={SESSION_COOKIE: cookie},
        allow_redirects=False,
    )
    raw = await response.read()
    assert response.status < 500, raw[:300]
