"""Prefixed, time-ordered identifiers: `lead_01JD…`, `evt_01JD…`.

The 26-character tail is a ULID (48-bit millisecond time, 80 random bits, Crockford base32), so
ids sort by creation time, which keeps B-tree inserts local and makes them readable in logs.
Within one process they are also strictly increasing (a monotonic ULID: an id made in the same
millisecond as the previous one is that one plus one), so the events of one batch sort in the
order they were written.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_last = 0


def new_id(prefix: str) -> str:
    global _last
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    if value >> 80 <= _last >> 80:
        value = _last + 1
    _last = value
    return _encode(prefix, value)


def floor_id(prefix: str, when: datetime) -> str:
    """The smallest id of `prefix` made at `when`: every id made before it sorts lower."""
    return id_at(prefix, int(when.timestamp() * 1000), 0)


def id_at(prefix: str, millis: int, tail: int) -> str:
    return _encode(prefix, millis << 80 | tail)


def _encode(prefix: str, value: int) -> str:
    chars = []
    for _ in range(26):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return f"{prefix}_{''.join(reversed(chars))}"
