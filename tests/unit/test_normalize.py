import json
from pathlib import Path

import pytest

from soar.errors import AlertRejected, RejectionCode
from soar.ingest.limits import Limits
from soar.ingest.normalize import normalize
from soar.models import AlertFormat

FIXTURES = Path(__file__).parent.parent / "fixtures"

GENERIC = {"title": "t", "severity": "low", "time": "2024-01-01T00:00:00Z"}


def rejected(data: bytes | str, **options: object) -> AlertRejected:
    with pytest.raises(AlertRejected) as caught:
        normalize(data, **options)  # type: ignore[arg-type]
    return caught.value


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("ocsf/securityhub_1_0_security_finding.json", AlertFormat.OCSF),
        ("ocsf/prowler_1_3_detection_finding.json", AlertFormat.OCSF),
        ("ecs/kibana_8_1_threat_match.json", AlertFormat.ECS),
        ("ecs/kibana_7_16_signal_hit.json", AlertFormat.ECS),
        ("splunk/notable_with_fields.json", AlertFormat.SPLUNK),
        ("splunk/notable_raw_only.json", AlertFormat.SPLUNK),
        ("splunk/webhook_search_result.json", AlertFormat.SPLUNK),
        ("generic/minimal.json", AlertFormat.GENERIC),
    ],
    ids=lambda value: value if isinstance(value, str) else value.value,
)
def test_format_is_detected_from_the_payload(path: str, expected: AlertFormat) -> None:
    alerts = normalize((FIXTURES / path).read_bytes())
    assert {a.format for a in alerts} == {expected}


@pytest.mark.parametrize(
    "document",
    [
        {"kibana": {"alert": {"rule": {"name": "R"}}}},
        {"signal": {"rule": {"name": "R"}}},
        {"_source": {"kibana.alert.uuid": "u"}},
        {"event_id": "e", "urgency": "low"},
        {"result": {"_raw": "x"}},
    ],
    ids=["nested-kibana", "legacy-signal", "es-hit", "event-id-urgency", "result-wrapper"],
)
def test_detection_finds_each_vendor_marker(document: dict[str, object]) -> None:
    error = rejected(json.dumps(document))
    assert error.code is not RejectionCode.UNKNOWN_FORMAT


def test_a_payload_no_format_recognises_is_unknown_format() -> None:
    assert rejected('{"hello": "world"}').code is RejectionCode.UNKNOWN_FORMAT


def test_a_forced_format_skips_detection() -> None:
    error = rejected(json.dumps(GENERIC), format=AlertFormat.OCSF)
    assert (error.code, error.field) == (RejectionCode.MISSING_FIELD, "class_uid")


def test_a_batch_maps_every_element() -> None:
    alerts = normalize(json.dumps([GENERIC, {**GENERIC, "title": "u"}]))
    assert [a.title for a in alerts] == ["t", "u"]


def test_a_batch_with_one_bad_element_is_rejected_whole_naming_the_index() -> None:
    error = rejected(json.dumps([GENERIC, GENERIC, {**GENERIC, "severity": "loud"}]))
    assert (error.code, error.field, error.index) == (RejectionCode.INVALID_FIELD, "severity", 2)
    assert error.message.startswith("alert 2: ")


def test_a_batch_element_that_is_not_an_object_is_rejected_with_its_index() -> None:
    error = rejected(json.dumps([GENERIC, 5]))
    assert (error.code, error.index) == (RejectionCode.NOT_AN_OBJECT, 1)


def test_the_same_message_twice_gets_the_same_minted_id() -> None:
    message = json.dumps(GENERIC)
    reordered = json.dumps(dict(reversed(GENERIC.items())), indent=2)
    first, second, third = (normalize(m)[0].id for m in (message, message, reordered))
    assert first == second == third
    assert first.startswith("sha256:")
    assert normalize(json.dumps({**GENERIC, "title": "other"}))[0].id != first


def test_bytes_and_str_and_a_leading_bom_read_the_same() -> None:
    text = json.dumps(GENERIC)
    ids = {normalize(m)[0].id for m in (text, text.encode(), b"\xef\xbb\xbf" + text.encode())}
    assert len(ids) == 1


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b'{"title": "\xff"}', RejectionCode.NOT_UTF8),
        ('{"title": "\ud800"}', RejectionCode.NOT_UTF8),
        (b"{not json", RejectionCode.NOT_JSON),
        (b'{"time": NaN}', RejectionCode.NOT_JSON),
        (b'{"time": -Infinity}', RejectionCode.NOT_JSON),
        (b'{"time": 1e999}', RejectionCode.NOT_JSON),
        (b'{"n": ' + b"9" * 5000 + b"}", RejectionCode.NOT_JSON),
        (b'{"a": 1, "a": 2}', RejectionCode.DUPLICATE_KEY),
        (b"[" * 65 + b"]" * 65, RejectionCode.TOO_DEEP),
        (b'"just a string"', RejectionCode.NOT_AN_OBJECT),
        (b"null", RejectionCode.NOT_AN_OBJECT),
        (b"[]", RejectionCode.EMPTY_BATCH),
        (b'{"x": 1}', RejectionCode.UNKNOWN_FORMAT),
        (b'{"title": "t", "severity": "low"}', RejectionCode.MISSING_FIELD),
        (
            b'{"title": "t", "severity": "low", "time": "2023-02-29T00:00:00Z"}',
            RejectionCode.INVALID_FIELD,
        ),
    ],
    ids=[
        "bad-utf8",
        "lone-surrogate",
        "not-json",
        "nan",
        "infinity",
        "overflow-float",
        "huge-int",
        "duplicate-key",
        "too-deep",
        "string",
        "null",
        "empty-batch",
        "unknown-format",
        "missing-field",
        "impossible-date",
    ],
)
def test_every_rejection_has_a_stable_code(data: bytes | str, code: RejectionCode) -> None:
    assert rejected(data).code is code


def test_not_utf8_names_the_byte_offset() -> None:
    assert "byte offset 11" in rejected(b'{"title": "\xff"}').message


def test_duplicate_key_names_the_key() -> None:
    assert rejected(b'{"title": "a", "title": "b"}').field == "title"


def test_too_large_is_checked_before_anything_else() -> None:
    error = rejected(b"\xff" * 100, limits=Limits(max_bytes=99))
    assert error.code is RejectionCode.TOO_LARGE


def test_the_default_size_limit_is_one_mebibyte() -> None:
    padding = "x" * (1_048_576 - len(json.dumps({**GENERIC, "pad": ""})))
    assert normalize(json.dumps({**GENERIC, "pad": padding}))
    assert rejected(json.dumps({**GENERIC, "pad": padding + "x"})).code is RejectionCode.TOO_LARGE


def test_a_batch_over_the_limit_is_refused() -> None:
    error = rejected(json.dumps([GENERIC] * 3), limits=Limits(max_batch=2))
    assert error.code is RejectionCode.BATCH_TOO_LARGE


def test_brackets_inside_strings_do_not_count_toward_depth() -> None:
    (alert,) = normalize(json.dumps({**GENERIC, "title": "[{" * 1000 + '\\"' + "[" * 100}))
    assert alert.title.startswith("[{[{")


def test_depth_counts_the_top_level_as_one() -> None:
    limits = Limits(max_depth=3)
    assert normalize(json.dumps({**GENERIC, "tags": [], "users": [{"name": "a"}]}), limits=limits)
    deeper = json.dumps({**GENERIC, "x": [[[]]]})
    assert rejected(deeper, limits=limits).code is RejectionCode.TOO_DEEP


def test_a_validation_error_from_the_model_becomes_invalid_field() -> None:
    error = rejected(json.dumps({**GENERIC, "id": "x" * 600}))
    assert (error.code, error.field) == (RejectionCode.INVALID_FIELD, "id")
