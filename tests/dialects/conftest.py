"""Fixtures for dialects: the delivery fixtures (real receivers and workers) and Node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dialects.helpers.node import JsRoundTrip
from tests.workers.conftest import (  # noqa: F401 - fixtures shared with the delivery tests
    receiver,
    receiver_factory,
    run_worker,
    settings,
    worker,
)


@pytest.fixture(scope="module")
def js() -> Iterator[JsRoundTrip]:
    checker = JsRoundTrip()
    yield checker
    checker.close()
