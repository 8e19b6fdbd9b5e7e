"""The dashboard's shell, static files and their place outside the API document."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from gateway.dashboard.views import STATIC_DIR, STATIC_FILES
from tests.conftest import Tenant
from tests.dashboard.helpers import sign_in


async def test_every_static_file_is_served_with_its_type_and_revalidated(
    client: TestClient[Any, Any],
) -> None:
    assert {"dashboard.css", "js/app.js", "js/pages/board.js"} <= set(STATIC_FILES)
    script = await client.get("/dashboard/static/js/app.js")
    assert script.status == 200
    assert script.content_type == "text/javascript"
    assert script.headers["Cache-Control"] == "no-cache"
    style = await client.get("/dashboard/static/dashboard.css")
    assert style.content_type == "text/css"
    assert await style.text() == (STATIC_DIR / "dashboard.css").read_text()


async def test_nothing_outside_the_static_files_is_reachable(
    client: TestClient[Any, Any],
) -> None:
    for path in (
        "/dashboard/static/../views.py",
        "/dashboard/static/%2e%2e/views.py",
        "/dashboard/static/js/../../templates/shell.html",
        "/dashboard/static/missing.js",
    ):
        response = await client.get(path)
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "not_found"


async def test_every_page_the_script_routes_is_served_the_shell(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    await sign_in(client, tenant.key)
    for page in ("", "board", "leads", "leads/lead_x", "deliveries", "deliveries/dlv_x",
                 "endpoints", "live"):  # fmt: skip
        response = await client.get(f"/dashboard/{page}")
        assert response.status == 200, page
        assert 'src="/dashboard/static/js/app.js' in await response.text()
    assert (await client.get("/dashboard/nowhere")).status == 404
    bare = await client.get("/dashboard", allow_redirects=False)
    assert bare.headers["Location"] == "/dashboard/"


async def test_dashboard_routes_stay_out_of_the_openapi_document(
    client: TestClient[Any, Any],
) -> None:
    doc = await (await client.get("/v1/openapi.json")).json()
    assert [path for path in doc["paths"] if path.startswith("/dashboard")] == []
