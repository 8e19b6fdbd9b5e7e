"""Payload templates: an endpoint's JSONata expression from the event to the webhook body.

The input is the event exactly as Leadgate sends it without a template, the Standard Webhooks
envelope `{id, type, timestamp, data}`; the result, written as JavaScript-stable JSON
(`gateway.dialects.jsjson`), is the body that is signed and sent. A template is compiled when it
is saved, so a bad one never reaches the worker; one that fails on a given event (an engine
error, a limit, no result, a result too large) raises TemplateError, which the worker records as
that delivery's `template_error` attempt.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic_core import PydanticCustomError

from gateway import jsonio
from gateway.constants import MAX_RENDERED_BODY
from gateway.dialects import jsjson
from gateway.dialects.engine import (
    EvaluationError,
    ExpressionError,
    compile_expression,
    compiled,
)

# What the preview renders when it is given no event: a lead.created as Leadgate sends it.
SAMPLE_EVENT: dict[str, Any] = {
    "id": "evt_2f8a0c1e9b7d4c3aa1e0b5d6c7f8a9b0",
    "type": "lead.created",
    "timestamp": "2026-05-20T10:23:44.512345Z",
    "data": {
        "id": "lead_6b1d3f0e2a9c4b8e9d7f1a2b3c4d5e6f", "external_id": "crm-1042",
        "email": "thabo.m@example.com", "phone": "+27823456789", "first_name": "Thabo",
        "last_name": "Mokoena", "company": "Sandton Solar", "stage": "new",
        "source": "landing-page", "domain": "solar.example.com", "campaign": "winter",
        "utm_source": "google", "utm_medium": "cpc", "utm_campaign": "winter-solar",
        "utm_term": None, "utm_content": None, "referrer": "https://www.google.com/",
        "ip_address": "203.0.113.7", "user_agent": "Mozilla/5.0", "browser": "Chrome",
        "device_type": "mobile", "form_completion_percent": 80, "form_fields_completed": 8,
        "form_fields_total": 10, "estimated_value": 15000,
        "custom_data": {"vertical": "solar", "suburb": "Sandton", "icp_score": 87},
        "opted_out_at": None, "created_at": "2026-05-20T10:23:44.512345Z",
        "updated_at": "2026-05-20T10:23:44.512345Z",
    },
}  # fmt: skip


class TemplateError(ValueError):
    """The template cannot make a body of this event; the message says why."""


def check_template(text: str) -> str:
    """`text` if it compiles; a ValueError carrying the engine's message otherwise (raised as
    pydantic's custom error, so that a 400 shows the message without pydantic's prefix)."""
    try:
        compile_expression(text)
    except ExpressionError as e:
        raise PydanticCustomError(
            "template", "the template does not compile: {reason}", {"reason": str(e)}
        ) from e
    return text


def render(event_body: str | bytes, template: str | None) -> bytes:
    """The webhook body for an event: the event itself, or what its endpoint's template makes."""
    if template is None:
        return event_body.encode() if isinstance(event_body, str) else event_body
    return render_value(jsonio.loads(event_body), template)


def render_value(event: Any, template: str) -> bytes:
    """What `template` makes of an already parsed event, as the bytes to send."""
    try:
        result = compiled(template).evaluate(event)
    except (ExpressionError, EvaluationError) as e:
        raise TemplateError(str(e)) from e
    if result is None:
        raise TemplateError("the template gave no result for this event")
    try:
        body = jsjson.dumps(result)
    except (ValueError, TypeError, orjson.JSONEncodeError) as e:
        raise TemplateError(f"the template's result is not JSON: {e}") from e
    if len(body) > MAX_RENDERED_BODY:
        raise TemplateError(f"the rendered body is over {MAX_RENDERED_BODY} bytes")
    return body
