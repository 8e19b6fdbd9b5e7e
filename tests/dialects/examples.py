"""The shipped templates and mappings, and inputs to try them on."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from gateway.dialects.templates import SAMPLE_EVENT

CONFIG = Path(__file__).parents[2] / "config"


def template(name: str) -> str:
    return (CONFIG / "templates" / f"{name}.jsonata").read_text()


def mapping(name: str) -> str:
    return (CONFIG / "mappings" / f"{name}.jsonata").read_text()


def _event(kind: str, **data: Any) -> dict[str, Any]:
    event = copy.deepcopy(SAMPLE_EVENT)
    event["type"] = kind
    event["data"].update(data)
    return event


# Events as Leadgate sends them: each lead event type, a sparse lead, and a test event.
EVENTS = {
    "created": SAMPLE_EVENT,
    "updated": _event("lead.updated", company="Sandton Solar (Pty)"),
    "stage_changed": _event("lead.stage_changed", stage="contacted", previous_stage="new"),
    "sparse": _event("lead.created", first_name=None, last_name=None, company=None,
                     phone=None, custom_data={}),
    "test": {"id": "evt_1", "type": "endpoint.test", "timestamp": "2026-05-20T10:23:44.512345Z",
             "data": {"endpoint_id": "ep_1", "message": "A test event from Leadgate."}},
}  # fmt: skip

# Bodies as each sender posts them: as JSON, and as a form would (every value a string).
SENDER_BODIES = {
    "leadrescue": [
        {"customer_name": "Anna Karlsson", "phone": "+46701234567",
         "car_model": "Mercedes E-Class", "consent": True, "license_photo_b64": "aGk="},
        {"customer_name": "  Björn  ", "phone": "+46701234568", "car_model": "Volvo XC60",
         "consent": "false"},
        {"customer_name": "Anna Maria von Karlsson", "phone": "+46701234569", "consent": "true"},
    ],
    "salesos": [
        {"contact_name": "John Doe", "company_name": "Acme Inc",
         "contact_email": "john@acme.com", "industry": "Technology", "icp_score": 85},
        {"contact_name": "Cher", "contact_email": "cher@example.com", "icp_score": "72"},
    ],
}  # fmt: skip

TEMPLATES = ("shortstack", "leaditio", "salesos")
MAPPINGS = tuple(SENDER_BODIES)
