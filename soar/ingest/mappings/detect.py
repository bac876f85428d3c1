"""Choosing an alert's format from the payload itself, for topics not pinned to one format.

Checked in order; the first match wins: OCSF (`class_uid`), Elastic (`kibana.alert.*` or
`signal.*` in any nesting, bare or inside an Elasticsearch hit's `_source`), Splunk (`_raw`,
`search_name`, `event_id` with `urgency`, or a `{"result": {...}}` search-result wrapper),
Alertmanager (a webhook notification: `version`, `groupKey` and an `alerts` list), then the
generic form (`title` and `severity`).
"""

from __future__ import annotations

from soar.errors import AlertRejected, RejectionCode
from soar.ingest.mappings.alertmanager import is_alertmanager
from soar.ingest.mappings.document import JsonObject, has_prefix
from soar.models.alert import AlertFormat

_ELASTIC_PREFIXES = ("kibana.alert", "signal.rule")
_SPLUNK_WRAPPER_KEYS = ("sid", "search_name", "results_link")


def detect_format(raw: JsonObject) -> AlertFormat:
    """The format `raw` is written in.

    Raises:
        AlertRejected: UNKNOWN_FORMAT when no format's markers are present.
    """
    if "class_uid" in raw:
        return AlertFormat.OCSF
    if is_elastic(raw):
        return AlertFormat.ECS
    if is_splunk(raw):
        return AlertFormat.SPLUNK
    if is_alertmanager(raw):
        return AlertFormat.ALERTMANAGER
    if "title" in raw and "severity" in raw:
        return AlertFormat.GENERIC
    raise AlertRejected(
        RejectionCode.UNKNOWN_FORMAT,
        "not OCSF (class_uid), Elastic (kibana.alert.*, signal.*), Splunk (_raw, search_name, "
        "event_id+urgency, result), Alertmanager (version, groupKey, alerts) or the generic form "
        "(title, severity)",
    )


def is_elastic(raw: JsonObject) -> bool:
    """Whether `raw` is an Elastic Security alert document or a hit holding one."""
    source = raw.get("_source")
    body = source if isinstance(source, dict) else raw
    return any(has_prefix(body, prefix) for prefix in _ELASTIC_PREFIXES)


def is_splunk(raw: JsonObject) -> bool:
    """Whether `raw` is a Splunk search result, notable event or webhook payload."""
    if isinstance(raw.get("_raw"), str) or "search_name" in raw:
        return True
    if "event_id" in raw and "urgency" in raw:
        return True
    result = raw.get("result")
    if isinstance(result, dict):
        return any(key in raw for key in _SPLUNK_WRAPPER_KEYS) or "_raw" in result
    return False
