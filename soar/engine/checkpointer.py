"""Signed checkpoints of the audit log: made periodically, when enough records are unsigned,
and at shutdown; kept in the store and published to the sinks.

Before it signs, the checkpointer re-checks every record since the last checkpoint (each hash
matches its content and links to the one before): a signature says "this is what the log held",
so it is never put on a log that was altered since the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from soar.audit.keys import Keyring, checkpoint_line
from soar.audit.merkle import CompactRange
from soar.audit.sinks import Publisher
from soar.errors import ChainBroken, ConflictError
from soar.models.audit import ZERO_HASH, StoredCheckpoint, leaf_hash
from soar.store.base import Change, Store

_log = logging.getLogger("soar.audit")
_PAGE = 5_000


class Checkpointer:
    """Signs checkpoints of one store's audit log with the keyring's active key."""

    def __init__(
        self,
        store: Store,
        keyring: Keyring,
        *,
        log_id: str = "soar",
        publisher: Publisher | None = None,
        every: timedelta = timedelta(minutes=1),
        records: int = 10_000,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.log_id = log_id
        self.publisher = publisher or Publisher([])
        self.every = every
        self.records = records
        self._now = clock or (lambda: datetime.now(UTC))
        self._tree: CompactRange | None = None
        self._head = ZERO_HASH
        self._signed = -1
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def checkpoint(self, *, force: bool = False) -> StoredCheckpoint | None:
        """Sign the log as it is now, unless nothing was added since the last checkpoint (or
        `force`). Returns the checkpoint, or None when none was due.

        Raises:
            ChainBroken: a record since the last checkpoint does not match its hash or link.
        """
        async with self._lock:
            await self._catch_up()
            assert self._tree is not None  # noqa: S101
            size = self._tree.size
            if size == self._signed and not force:
                return None
            body = {
                "log": self.log_id,
                "tree_size": size,
                "root": self._tree.root().hex(),
                "head": self._head,
                "time": self._now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            line = checkpoint_line(body, self.keyring)
            stored = StoredCheckpoint(
                tree_size=size,
                time=self._now(),
                key_id=self.keyring.active_id,
                line=line,
                frontier=tuple(self._tree.to_hex()),
            )
            if size != self._signed:
                stored = await self._store(stored)
                line = stored.line
            self._signed = size
        await self.publisher.publish(line)
        _log.info("signed audit checkpoint at tree size %d", size)
        return stored

    async def _store(self, checkpoint: StoredCheckpoint) -> StoredCheckpoint:
        """Keep the checkpoint; when one of that tree size is kept already, that one stands. A
        stop cancels the periodic checkpoint, and the cancel can come after its write landed
        but before it was counted; another process may have signed the same size too."""
        try:
            await self.store.apply(Change(checkpoints=[checkpoint]))
        except ConflictError:
            kept = await self.store.checkpoints(after_size=checkpoint.tree_size - 1)
            if not kept or kept[0].tree_size != checkpoint.tree_size:
                raise
            return kept[0]
        return checkpoint

    async def _catch_up(self) -> None:
        if self._tree is None:
            stored = await self.store.checkpoints()
            if stored:
                last = stored[-1]
                self._tree = CompactRange.from_hex(last.tree_size, list(last.frontier))
                self._signed = last.tree_size
                records = await self.store.audit_records(last.tree_size - 1, 1)
                self._head = records[0].hash if records and last.tree_size else ZERO_HASH
            else:
                self._tree = CompactRange()
        while True:
            page = await self.store.audit_records(self._tree.size, _PAGE)
            for record in page:
                if record.seq != self._tree.size + 1 or record.prev != self._head:
                    raise ChainBroken(record.seq, f"does not follow record {self._tree.size}")
                if leaf_hash(record.seq, record.prev, record.event.body) != record.hash:
                    raise ChainBroken(record.seq, "does not match its hash")
                self._tree.append(bytes.fromhex(record.hash))
                self._head = record.hash
            if len(page) < _PAGE:
                return

    # -- the periodic task ---------------------------------------------------------------

    def start(self) -> None:
        """Sign in the background: every `every`, or sooner once `records` are unsigned."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="soar-checkpoints")

    async def stop(self) -> StoredCheckpoint | None:
        """Stop the background task and sign what is unsigned (shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            return await self.checkpoint()
        finally:
            await self.publisher.close()

    async def _loop(self) -> None:
        poll = min(self.every.total_seconds(), 1.0)
        elapsed = 0.0
        while True:
            await asyncio.sleep(poll)
            elapsed += poll
            try:
                seq, _ = await self.store.audit_head()
                if elapsed >= self.every.total_seconds() or seq - self._signed >= self.records:
                    elapsed = 0.0
                    await self.checkpoint()
            except ChainBroken as exc:
                _log.critical("audit log altered, not signing: %s", exc)
            except Exception:  # a store or sink outage must not end the worker
                _log.exception("audit checkpoint failed; trying again")
