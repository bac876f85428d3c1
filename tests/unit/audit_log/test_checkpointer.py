"""The checkpointer signs what is unsigned, and a checkpoint kept already at the same tree size
(a stop that cancelled the periodic one after its write landed) is not a failure."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from soar.audit.keys import Keyring
from soar.engine.checkpointer import Checkpointer
from soar.models.audit import AuditEvent, AuditKind
from soar.store import Change
from soar.store.memory import MemoryStore


def event(n: int) -> AuditEvent:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    body = f'{{"actor":"t","kind":"step.started","n":{n}}}'.encode()
    return AuditEvent(kind=AuditKind.STEP_STARTED, time=at, actor="t", body=body)


async def test_a_checkpoint_kept_already_at_the_same_size_stands(tmp_path: Path) -> None:
    store = MemoryStore()
    keyring = Keyring.create(tmp_path / "keys")
    await store.apply(Change(audit=[event(1), event(2)]))
    first = Checkpointer(store, keyring)
    second = Checkpointer(store, keyring)
    await second.checkpoint(force=True)  # catches up: it has signed nothing yet
    await store.apply(Change(audit=[event(3)]))
    kept = await first.checkpoint()  # size 3, first of its kind
    assert kept is not None
    assert kept.tree_size == 3
    again = await second.checkpoint()  # also size 3: the kept one stands, no ConflictError
    assert again is not None
    assert again.line == kept.line
    assert [c.tree_size for c in await store.checkpoints()] == [2, 3]
    assert await second.stop() is None  # nothing unsigned is left
