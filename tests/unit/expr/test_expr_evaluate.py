"""Evaluation: operators on plain data, paths, severity order, time arithmetic, errors with
positions and without data values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from soar.errors import EvaluationError
from soar.models.alert import Alert
from soar.models.severity import Severity
from soar.playbook.expr import compile_expression
from soar.playbook.expr.limits import MAX_LIST, MAX_STRING

CANARY = "hunter2-canary-7f3a"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def context() -> dict[str, object]:
    alert = Alert.model_validate(
        {
            "id": "a-1",
            "source": "splunk-es",
            "format": "generic",
            "title": "Impossible travel",
            "severity": "High",
            "category": "credential_access",
            "time": "2024-05-01T11:00:00Z",
            "users": [{"name": "bob", "domain": "corp"}],
            "hosts": [{"id": "h1", "ips": ["10.0.0.5"]}, {"id": "h2"}],
            "tags": ["vip", "travel"],
            "raw": {"token": CANARY, "count": 3, "nested": {"level": "medium"}},
        }
    )
    return {
        "alert": alert.context(),
        "steps": {
            "user": {"output": {"dn": "cn=bob", "is_service_account": False}},
            "approve-isolation": {"output": {"approved": True}},
        },
        "inputs": {"limit": 2, "names": ["bob", "eve"], "key": "dn", "zero": 0, "big": 2**62},
    }


def evaluate(source: str) -> object:
    return compile_expression(source).evaluate(context(), clock=lambda: NOW)


def evaluation_error(source: str) -> EvaluationError:
    with pytest.raises(EvaluationError) as caught:
        evaluate(source)
    return caught.value


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ('alert.category == "credential_access" and alert.severity >= "high"', True),
        ('alert.severity > "HIGH "', False),
        ('alert.severity == "high"', True),
        ('alert.severity in ["high", "critical"]', True),
        ("alert.raw.nested.level == 'medium'", True),
        ("not steps.user.output.is_service_account", True),
        ("steps.approve-isolation.output.approved", True),
        ('steps["approve-isolation"].output.approved', True),
        ("alert.users[0].name", "bob"),
        ("alert.hosts[-1].id", "h2"),
        ("alert.hosts[inputs.zero].id", "h1"),
        ("steps.user.output[inputs.key]", "cn=bob"),
        ("alert.tags[0:1]", ["vip"]),
        ("alert.tags[::-1]", ["travel", "vip"]),
        ("alert.title[0]", "I"),
        ('"vip" in alert.tags', True),
        ('"Travel" in alert.title', False),
        ('"phone" in alert.users[0]', False),
        ('"bob" not in inputs.names', False),
        ("1 < 2 < 3", True),
        ("3 > 2 > 2", False),
        ("1 + 2 * 3 - 4 / 2", 5.0),
        ("7 // 2 + 7 % 2", 4),
        ("-inputs.limit", -2),
        ("'a' + 'b'", "ab"),
        ("alert.tags + ['x']", ["vip", "travel", "x"]),
        ("true and null", None),
        ("false or 'fallback'", "fallback"),
        ("alert.rule or alert.title", "Impossible travel"),
        ("not []", True),
        ("'yes' if alert.raw.count > 2 else 'no'", "yes"),
        ("{'n': alert.raw.count, 'list': [1, alert.users[0].name]}", {"n": 3, "list": [1, "bob"]}),
        ("(1, 2)", [1, 2]),
        ("True == true and None == null", True),
    ],
)
def test_expressions_evaluate_over_plain_data(source: str, value: object) -> None:
    assert evaluate(source) == value


def test_a_severity_read_from_plain_text_still_orders_by_rank() -> None:
    expression = compile_expression('event.severity >= "high"', roots={"event"})
    assert expression.evaluate({"event": {"severity": "critical"}}) is True
    assert expression.evaluate({"event": {"severity": "Medium"}}) is False


def test_a_severity_compared_with_a_severity_from_data_orders_by_rank() -> None:
    assert evaluate("alert.severity > alert.raw.nested.level") is True


def test_time_arithmetic_with_durations() -> None:
    assert evaluate("now() - alert.time") == timedelta(hours=1)
    assert evaluate("now() - alert.time >= duration('1h')") is True
    assert evaluate("alert.time + duration('30m') < now()") is True
    assert evaluate("duration('1h') * 2 / duration('30m')") == 4.0


def test_now_is_read_once_per_evaluation() -> None:
    calls: list[int] = []

    def clock() -> datetime:
        calls.append(1)
        return NOW + timedelta(seconds=len(calls))

    expression = compile_expression("now() == now()")
    assert expression.evaluate({}, clock=clock) is True
    assert len(calls) == 1


def test_list_literals_are_fresh_each_time() -> None:
    expression = compile_expression("[1, 2]")
    first = expression.evaluate({})
    assert isinstance(first, list)
    first.append(3)
    assert expression.evaluate({}) == [1, 2]


@pytest.mark.parametrize(
    ("source", "message", "mark"),
    [
        ("steps.user.output.dn2", "steps.user.output has no key 'dn2'", "steps.user.output.dn2"),
        ("alert.users[3].name", "alert.users has no item 3", "alert.users[3]"),
        ("alert.rule.name", "alert.rule is null (reading 'name')", "alert.rule.name"),
        (
            "alert.hosts.id",
            "alert.hosts is a list, not a mapping (reading key 'id')",
            "alert.hosts.id",
        ),
        (
            "alert.time.year",
            "alert.time is a time, which has no keys (reading 'year')",
            "alert.time.year",
        ),
        (
            "alert.users[inputs.limit]",
            "alert.users has no item [inputs.limit]",
            "alert.users[inputs.limit]",
        ),
        (
            "alert.raw[inputs.limit]",
            "alert.raw has no key [inputs.limit]",
            "alert.raw[inputs.limit]",
        ),
        (
            "alert.raw[alert.tags]",
            "key [alert.tags] is a list, not a string or an integer",
            "alert.raw[alert.tags]",
        ),
        ("alert.tags[0:'a']", "slice bounds must be integers, not string", "alert.tags[0:'a']"),
        ("item.id", "'item' is not available here", "item"),
        ("alert.title < 1", "cannot compare string < integer", "alert.title < 1"),
        (
            "1 < alert.raw.count < alert.title",
            "cannot compare integer < string",
            "alert.raw.count < alert.title",
        ),
        (
            "alert.severity > alert.raw.count",
            "right side is integer, not a severity name",
            "alert.severity > alert.raw.count",
        ),
        ("alert.title + 1", "cannot add string and integer", "alert.title + 1"),
        ("alert.title * 2", "cannot multiply string by integer", "alert.title * 2"),
        ("alert.tags * 2", "cannot multiply list by integer", "alert.tags * 2"),
        ("alert.raw.count / inputs.zero", "division by zero", "alert.raw.count / inputs.zero"),
        (
            "steps.user.output.is_service_account + 1",
            "cannot add boolean and integer",
            "steps.user.output.is_service_account + 1",
        ),
        ("-alert.title", "cannot negate string", "-alert.title"),
        ("1 in alert.raw.count", "cannot look inside integer", "1 in alert.raw.count"),
        (
            "inputs.big * 4",
            "integer result is larger than 2**63 in absolute value",
            "inputs.big * 4",
        ),
        ("alert.time - 1", "cannot subtract integer from time", "alert.time - 1"),
        (
            "lower(alert.raw.count)",
            "lower(): argument must be a string, not integer",
            "lower(alert.raw.count)",
        ),
        (
            "alert.raw.count | upper",
            "upper(): argument must be a string, not integer",
            "alert.raw.count | upper",
        ),
    ],
)
def test_runtime_errors_say_what_and_where(source: str, message: str, mark: str) -> None:
    error = evaluation_error(source)
    assert error.message == message
    assert source[error.offset : error.offset + error.length] == mark


@pytest.mark.parametrize(
    "source",
    [
        "alert.raw.token + 1",
        "alert.raw.token < 1",
        "alert.raw.token.x",
        "alert.raw[alert.raw.token]",
        "alert.raw.token > alert.severity",
        "int(alert.raw.token)",
        "float(alert.raw.token)",
        "bool(alert.raw.token)",
        "severity(alert.raw.token)",
        "timestamp(alert.raw.token)",
        "duration(alert.raw.token)",
        "hour(alert.time, alert.raw.token)",
        "business_hours(days=alert.raw.token)",
        "cidr_contains('10.0.0.1', alert.raw.token)",
        "steps[alert.raw.token]",
    ],
)
def test_error_messages_never_contain_data_values(source: str) -> None:
    error = evaluation_error(source)
    assert CANARY not in error.message
    assert CANARY not in str(error)


def test_strings_made_by_plus_are_capped() -> None:
    expression = compile_expression("inputs.a + inputs.a")
    with pytest.raises(EvaluationError, match="string would be longer than"):
        expression.evaluate({"inputs": {"a": "x" * (MAX_STRING // 2 + 1)}})


def test_lists_made_by_plus_are_capped() -> None:
    expression = compile_expression("inputs.a + inputs.a")
    with pytest.raises(EvaluationError, match="list would have more than"):
        expression.evaluate({"inputs": {"a": [0] * (MAX_LIST // 2 + 1)}})


def test_variables_that_are_not_plain_data_cannot_be_reached_into() -> None:
    class Secretive:
        token = CANARY

    expression = compile_expression("inputs.token", roots={"inputs"})
    with pytest.raises(EvaluationError, match="inputs is a Secretive, which has no keys"):
        expression.evaluate({"inputs": Secretive()})


def test_deeply_nested_data_is_an_evaluation_error() -> None:
    def deep() -> list[object]:
        nested: list[object] = []
        for _ in range(5_000):
            nested = [nested]
        return nested

    expression = compile_expression("inputs.a == inputs.b", roots={"inputs"})
    with pytest.raises(EvaluationError, match="data too deeply nested"):
        expression.evaluate({"inputs": {"a": deep(), "b": deep()}})


def test_severity_enum_values_are_what_alerts_carry() -> None:
    assert evaluate("alert.severity") is Severity.HIGH
