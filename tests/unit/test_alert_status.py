"""Where an alert stands, read from each source's own words and numbers: a later `resolved`
copy of an alert is what ends a run waiting for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soar.errors import AlertRejected
from soar.ingest.normalize import normalize
from soar.models.alert import AlertStatus

FIXTURES = Path(__file__).parent.parent / "fixtures"
OPEN, ACK, RESOLVED = AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED


def one(data: bytes | str) -> AlertStatus | None:
    (alert,) = normalize(data)
    return alert.status


def fixture(path: str) -> dict[str, object]:
    """The sample as an object (the first of a batch of one, as Prowler writes them)."""
    loaded = json.loads((FIXTURES / path).read_text())
    if isinstance(loaded, list):
        (loaded,) = loaded
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("ecs/kibana_8_2_eql_alert.json", OPEN),  # kibana.alert.workflow_status: open
        ("ecs/kibana_7_16_signal_hit.json", OPEN),  # signal.status: open
        ("ocsf/prowler_1_3_detection_finding.json", OPEN),  # status_id 1, "New"
        ("ocsf/prowler_1_0_rc3_security_finding.json", None),  # 1.0: "Success" is the event's
        ("ocsf/securityhub_1_0_security_finding.json", None),  # "PASSED": a compliance result
        ("splunk/notable_with_fields.json", OPEN),  # status_label New, status "1"
        ("generic/minimal.json", None),
    ],
)
def test_real_samples_say_where_they_stand(path: str, status: AlertStatus | None) -> None:
    assert one((FIXTURES / path).read_bytes()) is status


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"kibana.alert.workflow_status": "closed"}, RESOLVED),
        ({"kibana.alert.workflow_status": "acknowledged"}, ACK),
        ({"kibana.alert.status": "recovered"}, RESOLVED),  # the rule recovered, still open
        ({"kibana.alert.workflow_status": "open", "kibana.alert.status": "active"}, OPEN),
    ],
)
def test_elastic_workflow_and_rule_status(changes: dict[str, str], status: AlertStatus) -> None:
    alert = {**fixture("ecs/kibana_8_2_eql_alert.json"), **changes}
    assert one(json.dumps(alert)) is status


@pytest.mark.parametrize(
    ("status_id", "label", "status"),
    [
        (4, "Resolved", RESOLVED),
        (2, "In Progress", ACK),
        (3, "Suppressed", RESOLVED),
        (99, "Other", None),
    ],
)
def test_ocsf_finding_status(status_id: int, label: str, status: AlertStatus | None) -> None:
    alert = {**fixture("ocsf/prowler_1_3_detection_finding.json"), "status_id": status_id}
    alert["status"] = label
    assert one(json.dumps(alert)) is status


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"status_label": "Resolved", "status": "4"}, RESOLVED),
        ({"status_label": "Closed"}, RESOLVED),
        ({"status_label": "Pending"}, ACK),
        ({"status_label": "Custom 7", "status": "5"}, RESOLVED),  # a custom label, a known number
    ],
)
def test_splunk_notable_status(fields: dict[str, str], status: AlertStatus) -> None:
    notable = fixture("splunk/notable_with_fields.json")
    result = notable.get("result")
    target = result if isinstance(result, dict) else notable
    target.update(fields)
    assert one(json.dumps(notable)) is status


def test_the_generic_form_takes_known_words_and_refuses_others() -> None:
    base = fixture("generic/minimal.json")
    assert one(json.dumps({**base, "status": "Resolved"})) is RESOLVED
    assert one(json.dumps({**base, "status": "in-progress"})) is ACK
    with pytest.raises(AlertRejected) as refused:
        normalize(json.dumps({**base, "status": "maybe"}))
    assert refused.value.field == "status"
