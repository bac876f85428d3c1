import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from soar.errors import AlertRejected, RejectionCode
from soar.ingest.mappings import map_ecs
from soar.ingest.normalize import normalize
from soar.models import AlertFormat, HostEntity, IpEntity, Severity, UserEntity

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ecs"

THREAT = [
    {
        "framework": "MITRE ATT&CK",
        "tactic": {"id": "TA0006", "name": "Credential Access"},
        "technique": [
            {
                "id": "T1110",
                "name": "Brute Force",
                "subtechnique": [{"id": "T1110.001"}, {"id": "T1110.003"}],
            }
        ],
    }
]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_kibana_8_1_alert_with_mixed_dotted_and_nested_fields() -> None:
    (alert,) = normalize(fixture("kibana_8_1_threat_match.json"))
    assert alert.format is AlertFormat.ECS
    assert alert.id == "30a75fe46d3dbdfab55982036f77a8d60e2d1112e96f277c3b8c22f9bb57817a"
    assert alert.title == "threat-match-rule"
    assert alert.rule_id == "53000028-120c-4e55-a8c0-db092e05aef4"
    assert alert.severity is Severity.LOW
    assert alert.time == datetime(2022, 3, 19, 2, 48, 12, 634_000, tzinfo=UTC)
    assert alert.users == []
    assert alert.hosts == [
        HostEntity(name="security-linux-1", ips=["11.200.0.194"], os="Debian GNU/Linux")
    ]
    assert alert.ips == []


def test_kibana_8_2_eql_alert() -> None:
    (alert,) = normalize(fixture("kibana_8_2_eql_alert.json"))
    assert alert.id == "ddedd6a6c4ea61648972971f5602f024e16dd3f3d1f190ba1d1746e46e5129cc"
    assert alert.title == "Linux Restricted Shell Breakout via awk Commands"
    assert alert.severity is Severity.MEDIUM
    assert alert.time == datetime(2022, 12, 23, 10, 39, 44, 298_000, tzinfo=UTC)
    assert (alert.users, alert.hosts, alert.ips) == ([], [], [])


def test_kibana_7_16_signal_in_a_search_hit_takes_the_hit_id() -> None:
    (alert,) = normalize(fixture("kibana_7_16_signal_hit.json"))
    assert alert.id == "0bb0c0d5488d757907f6be6e4c27ff698666948e2cf01d53e8fa43958b36c6a8"
    assert alert.title == "threat-match-rule"
    assert alert.rule_id == "bef9b0da-8c2f-4b82-930f-37ffa1b57fc1"
    assert alert.severity is Severity.LOW
    assert alert.time == datetime(2022, 3, 23, 16, 50, 51, 493_000, tzinfo=UTC)
    assert alert.hosts == [
        HostEntity(name="security-linux-1", ips=["11.200.0.194"], os="Debian GNU/Linux")
    ]
    assert alert.raw == json.loads(fixture("kibana_7_16_signal_hit.json"))


def test_an_8x_alert_wrapped_in_a_hit_keeps_its_own_uuid() -> None:
    source = json.loads(fixture("kibana_8_1_threat_match.json"))
    (alert,) = normalize(json.dumps({"_index": "i", "_id": "hit-id", "_source": source}))
    assert alert.id == source["kibana.alert.uuid"]


@pytest.mark.parametrize(
    "document",
    [
        {"kibana.alert.rule.name": "R", "kibana.alert.severity": "high"},
        {"kibana": {"alert": {"rule": {"name": "R"}, "severity": "high"}}},
        {"kibana.alert": {"rule": {"name": "R"}}, "kibana": {"alert.severity": "high"}},
    ],
    ids=["dotted", "nested", "partly-dotted"],
)
def test_every_spelling_of_a_field_is_read(document: dict[str, object]) -> None:
    alert = map_ecs({**document, "@timestamp": "2024-05-01T00:00:00Z"})
    assert (alert.title, alert.severity) == ("R", Severity.HIGH)


def test_alert_severity_after_overrides_wins_over_the_rule_default() -> None:
    alert = map_ecs(
        {
            "kibana.alert.rule.name": "R",
            "kibana.alert.rule.severity": "low",
            "kibana.alert.severity": "critical",
            "@timestamp": "2024-05-01T00:00:00Z",
        }
    )
    assert alert.severity is Severity.CRITICAL


def test_alert_time_is_timestamp_not_the_source_event_time() -> None:
    alert = map_ecs(
        {
            "kibana.alert.rule.name": "R",
            "kibana.alert.severity": "low",
            "@timestamp": "2024-05-01T00:05:00.120Z",
            "kibana.alert.original_time": "2024-05-01T00:00:00Z",
        }
    )
    assert alert.time == datetime(2024, 5, 1, 0, 5, 0, 120_000, tzinfo=UTC)


def test_mitre_threat_gives_tactics_and_techniques() -> None:
    alert = map_ecs(
        {
            "signal": {"rule": {"name": "R", "severity": "high", "threat": THREAT}},
            "@timestamp": "2024-05-01T00:00:00Z",
        }
    )
    assert alert.category == "credential_access"
    assert alert.techniques == ["T1110", "T1110.001", "T1110.003"]


def test_entities_from_ecs_fields_with_ip_as_string_or_array() -> None:
    alert = map_ecs(
        {
            "kibana.alert.rule.name": "R",
            "kibana.alert.severity": "high",
            "@timestamp": "2024-05-01T00:00:00Z",
            "user": {"name": "denny", "domain": "."},
            "host.name": "desktop-1",
            "host": {"ip": ["192.168.4.20", "fe80::1", "junk"]},
            "source.ip": "192.168.4.101",
            "destination": {"ip": ["10.0.0.1"]},
            "file.hash.sha256": "CD" * 32,
            "process": {"hash": {"md5": "ab" * 16}},
            "url.full": "http://x.example/a",
            "email": {"from": {"address": "a@x.example"}, "to": {"address": ["b@x.example"]}},
        }
    )
    assert alert.users == [UserEntity(name="denny", domain=".")]
    assert alert.hosts == [HostEntity(name="desktop-1", ips=["192.168.4.20", "fe80::1"])]
    assert alert.ips == [
        IpEntity(address="192.168.4.101", role="src"),
        IpEntity(address="10.0.0.1", role="dst"),
    ]
    assert [(h.algorithm, h.value) for h in alert.hashes] == [
        ("sha256", "cd" * 32),
        ("md5", "ab" * 16),
    ]
    assert [u.url for u in alert.urls] == ["http://x.example/a"]
    assert [(e.address, e.role) for e in alert.emails] == [
        ("a@x.example", "from"),
        ("b@x.example", "to"),
    ]


@pytest.mark.parametrize(
    ("document", "code", "field"),
    [
        ({"kibana.alert.severity": "high"}, RejectionCode.MISSING_FIELD, "kibana.alert.rule.name"),
        ({"kibana.alert.rule.name": "R"}, RejectionCode.MISSING_FIELD, "kibana.alert.severity"),
        (
            {"kibana.alert.rule.name": "R", "kibana.alert.severity": "sev1"},
            RejectionCode.INVALID_FIELD,
            "kibana.alert.severity",
        ),
        (
            {"kibana.alert.rule.name": ["R"], "kibana.alert.severity": 3},
            RejectionCode.INVALID_FIELD,
            "kibana.alert.severity",
        ),
    ],
    ids=["no-rule-name", "no-severity", "unknown-severity", "numeric-severity"],
)
def test_bad_alerts_are_rejected_naming_the_field(
    document: dict[str, object], code: RejectionCode, field: str
) -> None:
    with pytest.raises(AlertRejected) as caught:
        map_ecs({**document, "@timestamp": "2024-05-01T00:00:00Z"})
    assert (caught.value.code, caught.value.field) == (code, field)


def test_a_field_inside_a_hit_is_named_with_its_source_path() -> None:
    hit = {"_id": "x", "_source": {"kibana.alert.rule.name": "R", "kibana.alert.severity": "low"}}
    with pytest.raises(AlertRejected) as caught:
        map_ecs(hit)
    assert caught.value.field == "_source.@timestamp"
