"""What every delivery reference shares: the payload file, and signing as Leadgate signs.

The payload file is written by `bench/delivery.py` from Leadgate's own tables: one JSON object
per line, `{"url", "event_id", "body", "secret", "signature"}`, where `body` is the stored
event envelope. Every reference signs each request when it sends it, with Leadgate's
`gateway.signing.sign_headers`, so all of them send the same bytes with the same headers.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, TypedDict

import orjson

from gateway.signing import sign_headers

# The receiver answers within milliseconds; a reference waits as long as Leadgate does.
TIMEOUT_SECONDS = 10.0


class Payload(TypedDict):
    url: str
    event_id: str
    body: str
    secret: str
    signature: dict[str, Any]


def read_payloads(path: Path) -> list[Payload]:
    """Every payload of the file, in order."""
    with path.open("rb") as lines:
        return [orjson.loads(line) for line in lines if line.strip()]


def signed_headers(payload: Payload, body: bytes) -> dict[str, str]:
    """The headers Leadgate sends: content type and the signature of `body`, signed now."""
    headers = {"Content-Type": "application/json"}
    headers.update(
        sign_headers(
            payload["signature"], [payload["secret"]], payload["event_id"], int(time.time()), body
        )
    )
    return headers


def install_uvloop() -> str:
    """Run on uvloop when it is installed, as Leadgate does; name the loop in use."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
