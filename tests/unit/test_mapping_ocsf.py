import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from soar.errors import AlertRejected, RejectionCode
from soar.ingest.mappings import map_ocsf
from soar.ingest.normalize import normalize
from soar.models import AlertFormat, HostEntity, IpEntity, Severity, UserEntity

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ocsf"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def a_finding(**overrides: object) -> dict[str, object]:
    finding: dict[str, object] = {
        "class_uid": 2004,
        "severity_id": 4,
        "severity": "High",
        "time": 1_700_000_000_123,
        "finding_info": {"uid": "f-1", "title": "Brute force"},
    }
    finding.update(overrides)
    return finding


def test_security_hub_1_0_finding_reads_as_an_analyst_sees_it() -> None:
    (alert,) = normalize(fixture("securityhub_1_0_security_finding.json"))
    assert alert.format is AlertFormat.OCSF
    assert alert.id == (
        "arn:aws:securityhub:us-east-1:123456789100:subscription/"
        "cis-aws-foundations-benchmark/v/1.2.0/3.9/finding/randomsample"
    )
    assert alert.title == (
        "EC2.19 Security groups should not allow unrestricted access to ports with high risk"
    )
    assert alert.source == "aws-security-hub"
    assert alert.severity is Severity.INFORMATIONAL
    assert alert.source_severity == "Informational"
    assert alert.time == datetime(2022, 8, 4, 18, 9, 19, 100_000, tzinfo=UTC)
    assert alert.rule_id == "aws-foundational-security-best-practices/v/1.0.0/EC2.19"
    assert (alert.users, alert.hosts, alert.ips) == ([], [], [])


def test_ssc_1_0_batch_maps_every_finding_with_observables() -> None:
    first, second = normalize(fixture("ssc_1_0_security_finding_batch.json"))
    assert first.id == "2b7908d7-4b72-4f65-afa0-09bdaea46ae3"
    assert first.title == "Infection found on 1.183.190.110"
    assert first.severity is Severity.INFORMATIONAL
    assert first.source_severity == "Informational "
    assert first.time == datetime(2022, 11, 15, 17, 59, 59, 945_000, tzinfo=UTC)
    assert first.ips == [IpEntity(address="1.183.190.110")]
    assert first.hosts == [HostEntity(name="open-internet.nl")]
    assert first.users == []
    assert second.id == "45521c66-6498-442d-ad9b-40da9f0e9236"
    assert second.time == datetime(2022, 11, 15, 17, 59, 59, 946_000, tzinfo=UTC)
    assert second.ips == [IpEntity(address="59.11.81.231")]
    assert second.hosts == []  # its hostname observable is null


def test_prowler_1_3_detection_finding_reads_time_in_seconds() -> None:
    (alert,) = normalize(fixture("prowler_1_3_detection_finding.json"))
    assert alert.id == (
        "prowler-aws-ecs_task_definitions_no_environment_secrets-"
        "123456789012-eu-central-1-manufacturer-api:7"
    )
    assert alert.title == "Check if secrets exists in ECS task definitions environment variables"
    assert alert.severity is Severity.CRITICAL
    assert alert.rule_id == "ecs_task_definitions_no_environment_secrets"
    # `time` 1737995806 is seconds; the naive `time_dt` beside it is local time, an hour off.
    assert alert.time == datetime(2025, 1, 27, 16, 36, 46, tzinfo=UTC)
    assert (alert.users, alert.hosts, alert.ips) == ([], [], [])


def test_prowler_1_0_rc3_finding_reads_a_naive_space_separated_time_as_utc() -> None:
    (alert,) = normalize(fixture("prowler_1_0_rc3_security_finding.json"))
    assert alert.id == (
        "prowler-aws-acm_certificates_expiration_check-012345678912-eu-west-1-*.xxxxxxxxxxxxxx"
    )
    assert alert.severity is Severity.HIGH
    assert alert.time == datetime(2023, 6, 30, 10, 28, 55, 297_000, tzinfo=UTC)
    assert alert.source == "prowler"


@pytest.mark.parametrize(
    ("severity_id", "label", "expected"),
    [
        (0, "Unknown", Severity.MEDIUM),
        (1, "Informational", Severity.INFORMATIONAL),
        (2, "Low", Severity.LOW),
        (3, "Medium", Severity.MEDIUM),
        (4, "High", Severity.HIGH),
        (5, "Critical", Severity.CRITICAL),
        (6, "Fatal", Severity.CRITICAL),
        (99, "Other", Severity.MEDIUM),
        (99, "High", Severity.HIGH),
        (99, "Sev-2", Severity.MEDIUM),
    ],
    ids=[
        "unknown",
        "info",
        "low",
        "medium",
        "high",
        "critical",
        "fatal",
        "other",
        "other-named",
        "other-vendor-word",
    ],
)
def test_severity_ids_map_to_soar_severities_keeping_the_label(
    severity_id: int, label: str, expected: Severity
) -> None:
    alert = map_ocsf(a_finding(severity_id=severity_id, severity=label))
    assert alert.severity is expected
    assert alert.source_severity == label


@pytest.mark.parametrize("severity_id", [7, -1, "4", True], ids=["7", "negative", "text", "bool"])
def test_a_bad_severity_id_is_rejected_naming_it(severity_id: object) -> None:
    with pytest.raises(AlertRejected) as caught:
        map_ocsf(a_finding(severity_id=severity_id))
    assert caught.value.code is RejectionCode.INVALID_FIELD
    assert caught.value.field == "severity_id"


def test_finding_info_wins_over_a_1_0_finding_object() -> None:
    alert = map_ocsf(a_finding(finding={"uid": "old", "title": "Old"}))
    assert (alert.id, alert.title) == ("f-1", "Brute force")


def test_time_in_seconds_and_milliseconds_give_the_same_instant() -> None:
    seconds = map_ocsf(a_finding(time=1_700_000_000))
    millis = map_ocsf(a_finding(time=1_700_000_000_000))
    assert seconds.time == millis.time == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def test_naive_time_dt_is_read_as_utc_when_time_is_absent() -> None:
    finding = a_finding(time_dt="2024-03-01T12:00:00.250")
    del finding["time"]
    assert map_ocsf(finding).time == datetime(2024, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def test_a_finding_without_uid_gets_a_content_id_that_is_stable() -> None:
    finding = a_finding(finding_info={"title": "No id"})
    assert map_ocsf(finding).id == map_ocsf(dict(finding)).id
    assert map_ocsf(finding).id.startswith("sha256:")


def test_attacks_give_snake_case_tactics_category_and_technique_uids() -> None:
    attacks = [
        {
            "tactic": {"uid": "TA0006", "name": "Credential Access"},
            "technique": {"uid": "T1110", "name": "Brute Force"},
            "sub_technique": {"uid": "T1110.003", "name": "Password Spraying"},
        }
    ]
    alert = map_ocsf(a_finding(finding_info={"uid": "f", "title": "t", "attacks": attacks}))
    assert alert.category == "credential_access"
    assert alert.tactics == ["credential_access"]
    assert alert.techniques == ["T1110", "T1110.003"]


def test_entities_come_from_actor_device_evidences_and_observables() -> None:
    alert = map_ocsf(
        a_finding(
            actor={"user": {"name": "jdoe", "domain": "CORP", "uid": "S-1-5-21"}},
            device={
                "uid": "agent-7",
                "hostname": "ws-12",
                "ip": "10.1.2.3",
                "os": {"name": "Windows"},
            },
            evidences=[
                {
                    "src_endpoint": {"ip": "203.0.113.9"},
                    "file": {"hashes": [{"algorithm": "SHA-256", "value": "AB" * 32}]},
                    "url": {"url_string": "https://evil.example/x"},
                }
            ],
            observables=[
                {"type_id": 4, "value": "jdoe"},
                {"type_id": 5, "value": "jdoe@corp.example"},
                {"type_id": 2, "value": "not an ip"},
            ],
        )
    )
    assert alert.users == [
        UserEntity(name="jdoe", domain="CORP", id="S-1-5-21"),
        UserEntity(name="jdoe"),
    ]
    assert alert.hosts == [HostEntity(id="agent-7", name="ws-12", ips=["10.1.2.3"], os="Windows")]
    assert alert.ips == [IpEntity(address="10.1.2.3"), IpEntity(address="203.0.113.9", role="src")]
    assert [(h.algorithm, h.value) for h in alert.hashes] == [("sha256", "ab" * 32)]
    assert [u.url for u in alert.urls] == ["https://evil.example/x"]
    assert [e.address for e in alert.emails] == ["jdoe@corp.example"]


def test_entity_fields_of_the_wrong_type_are_ignored() -> None:
    alert = map_ocsf(a_finding(actor={"user": {"name": 5}}, device=["x"], observables="nope"))
    assert (alert.users, alert.hosts, alert.ips) == ([], [], [])


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"class_uid": 3002}, RejectionCode.INVALID_FIELD, "class_uid"),
        ({"class_uid": "2004"}, RejectionCode.INVALID_FIELD, "class_uid"),
        ({"time": "2023-02-30T00:00:00Z"}, RejectionCode.INVALID_FIELD, "time"),
        ({"time": None}, RejectionCode.MISSING_FIELD, "time"),
        (
            {"finding_info": {"uid": 7, "title": "t"}},
            RejectionCode.INVALID_FIELD,
            "finding_info.uid",
        ),
    ],
    ids=["other-class", "class-as-text", "impossible-date", "no-time", "numeric-uid"],
)
def test_bad_core_fields_are_rejected_naming_the_path(
    change: dict[str, object], code: RejectionCode, field: str
) -> None:
    with pytest.raises(AlertRejected) as caught:
        map_ocsf(a_finding(**change))
    assert (caught.value.code, caught.value.field) == (code, field)


def test_raw_is_the_original_object() -> None:
    data = json.loads(fixture("prowler_1_0_rc3_security_finding.json"))
    (alert,) = normalize(json.dumps(data))
    assert alert.raw == data
