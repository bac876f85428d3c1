"""Templates: `{{ }}` scanning, native values, stringification, positions relative to the string."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from soar.errors import EvaluationError, ExpressionError
from soar.models.severity import Severity
from soar.playbook.expr import Expression, compile_template
from soar.playbook.expr.limits import MAX_STRING

DATA: dict[str, object] = {
    "alert": {
        "id": "a-1",
        "users": [{"name": "bob"}],
        "hosts": [{"id": "h1"}, {"id": "h2"}],
        "severity": Severity.CRITICAL,
        "time": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        "rule": None,
        "raw": {"n": 3, "ratio": 0.5, "ok": True, "labels": {"a": [1, "é"]}},
    }
}


def render(source: str) -> object:
    return compile_template(source).evaluate(DATA)


def test_parts_are_rendered_into_the_text() -> None:
    assert render("Account {{ alert.users[0].name }} contained") == "Account bob contained"


def test_a_single_part_gives_the_native_value() -> None:
    template = compile_template("  {{ alert.hosts }} ")
    assert template.is_native
    assert not template.is_constant
    assert template.evaluate(DATA) == [{"id": "h1"}, {"id": "h2"}]


def test_a_string_without_parts_is_constant() -> None:
    template = compile_template("soc-oncall")
    assert template.is_constant
    assert not template.is_native
    assert template.evaluate(DATA) == "soc-oncall"
    assert template.refs == ()


def test_parts_and_text_keep_their_order() -> None:
    template = compile_template("a{{ 1 }}b{{ 2 }}")
    assert [p if isinstance(p, str) else p.source for p in template.parts] == [
        "a",
        " 1 ",
        "b",
        " 2 ",
    ]
    assert isinstance(template.parts[1], Expression)


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("[{{ alert.rule }}]", "[]"),
        ("{{ alert.raw.ok }}/{{ not alert.raw.ok }}", "true/false"),
        ("sev={{ alert.severity }}", "sev=critical"),
        ("at {{ alert.time }}", "at 2024-05-01T12:30:00Z"),
        ("at {{ in_timezone(alert.time, 'Europe/Paris') }}", "at 2024-05-01T14:30:00+02:00"),
        ("after {{ duration('90m') }}", "after 1h30m"),
        ("{{ alert.raw.labels }}!", '{"a":[1,"é"]}!'),
        ("{{ alert.hosts | pluck('id') }}.", '["h1","h2"].'),
        ("n={{ alert.raw.n }} r={{ alert.raw.ratio }}", "n=3 r=0.5"),
    ],
)
def test_values_are_stringified_when_mixed_with_text(source: str, text: str) -> None:
    assert render(source) == text


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ('{{ "{{" }} literal {{ "}}" }}', "{{ literal }}"),
        ("{{ '}}' + 'x' }}", "}}x"),
        ('{{ {"a": {"b": 1}} }}.', '{"a":{"b":1}}.'),
        ("a }} b {", "a }} b {"),
    ],
)
def test_braces_inside_string_literals_and_mappings_do_not_close_a_part(
    source: str, text: str
) -> None:
    assert render(source) == text


def test_reference_offsets_are_relative_to_the_template() -> None:
    source = "é {{ alert.id }} and {{ steps.approve-isolation.status }}"
    template = compile_template(source)
    assert [source[r.offset : r.offset + r.length] for r in template.refs] == [
        "alert.id",
        "steps.approve-isolation.status",
    ]
    assert [c.name for c in compile_template("{{ alert.id | upper }}").calls] == ["upper"]


@pytest.mark.parametrize(
    ("source", "message", "mark"),
    [
        ("x {{ alert.id", "'{{' is not closed with '}}'", "{{"),
        ('x {{ "}} ', "'{{' is not closed with '}}'", "{{"),
        ("é {{ }}", "empty expression", " "),
        ("é {{ alrt.id }}", "unknown name 'alrt' (did you mean 'alert'?)", "alrt"),
        ("é {{ alert.id && 1 }}", "use 'and' instead of '&&'", "&&"),
        ("é {{ alert.id and }}", "unexpected end of expression", ""),
    ],
)
def test_template_errors_are_positioned_in_the_template(
    source: str, message: str, mark: str
) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_template(source)
    assert caught.value.message == message
    assert source[caught.value.offset : caught.value.offset + caught.value.length] == mark


def test_runtime_errors_are_positioned_in_the_template() -> None:
    source = "user: {{ alert.users[0].nam }}"
    with pytest.raises(EvaluationError) as caught:
        compile_template(source).evaluate(DATA)
    error = caught.value
    assert error.message == "alert.users[0] has no key 'nam'"
    assert source[error.offset : error.offset + error.length] == "alert.users[0].nam"


def test_rendered_text_is_capped() -> None:
    template = compile_template("{{ inputs.a }}{{ inputs.a }}", roots={"inputs"})
    with pytest.raises(EvaluationError, match="rendered text is longer than"):
        template.evaluate({"inputs": {"a": "x" * (MAX_STRING // 2 + 1)}})


def test_all_parts_share_one_now() -> None:
    ticks = iter(range(100))

    def clock() -> datetime:
        return datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=next(ticks))

    assert compile_template("{{ now() }}|{{ now() }}").evaluate({}, clock=clock) == (
        "2024-01-01T00:00:00Z|2024-01-01T00:00:00Z"
    )


def test_a_time_in_another_zone_keeps_its_offset() -> None:
    paris = datetime(2024, 1, 1, 9, tzinfo=ZoneInfo("Europe/Paris"))
    assert compile_template("{{ inputs.t }}!", roots={"inputs"}).evaluate(
        {"inputs": {"t": paris}}
    ) == ("2024-01-01T09:00:00+01:00!")
