"""JSON that JavaScript reads and writes back byte for byte.

Receivers written in JavaScript often verify a signature over `JSON.stringify(req.body)`, the
body as their framework parsed it, rather than over the bytes they were sent. So every body
Leadgate sends satisfies `JSON.stringify(JSON.parse(body)) === body`:

- a float is written as JavaScript writes that same double (`80` for 80.0, `0` for -0.0,
  `10000000000000000` for 1e16, `1e-7`, `1.5e+300`); Python and JavaScript agree on the shortest
  digits of every double, only the notation differs, so nothing is lost;
- an integer JavaScript cannot hold exactly (past ±(2^53 − 1)) is written as a string of its
  digits: as a number, JavaScript would silently change it;
- an object's integer-like keys ("2", "10") come first, in numeric order, as JavaScript orders
  them; the other keys keep their order;
- a non-finite number (which JSON cannot carry) is refused with ValueError.

Strings need nothing: orjson escapes exactly what JSON.stringify escapes.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import orjson

from gateway import jsonio

MAX_SAFE_INTEGER = 2**53 - 1
# JavaScript moves a key first when it is an array index: a canonical number below 2^32 − 1.
_MAX_INDEX = 2**32 - 2
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
# Values written as they are, checked inline: most of a lead is text, nulls and times, and a
# function call per value would be most of the cost.
_AS_IS = frozenset({str, bool, type(None), datetime})


def dumps(value: Any) -> bytes:
    """`value` as JSON that survives `JSON.stringify(JSON.parse(…))` unchanged."""
    return orjson.dumps(stable(value), option=_OPTIONS)


def stable(value: Any) -> Any:
    """`value` with every number and key order as JavaScript would write it back."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is dict:
        return _object(value)
    if kind is float:
        return _float(value)
    if kind is int:
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)
    if kind is list or kind is tuple:
        return [stable(v) for v in value]
    return _subclass(value)


def _subclass(value: Any) -> Any:
    """Subclasses of the JSON types (an engine's sequence type, an IntEnum) as their base."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, dict):
        return _object(dict(value))
    if isinstance(value, list | tuple):
        return [stable(v) for v in value]
    if isinstance(value, float):
        return _float(float(value))
    if isinstance(value, int):
        return stable(int(value))
    if isinstance(value, str):
        return str(value)
    return value  # datetimes and the like: orjson writes them as strings


def _object(obj: dict[str, Any]) -> dict[str, Any]:
    out = {k: v if type(v) in _AS_IS else stable(v) for k, v in obj.items()}
    # min() in C first: only a key sorting before ":" can start with a digit.
    if out and min(out) < ":" and any(k[:1].isdigit() and _is_index(k) for k in out):
        indexes = sorted((k for k in out if _is_index(k)), key=int)
        out = {**{k: out[k] for k in indexes}, **{k: v for k, v in out.items() if k not in indexes}}
    return out


def _is_index(key: str) -> bool:
    return (
        key.isascii() and key.isdigit() and (key == "0" or key[0] != "0") and int(key) <= _MAX_INDEX
    )


def _float(x: float) -> Any:
    if not math.isfinite(x):
        raise ValueError(f"{x} is not a number JSON can carry")
    if x.is_integer() and -MAX_SAFE_INTEGER <= x <= MAX_SAFE_INTEGER:
        return int(x)  # -0.0 becomes 0, as JSON.stringify writes it
    return orjson.Fragment(js_number(x).encode())


def js_number(x: float) -> str:
    """A finite float as JavaScript's Number.prototype.toString writes it (ECMA-262 6.1.6.1.20)."""
    if x == 0:
        return "0"
    if x < 0:
        return "-" + js_number(-x)
    mantissa, _, exponent = repr(x).partition("e")  # repr: the shortest digits that round-trip
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = int(exponent or 0) + len(whole)
    significant = digits.lstrip("0")
    point -= len(digits) - len(significant)
    digits = significant.rstrip("0")
    k, n = len(digits), point
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    sign = "+" if n >= 1 else "-"
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{head}e{sign}{abs(n - 1)}"


loads = jsonio.loads
