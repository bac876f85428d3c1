import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from soar.errors import AlertRejected, RejectionCode
from soar.ingest.mappings import map_splunk
from soar.ingest.mappings.splunk import parse_raw
from soar.ingest.normalize import normalize
from soar.models import AlertFormat, HostEntity, IpEntity, Severity, UserEntity

FIXTURES = Path(__file__).parent.parent / "fixtures" / "splunk"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def a_notable(**overrides: object) -> dict[str, object]:
    notable: dict[str, object] = {
        "event_id": "E1@@notable@@abc",
        "rule_name": "Brute Force",
        "urgency": "high",
        "_time": "1717578914.332298000",
    }
    notable.update(overrides)
    return notable


def test_notable_with_fields() -> None:
    (alert,) = normalize(fixture("notable_with_fields.json"))
    assert alert.format is AlertFormat.SPLUNK
    assert alert.source == "splunk-es"
    assert (
        alert.id
        == "5E6DE97D-B137-47AB-8905-8C4F42998937@@notable@@e4f07602f507975e9f7ba47c4ae0c417"
    )
    assert alert.title == "Root user use"
    assert alert.rule == "Root sucess"
    assert alert.severity is Severity.INFORMATIONAL
    assert alert.category == "identity"
    assert alert.time == datetime(2024, 6, 5, 9, 15, 24, tzinfo=UTC)
    assert alert.users == [UserEntity(name="root"), UserEntity(name="xxx")]
    # dest_dns and dvc_host are both "xx" in the sample; orig_host is a masked address.
    assert alert.hosts == [HostEntity(name="xx"), HostEntity(name="xxx.xxx.x.x")]
    assert alert.ips == []
    assert all(h.name != "xxx" for h in alert.hosts[:1])  # `host` (the search head) is not used


def test_raw_only_notable_reads_its_fields_from_raw() -> None:
    (alert,) = normalize(fixture("notable_raw_only.json"))
    assert alert.title == "Identity - Root sucess - Rule"
    assert alert.severity is Severity.INFORMATIONAL  # no urgency: `severity` from _raw
    assert alert.description == "User successfully changed UID."
    assert alert.time == datetime(2024, 6, 5, 9, 15, 24, tzinfo=UTC)
    assert alert.id.startswith("sha256:")
    assert alert.users == [UserEntity(name="root"), UserEntity(name="xxx")]
    assert alert.hosts == [
        HostEntity(name="acmescout3"),
        HostEntity(name="xxx"),
        HostEntity(name="xxx.xxx.x.x"),
    ]


def test_notable_batch_uses_urgency_not_severity_and_dest_not_the_search_head() -> None:
    first, second = normalize(fixture("notable_batch.json"))
    assert first.title == "Endpoint - Recurring Malware Infection - Rule"
    assert first.severity is Severity.LOW  # urgency low, severity "unknown"
    assert first.source_severity == "low"
    assert first.time == datetime(2020, 8, 24, 19, 10, 17, tzinfo=UTC)
    assert second.time == datetime(2020, 8, 24, 20, 30, 17, tzinfo=UTC)
    assert first.hosts == [
        HostEntity(
            id="028877d3c80cb9d87900eb4f9c9601ea993d9b63",
            name="ACME-workstation-012",
            ips=["192.168.3.12"],
        )
    ]
    assert first.ips == [IpEntity(address="192.168.3.12", role="dst")]
    assert first.users == []
    assert first.id != second.id


def test_webhook_result_wrapper_is_unwrapped_and_named_by_search_name() -> None:
    data = fixture("webhook_search_result.json")
    (alert,) = normalize(data)
    assert alert.source == "splunk"
    assert alert.title == "sudo"
    assert alert.severity is Severity.MEDIUM  # a plain saved-search alert carries none
    assert alert.source_severity is None
    assert alert.time == datetime(2017, 1, 4, 19, 14, 32, tzinfo=UTC)
    assert alert.hosts == []  # `host: myserver` is the Splunk host, not an affected asset
    assert alert.raw == json.loads(data)


def test_raw_fields_handle_double_single_and_bare_values_with_escapes() -> None:
    fields = parse_raw('1596545116, a="x, \\"y\\"", b=\'z z\', c=bare, a="second"')
    assert fields == {"a": 'x, "y"', "b": "z z", "c": "bare"}


def test_fields_given_as_json_win_over_fields_parsed_from_raw() -> None:
    alert = map_splunk(a_notable(_raw='0, rule_name="From raw", urgency="low"'))
    assert (alert.title, alert.severity) == ("Brute Force", Severity.HIGH)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1717578914.332298000", datetime(2024, 6, 5, 9, 15, 14, 332_000, tzinfo=UTC)),
        ("2024-06-05T11:15:14.332+02:00", datetime(2024, 6, 5, 9, 15, 14, 332_000, tzinfo=UTC)),
        (1717578914, datetime(2024, 6, 5, 9, 15, 14, tzinfo=UTC)),
    ],
    ids=["epoch-fraction", "iso-offset", "epoch-number"],
)
def test_time_is_epoch_seconds_or_iso(value: object, expected: datetime) -> None:
    assert map_splunk(a_notable(_time=value)).time == expected


def test_unknown_urgency_falls_back_to_severity_then_medium() -> None:
    assert (
        map_splunk(a_notable(urgency="unknown", severity="critical")).severity is Severity.CRITICAL
    )
    assert map_splunk(a_notable(urgency="unknown")).severity is Severity.MEDIUM


def test_users_hosts_and_addresses_from_cim_fields() -> None:
    alert = map_splunk(
        a_notable(
            user="alice",
            src_user="bob",
            src="203.0.113.7",
            dest="db-01",
            dest_ip="10.0.0.8",
            dvc="fw-1",
            orig_host="10.0.0.9",
            host="es-search-head",
            splunk_server="idx-1",
            file_hash="d41d8cd98f00b204e9800998ecf8427e",
            url="http://bad.example/",
            sender="x@bad.example",
        )
    )
    assert alert.users == [UserEntity(name="alice"), UserEntity(name="bob")]
    assert alert.hosts == [
        HostEntity(name="db-01", ips=["10.0.0.8"]),
        HostEntity(name="fw-1"),
    ]
    assert alert.ips == [
        IpEntity(address="10.0.0.8", role="dst"),
        IpEntity(address="10.0.0.9"),
        IpEntity(address="203.0.113.7", role="src"),
    ]
    assert [(h.algorithm, h.value) for h in alert.hashes] == [
        ("md5", "d41d8cd98f00b204e9800998ecf8427e")
    ]
    assert [e.role for e in alert.emails] == ["from"]


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"urgency": "sev1"}, RejectionCode.INVALID_FIELD, "urgency"),
        ({"urgency": 4}, RejectionCode.INVALID_FIELD, "urgency"),
        ({"_time": "yesterday"}, RejectionCode.INVALID_FIELD, "_time"),
        ({"_time": None}, RejectionCode.MISSING_FIELD, "_time"),
        ({"rule_name": None}, RejectionCode.MISSING_FIELD, "rule_name"),
    ],
    ids=["unknown-urgency", "numeric-urgency", "bad-time", "no-time", "no-title"],
)
def test_bad_notables_are_rejected_naming_the_field(
    change: dict[str, object], code: RejectionCode, field: str
) -> None:
    with pytest.raises(AlertRejected) as caught:
        map_splunk(a_notable(**change))
    assert (caught.value.code, caught.value.field) == (code, field)


def test_a_field_inside_the_result_wrapper_is_named_with_its_path() -> None:
    with pytest.raises(AlertRejected) as caught:
        map_splunk({"sid": "1", "search_name": "s", "result": {"_time": "nope"}})
    assert caught.value.field == "result._time"
