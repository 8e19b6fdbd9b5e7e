"""The dashboard in a real browser: Debian's Chromium, driven by Playwright.

One gateway listens on a real port with a real delivery worker in the same loop and a real
local receiver; one browser and one signed-in page serve the whole module. Every test fails
on any console error or uncaught exception in the page, and saves a screenshot of each page
it visits under test-artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway import db
from gateway.app import create_app
from gateway.keys import create_key
from gateway.settings import Settings
from gateway.tenants import create_tenant
from tests.conftest import TABLES, TEST_SECRET_KEYS, Servers
from tests.receivers import Received, Receiver, start
from tests.workers.conftest import FAST
from workers.main import running_in_loop

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "no Chromium at /usr/bin/chromium (apt-get install -y chromium): browser tests skipped",
        allow_module_level=True,
    )
playwright_api = pytest.importorskip("playwright.async_api")
Page = playwright_api.Page
expect = playwright_api.expect

# The machine's closed network refuses Chromium's background connections; these keep it quiet.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
WAIT_MS = 15_000
PHONE_PAGES = ("overview", "board", "leads", "deliveries", "endpoints", "live")

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Switch:
    """A receiver that fails (500) while `failing` is set, and succeeds otherwise."""

    failing: bool = False
    receiver: Receiver = field(default_factory=Receiver)

    async def reply(self, got: Received) -> web.StreamResponse:
        status = 500 if self.failing else 200
        return web.Response(status=status, text=f"receiver says {status}")


@dataclass
class Stack:
    base: str
    key: str
    read_key: str
    tenant_id: str
    endpoint_id: str
    switch: Switch
    page: Any
    console_errors: list[str]
    http: aiohttp.ClientSession
    browser: Any = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def api(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.http.request(
            method, self.base + path, headers=self.headers, **kwargs
        ) as response:
            body = await response.json()
            assert response.status < 300, body
            return body

    async def post_lead(self, **fields: Any) -> dict[str, Any]:
        lead: dict[str, Any] = (await self.api("POST", "/v1/postback", json=fields))["data"]
        return lead

    async def until(self, check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.1)

    async def visit(self, path: str) -> None:
        """Load a dashboard page and wait until its script has drawn it."""
        await self.page.goto(self.base + path)
        await self.drawn()

    async def drawn(self) -> None:
        await self.page.wait_for_selector("main[data-ready]:not([aria-busy])", timeout=WAIT_MS)

    async def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def _fresh_tenant(database_url: str) -> tuple[str, str, str]:
    conn = await asyncpg.connect(database_url)
    try:
        await db.init_connection(conn)
        await conn.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
        tenant = await create_tenant(conn, "browser")
        _, key = await create_key(conn, tenant["id"], ["ingest", "read", "manage"])
        _, read_key = await create_key(conn, tenant["id"], ["read"])
        return tenant["id"], key, read_key
    finally:
        await conn.close()


async def new_page(browser: Any, errors: list[str]) -> Any:
    """A page in a context of its own (its own cookies) that records every console error."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    return page


async def sign_in(stack: Stack, page: Any, key: str) -> None:
    await page.goto(stack.base + "/dashboard/login")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_selector("main[data-ready]:not([aria-busy])", timeout=WAIT_MS)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(servers: Servers) -> AsyncIterator[Stack]:
    settings = Settings(
        database_url=servers.database_url,
        redis_url=servers.redis_url,
        log_format="json",
        auth_cache_seconds=0,
        secret_keys=TEST_SECRET_KEYS,
        # One attempt: a failing receiver leaves the delivery `failed`, for the page to retry.
        **{**FAST, "retry_schedule": (0.0,)},
    )
    tenant_id, key, read_key = await _fresh_tenant(servers.database_url)
    switch = Switch()
    switch.receiver.reply = switch.reply
    receiver_runner = await start(switch.receiver)
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    playwright = await playwright_api.async_playwright().start()
    browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    errors: list[str] = []
    page = await new_page(browser, errors)
    try:
        async with running_in_loop(settings), aiohttp.ClientSession() as http:
            made = Stack(base, key, read_key, tenant_id, "", switch, page, errors, http)
            made.browser = browser
            endpoint = await made.api(
                "POST", "/v1/endpoints", json={"url": switch.receiver.url, "description": "CRM"}
            )
            made.endpoint_id = endpoint["data"]["id"]
            yield made
    finally:
        await browser.close()
        await playwright.stop()
        await server.close()
        await receiver_runner.cleanup()


@pytest_asyncio.fixture(loop_scope="module")
async def ui(stack: Stack) -> AsyncIterator[Stack]:
    """The signed-in page; the test fails if the page logged an error meanwhile."""
    stack.console_errors.clear()
    stack.switch.failing = False
    if "/dashboard/login" in stack.page.url or stack.page.url == "about:blank":
        await sign_in(stack, stack.page, stack.key)
    yield stack
    assert stack.console_errors == []


async def test_signing_in_with_a_key_opens_the_overview(stack: Stack) -> None:
    page = stack.page
    stack.console_errors.clear()
    await page.goto(stack.base + "/dashboard/")
    await expect(page).to_have_url(re.compile(r"/dashboard/login$"))
    await stack.screenshot("sign-in")
    await page.get_by_label("API key").fill(stack.key)
    await page.get_by_role("button", name="Sign in").click()
    await stack.drawn()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    await expect(page.get_by_role("heading", name="Pipeline funnel")).to_be_visible()
    assert stack.key not in await page.content()
    assert await page.evaluate("document.cookie") == ""  # HttpOnly: out of the script's reach
    await stack.screenshot("overview")
    assert stack.console_errors == []


async def test_a_lead_posted_over_the_api_appears_in_all_leads(ui: Stack) -> None:
    await ui.post_lead(
        email="ada@example.com", first_name="Ada", last_name="Lovelace", phone="+14155550123",
        source="google", campaign="spring", ip_address="203.0.113.9", device_type="desktop",
        form_completion_percent=60,
    )  # fmt: skip
    await ui.visit("/dashboard/leads")
    row = ui.page.get_by_role("row").filter(has_text="ada@example.com")
    await expect(row).to_contain_text("Ada Lovelace")
    await expect(row).to_contain_text("spring")
    await expect(row).to_contain_text("60 %")
    headings = await ui.page.locator("thead th").all_inner_texts()
    assert headings == ["Date", "Name / Email", "Phone", "Stage", "Source", "Campaign", "Form %",
                        "IP", "Device", "Actions"]  # fmt: skip
    await ui.page.get_by_label("Search").fill("nobody-like-this")
    await ui.page.get_by_role("button", name="Apply").click()
    await ui.drawn()
    await expect(ui.page.get_by_text("No lead matches these filters.")).to_be_visible()
    await ui.screenshot("all-leads")


async def test_moving_a_card_on_the_board_changes_the_stage_in_the_api(ui: Stack) -> None:
    lead = await ui.post_lead(email="grace@example.com", first_name="Grace")
    await ui.visit("/dashboard/board")
    menu = ui.page.get_by_label("Stage of Grace")
    await expect(menu).to_have_value("new")
    await menu.focus()
    await ui.page.keyboard.press("ArrowDown")  # by keyboard: new → contacted
    await expect(ui.page.get_by_role("status").first).to_contain_text("moved to contacted")
    await ui.until(lambda: _stage_is(ui, lead["id"], "contacted"))
    card = ui.page.locator(f'.card[data-id="{lead["id"]}"]')
    target = ui.page.locator('.column[data-stage="qualified"]')
    await card.drag_to(target)  # by mouse
    await expect(target.locator(f'.card[data-id="{lead["id"]}"]')).to_be_visible()
    await ui.until(lambda: _stage_is(ui, lead["id"], "qualified"))
    await ui.screenshot("board")


async def _stage_is(ui: Stack, lead_id: str, stage: str) -> bool:
    detail = await ui.api("GET", f"/v1/leads/{lead_id}")
    found: bool = detail["data"]["stage"] == stage
    return found


async def test_a_failed_delivery_can_be_opened_and_retried(ui: Stack) -> None:
    ui.switch.failing = True
    lead = await ui.post_lead(email="failing@example.com")

    async def failed() -> bool:
        page = await ui.api("GET", "/v1/deliveries", params={"lead_id": lead["id"]})
        return bool(page["data"]) and page["data"][0]["state"] == "failed"

    await ui.until(failed)
    await ui.visit(f"/dashboard/deliveries?state=failed&lead_id={lead['id']}")
    await ui.screenshot("deliveries")
    await ui.page.get_by_role("link", name=re.compile(r"^Open delivery")).first.click()
    await ui.drawn()
    attempts = ui.page.get_by_role("table", name="Every attempt, first to last")
    await expect(attempts).to_contain_text("500")
    await expect(attempts).to_contain_text("receiver says 500")
    await ui.screenshot("delivery-failed")
    ui.switch.failing = False
    await ui.page.get_by_role("button", name="Retry now").click()

    async def succeeded_on_page() -> bool:
        await ui.page.get_by_role("button", name="Refresh").click()
        await ui.drawn()
        return "receiver says 200" in await attempts.inner_text()

    await ui.until(succeeded_on_page)
    await expect(ui.page.locator(".page-head .badge")).to_have_text("succeeded")
    await ui.screenshot("delivery-retried")


async def test_the_live_view_shows_outcomes_as_they_happen(ui: Stack) -> None:
    await ui.visit("/dashboard/live")
    await expect(ui.page.get_by_text("Connected")).to_be_visible(timeout=WAIT_MS)
    lead = await ui.post_lead(email="live@example.com")
    delivery = (await ui.api("GET", "/v1/deliveries", params={"lead_id": lead["id"]}))["data"][0]
    row = ui.page.locator("#live tbody tr").filter(has_text=delivery["id"])
    await expect(row).to_contain_text("succeeded", timeout=WAIT_MS)
    await expect(row).to_contain_text("lead.created")
    await ui.screenshot("live")


async def test_the_lead_page_shows_fields_history_timeline_and_deliveries(ui: Stack) -> None:
    lead = await ui.post_lead(email="page@example.com", first_name="Page", vertical="solar")
    await ui.api("PATCH", f"/v1/leads/{lead['id']}", json={"stage": "won"})
    deal = {"title": "Solar roof", "value": 12000, "currency": "EUR", "stage": "signed",
            "probability": 90, "lead_id": lead["id"]}  # fmt: skip
    await ui.api("POST", "/v1/deals", json=deal)
    await ui.visit(f"/dashboard/leads/{lead['id']}")
    await expect(ui.page.get_by_role("heading", level=1)).to_contain_text("Page")
    history = ui.page.get_by_role("table", name="Stage changes, oldest first")
    await expect(history.get_by_role("row")).to_have_count(3)  # heading, entry at new, → won
    await expect(ui.page.locator(".facts").nth(1)).to_contain_text("solar")
    timeline = ui.page.get_by_role("table", name="The lead's timeline, newest first")
    await expect(timeline).to_contain_text("new → won")
    await expect(timeline).to_contain_text("deal.created")
    await expect(timeline).to_contain_text("Solar roof · signed")
    deals = ui.page.get_by_role("table", name="The lead's deals, newest first")
    await expect(deals).to_contain_text("Solar roof")
    await expect(deals).to_contain_text("EUR")
    await expect(deals).to_contain_text("90%")
    await expect(
        ui.page.get_by_role("table", name="The lead's most recent deliveries")
    ).to_contain_text("lead.stage_changed")
    await ui.screenshot("lead")


async def test_the_endpoints_page_shows_health_and_sends_a_test_event(ui: Stack) -> None:
    await ui.visit("/dashboard/endpoints")
    card = ui.page.locator(f'article[data-id="{ui.endpoint_id}"]')
    await expect(card).to_contain_text(ui.switch.receiver.url)
    await expect(card).to_contain_text("Consecutive failures")
    await card.get_by_role("button", name="Send test event").click()
    await expect(card.get_by_text("Test event sent")).to_be_visible()
    await card.get_by_role("button", name="Disable").click()
    await expect(card.get_by_role("button", name="Enable")).to_be_visible()
    endpoint = await ui.api("GET", f"/v1/endpoints/{ui.endpoint_id}")
    assert endpoint["data"]["enabled"] is False
    await ui.screenshot("endpoints")
    await card.get_by_role("button", name="Enable").click()
    await expect(card.get_by_role("button", name="Disable")).to_be_visible()


async def test_every_page_fits_a_phone_screen(ui: Stack) -> None:
    await ui.page.set_viewport_size({"width": 390, "height": 844})
    try:
        for name in PHONE_PAGES:
            path = "/dashboard/" + ("" if name == "overview" else name)
            await ui.visit(path)
            overflow = await ui.page.evaluate(
                "document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{path} is {overflow}px wider than a phone"
            await ui.screenshot(f"phone-{name}")
    finally:
        await ui.page.set_viewport_size({"width": 1280, "height": 900})


async def test_signing_out_ends_the_session(ui: Stack) -> None:
    await ui.visit("/dashboard/")
    await ui.page.get_by_role("button", name="Sign out").click()
    await expect(ui.page).to_have_url(re.compile(r"/dashboard/login$"))
    await ui.page.goto(ui.base + "/dashboard/leads")
    await expect(ui.page).to_have_url(re.compile(r"/dashboard/login$"))


async def test_a_read_only_key_sees_everything_and_can_change_nothing(ui: Stack) -> None:
    await ui.post_lead(email="readonly@example.com", first_name="Reader")
    errors: list[str] = []
    page = await new_page(ui.browser, errors)
    try:
        await sign_in(ui, page, ui.read_key)
        await page.goto(ui.base + "/dashboard/board")
        await page.wait_for_selector("main[data-ready]:not([aria-busy])", timeout=WAIT_MS)
        await expect(page.get_by_role("link", name="Reader")).to_be_visible()
        await expect(page.get_by_label("Stage of Reader")).to_have_count(0)
        await page.goto(ui.base + "/dashboard/endpoints")
        await page.wait_for_selector("main[data-ready]:not([aria-busy])", timeout=WAIT_MS)
        await expect(page.get_by_text(ui.switch.receiver.url)).to_be_visible()
        await expect(page.get_by_role("button", name="Send test event")).to_have_count(0)
    finally:
        await page.context.close()
    assert errors == []
