"""The function registry: each function's behaviour, its documented example, and its limits."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from soar.errors import EvaluationError, ExpressionError
from soar.models.severity import Severity
from soar.playbook.expr import FUNCTIONS, compile_expression
from soar.playbook.expr.limits import MAX_LIST, MAX_STRING

NOW = datetime(2024, 3, 29, 15, 0, tzinfo=UTC)  # a Friday
DOCS = Path(__file__).resolve().parents[3] / "docs" / "expressions.md"


def context() -> dict[str, object]:
    return {
        "alert": {
            "title": "Mimikatz seen on HOST-1",
            "source": "edr",
            "rule": None,
            "severity": Severity.HIGH,
            "time": datetime(2024, 3, 29, 14, 30, tzinfo=UTC),
            "users": [{"name": "adm-bob"}],
            "hosts": [{"id": "h2", "name": "b"}, {"id": "h1", "name": "a"}],
            "ips": [{"address": "10.1.2.3"}],
            "tags": ["vip", "travel", "vip"],
            "raw": {"k": 1},
        },
        "inputs": {},
    }


def evaluate(source: str, variables: dict[str, object] | None = None) -> object:
    return compile_expression(source).evaluate(
        context() if variables is None else variables, clock=lambda: NOW
    )


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_example_evaluates(name: str) -> None:
    entry = FUNCTIONS[name]
    assert entry.doc
    assert entry.signature.startswith(name + "(")
    evaluate(entry.example)


def test_the_reference_page_documents_every_function() -> None:
    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^#### `(\w+)\(", text, re.MULTILINE))
    assert documented == set(FUNCTIONS)


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("len('abc') + len([1]) + len({'a': 1})", 5),
        ("lower('AbC') + upper('x')", "abcX"),
        ("strip('  x ') + strip('--y--', '-')", "xy"),
        ("startswith(alert.users[0].name, ['svc-', 'adm-'])", True),
        ("endswith(alert.title, 'HOST-1')", True),
        ("contains(alert.tags, 'vip') and contains('abc', 'b') and contains(alert.raw, 'k')", True),
        ("split('a,b,,c', ',')", ["a", "b", "", "c"]),
        ("split(' a  b ')", ["a", "b"]),
        ("join(['a', 1, true, null], '-')", "a-1-true-"),
        ("replace('a_b_c', '_', ' ')", "a b c"),
        ("regex_match('abc', r'a.c') and not regex_match('abcd', r'a.c')", True),
        ("regex_search(alert.title, r'(?i)mimikatz')", True),
        ("regex_extract('user=bob;', r'user=(\\w+)')", "bob"),
        ("regex_extract('id 42', r'\\d+')", "42"),
        ("regex_extract('none', r'(\\d+)')", None),
        ("default(alert.rule, 'none')", "none"),
        ("default(alert.nothing.deeper, 'none')", "none"),
        ("alert.nothing | default('-')", "-"),
        ("default(alert.source, 'none')", "edr"),
        ("default(null, 1)", 1),
        ("has(alert.rule) and not has(alert.nothing) and not has(alert.users[5].name)", True),
        ("has(inputs) and not has(item)", True),
        ("first(alert.tags) + last(alert.tags)", "vipvip"),
        ("first([]) == null and last('') == null", True),
        ("unique(alert.tags)", ["vip", "travel"]),
        ("unique([1, true, 1.0, '1'])", [1, True, "1"]),
        ("sort([3, 1, 2])", [1, 2, 3]),
        ("sort(['b', 'a'], reverse=true)", ["b", "a"]),
        ("pluck(sort(alert.hosts, 'id'), 'name')", ["a", "b"]),
        ("min([3, 1, 2]) + max(3, 5)", 6),
        ("max([severity('low'), alert.severity])", Severity.HIGH),
        ("sum([1, 2, 3.5])", 6.5),
        ("keys({'a': 1, 'b': 2})", ["a", "b"]),
        ("values({'a': 1, 'b': 2})", [1, 2]),
        ("int('42') + int(3.9) + int(true)", 46),
        ("int(' -7 ')", -7),
        ("float('2.5') + float(1)", 3.5),
        ("string(1) + string(null) + string(false) + string([1])", "1false[1]"),
        ("bool('Yes') and not bool('off') and not bool(0) and bool([1])", True),
        ("severity(' CRIT ')", Severity.CRITICAL),
        ("sev_rank(alert.severity)", 3),
        ("cidr_contains(alert.ips[0].address, '10.0.0.0/8')", True),
        ("cidr_contains('192.168.1.1', ['10.0.0.0/8', '192.168.0.0/16'])", True),
        ("cidr_contains('::ffff:10.0.0.1', '10.0.0.0/8')", True),
        ("cidr_contains('not-an-ip', '10.0.0.0/8') or cidr_contains(null, '10.0.0.0/8')", False),
        ("cidr_contains('fd00::1', '10.0.0.0/8')", False),
        (
            "is_private_ip('10.1.1.1') and is_private_ip('::1') and not is_private_ip('8.8.8.8')",
            True,
        ),
        ("is_private_ip('bogus') or is_private_ip(3)", False),
        ("is_ip('::1') and not is_ip('example.com')", True),
        ("now()", NOW),
        ("timestamp('2024-05-01T12:00:00Z')", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("timestamp('2024-05-01 12:00:00')", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("timestamp(1714564800)", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("timestamp(1714564800000)", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("timestamp('1714564800')", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("duration('1h30m')", timedelta(minutes=90)),
        ("duration(90)", timedelta(seconds=90)),
        ("age(alert.time)", timedelta(minutes=30)),
        ("age('2024-03-29T14:00:00Z') > duration('45m')", True),
        ("in_timezone(alert.time, 'Asia/Tokyo') == alert.time", True),
        ("hour(in_timezone(alert.time, 'Asia/Tokyo'))", 14),
        ("weekday(alert.time) + weekday('2024-03-30T23:30:00Z', 'Europe/Paris')", "frisun"),
        ("hour(alert.time, 'America/New_York')", 10),
        ("format_time(alert.time)", "2024-03-29T14:30:00Z"),
        ("format_time(alert.time, '%Y-%m-%d %H:%M %Z', 'Europe/Paris')", "2024-03-29 15:30 CET"),
        (
            "json({'a': [1, null, true], 't': alert.time})",
            '{"a":[1,null,true],"t":"2024-03-29T14:30:00Z"}',
        ),
        ("any([false, 0, 'x']) and not any([]) and all([]) and not all([1, 0])", True),
        ("pluck(alert.hosts, 'id')", ["h2", "h1"]),
        ("pluck([{'a': 1}, {}], 'a')", [1, None]),
    ],
)
def test_functions_compute_what_they_document(source: str, value: object) -> None:
    assert evaluate(source) == value


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        pytest.param("2024-03-29T07:59:00Z", False, id="friday-before-nine-paris"),
        pytest.param("2024-03-29T08:00:00Z", True, id="friday-nine-paris-winter"),
        pytest.param("2024-04-02T07:00:00Z", True, id="tuesday-nine-paris-summer"),
        pytest.param("2024-04-02T06:59:00Z", False, id="tuesday-before-nine-paris-summer"),
        pytest.param("2024-04-02T15:00:00Z", False, id="tuesday-seventeen-paris-summer"),
        pytest.param("2024-03-30T10:00:00Z", False, id="saturday"),
    ],
)
def test_business_hours_follow_daylight_saving(moment: str, inside: bool) -> None:
    source = f"business_hours('{moment}', 'Europe/Paris')"
    assert evaluate(source) is inside


def test_business_hours_default_to_now_in_utc() -> None:
    assert evaluate("business_hours()") is True  # Friday 15:00 UTC
    assert evaluate("business_hours(days='sat-sun')") is False


def test_business_hours_can_span_midnight() -> None:
    night = "business_hours(t, 'UTC', '22:00', '06:00', 'mon-fri')"
    for moment, inside in [
        ("2024-03-29T23:00:00Z", True),  # Friday night
        ("2024-03-30T05:00:00Z", True),  # Saturday morning, shift started Friday
        ("2024-03-31T05:00:00Z", False),  # Sunday morning, no Saturday shift
        ("2024-03-29T12:00:00Z", False),
    ]:
        assert evaluate(night.replace("t,", f"'{moment}',")) is inside


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("len(1)", "len(): argument must be a string, list or mapping, not integer"),
        ("int('4.5')", "int(): text is not a decimal integer"),
        ("int('1_000')", "int(): text is not a decimal integer"),
        ("float('nan')", "float(): text is not a finite decimal number"),
        ("bool('maybe')", "bool(): text is not true/false, yes/no, on/off or 1/0"),
        (
            "severity('urgent')",
            "severity(): text is not a severity (informational, low, medium, high, critical)",
        ),
        ("min([])", "min(): the list is empty"),
        ("sum(['a'])", "sum(): adds numbers only, not string"),
        ("sort([1, 'a'])", "sort(): cannot compare string < integer"),
        ("sort([{'a': 1}], 'b')", "sort(): an item has no key 'b'"),
        ("pluck([1], 'a')", "pluck(): item must be a mapping, not integer"),
        ("pluck([{}], '_a')", "pluck(): keys starting with '_' cannot be read"),
        ("unique([[1]])", "unique(): works on strings, numbers and booleans, not list"),
        ("split('a', '')", "split(): separator must not be empty"),
        (
            "timestamp('yesterday')",
            "timestamp(): not an ISO 8601 time such as 2024-05-01T12:00:00Z",
        ),
        (
            "format_time(alert.time, '%s')",
            "format_time(): format may only use %a %A %b %B %d %H %I %j %m %M %p %S %y %Y %z %Z %%",
        ),
        ("business_hours(start='25:00')", "business_hours(): not a clock time such as 09:00"),
        (
            "business_hours(days='weekdays')",
            "business_hours(): not a list of days such as mon-fri or mon,wed,fri",
        ),
        ("json(inputs.x)", "json(): cannot write NaN or infinity as JSON"),
    ],
)
def test_function_errors_name_the_function(source: str, message: str) -> None:
    with pytest.raises(
        ExpressionError
    ) as caught:  # at compile time when the arguments are literals
        compile_expression(source).evaluate(
            {"alert": context()["alert"], "inputs": {"x": float("nan")}}, clock=lambda: NOW
        )
    assert caught.value.message == message


def test_pure_functions_of_literals_run_once_at_compile_time() -> None:
    assert compile_expression("duration('1h') + duration('30m')").evaluate({}) == timedelta(
        minutes=90
    )


def test_regex_helpers_are_linear_on_catastrophic_patterns() -> None:
    expression = compile_expression("regex_match(inputs.s, r'(a+)+$')", roots={"inputs"})
    started = time.perf_counter()
    assert expression.evaluate({"inputs": {"s": "a" * 50_000 + "!"}}) is False
    assert time.perf_counter() - started < 0.1


def test_regex_input_is_capped() -> None:
    expression = compile_expression("regex_search(inputs.s, 'a')", roots={"inputs"})
    with pytest.raises(EvaluationError, match="text is longer than"):
        expression.evaluate({"inputs": {"s": "b" * (MAX_STRING + 1)}})


@pytest.mark.parametrize(
    ("source", "data"),
    [
        pytest.param("split(inputs.s, ',')", {"s": "," * MAX_LIST}, id="split"),
        pytest.param(
            "replace(inputs.s, 'a', 'bbbb')", {"s": "a" * (MAX_STRING // 2)}, id="replace"
        ),
        pytest.param("join(inputs.l, inputs.s)", {"l": ["x"] * 1000, "s": "y" * 2000}, id="join"),
        pytest.param("keys(inputs.m)", {"m": {str(i): i for i in range(MAX_LIST + 1)}}, id="keys"),
        pytest.param("sort(inputs.l)", {"l": list(range(MAX_LIST + 1))}, id="sort"),
        pytest.param("sum(inputs.l)", {"l": [2**62] * 4}, id="sum"),
        pytest.param("json(inputs.l)", {"l": ["x" * 1000] * 2000}, id="json"),
    ],
)
def test_functions_refuse_oversized_results(source: str, data: dict[str, object]) -> None:
    with pytest.raises(EvaluationError):
        compile_expression(source, roots={"inputs"}).evaluate({"inputs": data})


ROTA = {
    "people": ["ana", "bo", "cy"],
    "start": "2026-03-23T09:00:00",
    "shift": "1w",
    "timezone": "Europe/Paris",
    "overrides": [{"from": "2026-04-15T00:00:00Z", "to": "2026-04-16T00:00:00Z", "who": "dee"}],
}


@pytest.mark.parametrize(
    ("moment", "who"),
    [
        pytest.param("2026-03-23T08:00:00Z", "ana", id="first-shift"),
        pytest.param("2026-03-30T06:59:00Z", "ana", id="before-handover-after-dst"),
        pytest.param("2026-03-30T07:00:00Z", "bo", id="handover-at-09-local-after-dst"),
        pytest.param("2026-04-13T07:00:00Z", "ana", id="rotation-wraps"),
        pytest.param("2026-04-15T12:00:00Z", "dee", id="override-wins"),
        pytest.param("2026-03-16T08:00:00Z", "cy", id="before-start-counts-back"),
    ],
)
def test_on_call_follows_the_rotation_on_the_local_clock(moment: str, who: str) -> None:
    expression = compile_expression(f'on_call(directory.rota, "{moment}")')
    assert expression.evaluate({"directory": {"rota": ROTA}}) == who


def test_on_call_refuses_a_schedule_without_people() -> None:
    expression = compile_expression("on_call(directory.rota)")
    with pytest.raises(EvaluationError, match="needs people"):
        expression.evaluate({"directory": {"rota": {"people": [], "start": "2026-01-01"}}})
