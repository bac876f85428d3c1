from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from soar.models import Alert, AlertFormat, Severity


def an_alert(**overrides: object) -> Alert:
    fields: dict[str, object] = {
        "id": "a-1",
        "source": "test",
        "format": AlertFormat.GENERIC,
        "title": "t",
        "severity": "high",
        "time": datetime(2024, 1, 1, tzinfo=UTC),
        "raw": {},
    }
    fields.update(overrides)
    return Alert.model_validate(fields)


def test_severities_order_from_informational_to_critical() -> None:
    ordered = [Severity.INFORMATIONAL, Severity.LOW, Severity.MEDIUM, Severity.HIGH]
    assert sorted([Severity.CRITICAL, *reversed(ordered)]) == [*ordered, Severity.CRITICAL]


def test_severity_compares_with_plain_strings_by_rank() -> None:
    assert Severity.HIGH >= "medium"
    assert Severity.LOW < "Medium "
    assert Severity.CRITICAL == " CRITICAL"


@pytest.mark.parametrize(
    ("text", "expected"),
    [(" High ", Severity.HIGH), ("INFO", Severity.INFORMATIONAL), ("crit", Severity.CRITICAL)],
    ids=["padded", "info-alias", "crit-alias"],
)
def test_severity_parse_tolerates_case_space_and_aliases(text: str, expected: Severity) -> None:
    assert Severity.parse(text) is expected


def test_severity_parse_refuses_unknown_words() -> None:
    with pytest.raises(ValueError, match="not a severity"):
        Severity.parse("urgent")


def test_comparing_severity_with_a_non_severity_word_raises() -> None:
    with pytest.raises(ValueError, match="not a severity"):
        assert Severity.LOW < "soon"


def test_alert_time_must_carry_a_time_zone() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        an_alert(time=datetime(2024, 1, 1))  # noqa: DTZ001 - the naive time is the point


def test_alert_time_is_converted_to_utc() -> None:
    alert = an_alert(time=datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))))
    assert alert.time == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert alert.time.utcoffset() == timedelta(0)


def test_alert_severity_is_parsed_on_input() -> None:
    assert an_alert(severity=" Critical").severity is Severity.CRITICAL
