"""The sandbox: data is data, Python internals are out of reach, and cost is bounded."""

from __future__ import annotations

import time

import pytest

from soar.errors import EvaluationError, ExpressionError
from soar.playbook.expr import compile_expression, compile_template

CANARIES = [
    "{{ 7*7 }}",
    "{{ alert.id }}",
    "__import__('os').system('id')",
    "${jndi:ldap://x}",
    "{% for x in y %}{{ x }}{% endfor %}",
    "'); DROP TABLE runs; --",
    '"}} {{ 7*7 }} {{"',
]


@pytest.mark.parametrize("canary", CANARIES)
def test_alert_data_that_looks_like_code_comes_out_literally(canary: str) -> None:
    data = {"alert": {"id": "a-1", "title": canary}, "steps": {}}
    assert compile_template("{{ alert.title }}").evaluate(data) == canary
    assert compile_template("Title: {{ alert.title }}!").evaluate(data) == f"Title: {canary}!"
    assert compile_expression("alert.title").evaluate(data) == canary


def test_a_step_output_holding_a_template_is_not_expanded() -> None:
    data = {
        "alert": {"id": "secret-alert-id"},
        "steps": {"user": {"output": {"note": "{{ alert.id }}"}}},
    }
    rendered = compile_template("note={{ steps.user.output.note }}").evaluate(data)
    assert rendered == "note={{ alert.id }}"


@pytest.mark.parametrize(
    "source",
    [
        "alert.__class__",
        "alert.__class__.__mro__",
        "alert['__globals__']",
        "alert.title.__len__",
        "alert._private",
        "__import__('os')",
        "__builtins__",
        "eval('1')",
        "exec('1')",
        "open('/etc/passwd')",
        "getattr(alert, 'x')",
        "globals()",
        "type(alert)",
        "alert.title.format(alert)",
        "alert.title.__class__.__base__.__subclasses__()",
        "'{0.__class__}'.format(alert)",
        "alert | attr('__class__')",
        "[c for c in ().__class__.__bases__]",
        "(lambda: 1)()",
        "f'{alert}'",
        "9 ** 9 ** 9",
        "'a' * 10 ** 9",
    ],
)
def test_reaching_python_internals_is_refused_at_compile_time(source: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source)
    assert not isinstance(caught.value, EvaluationError)
    assert 0 <= caught.value.offset <= len(source)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("[1] * 1000000", "cannot multiply list by integer"),
        ("alert.title * 1000000", "cannot multiply string by integer"),
        ("'%s' % alert", "cannot use '%' on string and mapping"),
    ],
)
def test_repetition_and_formatting_operators_are_refused_when_run(
    source: str, message: str
) -> None:
    with pytest.raises(EvaluationError) as caught:
        compile_expression(source).evaluate({"alert": {"title": "x"}})
    assert caught.value.message == message


def test_dunder_keys_in_data_cannot_be_read_through_a_computed_key() -> None:
    expression = compile_expression("alert.raw[alert.k]")
    with pytest.raises(EvaluationError, match="starts with '_'"):
        expression.evaluate({"alert": {"raw": {"__class__": 1}, "k": "__class__"}})


def test_repeated_doubling_is_capped_not_slow() -> None:
    source = "inputs.s" + " + inputs.s" * 90
    expression = compile_expression(source, roots={"inputs"})
    started = time.perf_counter()
    with pytest.raises(EvaluationError, match="string would be longer than"):
        expression.evaluate({"inputs": {"s": "x" * 20_000}})
    assert time.perf_counter() - started < 0.1


def test_integer_growth_is_capped() -> None:
    expression = compile_expression("inputs.n * inputs.n * inputs.n * inputs.n", roots={"inputs"})
    with pytest.raises(EvaluationError, match="larger than 2\\*\\*63"):
        expression.evaluate({"inputs": {"n": 10**6}})


def test_a_huge_template_is_refused_quickly() -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionError, match="template is longer than"):
        compile_template("{{ 1 }}" * 200_000)
    assert time.perf_counter() - started < 0.05


def test_a_huge_part_is_refused_before_parsing() -> None:
    with pytest.raises(ExpressionError, match="expression is longer than"):
        compile_template("x {{ " + "1+" * 5000 + "1 }}")
