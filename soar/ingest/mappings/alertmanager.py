"""Prometheus Alertmanager's webhook payload (version "4"): one notification carrying a group of
alerts, each of which becomes one soar Alert.

The firing and the resolved notification of one alert get the same id (its fingerprint and when
it started), so a run started by the first is found by the second and ends. See docs/alerts.md.
"""

from __future__ import annotations

import re
from typing import Final

from pydantic import JsonValue

from soar.errors import AlertRejected, RejectionCode
from soar.ingest.mappings.document import JsonObject, invalid, missing
from soar.ingest.mappings.entities import Entities, is_ip
from soar.ingest.mappings.fingerprint import mint_id
from soar.ingest.mappings.timestamps import parse_time
from soar.models.alert import Alert, AlertFormat, AlertStatus
from soar.models.severity import Severity

SOURCE: Final = "alertmanager"
#: the group's fields copied into each alert's `raw`, beside the alert's own
GROUP_FIELDS: Final = (
    "version",
    "groupKey",
    "receiver",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
)
SEVERITIES: Final = {
    "critical": Severity.CRITICAL,
    "error": Severity.HIGH,
    "high": Severity.HIGH,
    "warning": Severity.MEDIUM,
    "medium": Severity.MEDIUM,
    "low": Severity.LOW,
    "info": Severity.INFORMATIONAL,
    "informational": Severity.INFORMATIONAL,
    "none": Severity.INFORMATIONAL,
}
STATUSES: Final = {"firing": AlertStatus.OPEN, "resolved": AlertStatus.RESOLVED}
_HOST_LABELS: Final = ("instance", "host", "hostname", "node", "nodename")
_PORT: Final = re.compile(r"^(?P<host>[^:\[\]]+):[0-9]{1,5}$")
_BRACKETED: Final = re.compile(r"^\[(?P<host>[0-9A-Fa-f:.%a-zA-Z]+)\](?::[0-9]{1,5})?$")


def is_alertmanager(raw: JsonObject) -> bool:
    """Whether `raw` is an Alertmanager webhook notification: `version`, `groupKey` and a list of
    `alerts`."""
    return "version" in raw and "groupKey" in raw and isinstance(raw.get("alerts"), list)


def map_alertmanager(raw: JsonObject) -> list[Alert]:
    """Map one webhook notification to one Alert per element of its `alerts`.

    Raises:
        AlertRejected: MISSING_FIELD without `alerts` or an alert's `labels`, `startsAt` or
            `alertname`; INVALID_FIELD for a wrong type there, an unknown `status` or a version
            other than "4"; EMPTY_BATCH for an empty `alerts`. `field` is a dotted path
            (`alerts.1.startsAt`).
    """
    version = raw.get("version")
    if version is not None and version != "4":
        raise invalid("version", f"{str(version)[:20]!r}: only webhook version 4 is read")
    alerts = raw.get("alerts")
    if alerts is None:
        raise missing("alerts")
    if not isinstance(alerts, list):
        raise invalid("alerts", "must be a list of alerts")
    if not alerts:
        raise AlertRejected(
            RejectionCode.EMPTY_BATCH, "the notification's alerts list is empty", field="alerts"
        )
    group: JsonObject = {key: raw[key] for key in GROUP_FIELDS if key in raw}
    return [_alert(item, group, f"alerts.{index}") for index, item in enumerate(alerts)]


def _alert(item: JsonValue, group: JsonObject, path: str) -> Alert:
    if not isinstance(item, dict):
        raise invalid(path, "must be an alert object")
    labels = _strings(item, "labels", path, required=True)
    annotations = _strings(item, "annotations", path, required=False)
    common = group.get("commonAnnotations")
    name = labels.get("alertname")
    if not name:
        raise missing(f"{path}.labels.alertname")
    started = item.get("startsAt")
    if started is None:
        raise missing(f"{path}.startsAt")
    if not isinstance(started, str):
        raise invalid(f"{path}.startsAt", "must be a time string")
    status = _status(item.get("status"), f"{path}.status")
    fingerprint = item.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint.strip():
        # before Alertmanager 0.19 there was none: the labels identify the alert the same way
        fingerprint = mint_id(dict[str, JsonValue](labels)).removeprefix("sha256:")[:16]
    label = labels.get("severity")
    summary = annotations.get("summary") or (
        common.get("summary") if isinstance(common, dict) else None
    )
    description = annotations.get("description") or annotations.get("message")
    return Alert(
        id=f"{fingerprint}@{started}"[:512],
        source=SOURCE,
        format=AlertFormat.ALERTMANAGER,
        title=summary if isinstance(summary, str) and summary else name,
        rule=name,
        description=description or None,
        severity=SEVERITIES.get((label or "").strip().lower(), Severity.MEDIUM),
        source_severity=label,
        status=status,
        time=parse_time(started, f"{path}.startsAt"),
        tags=[f"{key}={value}" for key, value in sorted(labels.items())],
        **_entities(labels).fields(),
        raw={**group, **item, "fingerprint": fingerprint},
    )


def _strings(item: JsonObject, key: str, path: str, *, required: bool) -> dict[str, str]:
    value = item.get(key)
    if value is None:
        if required:
            raise missing(f"{path}.{key}")
        return {}
    if not isinstance(value, dict):
        raise invalid(f"{path}.{key}", "must be an object of strings")
    return {k: v for k, v in value.items() if isinstance(v, str)}


def _status(value: JsonValue, field: str) -> AlertStatus | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in STATUSES:
        raise invalid(field, f"{str(value)[:40]!r} is not firing or resolved")
    return STATUSES[value.strip().lower()]


def host_of(target: str) -> str:
    """A scrape target without its port: `db-1:9100` → `db-1`, `[::1]:9100` → `::1`."""
    target = target.strip()
    for pattern in (_BRACKETED, _PORT):
        found = pattern.match(target)
        if found:
            return found.group("host")
    return target


def _entities(labels: dict[str, str]) -> Entities:
    found = Entities()
    for key in _HOST_LABELS:
        value = labels.get(key)
        if not value:
            continue
        host = host_of(value)
        if is_ip(host):
            found.host(name=host, ips=[host])
            found.ip(host)
        else:
            found.host(name=host)
    return found
