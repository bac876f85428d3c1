"""The PostgreSQL store's writer: groups of changes, each committed in one transaction on one
connection, the audit log's head locked for the append.

The rows are those of `rows`, written with `executemany` (pipelined: one round trip per table
a group touches, not per row), so a later upsert of a key in a group wins, as in SQLite. A
group that fails is rolled back and written again change by change, each under a savepoint,
so that only a bad change fails. A connection lost mid-group fails the whole group: whether its
commit reached the server is unknown, and writing it again could append its audit records twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import asyncpg  # type: ignore[import-untyped]

from soar.errors import ConflictError, LeaseLost, StoreError
from soar.store import rows
from soar.store.rows import (
    AUDIT_COLUMNS,
    INBOX_COLUMNS,
    ROLLOUT_COLUMNS,
    RUN_COLUMNS,
    STEP_COLUMNS,
    TIMER_COLUMNS,
    TOKEN_COLUMNS,
    TRANSITION_COLUMNS,
    VERSION_COLUMNS,
)

_Outcome = BaseException | None
_DEADLOCK_RETRIES: Final = 3
_FAILURES: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, StoreError)
"""What a failed write raises: the server's errors, the driver's, the socket's, and ours."""


def _upsert(table: str, columns: str, key: Sequence[str]) -> str:
    names = columns.split(", ")
    updates = ", ".join(f"{c} = excluded.{c}" for c in names if c not in key)
    values = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({values}) "  # noqa: S608 - fixed names
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


def _insert(table: str, columns: str) -> str:
    values = ", ".join(f"${i}" for i in range(1, len(columns.split(", ")) + 1))
    return f"INSERT INTO {table} ({columns}) VALUES ({values})"  # noqa: S608 - fixed names


CHECKPOINT_COLUMNS: Final = "tree_size, at, key_id, line, frontier"
AUDIT_HEAD: Final = "SELECT seq, hash FROM audit_head"

_UPSERT_RUN: Final = _upsert("runs", RUN_COLUMNS, ["id"])
_UPSERT_STEP: Final = _upsert("steps", STEP_COLUMNS, ["run_id", "key"])
_INSERT_TRANSITION: Final = _insert("transitions", TRANSITION_COLUMNS)
_UPSERT_TIMER: Final = _upsert("timers", TIMER_COLUMNS, ["id"])
_DELETE_TIMERS: Final = "DELETE FROM timers WHERE id = ANY($1::text[])"
_UPSERT_DEDUP: Final = _upsert(
    "dedup", "playbook_id, key, run_id, expires_at", ["playbook_id", "key"]
)
_UPSERT_ALERT: Final = _upsert("alerts", "run_id, seq, alert", ["run_id", "seq"])
_UPSERT_MARK: Final = _upsert("cron_marks", "playbook_id, mark", ["playbook_id"])
_INSERT_AUDIT: Final = _insert("audit", AUDIT_COLUMNS)
_INSERT_CHECKPOINT: Final = _insert("audit_checkpoints", CHECKPOINT_COLUMNS)
# Locks the leases a group checks (in one order, so that two groups cannot deadlock on them):
# a take-over then waits for the holder's write in flight, and reads the run after it.
_LOCK_LEASES: Final = (
    "SELECT run_id, token FROM leases WHERE run_id = ANY($1::text[]) ORDER BY run_id FOR UPDATE"
)
_UPSERT_LEASE: Final = _upsert("leases", "run_id, owner, token", ["run_id"])
_INSERT_LEASE: Final = _insert("leases", "run_id, owner, token")
_UPSERT_WORKER: Final = _upsert("workers", "id, expires_at", ["id"])
_DELETE_WORKERS: Final = "DELETE FROM workers WHERE id = ANY($1::text[])"
_RUN_STATUSES: Final = "SELECT id, status FROM runs WHERE id = ANY($1::text[])"
_INSERT_INBOX: Final = _insert("inbox", INBOX_COLUMNS)
_DONE_INBOX: Final = (
    "UPDATE inbox SET done_at = d.done_at, outcome = d.outcome "
    "FROM unnest($1::text[], $2::bigint[], $3::text[]) AS d(id, done_at, outcome) "
    "WHERE inbox.id = d.id AND inbox.done_at IS NULL RETURNING inbox.id"
)
_CLOSE_INBOX: Final = (
    "UPDATE inbox SET done_at = $2, outcome = $3 WHERE run_id = $1 AND done_at IS NULL"
)
_UPSERT_TOKEN: Final = _upsert("api_tokens", TOKEN_COLUMNS, ["id"])
_INSERT_VERSION: Final = (
    _insert("playbook_versions", VERSION_COLUMNS) + " ON CONFLICT (playbook_id, version) DO NOTHING"
)
_VERSION_DIGEST: Final = (
    "SELECT digest FROM playbook_versions WHERE playbook_id = $1 AND version = $2"
)
_INSERT_ROLLOUT: Final = _insert("rollouts", ROLLOUT_COLUMNS)
# The row lock every appender queues on, held until its transaction ends.
_LOCK_HEAD: Final = f"{AUDIT_HEAD} FOR UPDATE"
_MOVE_HEAD: Final = "UPDATE audit_head SET seq = $1, hash = $2"


class Committer:
    """Commits groups of changes on one connection, opened (again) by `connect` when it has
    none: each group in one transaction, or, when that fails, change by change under
    savepoints. `commits` counts transactions committed and `changes` the changes in them."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        self._connect = connect
        self._connection: asyncpg.Connection | None = None
        self.commits = 0
        self.changes = 0

    async def commit(self, changes: list[rows.EncodedChange]) -> list[_Outcome]:
        """Write `changes` durably; one outcome per change (None when written)."""
        try:
            connection = await self.connection()
        except StoreError as exc:
            return [exc] * len(changes)
        try:
            return await self._commit(connection, changes)
        except Exception as exc:  # a bug here must neither leave callers waiting nor stop writes
            self._connection = None
            connection.terminate()  # in an unknown state: the next group opens a new one
            return [StoreError(f"the writer failed: {exc!r}")] * len(changes)

    async def _commit(
        self, connection: asyncpg.Connection, changes: list[rows.EncodedChange]
    ) -> list[_Outcome]:
        retries = 0
        while True:
            try:
                async with connection.transaction():
                    await write(connection, changes)
            except _FAILURES as exc:
                if connection.is_closed():
                    return [self._lost(exc)] * len(changes)
                if isinstance(exc, asyncpg.TransactionRollbackError) and (
                    retries < _DEADLOCK_RETRIES
                ):
                    retries += 1  # a deadlock or serialisation failure: the whole group again
                    continue
                if len(changes) == 1:
                    return [store_error(exc)]
                return await self._commit_each(connection, changes)
            self.commits += 1
            self.changes += len(changes)
            return [None] * len(changes)

    async def _commit_each(
        self, connection: asyncpg.Connection, changes: list[rows.EncodedChange]
    ) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        try:
            async with connection.transaction():
                # every lease row of the group first, as a group commit locks them: else one
                # change's audit append (the head locked) precedes the next one's lease locks,
                # and two workers' groups can wait on each other crosswise
                fenced = _runs_to_lock(changes)
                if fenced:
                    await connection.fetch(_LOCK_LEASES, fenced)
                for change in changes:
                    try:
                        async with connection.transaction():  # a savepoint
                            await write(connection, [change])
                    except _FAILURES as exc:
                        if connection.is_closed():
                            raise
                        outcomes.append(store_error(exc))
                    else:
                        outcomes.append(None)
        except _FAILURES as exc:
            if connection.is_closed():
                return [self._lost(exc)] * len(changes)
            return [store_error(exc)] * len(changes)
        self.commits += 1
        self.changes += outcomes.count(None)
        return outcomes

    async def connection(self) -> asyncpg.Connection:
        """The writing connection, opened anew when there is none or it was lost.

        Raises:
            StoreError: it cannot be opened.
        """
        if self._connection is None or self._connection.is_closed():
            self._connection = None
            self._connection = await self._connect()
        return self._connection

    def _lost(self, exc: BaseException) -> StoreError:
        self._connection = None  # the next group opens a new one
        return StoreError(
            f"PostgreSQL: the connection was lost while writing ({exc}); "
            "the change may or may not have been committed"
        )

    async def close(self) -> None:
        """Close the connection (the next `commit` would open another)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except _FAILURES:  # the server is gone: nothing to say goodbye to
                connection.terminate()

    def terminate(self) -> None:
        """Drop the connection at once, whatever it is doing (its transaction rolls back)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()


def store_error(exc: BaseException) -> StoreError:
    """The StoreError for a failed write: ConflictError for a key already recorded (a
    transition's (run_id, seq) or a checkpoint's tree size: every other table is an upsert)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, asyncpg.UniqueViolationError) and exc.constraint_name == "leases_pkey":
        return LeaseLost(f"a run was leased by another worker at the same moment: {exc}")
    if isinstance(exc, asyncpg.UniqueViolationError):
        return ConflictError(f"already recorded: {exc} ({exc.constraint_name})")
    return StoreError(f"PostgreSQL: {exc}")


async def write(connection: asyncpg.Connection, changes: list[rows.EncodedChange]) -> None:
    """Every row of `changes`, in their order: a later upsert of the same key wins. Inside a
    transaction: the audit head stays locked until it ends."""
    if len(changes) == 1:
        change = changes[0]
        runs, steps, transitions = change.runs, change.steps, change.transitions
        dedup, alerts, marks = change.dedup, change.alerts, change.cron_marks
    else:
        runs = [r for c in changes for r in c.runs]
        steps = [s for c in changes for s in c.steps]
        transitions = [t for c in changes for t in c.transitions]
        dedup = [d for c in changes for d in c.dedup]
        alerts = [a for c in changes for a in c.alerts]
        marks = [m for c in changes for m in c.cron_marks]
    await _write_leases(connection, changes)
    if runs:
        await connection.executemany(_UPSERT_RUN, runs)
    if steps:
        await connection.executemany(_UPSERT_STEP, steps)
    if transitions:
        await connection.executemany(_INSERT_TRANSITION, transitions)
    await _write_timers(connection, changes)
    if dedup:
        await connection.executemany(_UPSERT_DEDUP, dedup)
    if alerts:
        await connection.executemany(_UPSERT_ALERT, alerts)
    if marks:
        await connection.executemany(_UPSERT_MARK, marks)
    events = [e for c in changes for e in c.audit]
    if events:
        await _append_audit(connection, events)
    checkpoints = [c for change in changes for c in change.checkpoints]
    if checkpoints:
        await connection.executemany(_INSERT_CHECKPOINT, checkpoints)
    await _write_inbox(connection, changes)
    tokens = [t for c in changes for t in c.tokens]
    if tokens:
        await connection.executemany(_UPSERT_TOKEN, tokens)
    await _write_versions(connection, changes)


async def _write_versions(
    connection: asyncpg.Connection, changes: list[rows.EncodedChange]
) -> None:
    """Save versions (a version saved before with the same digest is left as it is) and
    append rollout records in order.

    Raises:
        ConflictError: a version saved before with another digest.
    """
    for change in changes:
        for version in change.versions:
            await connection.execute(_INSERT_VERSION, *version)
            recorded = await connection.fetchval(_VERSION_DIGEST, version[0], version[1])
            refusal = rows.conflicting_version(version, recorded)
            if refusal is not None:
                raise ConflictError(refusal)
    rollouts = [r for c in changes for r in c.rollouts]
    if rollouts:
        await connection.executemany(_INSERT_ROLLOUT, rollouts)


def _runs_to_lock(changes: list[rows.EncodedChange]) -> list[str]:
    """The runs whose lease rows a group locks: those it leases or fences, and those it records
    requests for (so that a run cannot end between the check that it is open and the commit)."""
    return list(
        dict.fromkeys(
            [
                *rows.lease_runs(
                    [x for c in changes for x in c.leases], [f for c in changes for f in c.fence]
                ),
                *(i[1] for c in changes for i in c.inbox),
            ]
        )
    )


async def _write_inbox(connection: asyncpg.Connection, changes: list[rows.EncodedChange]) -> None:
    """Record requests, mark requests done, close runs' pending requests, in that order. The
    runs' lease rows are locked already (`_write_leases`): a run that ends commits before the
    check here reads it, or waits for this transaction, whose items it then closes.

    Raises:
        ConflictError: a request for a run not recorded or ended, or an item done that is not
            pending (nothing of the change may then be written).
    """
    items = [i for c in changes for i in c.inbox]
    if items:
        found = await connection.fetch(_RUN_STATUSES, list(dict.fromkeys(i[1] for i in items)))
        statuses = {r[0]: r[1] for r in found}
        for item in items:
            refusal = rows.not_open_for_requests(item[1], statuses.get(item[1]))
            if refusal is not None:
                raise ConflictError(refusal)
        await connection.executemany(_INSERT_INBOX, items)
    done = [d for c in changes for d in c.inbox_done]
    if done:
        ids = [d[0] for d in done]
        updated = await connection.fetch(
            _DONE_INBOX, ids, [d[1] for d in done], [d[2] for d in done]
        )
        if len(updated) != len(ids):
            missing = sorted(set(ids) - {r[0] for r in updated}) or ids
            raise ConflictError(f"inbox item {missing[0]} is not pending")
    closed = [c for change in changes for c in change.close_inbox]
    if closed:
        await connection.executemany(_CLOSE_INBOX, closed)


async def _append_audit(connection: asyncpg.Connection, events: list[rows.EventRow]) -> None:
    """Seal `events` after the log's head and insert them, with the head row locked, so that
    every writer (workers, a CLI command) appends to one chain: one total order, that of
    commits. A second appender waits here for the first to commit, then reads its head (READ
    COMMITTED re-reads a row it waited for). The lock is taken after the group's other rows, so
    appenders queue for the append, not for whole groups."""
    head = await connection.fetchrow(_LOCK_HEAD)
    if head is None:
        raise StoreError("PostgreSQL: the audit_head row is missing")
    sealed = rows.sealed_rows(events, (head[0], head[1]))
    await connection.executemany(_INSERT_AUDIT, sealed)
    await connection.execute(_MOVE_HEAD, sealed[-1][0], sealed[-1][12])


async def _write_leases(connection: asyncpg.Connection, changes: list[rows.EncodedChange]) -> None:
    """Check the changes' fences and take their leases, before any of their rows is written,
    with the leases' rows locked until the transaction ends.

    Raises:
        LeaseLost: a lease or fence that does not hold.
    """
    leases = [x for c in changes for x in c.leases]
    fence = [f for c in changes for f in c.fence]
    locked = _runs_to_lock(changes)
    if locked:
        found = await connection.fetch(_LOCK_LEASES, locked)
        current = {r[0]: int(r[1]) for r in found}
        taken = rows.settle_leases(current, leases, fence)
        # a new run's lease is inserted, never upserted: of two workers recording the same
        # run at once (neither saw a row to lock), the second fails on the key, not overwrites
        # (in run-id order, as the locks above: two groups never wait on each other crosswise)
        taken.sort()
        new = [x[:3] for x in taken if x[3] == 0 and x[0] not in current]
        moved = [x[:3] for x in taken if not (x[3] == 0 and x[0] not in current)]
        if new:
            await connection.executemany(_INSERT_LEASE, new)
        if moved:
            await connection.executemany(_UPSERT_LEASE, moved)
    beats = [h for c in changes for h in c.heartbeats]
    if beats:
        await connection.executemany(_UPSERT_WORKER, beats)
    gone = [w for c in changes for w in c.forget_workers]
    if gone:
        await connection.execute(_DELETE_WORKERS, gone)


async def _write_timers(connection: asyncpg.Connection, changes: list[rows.EncodedChange]) -> None:
    # The net effect of cancels and sets taken in order: each id ends deleted or set.
    final: dict[str, rows.TimerRow | None] = {}
    for change in changes:
        for timer_id in change.cancel_timers:
            final[timer_id] = None
        for timer in change.timers:
            final[timer[0]] = timer
    if not final:
        return
    cancelled = [i for i, t in final.items() if t is None]
    if cancelled:
        await connection.execute(_DELETE_TIMERS, cancelled)
    timers = [t for t in final.values() if t is not None]
    if timers:
        await connection.executemany(_UPSERT_TIMER, timers)
