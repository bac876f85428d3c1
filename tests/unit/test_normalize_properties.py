import json
import time
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soar.errors import AlertRejected, RejectionCode
from soar.ingest.limits import Limits
from soar.ingest.normalize import normalize
from soar.models import Alert, AlertFormat

FORMATS = [None, *AlertFormat]
BOUNDED = settings(
    max_examples=60,
    deadline=timedelta(milliseconds=500),
    suppress_health_check=[HealthCheck.too_slow],
)

#: Field names the mappings read, so random objects reach deep into each mapping.
KEYS = [
    "class_uid",
    "severity_id",
    "severity",
    "time",
    "time_dt",
    "finding_info",
    "finding",
    "uid",
    "title",
    "desc",
    "attacks",
    "tactic",
    "technique",
    "observables",
    "type_id",
    "value",
    "actor",
    "user",
    "device",
    "evidences",
    "resources",
    "ip",
    "hostname",
    "name",
    "metadata",
    "kibana.alert.rule.name",
    "kibana.alert.severity",
    "kibana.alert.uuid",
    "kibana",
    "alert",
    "rule",
    "signal",
    "signal.rule",
    "_source",
    "_id",
    "@timestamp",
    "host.ip",
    "host",
    "source.ip",
    "threat",
    "subtechnique",
    "id",
    "_raw",
    "_time",
    "urgency",
    "search_name",
    "event_id",
    "result",
    "sid",
    "dest",
    "src",
    "dvc",
    "orig_host",
    "users",
    "hosts",
    "ips",
    "hashes",
    "urls",
    "emails",
    "address",
    "role",
    "algorithm",
    "tags",
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**22), max_value=10**22)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "high",
            "Critical",
            "unknown",
            "2024-01-01T00:00:00Z",
            "2023-02-30",
            "1717578914.5",
            "10.0.0.1",
            "::1",
            'x="y z", urgency=low',
            "T1110",
            "Credential Access",
            "",
        ]
    )
    | st.sampled_from([2001, 2004, 0, 99, 6, 1_700_000_000, 1_700_000_000_000, 10**19])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=20,
)
OBJECTS = st.dictionaries(st.sampled_from(KEYS), JSON, max_size=10)


def outcome(data: bytes | str, fmt: AlertFormat | None) -> list[Alert] | AlertRejected:
    try:
        alerts = normalize(data, format=fmt)
    except AlertRejected as exc:
        rejection = exc
    else:
        assert alerts
        assert all(isinstance(a, Alert) for a in alerts)
        assert all(a.time.utcoffset() == timedelta(0) for a in alerts)
        return alerts
    assert isinstance(rejection.code, RejectionCode)
    return rejection


@BOUNDED
@given(value=JSON, fmt=st.sampled_from(FORMATS))
def test_any_json_value_gives_alerts_or_a_rejection(value: object, fmt: AlertFormat | None) -> None:
    outcome(json.dumps(value), fmt)


@BOUNDED
@given(value=OBJECTS | st.lists(OBJECTS, min_size=1, max_size=3), fmt=st.sampled_from(FORMATS))
def test_objects_built_from_mapping_fields_never_crash(
    value: object, fmt: AlertFormat | None
) -> None:
    outcome(json.dumps(value), fmt)


@BOUNDED
@given(data=st.binary(max_size=300), fmt=st.sampled_from(FORMATS))
def test_random_bytes_give_a_rejection_or_alerts(data: bytes, fmt: AlertFormat | None) -> None:
    outcome(data, fmt)


@BOUNDED
@given(text=st.text(max_size=200), fmt=st.sampled_from(FORMATS))
def test_random_text_including_lone_surrogates_is_handled(
    text: str, fmt: AlertFormat | None
) -> None:
    outcome(text, fmt)


@settings(BOUNDED, max_examples=30)
@given(value=OBJECTS)
def test_normalising_is_deterministic(value: dict[str, object]) -> None:
    message = json.dumps(value)
    first, second = outcome(message, None), outcome(message, None)
    if isinstance(first, AlertRejected):
        assert isinstance(second, AlertRejected)
        assert (first.code, first.field, first.index) == (second.code, second.field, second.index)
    else:
        assert first == second


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("[" * 200_000, RejectionCode.TOO_DEEP),
        ("{" * 200_000, RejectionCode.TOO_DEEP),
        ('{"a":' * 50_000 + "1" + "}" * 50_000, RejectionCode.TOO_DEEP),
        ("[" * 200_000 + "]" * 200_000, RejectionCode.TOO_DEEP),
        ('["' + "[" * 500_000 + '"]', RejectionCode.NOT_AN_OBJECT),
    ],
    ids=["open-arrays", "open-objects", "nested-objects", "closed-arrays", "brackets-in-string"],
)
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.value if f else "auto")
def test_deep_nesting_is_refused_quickly_without_recursion(
    data: str, code: RejectionCode, fmt: AlertFormat | None
) -> None:
    started = time.perf_counter()
    result = outcome(data, fmt)
    assert isinstance(result, AlertRejected)
    assert result.code is code
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "data",
    [
        b"[" + b"1," * 600_000 + b"1]",
        b'{"_raw": "' + b'a="' * 300_000 + b'", "search_name": "s", "_time": 1}',
        b'{"title": "' + b"\\\\" * 400_000 + b'", "severity": "low", "time": 1}',
        b" " * 1_048_576,
        b"x" * 2_000_000,
    ],
    ids=["wide-array", "raw-full-of-quotes", "escaped-backslashes", "all-space", "over-limit"],
)
def test_large_inputs_finish_quickly(data: bytes) -> None:
    started = time.perf_counter()
    outcome(data, None)
    assert time.perf_counter() - started < 2.0


def test_a_lower_limit_is_respected_for_huge_batches() -> None:
    with pytest.raises(AlertRejected) as caught:
        normalize("[" + ",".join(["{}"] * 20) + "]", limits=Limits(max_batch=10))
    assert caught.value.code is RejectionCode.BATCH_TOO_LARGE
