"""The JSONata engine: compile errors carry its message, limits stop runaway expressions, and the
chosen engine agrees with the other implementation on every shipped template and mapping."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.dialects.engine import (
    EngineName,
    EvaluationError,
    ExpressionError,
    compile_expression,
)
from tests.dialects.examples import (
    EVENTS,
    MAPPINGS,
    SENDER_BODIES,
    TEMPLATES,
    mapping,
    template,
)

ENGINES: tuple[EngineName, ...] = ("jsonatapy", "jsonata-python")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_syntax_error_carries_the_engines_message(engine: EngineName) -> None:
    with pytest.raises(ExpressionError, match=r"(?i)expected|unexpected|syntax") as caught:
        compile_expression('{"email": data.email', engine)
    assert str(caught.value)


def test_an_empty_expression_is_refused() -> None:
    with pytest.raises(ExpressionError, match="empty"):
        compile_expression("  \n")


@pytest.mark.parametrize(
    ("expression", "code"),
    [
        ("($f := function($n) { $f($n + 1) + 1 }; $f(0))", "D1011"),  # recursion, not tail
        ("($loop := function($n) { $loop($n + 1) }; $loop(0))", "D1012"),  # runs forever
        ("[1..1000000].($ * 2)", "D2015"),  # a sequence no lead needs
        ('$pad("x", 1000000000)', "D1012"),  # refused before it allocates a gigabyte
    ],
)
def test_limits_stop_runaway_expressions(expression: str, code: str) -> None:
    with pytest.raises(EvaluationError, match=code):
        compile_expression(expression).evaluate({})


def test_a_failure_on_the_input_carries_the_engines_message() -> None:
    with pytest.raises(EvaluationError, match="boom"):
        compile_expression('$error("boom")').evaluate({})


def _both(text: str, data: Any) -> list[Any]:
    return [compile_expression(text, engine).evaluate(data) for engine in ENGINES]


@pytest.mark.parametrize("event", sorted(EVENTS))
@pytest.mark.parametrize("name", TEMPLATES)
def test_engines_agree_on_shipped_templates(name: str, event: str) -> None:
    chosen, other = _both(template(name), EVENTS[event])
    assert chosen == other
    assert chosen is not None


@pytest.mark.parametrize("name", MAPPINGS)
def test_engines_agree_on_shipped_mappings(name: str) -> None:
    for body in SENDER_BODIES[name]:
        chosen, other = _both(mapping(name), body)
        assert chosen == other
        assert isinstance(chosen, dict)


def test_leadrescue_mapping_splits_the_name_and_keeps_car_model_and_consent() -> None:
    anna, bjorn, long_name = (
        compile_expression(mapping("leadrescue")).evaluate(b) for b in SENDER_BODIES["leadrescue"]
    )
    assert anna == {
        "first_name": "Anna", "last_name": "Karlsson", "phone": "+46701234567",
        "source": "leadrescue",
        "custom_data": {"car_model": "Mercedes E-Class", "consent": True},
    }  # fmt: skip
    assert (bjorn["first_name"], "last_name" in bjorn) == ("Björn", False)
    assert bjorn["custom_data"]["consent"] is False  # a form's "false"
    assert (long_name["first_name"], long_name["last_name"]) == ("Anna", "Maria von Karlsson")


@pytest.mark.parametrize("engine", ENGINES)
def test_the_time_limit_counts_per_evaluation_not_from_compiling(engine: EngineName) -> None:
    import time

    expression = compile_expression("data.email", engine)
    time.sleep(0.06)  # longer than the limit: a clock started at compile time would now fail
    assert expression.evaluate({"data": {"email": "a@example.com"}}) == "a@example.com"


async def test_an_expression_compiled_on_another_thread_is_not_reused_here() -> None:
    """jsonatapy's compiled expressions are bound to their thread; the cache is per thread."""
    import asyncio

    from gateway.dialects.engine import compiled

    text = '{"email": data.email}'
    await asyncio.to_thread(compiled, text)  # e.g. a CLI command run in a worker thread
    assert compiled(text).evaluate({"data": {"email": "t@example.com"}}) == {
        "email": "t@example.com"
    }


def test_only_a_timeout_that_used_little_cpu_is_tried_again() -> None:
    """A process descheduled past the wall-clock limit retries; a runaway one (CPU) does not."""
    from gateway.constants import EXPRESSION_TIMEOUT_MS
    from gateway.dialects.engine import _descheduled

    timeout = "D1012: Evaluation timeout after 50 milliseconds"
    assert _descheduled(timeout, used_ms=EXPRESSION_TIMEOUT_MS * 0.1)
    assert not _descheduled(timeout, used_ms=EXPRESSION_TIMEOUT_MS * 0.9)
    assert not _descheduled("D1011: Stack overflow", used_ms=0.0)
