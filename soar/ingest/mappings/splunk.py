"""Splunk ES notable events: search results with fields, `_raw`-only results, webhook payloads.

A REST search of `index=notable` without field extraction returns only `_raw` and Splunk's
metadata; the notable's fields are then read from `_raw` (`key=value`, `key="value"` or
`key='value'`). Fields present as JSON win over fields parsed from `_raw`. A webhook or
`/services/search/jobs/export` payload wraps the event in `{"result": {...}}`; the event is read
from `result` and the wrapper's `search_name` names it when the event does not.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import JsonValue

from soar.ingest.mappings.document import Document, JsonObject, invalid, missing, snake
from soar.ingest.mappings.entities import Entities, is_ip
from soar.ingest.mappings.fingerprint import mint_id
from soar.ingest.mappings.status import SPLUNK_STATUS_IDS, status_number, status_word
from soar.ingest.mappings.timestamps import parse_time
from soar.models.alert import Alert, AlertFormat
from soar.models.severity import Severity

#: Severity: `urgency` is ES's final priority (severity x asset/identity priority) and wins
#: over the correlation search's `severity`. `unknown` or neither -> medium.
SEVERITY_FIELDS = ("urgency", "severity")
_UNKNOWN = {"unknown", "none", ""}

TITLE_FIELDS = ("rule_title", "rule_name", "search_name", "savedsearch_name")
ID_FIELDS = ("event_id", "rule_id")

#: Affected machines, in the order ES itself extracts assets (`dest`, `dvc`, `orig_host`,
#: `src`). `host` and `splunk_server` are the search head that wrote the notable: never used.
#: Each group: (name fields, address fields, asset id field, role of its addresses).
HOST_GROUPS: tuple[tuple[tuple[str, ...], tuple[str, ...], str | None, str | None], ...] = (
    (
        ("dest_nt_host", "dest_host", "dest_dns", "dest"),
        ("dest_ip", "dest"),
        "dest_asset_id",
        "dst",
    ),
    (("dvc_host", "dvc_dns", "dvc"), ("dvc_ip", "dvc"), "dvc_asset_id", None),
    (("orig_host",), ("orig_host",), None, None),
    (("src_nt_host", "src_host", "src_dns", "src"), ("src_ip", "src"), "src_asset_id", "src"),
)
USER_FIELDS = ("user", "dest_user", "target_user", "src_user")
HASH_FIELDS = (("file_hash", None), ("md5", "md5"), ("sha1", "sha1"), ("sha256", "sha256"))
_NOTABLE_MARKERS = ("event_id", "urgency", "rule_name", "rule_title", "security_domain")
_DOMAINS = {"access", "endpoint", "network", "threat", "identity", "audit"}

_PAIR = re.compile(
    r"""(?:^|[\s,])([A-Za-z_][\w.:-]{0,127})=("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,]*)"""
)
_LEADING_EPOCH = re.compile(r"^\s*(\d{9,11}(?:\.\d+)?)\s*,")


#: Only the head of `_raw` is parsed: a notable's own fields come first and are short.
RAW_PARSE_LIMIT = 65_536


def parse_raw(raw: str) -> dict[str, str]:
    """The `key=value` fields of a notable's `_raw`; the first of repeated keys wins."""
    fields: dict[str, str] = {}
    for key, value in _PAIR.findall(raw[:RAW_PARSE_LIMIT]):
        if value[:1] in "\"'" and len(value) >= 2 and value[-1] == value[0]:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        fields.setdefault(key, value)
    return fields


def map_splunk(raw: JsonObject) -> Alert:
    """Map one Splunk notable event or search result.

    Raises:
        AlertRejected: MISSING_FIELD without a title or time; INVALID_FIELD for a severity or
            time that cannot be read.
    """
    wrapper = Document(raw)
    result = raw.get("result")
    body: JsonObject = result if isinstance(result, dict) else raw
    prefix = "result." if body is not raw else ""
    merged: dict[str, JsonValue] = {}
    raw_text = body.get("_raw")
    if isinstance(raw_text, str):
        merged.update(parse_raw(raw_text))
    merged.update(body)
    doc = Document(merged, prefix=prefix)

    found = doc.first_text(*ID_FIELDS, strict=True)
    alert_id = found[1] if found else mint_id(raw)
    title = doc.first_text(*TITLE_FIELDS, strict=True) or wrapper.first_text(
        "search_name", strict=True
    )
    if title is None:
        raise missing(doc.path("rule_name"), "a notable needs rule_title, rule_name or search_name")
    rule = doc.first_text("rule_name", "search_name") or wrapper.first_text("search_name")
    rule_id = doc.first_text("search_name", "savedsearch_name") or wrapper.first_text("search_name")
    severity, source_severity = _severity(doc)
    description = doc.first_text("rule_description", "savedsearch_description", "description")
    domain = doc.text("security_domain")
    is_notable = any(doc.get(marker) is not None for marker in _NOTABLE_MARKERS) or (
        doc.text("index") == "notable"
    )
    return Alert(
        id=alert_id,
        source="splunk-es" if is_notable else "splunk",
        format=AlertFormat.SPLUNK,
        title=title[1],
        rule=rule[1] if rule else None,
        rule_id=rule_id[1] if rule_id else None,
        description=description[1] if description else None,
        severity=severity,
        source_severity=source_severity,
        category=snake(domain) if domain and snake(domain) in _DOMAINS else None,
        status=status_word(doc.get("status_label"))
        or status_number(doc.get("status"), SPLUNK_STATUS_IDS),
        time=_time(doc, raw_text),
        tags=doc.texts("tag"),
        **_entities(doc).fields(),
        raw=raw,
    )


def _severity(doc: Document) -> tuple[Severity, str | None]:
    for field in SEVERITY_FIELDS:
        label = doc.text(field, strict=True)
        if label is None or label.strip().lower() in _UNKNOWN:
            continue
        try:
            return Severity.parse(label), label
        except ValueError:
            raise invalid(doc.path(field), f"{label[:40]!r} is not a severity") from None
    labels = [doc.text(field) for field in SEVERITY_FIELDS]
    return Severity.MEDIUM, next((label for label in labels if label), None)


def _time(doc: Document, raw_text: JsonValue) -> datetime:
    value = doc.get("_time")
    if value is not None:
        return parse_time(value, doc.path("_time"))
    if isinstance(raw_text, str):
        leading = _LEADING_EPOCH.match(raw_text)
        if leading:
            return parse_time(leading.group(1), doc.path("_raw"))
    raise missing(doc.path("_time"), "no alert time: _time is required")


def _entities(doc: Document) -> Entities:
    found = Entities()
    for field in USER_FIELDS:
        for name in doc.texts(field):
            found.user(name)
    for names, addresses, asset_id, role in HOST_GROUPS:
        host = next((n for f in names for n in doc.texts(f) if not is_ip(n)), None)
        ips = [a for f in addresses for a in doc.texts(f) if is_ip(a)]
        found.host(name=host, id=doc.text(asset_id) if asset_id else None, ips=ips)
        for address in ips:
            found.ip(address, role)
    for field, algorithm in HASH_FIELDS:
        for value in doc.texts(field):
            found.hash(value, algorithm)
    for url in doc.texts("url"):
        found.url(url)
    for address in doc.texts("sender"):
        found.email(address, "from")
    for address in doc.texts("recipient"):
        found.email(address, "to")
    return found
