"""An export: the log's records in order, each signed checkpoint right after the last record it
covers, as JSON Lines that verify on their own (docs/audit.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from soar.models.audit import AuditRecord, StoredCheckpoint

_PAGE = 5_000


class AuditSource(Protocol):
    """What an export reads (every `Store` is one)."""

    async def audit_records(self, after_seq: int, limit: int) -> list[AuditRecord]: ...

    async def checkpoints(self, *, after_size: int = 0) -> list[StoredCheckpoint]: ...


async def export_lines(source: AuditSource) -> AsyncIterator[str]:
    """Every line of the export, without newlines, reading the log page by page."""
    pending = await source.checkpoints()
    position = 0
    for checkpoint in [c for c in pending if c.tree_size == 0]:
        yield checkpoint.line
    pending = [c for c in pending if c.tree_size > 0]
    while True:
        page = await source.audit_records(position, _PAGE)
        for record in page:
            yield record.line()
            position = record.seq
            while pending and pending[0].tree_size <= position:
                yield pending.pop(0).line
        if len(page) < _PAGE:
            break
    for checkpoint in pending:  # signed over records the log no longer holds: keep the evidence
        yield checkpoint.line
