"""Signing in to the dashboard as a browser would, from a test client."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.constants import SESSION_COOKIE

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


async def sign_in(client: TestClient[Any, Any], key: str) -> str:
    """Sign in with `key`; the client keeps the cookie. Returns the session's CSRF token."""
    response = await client.post("/dashboard/login", data={"api_key": key}, allow_redirects=False)
    assert response.status == 303, await response.text()
    return await csrf_of(client)


async def csrf_of(client: TestClient[Any, Any]) -> str:
    page = await client.get("/dashboard/")
    assert page.status == 200
    found = CSRF_META.search(await page.text())
    assert found is not None
    return found.group(1)


def session_token(client: TestClient[Any, Any]) -> str:
    for cookie in client.session.cookie_jar:
        if cookie.key == SESSION_COOKIE:
            return cookie.value
    raise AssertionError("no session cookie")
