"""Elastic Security detection alerts: 8.x `kibana.alert.*` documents and legacy 7.x `signal.*`.

Alert documents mix dotted keys and nested objects freely, so every read goes through
`Document.get`, which accepts any split. An Elasticsearch hit (`_index`, `_id`, `_source`) is
unwrapped; its `_id` is the id of last resort before minting one.
"""

from __future__ import annotations

from datetime import datetime

from soar.ingest.mappings.document import Document, JsonObject, invalid, missing, snake
from soar.ingest.mappings.entities import Entities
from soar.ingest.mappings.fingerprint import mint_id
from soar.ingest.mappings.status import status_word
from soar.ingest.mappings.timestamps import parse_time
from soar.models.alert import Alert, AlertFormat, AlertStatus
from soar.models.severity import Severity

#: Where each alert field lives, 8.x first, then 7.x. `severity` is the alert's severity after
#: the rule's severity overrides; the rule's default (`kibana.alert.rule.severity`) is read only
#: when the alert carries none.
FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("kibana.alert.uuid",),
    "title": ("kibana.alert.rule.name", "signal.rule.name", "kibana.alert.reason", "signal.reason"),
    "rule": ("kibana.alert.rule.name", "signal.rule.name"),
    "rule_id": ("kibana.alert.rule.rule_id", "signal.rule.rule_id"),
    "description": (
        "kibana.alert.reason",
        "signal.reason",
        "kibana.alert.rule.description",
        "signal.rule.description",
    ),
    "severity": ("kibana.alert.severity", "signal.rule.severity", "kibana.alert.rule.severity"),
    "time": ("@timestamp", "kibana.alert.original_time", "signal.original_time"),
    "threat": ("kibana.alert.rule.threat", "signal.rule.threat"),
    "tags": ("kibana.alert.rule.tags", "signal.rule.tags"),
}

#: (ECS field, algorithm) for file hashes.
HASH_FIELDS = tuple(
    (f"{owner}.hash.{algorithm}", algorithm)
    for owner in ("file", "process", "dll")
    for algorithm in ("md5", "sha1", "sha256", "sha384", "sha512")
)

#: (ECS field, role) for addresses.
IP_FIELDS = (
    ("source.ip", "src"),
    ("client.ip", "src"),
    ("destination.ip", "dst"),
    ("server.ip", "dst"),
)


def map_ecs(raw: JsonObject) -> Alert:
    """Map one Elastic Security alert (a bare document or an Elasticsearch hit).

    Raises:
        AlertRejected: MISSING_FIELD without a rule name, severity or time; INVALID_FIELD when
            one has the wrong type or value.
    """
    source = raw.get("_source")
    hit_id = raw.get("_id")
    body, prefix = (source, "_source.") if isinstance(source, dict) else (raw, "")
    doc = Document(body, prefix=prefix)

    found = doc.first_text(*FIELDS["id"], strict=True)
    if found is not None:
        alert_id = found[1]
    elif isinstance(hit_id, str) and hit_id.strip():
        alert_id = hit_id
    else:
        alert_id = mint_id(raw)

    title = doc.first_text(*FIELDS["title"], strict=True)
    if title is None:
        raise missing(doc.path("kibana.alert.rule.name"))
    severity_field = doc.first_text(*FIELDS["severity"], strict=True)
    if severity_field is None:
        raise missing(doc.path("kibana.alert.severity"))
    field, label = severity_field
    try:
        severity = Severity.parse(label)
    except ValueError:
        raise invalid(doc.path(field), f"{label[:40]!r} is not a severity") from None

    tactics, techniques = _threat(doc)
    rule = doc.first_text(*FIELDS["rule"])
    rule_id = doc.first_text(*FIELDS["rule_id"])
    description = doc.first_text(*FIELDS["description"])
    tags: list[str] = []
    for tag_field in FIELDS["tags"]:
        tags.extend(t for t in doc.texts(tag_field) if t not in tags)
    return Alert(
        id=alert_id,
        source="elastic-security",
        format=AlertFormat.ECS,
        title=title[1],
        rule=rule[1] if rule else None,
        rule_id=rule_id[1] if rule_id else None,
        description=description[1] if description else None,
        severity=severity,
        source_severity=label,
        category=tactics[0] if tactics else None,
        status=_status(doc),
        time=_time(doc),
        tactics=tactics,
        techniques=techniques,
        tags=tags,
        **_entities(doc).fields(),
        raw=raw,
    )


def _status(doc: Document) -> AlertStatus | None:
    """The analyst's workflow status first (`closed` ends it whatever the rule says), then the
    rule's own (`recovered`); 7.x signals carry `signal.status`."""
    workflow = status_word(doc.get("kibana.alert.workflow_status") or doc.get("signal.status"))
    if workflow is AlertStatus.RESOLVED:
        return workflow
    rule = status_word(doc.get("kibana.alert.status"))
    return rule if rule is AlertStatus.RESOLVED else workflow or rule


def _time(doc: Document) -> datetime:
    for field in FIELDS["time"]:
        value = doc.get(field)
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if value is not None:
            return parse_time(value, doc.path(field))
    raise missing(doc.path("@timestamp"), "no alert time: @timestamp is required")


def _threat(doc: Document) -> tuple[list[str], list[str]]:
    tactics: list[str] = []
    techniques: list[str] = []
    for field in FIELDS["threat"]:
        for threat in doc.objects(field):
            for tactic in threat.objects("tactic"):
                name = tactic.text("name")
                if name and snake(name) not in tactics:
                    tactics.append(snake(name))
            for technique in threat.objects("technique"):
                for item in [technique, *technique.objects("subtechnique")]:
                    uid = item.text("id")
                    if uid and uid not in techniques:
                        techniques.append(uid)
    return tactics, techniques


def _entities(doc: Document) -> Entities:
    found = Entities()
    found.user(
        doc.text("user.name"),
        domain=doc.text("user.domain"),
        id=doc.text("user.id"),
        email=doc.text("user.email"),
    )
    found.host(
        id=doc.text("host.id"),
        name=doc.text("host.name") or doc.text("host.hostname"),
        ips=doc.texts("host.ip"),
        os=doc.text("host.os.name"),
    )
    for field, role in IP_FIELDS:
        for address in doc.texts(field):
            found.ip(address, role)
    for field, algorithm in HASH_FIELDS:
        found.hash(doc.text(field), algorithm)
    found.url(doc.text("url.full") or doc.text("url.original"))
    for address in doc.texts("email.from.address"):
        found.email(address, "from")
    for address in doc.texts("email.to.address"):
        found.email(address, "to")
    return found
