"""Keyset cursors: the last row's sort key, as opaque url-safe text.

A cursor is the base64url of a JSON array; what it holds is the listing's business (see
`gateway.deals.views` and `gateway.timeline`). A cursor that does not decode to what the
listing expects is a 400 naming `cursor`.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from gateway import jsonio
from gateway.errors import InvalidRequest


def encode(*key: Any) -> str:
    return base64.urlsafe_b64encode(jsonio.dumps(list(key))).decode().rstrip("=")


def invalid() -> InvalidRequest:
    return InvalidRequest("the cursor is not valid", fields={"cursor": "invalid"})


def decode(cursor: str, length: int) -> list[Any]:
    """The cursor's key, a list of `length` values; 400 if it is not one."""
    try:
        key = jsonio.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as e:
        raise invalid() from e
    if not isinstance(key, list) or len(key) != length:
        raise invalid()
    return key


def moment(value: Any) -> datetime:
    """A cursor's time; 400 unless it is an RFC 3339 instant."""
    try:
        at = datetime.fromisoformat(value)
    except (TypeError, ValueError) as e:
        raise invalid() from e
    if at.tzinfo is None:
        raise invalid()
    return at


def text(value: Any) -> str:
    if not isinstance(value, str) or "\x00" in value or len(value) > 200:
        raise invalid()
    return value
