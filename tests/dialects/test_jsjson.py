"""JavaScript-stable JSON: what Leadgate writes, JSON.stringify(JSON.parse(…)) writes back."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.dialects import jsjson
from tests.dialects.helpers.node import JsRoundTrip


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (80.0, b"80"),
        (-0.0, b"0"),
        (1e16, b"10000000000000000"),
        (2.0**60, b"1152921504606847000"),
        (1e21, b"1e+21"),
        (1e-6, b"0.000001"),
        (1e-7, b"1e-7"),
        (1.5e300, b"1.5e+300"),
        (0.1 + 0.2, b"0.30000000000000004"),
        (2**53 - 1, b"9007199254740991"),
        (2**53, b'"9007199254740992"'),
        (-(2**64), b'"-18446744073709551616"'),
    ],
)
def test_numbers_are_written_as_javascript_writes_them(value: Any, written: bytes) -> None:
    assert jsjson.dumps(value) == written


def test_integer_like_keys_come_first_in_numeric_order_as_in_javascript() -> None:
    value = {"b": 1, "10": 2, "2": 3, "02": 4, "a": {"1": 5, "z": 6}, "4294967295": 7}
    assert jsjson.dumps(value) == (b'{"2":3,"10":2,"b":1,"02":4,"a":{"1":5,"z":6},"4294967295":7}')


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_numbers_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match="not a number JSON can carry"):
        jsjson.dumps({"x": value})


def test_random_doubles_survive_javascript(js: JsRoundTrip) -> None:
    """Every bit pattern that is a finite double, not only the friendly ones."""
    import random

    chooser = random.Random(20260520)
    doubles = (
        struct.unpack("d", struct.pack("Q", chooser.getrandbits(64)))[0] for _ in range(3000)
    )
    finite = [d for d in doubles if math.isfinite(d)]
    body = jsjson.dumps(finite)
    assert js.rewritten(body) is None


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",))),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.from_regex(r"\A(0|[1-9][0-9]{0,10}|0[0-9]|[a-z_]{1,4})\Z") | st.text(max_size=3),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_any_json_value_survives_javascript(value: Any) -> None:
    checker = _shared_checker()
    assert checker.rewritten(jsjson.dumps(value)) is None


_CHECKER: list[JsRoundTrip] = []


def _shared_checker() -> JsRoundTrip:
    if not _CHECKER:
        _CHECKER.append(JsRoundTrip())
    return _CHECKER[0]


@pytest.fixture(scope="module", autouse=True)
def _close_shared_checker() -> Any:
    yield
    while _CHECKER:
        _CHECKER.pop().close()


def test_subclasses_of_json_types_are_written_as_their_base_types() -> None:
    import enum

    class Level(enum.IntEnum):
        BIG = 2**60

    class Sequence(list[Any]):
        pass

    assert jsjson.dumps(Sequence([80.0, Level.BIG, {"2": 1, "a": 2}])) == (
        b'[80,"1152921504606846976",{"2":1,"a":2}]'
    )
