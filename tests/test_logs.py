"""Logs: one JSON line per event on stdout; ids bound per request; secrets and emails scrubbed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import structlog
from _pytest.capture import CaptureResult
from aiohttp.test_utils import TestClient

from gateway.logs import configure_logging, mask, scrub_processor
from tests.conftest import Tenant

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

Logs = Callable[[], CaptureResult[str]]


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], CaptureResult[str]]]:
    """Configure JSON logs as `leadgate serve` does; each call returns what was output since.

    pytest swaps stdout between a fixture's setup and the test itself, so logging is configured
    at the first call, from inside the test; and a logger cached on first use would keep writing
    to a capture stream closed after the test, so caching is off (processors and renderer stay
    the gateway's).
    """
    configured = False

    def logged() -> CaptureResult[str]:
        nonlocal configured
        if not configured:
            configure_logging("json", "info")
            structlog.configure(cache_logger_on_first_use=False)
            configured = True
        return capsys.readouterr()

    yield logged
    structlog.reset_defaults()


def lines_of(out: str) -> list[dict[str, Any]]:
    """Every line of `out`, each of which must be one JSON object."""
    return [orjson.loads(line) for line in out.splitlines()]


async def test_request_logs_one_json_line_with_its_ids_route_status_and_latency(
    client: TestClient[Any, Any], tenant: Tenant, logs: Logs
) -> None:
    logs()
    created = await client.post("/v1/postback", json={"email": "a@b.co"}, headers=tenant.headers)
    lead_id = (await created.json())["data"]["id"]
    logs()

    response = await client.get(f"/v1/leads/{lead_id}", headers=tenant.headers)
    assert response.status == 200

    [line] = lines_of(logs().out)
    assert line["event"] == "request"
    assert line["request_id"] == response.headers["X-Request-Id"]
    assert line["tenant_id"] == tenant.id
    assert (line["method"], line["route"], line["status"]) == ("GET", "/v1/leads/{lead_id}", 200)
    assert isinstance(line["latency_ms"], float | int) and line["latency_ms"] >= 0
    assert line["level"] == "info"


async def test_request_log_of_an_error_carries_its_status_and_request_id(
    client: TestClient[Any, Any], logs: Logs
) -> None:
    logs()
    response = await client.get("/v1/leads", headers={"X-Request-Id": "req-42"})
    assert response.status == 401
    [line] = lines_of(logs().out)
    assert (line["event"], line["request_id"], line["status"]) == ("request", "req-42", 401)
    assert line["route"] == "/v1/leads"


async def test_request_without_key_logs_no_tenant_of_an_earlier_request(
    client: TestClient[Any, Any], tenant: Tenant, logs: Logs
) -> None:
    logs()
    assert (await client.get("/v1/leads", headers=tenant.headers)).status == 200
    assert (await client.get("/healthz")).status == 200
    first, second = lines_of(logs().out)
    assert first["tenant_id"] == tenant.id
    assert second["route"] == "/healthz"
    assert "tenant_id" not in second
    assert second["request_id"] != first["request_id"]


async def test_api_keys_and_secrets_never_reach_the_logs(
    client: TestClient[Any, Any],
    tenant: Tenant,
    logs: Logs,
) -> None:
    logs()
    bearer = await client.post(
        "/v1/postback",
        json={"email": "ada@example.com", "custom_data": {"webhook_secret": SECRET}},
        headers={**tenant.headers, "X-Request-Id": SECRET},
    )
    query = await client.get(
        "/v1/postback",
        params={"api_key": tenant.key, "email": "ada@example.com"},
        headers={"X-Request-Id": tenant.key},
    )
    assert (bearer.status, query.status) == (201, 200)
    captured = logs()
    assert len(lines_of(captured.out)) == 2
    for text in (captured.out, captured.err):
        assert tenant.key not in text
        assert tenant.key.removeprefix("lg_live_") not in text
        assert SECRET.removeprefix("whsec_") not in text
        assert "ada@example.com" not in text


async def test_secret_sent_as_request_id_is_logged_redacted(
    client: TestClient[Any, Any], tenant: Tenant, logs: Logs
) -> None:
    logs()
    response = await client.get("/v1/leads", headers={**tenant.headers, "X-Request-Id": tenant.key})
    assert response.status == 200
    [line] = lines_of(logs().out)
    assert line["request_id"] == "lg_live_[redacted]"


async def test_logged_email_is_masked(logs: Logs) -> None:
    logs()
    structlog.get_logger("leadgate.test").info("lead_seen", email="ada@example.com", n=1)
    [line] = lines_of(logs().out)
    assert (line["event"], line["email"], line["n"]) == ("lead_seen", "a***@example.com", 1)


async def test_sensitive_keys_are_redacted_in_rendered_lines(
    logs: Logs,
) -> None:
    logs()
    structlog.get_logger("leadgate.test").info(
        "calling", authorization="Bearer abc", headers={"Secret": "s3cret", "Accept": "x"}
    )
    [line] = lines_of(logs().out)
    assert line["authorization"] == "[redacted]"
    assert line["headers"] == {"Secret": "[redacted]", "Accept": "x"}
    assert "s3cret" not in str(line) and "abc" not in str(line)


def test_mask_masks_an_email_to_its_first_letter_and_domain() -> None:
    assert mask("ada@example.com") == "a***@example.com"
    assert mask("from Ada.L+x@mail.example.co.uk today") == "from A***@mail.example.co.uk today"


def test_mask_replaces_api_keys_and_webhook_secrets_with_their_prefix() -> None:
    assert (
        mask("key lg_live_AbC-_9 and whsec_Zm9v+/=")
        == "key lg_live_[redacted] and whsec_[redacted]"
    )


def test_mask_leaves_text_without_secrets_or_emails_unchanged() -> None:
    assert mask("GET /v1/leads 200 @ noon") == "GET /v1/leads 200 @ noon"


def test_scrub_processor_redacts_sensitive_keys_at_any_depth() -> None:
    event = {
        "event": "x",
        "Authorization": "Bearer lg_live_abc",
        "secret": "plain",
        "api_key": "k",
        "password": "p",
        "key": "k2",
        "nested": {"request": {"authorization": "Basic Zm9v", "ok": "ada@example.com"}},
        "items": ["lg_live_abc", {"secret": 1}],
    }
    assert scrub_processor(None, "info", event) == {
        "event": "x",
        "Authorization": "[redacted]",
        "secret": "[redacted]",
        "api_key": "[redacted]",
        "password": "[redacted]",
        "key": "[redacted]",
        "nested": {"request": {"authorization": "[redacted]", "ok": "a***@example.com"}},
        "items": ["lg_live_[redacted]", {"secret": "[redacted]"}],
    }
