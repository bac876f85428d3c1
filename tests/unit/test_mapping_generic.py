from datetime import UTC, datetime
from pathlib import Path

import pytest

from soar.errors import AlertRejected, RejectionCode
from soar.ingest.mappings import map_generic
from soar.ingest.normalize import normalize
from soar.models import AlertFormat, HostEntity, IpEntity, Severity, UserEntity

FIXTURES = Path(__file__).parent.parent / "fixtures" / "generic"


def test_minimal_generic_alert() -> None:
    (alert,) = normalize((FIXTURES / "minimal.json").read_bytes())
    assert alert.format is AlertFormat.GENERIC
    assert alert.source == "generic"
    assert alert.title == "Multiple Logon Failure from the same Source Address"
    assert alert.severity is Severity.MEDIUM
    assert alert.source_severity == "Medium"
    assert alert.time == datetime(2025, 6, 2, 7, 8, 52, 979_000, tzinfo=UTC)
    assert alert.id.startswith("sha256:")
    assert (alert.users, alert.hosts, alert.ips) == ([], [], [])


def test_full_generic_alert_with_entities_as_strings_or_objects_deduplicated() -> None:
    (alert,) = normalize((FIXTURES / "brute_force.json").read_bytes())
    assert alert.id == "10da92e0b4351ac7b6a3460814f87d13204b7dad67818290dadffdbfff7482b1"
    assert alert.source == "lab-detector"
    assert alert.time == datetime(2025, 6, 2, 7, 8, 52, 979_000, tzinfo=UTC)
    assert alert.techniques == ["T1110", "T1110.001", "T1110.003"]
    assert alert.users == [
        UserEntity(name="denny"),
        UserEntity(name="admin", domain="LAB", email="admin@lab.example"),
    ]
    assert alert.hosts == [HostEntity(name="desktop-niu0ucp", os="Windows 10 Pro")]
    assert alert.ips == [
        IpEntity(address="192.168.4.101", role="src"),
        IpEntity(address="10.0.0.5"),
    ]
    assert [e.address for e in alert.emails] == ["denny@example.com"]


@pytest.mark.parametrize("missing", ["title", "severity", "time"])
def test_title_severity_and_time_are_required(missing: str) -> None:
    alert = {"title": "t", "severity": "low", "time": 0}
    del alert[missing]
    with pytest.raises(AlertRejected) as caught:
        map_generic(alert)
    assert (caught.value.code, caught.value.field) == (RejectionCode.MISSING_FIELD, missing)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"severity": "severe"}, "severity"),
        ({"severity": 3}, "severity"),
        ({"time": True}, "time"),
        ({"users": "alice"}, "users"),
        ({"users": ["a", 5]}, "users.1"),
        ({"ips": [{"address": "1.2.3.4", "role": "sideways"}]}, "ips.0"),
        ({"title": ""}, "title"),
    ],
    ids=[
        "unknown-severity",
        "numeric-severity",
        "bool-time",
        "users-not-list",
        "user-number",
        "bad-role",
        "empty-title",
    ],
)
def test_the_generic_form_is_strict_about_types(change: dict[str, object], field: str) -> None:
    alert: dict[str, object] = {"title": "t", "severity": "low", "time": 0, **change}
    with pytest.raises(AlertRejected) as caught:
        map_generic(alert)
    assert caught.value.code is RejectionCode.INVALID_FIELD
    assert caught.value.field == field
