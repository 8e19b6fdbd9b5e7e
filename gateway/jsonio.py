"""The one JSON encoding Leadgate speaks: orjson, UTC times as RFC 3339 with `Z`."""

from __future__ import annotations

from typing import Any

import orjson

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_OPTIONS)


loads = orjson.loads
JSONDecodeError = orjson.JSONDecodeError
