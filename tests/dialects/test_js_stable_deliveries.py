"""Property: whatever lead is posted, every body Leadgate delivers, templated or not, and every
API answer, is what JSON.stringify(JSON.parse(body)) writes back, as Node itself checks."""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Tenant
from tests.dialects.examples import template
from tests.dialects.helpers.node import JsRoundTrip
from tests.receivers import Receiver
from tests.workers.conftest import ReceiverFactory, add_endpoint

Client = TestClient[Any, Any]

TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
NUMBERS = (
    st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([-0.0, 80.0, 1e16, 1e21, 1e-7, 2.0**60, 0.1 + 0.2])
)
VALUES = st.recursive(
    st.none() | st.booleans() | NUMBERS | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
KEYS = st.from_regex(r"\A(0|[1-9][0-9]{0,11}|0[0-9]|[a-z]{1,3})\Z") | TEXT.filter(bool)
PERCENT = st.floats(0, 100) | st.integers(0, 100) | st.sampled_from(["80", "80.0", "-0", "99.5"])
LEADS = st.fixed_dictionaries(
    {"custom_data": st.dictionaries(KEYS, VALUES, max_size=6)},
    optional={
        "first_name": TEXT,
        "company": TEXT,
        "form_completion_percent": PERCENT,
        "estimated_value": st.floats(0, 1e15) | st.integers(0, 10**15) | st.just("-0"),
        "form_fields_total": st.integers(0, 2**31 - 1),
    },
)

_serial = itertools.count()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lead=LEADS)
async def test_every_delivered_body_survives_javascript(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    js: JsRoundTrip,
    lead: dict[str, Any],
) -> None:
    plain, templated = await _receivers(client, tenant, receiver_factory)
    email = f"p{next(_serial)}@example.com"
    response = await client.post(
        "/v1/postback", json={**lead, "email": email}, headers=tenant.headers
    )
    answer = await response.read()
    assert response.status in (200, 201, 400), answer  # 400: a value out of a field's range
    assert js.rewritten(answer) is None
    if response.status == 400:
        return
    for receiver in (plain, templated):
        got = await _delivery_for(receiver, email)
        assert js.rewritten(got) is None, got


_RECEIVERS: dict[str, tuple[Receiver, Receiver]] = {}


async def _receivers(
    client: Client, tenant: Tenant, make: ReceiverFactory
) -> tuple[Receiver, Receiver]:
    """One plain and one templated endpoint per test run (the fixtures live across examples)."""
    if tenant.id not in _RECEIVERS:
        plain, templated = await make(), await make()
        await add_endpoint(client, tenant, plain.url, event_types=["lead.created"])
        await add_endpoint(client, tenant, templated.url, event_types=["lead.created"],
                           template=template("salesos"))  # fmt: skip
        _RECEIVERS[tenant.id] = (plain, templated)
    return _RECEIVERS[tenant.id]


async def _delivery_for(receiver: Receiver, email: str, timeout: float = 10.0) -> bytes:
    needle = f'"{email}"'.encode()
    count = 1
    while True:
        for got in await receiver.wait_for(count, timeout):
            if needle in got.body:
                return got.body
        count = len(receiver.received) + 1
