"""The JSONata engine, behind one small interface so that it can be swapped.

`compile_expression(text)` parses an expression once (ExpressionError carries the engine's
message); `Expression.evaluate(data)` runs it within a time, depth and sequence-length bound
(EvaluationError carries the engine's message). Leadgate runs jsonatapy, a Rust port of the
reference implementation (about 10 µs for a lead template); jsonata-python, a pure-Python port
(about 250 µs), is here for the tests, which check that the two agree on every shipped example,
and for the benchmarks. docs/DIALECTS.md gives the measured reasons.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

import jsonatapy

from gateway.constants import (
    EXPRESSION_MAX_DEPTH,
    EXPRESSION_MAX_SEQUENCE,
    EXPRESSION_TIMEOUT_MS,
    MAX_EXPRESSION_LENGTH,
    MAX_RENDERED_BODY,
)

EngineName = Literal["jsonatapy", "jsonata-python"]
DEFAULT_ENGINE: EngineName = "jsonatapy"


class ExpressionError(ValueError):
    """The expression does not compile; the message is the engine's."""


class EvaluationError(ValueError):
    """The expression failed on this input (or hit a limit); the message is the engine's."""


class Expression(Protocol):
    def evaluate(self, data: Any) -> Any:
        """The result for `data` (None when the expression yields nothing)."""

    def evaluate_once(self, data: Any) -> Any:
        """`evaluate` without the retry of a timeout (for scoring, where a rule that times out
        simply does not hold): one call, the least overhead around the engine."""


def _bounded_pad(text: Any, width: Any, char: Any = " ") -> str:
    """`$pad` that refuses widths no body could hold, before it allocates them.

    The engine checks its time limit between steps, not inside a built-in, so one `$pad` with a
    width of 10^9 would otherwise allocate that much before any limit could stop it."""
    if not isinstance(text, str) or not isinstance(width, int | float) or isinstance(width, bool):
        raise EvaluationError("T0410: $pad takes a string and a number")
    if abs(width) > MAX_RENDERED_BODY:
        raise EvaluationError(f"D1012: $pad width {width} is past the limit {MAX_RENDERED_BODY}")
    fill = str(char or " ")
    missing = int(abs(width)) - len(text)
    if missing <= 0:
        return text
    padding = (fill * missing)[:missing]
    return text + padding if width > 0 else padding + text


class _Rust:
    """jsonatapy: the limits are the engine's own (D1011 depth, D1012 time, D2015 sequence)."""

    def __init__(self, text: str) -> None:
        try:
            self._expr = jsonatapy.compile(text)
        except Exception as e:  # ValueError as documented; anything else is its failure too
            raise ExpressionError(_clean(str(e))) from e
        if "$pad" in text:
            self._expr.register_override("pad", _bounded_pad)

    def _bounded(self, data: Any) -> Any:
        return self._expr.evaluate(
            data,
            timeout=EXPRESSION_TIMEOUT_MS,
            max_stack_depth=EXPRESSION_MAX_DEPTH,
            max_sequence_length=EXPRESSION_MAX_SEQUENCE,
        )

    def evaluate(self, data: Any) -> Any:
        for tries_left in range(TIMEOUT_RETRIES, -1, -1):
            began = time.thread_time()
            try:
                return self._bounded(data)
            except Exception as e:  # ValueError as documented; an input it cannot convert, too
                used_ms = (time.thread_time() - began) * 1000
                if tries_left and _descheduled(str(e), used_ms):
                    continue
                raise EvaluationError(_clean(str(e)) or type(e).__name__) from e
        raise AssertionError("unreachable")  # pragma: no cover - the last try returns or raises

    def evaluate_once(self, data: Any) -> Any:
        try:
            return self._bounded(data)
        except Exception as e:  # as in evaluate
            raise EvaluationError(_clean(str(e)) or type(e).__name__) from e


class _Python:
    """jsonata-python (installed with the dev extra): time and depth bounds of its own."""

    def __init__(self, text: str) -> None:
        from jsonata import Jsonata  # only the tests and benchmarks load it

        try:
            self._expr = Jsonata(text, timeout=EXPRESSION_TIMEOUT_MS, stack=EXPRESSION_MAX_DEPTH)
        except Exception as e:  # the port raises its own JException, and sometimes others
            raise ExpressionError(str(e)) from e

    def evaluate(self, data: Any) -> Any:
        # The port keeps the last expression compiled in a thread-local and starts its clock when
        # bounds are set, not per evaluation: without both set afresh, evaluating one expression
        # after compiling another, or 50 ms after compiling it, fails (measured, see DIALECTS.md).
        type(self._expr).CURRENT.jsonata = self._expr
        self._expr.environment.set_runtime_bounds(EXPRESSION_TIMEOUT_MS, EXPRESSION_MAX_DEPTH)
        try:
            return self._expr.evaluate(data)
        except Exception as e:  # e.g. ZeroDivisionError for 1/0, where the reference says D1001
            raise EvaluationError(str(e) or type(e).__name__) from e

    def evaluate_once(self, data: Any) -> Any:
        return self.evaluate(data)


_ENGINES: dict[EngineName, Callable[[str], Expression]] = {
    "jsonatapy": _Rust,
    "jsonata-python": _Python,
}


def compile_expression(text: str, engine: EngineName = DEFAULT_ENGINE) -> Expression:
    """Compile `text`; ExpressionError with the engine's message if it is not JSONata."""
    if not text.strip():
        raise ExpressionError("the expression is empty")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    return _ENGINES[engine](text)


# Compiled expressions kept per thread: jsonatapy's are bound to the thread that made them (one
# used or dropped on another panics), and a Leadgate process evaluates on its one loop thread.
_COMPILED = threading.local()
# Distinct expressions kept per thread; past it the cache starts afresh (a tenant has a few).
_COMPILED_MAX = 1024


def compiled(text: str) -> Expression:
    """The compiled form of an expression already checked on save, kept per thread.

    Templates and mappings change rarely and are evaluated often, so each text is compiled once
    per thread; a changed expression is a different text, hence a different entry."""
    cache: dict[str, Expression] | None = getattr(_COMPILED, "cache", None)
    if cache is None:
        cache = _COMPILED.cache = {}
    expression = cache.get(text)
    if expression is None:
        if len(cache) >= _COMPILED_MAX:
            cache.clear()
        expression = cache[text] = compile_expression(text)
    return expression


# The engine's time limit is wall-clock time. On a busy machine a process can be descheduled
# for longer than the limit while evaluating an honest expression, so a timeout that used under
# half the limit in CPU time is tried again, at most this many times; a runaway expression uses
# its whole limit in CPU and fails at once.
TIMEOUT_RETRIES = 2


def _descheduled(message: str, used_ms: float) -> bool:
    return message.startswith("D1012") and used_ms < EXPRESSION_TIMEOUT_MS / 2


def _clean(message: str) -> str:
    return message.removeprefix("Parse error: ").strip()
