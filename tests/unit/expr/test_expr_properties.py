"""Fuzzing: any text compiles or raises ExpressionError; any data evaluates or raises
EvaluationError. Nothing else escapes, and each case stays fast."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soar.errors import EvaluationError, ExpressionError
from soar.models.severity import Severity
from soar.playbook.expr import FUNCTIONS, compile_expression, compile_template

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKENS = [
    "alert",
    "steps",
    "item",
    "inputs",
    ".",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    "{{",
    "}}",
    ",",
    ":",
    "0",
    "1",
    "-1",
    "2.5",
    "'a'",
    '"high"',
    "'x}}'",
    "true",
    "null",
    "and",
    "or",
    "not",
    "in",
    "if",
    "else",
    "==",
    "!=",
    "<",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "|",
    "&&",
    "=",
    "!",
    "users",
    "severity",
    "name",
    "approve-isolation",
    "_x",
    "__class__",
    "lambda",
    "for",
    " ",
    "é",
    "\n",
    "#",
    "\\",
    *FUNCTIONS,
]

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.sampled_from(list(Severity))
    | st.datetimes(timezones=st.just(UTC))
    | st.timedeltas(min_value=timedelta(days=-1000), max_value=timedelta(days=1000)),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["a", "name", "severity", "users", "0", "_x"]), children, max_size=4
        )
    ),
    max_leaves=12,
)

EXPRESSIONS = [
    "alert.a + alert.name",
    "alert.users[0].name",
    "alert.severity >= 'high'",
    "alert.a < alert.name",
    "alert.a in alert.users",
    "-alert.a",
    "alert.a * 2",
    "alert.a / alert.name",
    "alert.a // 3 % 2",
    "alert.users[alert.a]",
    "alert.users[alert.a:alert.name]",
    "not alert.a or alert.name",
    "len(alert.a)",
    "lower(alert.name)",
    "sort(alert.users)",
    "unique(alert.users)",
    "min(alert.users)",
    "sum(alert.users)",
    "json(alert)",
    "string(alert)",
    "int(alert.a)",
    "float(alert.name)",
    "bool(alert.a)",
    "severity(alert.a)",
    "timestamp(alert.a)",
    "duration(alert.a)",
    "age(alert.a)",
    "business_hours(alert.a)",
    "hour(alert.a)",
    "format_time(alert.a)",
    "cidr_contains(alert.a, '10.0.0.0/8')",
    "pluck(alert.users, 'name')",
    "keys(alert.a)",
    "join(alert.users, ',')",
    "split(alert.name)",
    "first(alert.users)",
    "regex_search(alert.name, 'a+')",
    "default(alert.a.b, 1)",
    "has(alert.users[0])",
    "alert.a == alert.name",
    "alert.a - alert.name",
    "alert.a + duration('1h')",
]


def _error_of(run: Callable[[], object]) -> ExpressionError | None:
    try:
        run()
    except ExpressionError as error:
        return error
    return None


def _only_expression_errors(source: str) -> None:
    started = time.perf_counter()
    for error in (
        _error_of(lambda: compile_expression(source)),
        _error_of(lambda: compile_template(source)),
    ):
        if error is not None:
            assert 0 <= error.offset <= len(source)
            assert error.offset + error.length <= len(source)
    assert time.perf_counter() - started < 0.5


@FAST
@given(st.text(max_size=200))
def test_any_text_compiles_or_raises_an_expression_error(source: str) -> None:
    _only_expression_errors(source)


@FAST
@given(st.lists(st.sampled_from(TOKENS), max_size=30).map("".join))
def test_any_token_soup_compiles_or_raises_an_expression_error(source: str) -> None:
    _only_expression_errors(source)


@FAST
@given(st.sampled_from(EXPRESSIONS), JSON)
def test_any_data_evaluates_or_raises_an_evaluation_error(source: str, alert: object) -> None:
    expression = compile_expression(source)
    error = _error_of(
        lambda: expression.evaluate(
            {"alert": alert}, clock=lambda: datetime(2024, 1, 1, tzinfo=UTC)
        )
    )
    if error is not None:
        assert isinstance(error, EvaluationError)
        assert error.offset >= 0
        assert error.offset + error.length <= len(source)


@FAST
@given(st.text(max_size=40))
def test_any_string_data_renders_verbatim(value: str) -> None:
    assert compile_template("<{{ alert }}>").evaluate({"alert": value}) == f"<{value}>"
