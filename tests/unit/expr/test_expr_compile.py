"""Compile-time behaviour: references, positions, the allow-list, hints and caps."""

from __future__ import annotations

import time

import pytest

from soar.errors import ExpressionError
from soar.playbook.expr import ROOTS, compile_expression
from soar.playbook.expr.limits import MAX_SOURCE


def compile_error(source: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source)
    return caught.value


def marked(source: str, error: ExpressionError) -> str:
    return source[error.offset : error.offset + error.length]


def test_references_list_every_path_with_its_position() -> None:
    source = 'alert.category == "x" and not steps.user.output.is_service_account'
    expression = compile_expression(source)
    assert [r.path for r in expression.refs] == [
        ("alert", "category"),
        ("steps", "user", "output", "is_service_account"),
    ]
    second = expression.refs[1]
    assert source[second.offset : second.offset + second.length] == (
        "steps.user.output.is_service_account"
    )


def test_reference_positions_are_characters_after_non_ascii_text() -> None:
    source = '"é" + alert.title'
    (ref,) = compile_expression(source).refs
    assert (ref.offset, ref.length) == (6, 11)


def test_computed_components_are_none_and_inner_paths_are_references() -> None:
    expression = compile_expression("alert.users[item.index].name")
    assert [r.path for r in expression.refs] == [
        ("item", "index"),
        ("alert", "users", None, "name"),
    ]


def test_subscripts_with_literals_are_path_components() -> None:
    expression = compile_expression('alert.users[0]["name"] == alert.hosts[-1].id')
    assert [r.path for r in expression.refs] == [
        ("alert", "users", 0, "name"),
        ("alert", "hosts", -1, "id"),
    ]


def test_references_inside_has_and_default_are_guarded() -> None:
    expression = compile_expression("has(alert.raw.x) or default(alert.raw.y, 1) or alert.id")
    assert [(r.path, r.guarded) for r in expression.refs] == [
        (("alert", "raw", "x"), True),
        (("alert", "raw", "y"), True),
        (("alert", "id"), False),
    ]


def test_calls_are_listed_at_the_function_name_including_filters() -> None:
    source = "lower(alert.title) == alert.rule | upper"
    expression = compile_expression(source)
    assert [(c.name, source[c.offset : c.offset + c.length]) for c in expression.calls] == [
        ("lower", "lower"),
        ("upper", "upper"),
    ]


@pytest.mark.parametrize(
    ("source", "path"),
    [
        pytest.param(
            "steps.approve-isolation.output.approved",
            ("steps", "approve-isolation", "output", "approved"),
            id="dotted",
        ),
        pytest.param(
            "steps.tell-the-executives.status",
            ("steps", "tell-the-executives", "status"),
            id="chain",
        ),
        pytest.param("steps.a-b[0]", ("steps", "a-b", 0), id="subscript-after"),
        pytest.param("steps.a-b", ("steps", "a-b"), id="last"),
        pytest.param(
            'steps["approve-isolation"].output',
            ("steps", "approve-isolation", "output"),
            id="quoted",
        ),
    ],
)
def test_a_hyphen_without_spaces_joins_a_step_id(source: str, path: tuple[object, ...]) -> None:
    (ref,) = compile_expression(source).refs
    assert ref.path == path
    assert (ref.offset, ref.length) == (0, len(source))


def test_a_joined_id_keeps_tighter_operators_on_its_right() -> None:
    expression = compile_expression("steps.a-b.output.n*2")
    assert [r.path for r in expression.refs] == [("steps", "a-b", "output", "n")]
    assert expression.evaluate({"steps": {"a-b": {"output": {"n": 4}}}}) == 8


@pytest.mark.parametrize(
    ("source", "paths"),
    [
        pytest.param(
            "inputs.total - inputs.used", [("inputs", "total"), ("inputs", "used")], id="spaces"
        ),
        pytest.param(
            "inputs.total-inputs.used",
            [("inputs", "total"), ("inputs", "used")],
            id="root-on-right",
        ),
        pytest.param("inputs.total-1", [("inputs", "total")], id="constant"),
        pytest.param(
            "inputs.total-len(inputs.x)", [("inputs", "total"), ("inputs", "x")], id="call"
        ),
        pytest.param(
            "(inputs.total)-inputs.x", [("inputs", "total"), ("inputs", "x")], id="parens"
        ),
    ],
)
def test_real_subtraction_is_untouched(source: str, paths: list[tuple[str, ...]]) -> None:
    assert [r.path for r in compile_expression(source).refs] == paths


def test_a_bare_name_after_a_hyphen_next_to_a_root_is_not_joined() -> None:
    error = compile_error("index-offset")
    assert (
        error.message == "unknown name 'offset' (expected one of " + ", ".join(sorted(ROOTS)) + ")"
    )


@pytest.mark.parametrize(
    ("source", "message", "mark"),
    [
        ("alrt.title", "unknown name 'alrt' (did you mean 'alert'?)", "alrt"),
        ("lenn(alert.users)", "unknown function 'lenn' (did you mean 'len'?)", "lenn"),
        ("alert.title | lowr", "unknown function 'lowr' (did you mean 'lower'?)", "lowr"),
        ("len", "'len' is a function: call it, as in len(...)", "len"),
        ("alert(1)", "'alert' is not a function", "alert"),
        ("len(1, 2)", "len() takes 1 argument, 2 given", "len(1, 2)"),
        ("split()", "split() takes 1 to 2 arguments, 0 given", "split()"),
        ("min()", "min() takes at least 1 argument, 0 given", "min()"),
        (
            "hour(alert.time, zone='UTC')",
            "hour() has no parameter 'zone'",
            "hour(alert.time, zone='UTC')",
        ),
        ('alert.severity >= "hgih"', "'hgih' is not a severity (did you mean 'high'?)", '"hgih"'),
        (
            '"critcal" < alert.severity',
            "'critcal' is not a severity (did you mean 'critical'?)",
            '"critcal"',
        ),
        (
            'alert.severity in ["high", "urgent"]',
            "'urgent' is not a severity"
            " (expected one of informational, low, medium, high, critical)",
            '"urgent"',
        ),
        (
            "regex_search(alert.title, alert.rule)",
            "the pattern of regex_search() must be a literal string",
            "alert.rule",
        ),
        (
            'regex_match(alert.title, "(")',
            "regex_match(): bad regular expression: missing ): (",
            '"("',
        ),
        (
            'duration("3x")',
            "duration(): not a duration such as 30s, 15m, 1h30m (units: ms, s, m, h, d, w)",
            'duration("3x")',
        ),
        (
            'hour(alert.time, "Mars/Olympus")',
            "hour(): not a known time zone such as Europe/Paris or UTC",
            '"Mars/Olympus"',
        ),
        (
            'cidr_contains(alert.ip, "10.0.0.0/33")',
            "cidr_contains(): not a network such as 10.0.0.0/8 or fd00::/8",
            '"10.0.0.0/33"',
        ),
        ("has(1)", "has() takes one path, such as has(alert.raw.user)", "has(1)"),
    ],
)
def test_compile_errors_say_what_and_where(source: str, message: str, mark: str) -> None:
    error = compile_error(source)
    assert error.message == message
    assert marked(source, error) == mark


@pytest.mark.parametrize(
    ("source", "message", "mark"),
    [
        ("alert.x && alert.y", "use 'and' instead of '&&'", "&&"),
        ("alert.x || alert.y", "use 'or' instead of '||'", "||"),
        ("!alert.x", "use 'not' instead of '!'", "!"),
        ("alert.x = 1", "use '==' to compare ('=' assigns, which expressions cannot do)", "="),
        ("alert.x === 1", "use '==' instead of '==='", "==="),
        ("alert.x !== 1", "use '!=' instead of '!=='", "!=="),
        ("alert.x and", "unexpected end of expression", ""),
        ("1 if", "unexpected end of expression", ""),
        ("(alert.x", "'(' is not closed", "("),
        ("[1, 2", "'[' is not closed", "["),
        ("alert.x)", "unmatched ')'", ")"),
        ("'abc", "string is not closed", "'abc"),
        ("", "empty expression", ""),
        ("   ", "empty expression", "   "),
        ("alert.x alert.y", "invalid syntax", "a"),
    ],
)
def test_syntax_errors_are_in_our_words(source: str, message: str, mark: str) -> None:
    error = compile_error(source)
    assert error.message == message
    assert marked(source, error) == mark


def test_end_of_input_is_reported_at_the_end() -> None:
    source = "  alert.x and "
    error = compile_error(source)
    assert (error.message, error.offset) == ("unexpected end of expression", len(source.rstrip()))


def test_syntax_error_positions_are_characters_after_non_ascii_text() -> None:
    source = "'ééé' + alert.x alert.y"
    error = compile_error(source)
    assert marked(source, error) == "a"
    assert error.offset == source.index("alert.y")


def test_a_hint_inside_a_string_literal_is_not_a_hint() -> None:
    error = compile_error('"a && b" alert.x')
    assert error.message == "invalid syntax"


def test_leading_whitespace_and_newlines_inside_brackets_are_fine() -> None:
    expression = compile_expression("  (alert.x\n   and alert.y)")
    assert [(r.path, r.offset) for r in expression.refs] == [
        (("alert", "x"), 3),
        (("alert", "y"), 18),
    ]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("[x for x in alert.users]", "comprehensions are not allowed; use pluck(), any() or all()"),
        (
            "any(u for u in alert.users)",
            "comprehensions are not allowed; use pluck(), any() or all()",
        ),
        ("lambda: 1", "lambda is not allowed"),
        ('f"{alert.id}"', "f-strings are not allowed; use a template or '+'"),
        ("(x := 1)", "':=' is not allowed"),
        ("[*alert.users]", "'*' unpacking is not allowed"),
        ("len(*alert.users)", "'*' unpacking is not allowed"),
        ("{**alert.raw}", "'**' unpacking is not allowed"),
        ("2 ** 8", "'**' is not allowed (powers can grow without bound)"),
        ("alert.x & 1", "'&' is not allowed; use 'and'"),
        ("~1", "'~' is not allowed"),
        ("{1, 2}", "sets are not allowed; use a list [...]"),
        ("alert.x is None", "'is' is not allowed; use '==' (e.g. x == null)"),
        (
            "alert.title.format(1)",
            "method calls are not allowed: write lower(x) or x | lower, not x.lower()",
        ),
        ("alert.x(1)", "method calls are not allowed: write lower(x) or x | lower, not x.lower()"),
        ("[len][0](1)", "only functions from the registry can be called"),
        ("[len]", "'len' is a function: call it, as in len(...)"),
        ("first([1])(1)", "only functions from the registry can be called"),
        ("__import__('os')", "names starting with '_' are not allowed"),
        ("alert.__class__", "keys starting with '_' are not allowed"),
        ("alert['__class__']", "keys starting with '_' are not allowed"),
        ("_x", "names starting with '_' are not allowed"),
        (
            "alert.x | 1",
            "the right side of '|' must be a function, e.g. x | lower or x | default('-')",
        ),
        ("b'x'", "byte strings are not allowed"),
        ("1j", "complex numbers are not allowed"),
        ("...", "'...' is not allowed"),
        ("alert[1.5]", "a key must be a string or an integer"),
        ("{1: 2}", "mapping keys must be string literals"),
        ("{'a': 1, 'a': 2}", "key 'a' appears twice"),
        ("99999999999999999999", "integer literal is larger than 2**63"),
        ("1e999", "number literal is too large"),
        (
            "10*10*10*10*10*10*10*10*10*10*10*10*10*10*10*10*10*10*10*10",
            "integer result is larger than 2**63 in absolute value",
        ),
        ("'a' * 3", "cannot multiply string by integer"),
        ("1 / 0", "division by zero"),
    ],
)
def test_everything_outside_the_language_is_refused(source: str, message: str) -> None:
    assert compile_error(source).message == message


def test_roots_can_be_narrowed_per_use() -> None:
    with pytest.raises(ExpressionError, match="unknown name 'item'"):
        compile_expression("item.id", roots={"alert"})
    assert compile_expression("item.id", roots={"item"}).refs[0].path == ("item", "id")


def test_a_source_over_the_cap_is_refused_before_parsing() -> None:
    started = time.perf_counter()
    error = compile_error("1+" * 500_000 + "1")
    assert error.message == f"expression is longer than {MAX_SOURCE} characters"
    assert time.perf_counter() - started < 0.05


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("(" * 300 + "1" + ")" * 300, id="parentheses"),
        pytest.param("-" * 2000 + "1", id="unary-minus"),
        pytest.param("not " * 1000 + "1", id="not"),
        pytest.param("1" + "+1" * 2000, id="long-sum"),
        pytest.param("[" * 1000 + "]" * 1000, id="lists"),
        pytest.param("alert" + ".a" * 2000, id="long-path"),
    ],
)
def test_pathological_nesting_is_an_expression_error(source: str) -> None:
    error = compile_error(source)
    assert error.message in {
        "expression too deeply nested",
        "invalid syntax: too many nested parentheses",
        "expression is too complex (more than 1000 parts)",
    }


def test_compiling_the_same_source_twice_gives_the_same_expression() -> None:
    assert compile_expression("alert.id == 'x'") is compile_expression("alert.id == 'x'")


@pytest.mark.parametrize(
    "step_id", ["wait-for-resolution", "send-if-needed", "not-in-scope", "page-or-call"]
)
def test_hyphenated_ids_may_contain_python_keywords(step_id: str) -> None:
    expression = compile_expression(f"steps.{step_id}.output.done and true")
    assert [r.path for r in expression.refs] == [("steps", step_id, "output", "done")]
    assert expression.evaluate({"steps": {step_id: {"output": {"done": True}}}}) is True


def test_a_keyword_hyphenated_id_keeps_its_position() -> None:
    expression = compile_expression('run.n == 1 or steps.wait-for-it.status == "ok"')
    (ref,) = [r for r in expression.refs if r.path[0] == "steps"]
    assert (ref.offset, ref.length) == (14, len("steps.wait-for-it.status"))
