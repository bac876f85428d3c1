"""Alertmanager webhook notifications (captured from a real Alertmanager 0.25, see
tests/fixtures/SOURCES.md): one Alert per member of the group, firing → open, resolved →
resolved, both with the same id."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from soar.errors import AlertRejected, RejectionCode
from soar.ingest.limits import Limits
from soar.ingest.mappings import detect_format, map_alertmanager
from soar.ingest.mappings.alertmanager import host_of
from soar.ingest.normalize import normalize
from soar.models import AlertFormat, AlertStatus, HostEntity, IpEntity, Severity

FIXTURES = Path(__file__).parent.parent / "fixtures" / "alertmanager"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def test_a_firing_notification_is_an_open_alert() -> None:
    (alert,) = normalize((FIXTURES / "firing.json").read_bytes())
    assert alert.format is AlertFormat.ALERTMANAGER
    assert alert.source == "alertmanager"
    assert alert.id == "6c36c9e7ff0af88f@2026-11-29T10:51:29.768Z"
    assert alert.status is AlertStatus.OPEN
    assert alert.title == "CPU above 90 % on 127.0.0.1:48643"
    assert alert.rule == "HostHighCpu"
    assert alert.description == "load1 is 4.33"
    assert (alert.severity, alert.source_severity) == (Severity.CRITICAL, "critical")
    assert alert.time == datetime(2026, 11, 29, 10, 51, 29, 768_000, tzinfo=UTC)
    assert alert.hosts == [HostEntity(name="127.0.0.1", ips=["127.0.0.1"])]
    assert alert.ips == [IpEntity(address="127.0.0.1")]
    assert "team=infra" in alert.tags
    assert "alertname=HostHighCpu" in alert.tags


def test_the_resolved_notification_shares_the_firing_ones_id() -> None:
    (firing,) = normalize((FIXTURES / "firing.json").read_bytes())
    (resolved,) = normalize((FIXTURES / "resolved.json").read_bytes())
    assert resolved.status is AlertStatus.RESOLVED
    assert resolved.id == firing.id
    assert isinstance(resolved.raw, dict)
    assert isinstance(firing.raw, dict)
    assert resolved.raw["fingerprint"] == firing.raw["fingerprint"] == "6c36c9e7ff0af88f"
    assert resolved.raw["endsAt"] != firing.raw["endsAt"]


def test_raw_is_the_alert_with_the_groups_common_fields() -> None:
    payload = load("firing.json")
    (alert,) = normalize(json.dumps(payload))
    element = payload["alerts"][0]
    assert isinstance(alert.raw, dict)
    for key, value in element.items():
        assert alert.raw[key] == value
    for key in ("version", "groupKey", "receiver", "groupLabels", "commonLabels", "externalURL"):
        assert alert.raw[key] == payload[key]
    assert "alerts" not in alert.raw


def test_a_group_of_n_alerts_is_n_alerts() -> None:
    alerts = normalize((FIXTURES / "firing_group.json").read_bytes())
    assert len(alerts) == 2
    assert len({a.id for a in alerts}) == 2
    assert {a.severity for a in alerts} == {Severity.MEDIUM}  # warning
    assert [a.rule for a in alerts] == ["HostLoadSeen", "HostLoadSeen"]
    assert len({a.hosts[0].name for a in alerts}) == 1  # two exporters, one host: 127.0.0.1
    assert all(a.status is AlertStatus.OPEN for a in alerts)


def test_detected_by_shape_and_selectable_by_name() -> None:
    payload = load("firing.json")
    assert detect_format(payload) is AlertFormat.ALERTMANAGER
    assert AlertFormat("alertmanager") is AlertFormat.ALERTMANAGER
    forced = normalize(json.dumps(payload), format=AlertFormat.ALERTMANAGER)
    assert forced == normalize(json.dumps(payload))


def test_a_batch_of_notifications_is_every_alert_of_each() -> None:
    body = json.dumps([load("firing.json"), load("firing_group.json")])
    assert len(normalize(body)) == 3


def test_a_group_over_max_batch_is_refused() -> None:
    with pytest.raises(AlertRejected) as refused:
        normalize((FIXTURES / "firing_group.json").read_bytes(), limits=Limits(max_batch=1))
    assert refused.value.code is RejectionCode.BATCH_TOO_LARGE


@pytest.mark.parametrize(
    ("label", "severity"),
    [
        pytest.param("critical", Severity.CRITICAL, id="critical"),
        pytest.param("Warning", Severity.MEDIUM, id="warning"),
        pytest.param("info", Severity.INFORMATIONAL, id="info"),
        pytest.param("page-me", Severity.MEDIUM, id="unknown"),
        pytest.param(None, Severity.MEDIUM, id="none"),
    ],
)
def test_severity_from_the_severity_label(label: str | None, severity: Severity) -> None:
    payload = load("firing.json")
    labels = payload["alerts"][0]["labels"]
    labels.pop("severity")
    if label is not None:
        labels["severity"] = label
    (alert,) = map_alertmanager(payload)
    assert (alert.severity, alert.source_severity) == (severity, label)


def test_title_falls_back_to_the_alertname_and_hosts_to_the_host_label() -> None:
    payload = load("firing.json")
    element = payload["alerts"][0]
    element["annotations"] = {}
    payload["commonAnnotations"] = {}
    element["labels"] = {"alertname": "DiskFull", "host": "db-1.example.com"}
    (alert,) = map_alertmanager(payload)
    assert alert.title == "DiskFull"
    assert alert.hosts == [HostEntity(name="db-1.example.com")]


@pytest.mark.parametrize(
    ("target", "host"),
    [
        pytest.param("db-1:9100", "db-1", id="name-port"),
        pytest.param("10.0.0.5:9100", "10.0.0.5", id="ipv4-port"),
        pytest.param("[::1]:9100", "::1", id="ipv6-port"),
        pytest.param("db-1", "db-1", id="bare"),
        pytest.param("fe80::1", "fe80::1", id="bare-ipv6"),
    ],
)
def test_the_port_is_stripped_from_the_instance(target: str, host: str) -> None:
    assert host_of(target) == host


def test_no_fingerprint_gets_one_from_the_labels() -> None:
    payload = load("firing.json")
    del payload["alerts"][0]["fingerprint"]
    (first,) = map_alertmanager(payload)
    (again,) = map_alertmanager(payload)
    assert first.id == again.id
    assert first.id.endswith("@2026-11-29T10:51:29.768Z")


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        pytest.param({"alerts": []}, RejectionCode.EMPTY_BATCH, "alerts", id="empty"),
        pytest.param({"version": "3"}, RejectionCode.INVALID_FIELD, "version", id="version"),
        pytest.param(
            {"alerts": [{"labels": {"alertname": "A"}}]},
            RejectionCode.MISSING_FIELD,
            "alerts.0.startsAt",
            id="no-start",
        ),
        pytest.param(
            {"alerts": [{"labels": {}, "startsAt": "2026-01-01T00:00:00Z"}]},
            RejectionCode.MISSING_FIELD,
            "alerts.0.labels.alertname",
            id="no-alertname",
        ),
        pytest.param(
            {"alerts": [{"labels": {"alertname": "A"}, "startsAt": "x", "status": "firing"}]},
            RejectionCode.INVALID_FIELD,
            "alerts.0.startsAt",
            id="bad-time",
        ),
        pytest.param(
            {
                "alerts": [
                    {"labels": {"alertname": "A"}, "startsAt": "2026-01-01T00:00:00Z", "status": 1}
                ]
            },
            RejectionCode.INVALID_FIELD,
            "alerts.0.status",
            id="bad-status",
        ),
    ],
)
def test_what_is_refused(change: dict[str, Any], code: RejectionCode, field: str) -> None:
    payload = {**load("firing.json"), **change}
    with pytest.raises(AlertRejected) as refused:
        normalize(json.dumps(payload), format=AlertFormat.ALERTMANAGER)
    assert (refused.value.code, refused.value.field) == (code, field)
