"""Audit records as data: the event the engine hands the store, and the sealed record the store
gives a place in the log (docs/audit.md, "The format", is the normative description).

The body is canonical JSON (RFC 8785) made by whoever records the event; the store only seals
it: the next sequence number, the previous record's hash, and this record's own hash, inside the
same transaction as the change the event describes, so that the two never disagree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

ZERO_HASH: Final = "0" * 64
"""The `prev` of the first record, and the `head` of an empty log."""


class AuditKind(StrEnum):
    """What happened. The body's `kind` field; `soar audit query --action` filters on it."""

    ALERT_ACCEPTED = "alert.accepted"
    ALERT_REJECTED = "alert.rejected"
    RUN_STARTED = "run.started"
    RUN_FINISHED = "run.finished"
    RUN_ABORT_REQUESTED = "run.abort_requested"
    RUN_RETRIED = "run.retried"
    STEP_STARTED = "step.started"
    STEP_FINISHED = "step.finished"
    STEP_COMPENSATED = "step.compensated"
    APPROVAL_DECIDED = "approval.decided"
    PLAYBOOK_CREATED = "playbook.created"
    PLAYBOOK_CHANGED = "playbook.changed"
    PLAYBOOK_ROLLED_OUT = "playbook.rolled_out"
    API_LOGIN = "api.login"
    API_DENIED = "api.denied"
    API_REQUEST = "api.request"
    TOKEN_CREATED = "token.created"  # noqa: S105 - an event name
    TOKEN_REVOKED = "token.revoked"  # noqa: S105 - an event name
    KEY_CREATED = "key.created"
    KEY_ROTATED = "key.rotated"


@dataclass(slots=True)
class AuditEvent:
    """One event to record. `body` is the canonical JSON of the whole body (it holds `kind`,
    `time`, `actor` and the rest); the other fields repeat what queries filter on.

    Treat as immutable (not frozen only because a frozen init costs a few microseconds, and
    every step transition makes one)."""

    kind: AuditKind
    time: datetime
    actor: str
    body: bytes
    run_id: str | None = None
    alert_id: str | None = None
    step: str | None = None
    action: str | None = None
    target: str | None = None
    trace_id: str | None = None


@dataclass(slots=True)
class AuditRecord:
    """An event with its place in the log. Treat as immutable, as `AuditEvent`."""

    seq: int
    prev: str
    hash: str
    event: AuditEvent

    def line(self) -> str:
        """The record as one line of an export (without the newline)."""
        return (
            f'{{"type":"record","seq":{self.seq},"prev":"{self.prev}",'
            f'"body":{self.event.body.decode()},"hash":"{self.hash}"}}'
        )


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed checkpoint as kept in the store: its export line, and the Merkle frontier at
    its tree size (hex), so the next checkpoint reads only the records after it."""

    tree_size: int
    time: datetime
    key_id: str
    line: str
    frontier: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which records `query_audit` returns, oldest first. Every given field must match."""

    since: datetime | None = None
    until: datetime | None = None
    run_id: str | None = None
    alert_id: str | None = None
    actor: str | None = None
    kind: str | None = None
    action: str | None = None
    target: str | None = None
    after_seq: int = 0
    limit: int = 1000


def entry(seq: int, prev: str, body: bytes) -> bytes:
    """The canonical JSON of `{"body": body, "prev": prev, "seq": seq}`: RFC 8785 sorts the
    three keys, so it can be spliced together from the body's own canonical bytes."""
    return b'{"body":' + body + b',"prev":"' + prev.encode() + b'","seq":' + b"%d}" % seq


def leaf_hash(seq: int, prev: str, body: bytes) -> str:
    """The record's hash: its chain link and its Merkle leaf, SHA-256(0x00 ‖ entry)."""
    return hashlib.sha256(b"\x00" + entry(seq, prev, body)).hexdigest()


def seal(events: list[AuditEvent], head: tuple[int, str]) -> list[AuditRecord]:
    """Give `events` the next places after `head` (the last record's seq and hash)."""
    seq, prev = head
    sealed = []
    for event in events:
        seq += 1
        digest = leaf_hash(seq, prev, event.body)
        sealed.append(AuditRecord(seq, prev, digest, event))
        prev = digest
    return sealed
