"""Where an alert stands, from the many words and numbers sources use for it."""

from __future__ import annotations

from soar.models.alert import AlertStatus

#: lower-case words (spaces and hyphens as `_`) -> status; anything else says nothing
WORDS: dict[str, AlertStatus] = {
    **dict.fromkeys(
        ("open", "new", "active", "firing", "triggered", "unassigned"), AlertStatus.OPEN
    ),
    **dict.fromkeys(
        ("acknowledged", "in_progress", "pending", "investigating", "assigned"),
        AlertStatus.ACKNOWLEDGED,
    ),
    **dict.fromkeys(
        ("resolved", "closed", "recovered", "cleared", "suppressed", "archived"),
        AlertStatus.RESOLVED,
    ),
}

#: OCSF 1.1+ finding `status_id`: 1 New, 2 In Progress, 3 Suppressed, 4 Resolved, 5 Archived
OCSF_STATUS_IDS = {
    1: AlertStatus.OPEN,
    2: AlertStatus.ACKNOWLEDGED,
    3: AlertStatus.RESOLVED,
    4: AlertStatus.RESOLVED,
    5: AlertStatus.RESOLVED,
}

#: Splunk ES notable `status`: 1 New, 2 In Progress, 3 Pending, 4 Resolved, 5 Closed
SPLUNK_STATUS_IDS = {
    1: AlertStatus.OPEN,
    2: AlertStatus.ACKNOWLEDGED,
    3: AlertStatus.ACKNOWLEDGED,
    4: AlertStatus.RESOLVED,
    5: AlertStatus.RESOLVED,
}


def status_word(value: object) -> AlertStatus | None:
    """The status a word names (`"In Progress"`, `closed`, `RECOVERED`), or None."""
    if not isinstance(value, str):
        return None
    return WORDS.get(value.strip().lower().replace(" ", "_").replace("-", "_"))


def status_number(value: object, table: dict[int, AlertStatus]) -> AlertStatus | None:
    """The status a source's number names (an int, or digits in a string), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return table.get(value) if isinstance(value, int) else None
