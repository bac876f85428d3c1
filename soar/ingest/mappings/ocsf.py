"""OCSF Detection Finding (2004) and Security Finding (2001), schema 1.0 to 1.3 and beyond.

1.0 Security Findings carry `finding`; 1.1+ carry `finding_info`; both are read, `finding_info`
first. Real producers send `time` in seconds or milliseconds and naive `time_dt`; the rules in
`timestamps` absorb both.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import JsonValue

from soar.errors import AlertRejected
from soar.ingest.mappings.document import Document, JsonObject, invalid, missing, snake
from soar.ingest.mappings.entities import Entities
from soar.ingest.mappings.fingerprint import mint_id
from soar.ingest.mappings.status import OCSF_STATUS_IDS, status_number, status_word
from soar.ingest.mappings.timestamps import parse_time
from soar.models.alert import Alert, AlertFormat, AlertStatus
from soar.models.severity import Severity

FINDING_CLASSES = {2001: "Security Finding", 2004: "Detection Finding"}

#: severity_id -> Severity. 0 (Unknown) and 99 (Other, when its label is not a severity name)
#: map to medium: neither silenced nor paged; `source_severity` keeps the source's label.
SEVERITY_IDS: dict[int, Severity] = {
    0: Severity.MEDIUM,
    1: Severity.INFORMATIONAL,
    2: Severity.LOW,
    3: Severity.MEDIUM,
    4: Severity.HIGH,
    5: Severity.CRITICAL,
    6: Severity.CRITICAL,  # Fatal
    99: Severity.MEDIUM,
}
_SEVERITY_LABELS = {
    "fatal": Severity.CRITICAL,
    "unknown": Severity.MEDIUM,
    "other": Severity.MEDIUM,
}

#: observables[].type_id -> the entity list it feeds.
OBSERVABLE_TYPES = {1: "host", 2: "ip", 4: "user", 5: "email", 6: "url", 8: "hash"}

_TIME_FIELDS = (
    "time",
    "time_dt",
    "finding_info.created_time",
    "finding_info.created_time_dt",
    "finding.created_time",
    "finding.created_time_dt",
)


def map_ocsf(raw: JsonObject) -> Alert:
    """Map one OCSF finding.

    Raises:
        AlertRejected: MISSING_FIELD for no `class_uid` or no time; INVALID_FIELD for a class
            other than 2001/2004, a bad `severity_id` or time.
    """
    doc = Document(raw)
    class_uid = doc.get("class_uid")
    if class_uid is None:
        raise missing("class_uid")
    if isinstance(class_uid, bool) or not isinstance(class_uid, int):
        raise invalid("class_uid", "expected an integer")
    if class_uid not in FINDING_CLASSES:
        raise invalid("class_uid", f"{class_uid} is not a finding class soar reads (2001, 2004)")
    finding = doc.object("finding_info") or doc.object("finding") or Document({})
    analytic = finding.object("analytic") or Document({})

    severity, source_severity = _severity(doc)
    tactics, techniques = _attacks(doc, finding)
    title = finding.first_text("title", strict=True) or doc.first_text("message")
    return Alert(
        id=_id(doc, finding, raw),
        source=_source(doc),
        format=AlertFormat.OCSF,
        title=title[1] if title else doc.text("class_name") or FINDING_CLASSES[class_uid],
        rule=analytic.text("name") or doc.text("metadata.product.feature.name"),
        rule_id=analytic.text("uid")
        or doc.text("metadata.event_code")
        or doc.text("metadata.product.feature.uid"),
        description=finding.text("desc") or doc.text("message"),
        severity=severity,
        source_severity=source_severity,
        category=tactics[0] if tactics else None,
        status=_status(doc),
        time=_time(doc),
        tactics=tactics,
        techniques=techniques,
        tags=list(dict.fromkeys([*finding.texts("types"), *doc.texts("metadata.labels")])),
        **_entities(doc).fields(),
        raw=raw,
    )


def _status(doc: Document) -> AlertStatus | None:
    """The finding's status, from OCSF 1.1 on. In 1.0 `status` and `status_id` are the event's
    outcome (Success, Failure), and Security Hub puts compliance results (PASSED) there: those
    say nothing about the alert, and neither does a label soar does not know."""
    version = doc.text("metadata.version") or ""
    major, _, rest = version.partition(".")
    minor = rest.partition(".")[0].partition("-")[0]
    if not (major.isdigit() and minor.isdigit()) or (int(major), int(minor)) < (1, 1):
        return None
    return status_number(doc.get("status_id"), OCSF_STATUS_IDS) or status_word(doc.get("status"))


def _id(doc: Document, finding: Document, raw: JsonValue) -> str:
    found = finding.first_text("uid", strict=True) or doc.first_text("metadata.uid")
    return found[1] if found else mint_id(raw)


def _source(doc: Document) -> str:
    vendor = snake(doc.text("metadata.product.vendor_name") or "")
    name = snake(doc.text("metadata.product.name") or "")
    if vendor and name and (name in vendor or vendor in name):
        vendor = ""
    return "-".join(part for part in (vendor, name) if part).replace("_", "-") or "ocsf"


def _severity(doc: Document) -> tuple[Severity, str | None]:
    label = doc.text("severity")
    severity_id = doc.get("severity_id")
    if severity_id is None:
        if label is None:
            return Severity.MEDIUM, None
        return _from_label(label, "severity"), label
    if isinstance(severity_id, bool) or not isinstance(severity_id, int):
        raise invalid("severity_id", "expected an integer")
    if severity_id not in SEVERITY_IDS:
        raise invalid("severity_id", f"{severity_id} is not an OCSF severity (0-6 or 99)")
    if severity_id == 99 and label is not None:  # Other: the label is the source's own word
        try:
            return _from_label(label, "severity"), label
        except AlertRejected:  # an unrecognised "other" label is the source's right
            return Severity.MEDIUM, label
    return SEVERITY_IDS[severity_id], label if label is not None else str(severity_id)


def _from_label(label: str, field: str) -> Severity:
    known = _SEVERITY_LABELS.get(label.strip().lower())
    if known is not None:
        return known
    try:
        return Severity.parse(label)
    except ValueError:
        raise invalid(field, f"{label[:40]!r} is not a severity") from None


def _time(doc: Document) -> datetime:
    for field in _TIME_FIELDS:
        value = doc.get(field)
        if value is not None:
            return parse_time(value, field)
    raise missing("time", "no alert time: time or time_dt is required")


def _attacks(doc: Document, finding: Document) -> tuple[list[str], list[str]]:
    tactics: list[str] = []
    techniques: list[str] = []
    attacks = [*finding.objects("attacks"), *doc.objects("attacks")]
    for attack in attacks:
        for tactic in [*attack.objects("tactic"), *attack.objects("tactics")]:
            name = tactic.text("name")
            if name and snake(name) not in tactics:
                tactics.append(snake(name))
        for key in ("technique", "sub_technique"):
            for technique in attack.objects(key):
                uid = technique.text("uid")
                if uid and uid not in techniques:
                    techniques.append(uid)
    return tactics, techniques


def _entities(doc: Document) -> Entities:
    found = Entities()
    evidences = list(doc.objects("evidences"))
    actors = [*doc.objects("actor"), *(a for ev in evidences for a in ev.objects("actor"))]
    for actor in actors:
        for user in actor.objects("user"):
            _user(found, user)
    for evidence in evidences:
        for user in evidence.objects("user"):
            _user(found, user)
    devices = [
        *doc.objects("device"),
        *(d for ev in evidences for d in ev.objects("device")),
    ]
    for device in devices:
        found.host(
            id=device.text("uid"),
            name=device.text("hostname") or device.text("name"),
            ips=device.texts("ip"),
            os=device.text("os.name"),
        )
    for resource in doc.objects("resources"):
        if _is_host_resource(resource):
            found.host(
                id=resource.text("uid"),
                name=resource.text("hostname") or resource.text("name"),
                ips=resource.texts("ip"),
            )
    for holder in [doc, *evidences]:
        for endpoint, role in (("src_endpoint", "src"), ("dst_endpoint", "dst")):
            for end in holder.objects(endpoint):
                found.ip(end.text("ip"), role)
        for device in holder.objects("device"):
            for address in device.texts("ip"):
                found.ip(address)
        for path in ("file.hashes", "process.file.hashes"):
            for digest in holder.objects(path):
                found.hash(digest.text("value"), digest.text("algorithm"))
        for url in holder.objects("url"):
            found.url(url.text("url_string"))
    for observable in doc.objects("observables"):
        _observable(found, observable)
    return found


def _user(found: Entities, user: Document) -> None:
    found.user(
        user.text("name"),
        domain=user.text("domain"),
        id=user.text("uid"),
        email=user.text("email_addr"),
    )


def _is_host_resource(resource: Document) -> bool:
    kind = (resource.text("type") or "").lower()
    return bool(resource.text("hostname") or resource.texts("ip")) or kind.endswith(
        ("instance", "host", "device", "virtualmachine", "vm")
    )


def _observable(found: Entities, observable: Document) -> None:
    type_id = observable.get("type_id")
    value = observable.text("value")
    if isinstance(type_id, bool) or not isinstance(type_id, int) or value is None:
        return
    kind = OBSERVABLE_TYPES.get(type_id)
    if kind == "host":
        found.host(name=value)
    elif kind == "ip":
        found.ip(value)
    elif kind == "user":
        found.user(value)
    elif kind == "email":
        found.email(value)
    elif kind == "url":
        found.url(value)
    elif kind == "hash":
        found.hash(value)
