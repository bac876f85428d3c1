"""`SqliteStore`: runs in one SQLite file (WAL), written by one thread that commits in groups.

No SQLite call runs on the event loop. Writes: `apply` queues its rows and awaits a future; the
writer thread takes every change already queued (up to `batch_limit`), writes them all in one
transaction, commits, and only then resolves their futures. If that transaction fails it is
rolled back and the batch is written again change by change, each under its own savepoint, so
only the bad change fails. Reads run on a second thread with its own connection; WAL lets them
proceed while the writer commits, and each read sees every change acknowledged before it began.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Final, TypeAlias, TypeVar

from soar.errors import ConfigError, ConflictError, StoreError
from soar.models.audit import (
    ZERO_HASH,
    AuditEvent,
    AuditFilter,
    AuditRecord,
    StoredCheckpoint,
    seal,
)
from soar.models.run import Run, RunStatus, Timer, Transition
from soar.store import rows
from soar.store.base import Change, RunFilter, RunSnapshot
from soar.store.migrations import migrate

_T = TypeVar("_T")
_Pending: TypeAlias = tuple[rows.EncodedChange, asyncio.Future[None], asyncio.AbstractEventLoop]
_Outcome: TypeAlias = BaseException | None

SYNCHRONOUS_MODES: Final = ("FULL", "NORMAL", "EXTRA")
"""`synchronous` settings that keep WAL consistent; FULL also survives power loss."""


def _upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "  # noqa: S608 - fixed names
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


_RUN_COLUMNS: Final = (
    "id, playbook_id, playbook_version, playbook_digest, status, trigger, created_at, "
    "updated_at, alert, inputs, parent_run, parent_step, error, dry_run, trace"
)
_STEP_COLUMNS: Final = (
    "run_id, key, status, attempt, idempotency_key, inputs, output, error, retryable, "
    "started_at, finished_at, due_at, ord"
)
_TRANSITION_COLUMNS: Final = "run_id, seq, at, kind, step, attempt, data"
_TIMER_COLUMNS: Final = "id, run_id, kind, due_at, step"

_UPSERT_RUN: Final = _upsert("runs", _RUN_COLUMNS.split(", "), ["id"])
_UPSERT_STEP: Final = _upsert("steps", _STEP_COLUMNS.split(", "), ["run_id", "key"])
_INSERT_TRANSITION: Final = (
    f"INSERT INTO transitions ({_TRANSITION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
)
_UPSERT_TIMER: Final = _upsert("timers", _TIMER_COLUMNS.split(", "), ["id"])
_DELETE_TIMER: Final = "DELETE FROM timers WHERE id = ?"
_UPSERT_DEDUP: Final = _upsert(
    "dedup", ["playbook_id", "key", "run_id", "expires_at"], ["playbook_id", "key"]
)
_UPSERT_ALERT: Final = _upsert("alerts", ["run_id", "seq", "alert"], ["run_id", "seq"])
_UPSERT_MARK: Final = _upsert("cron_marks", ["playbook_id", "mark"], ["playbook_id"])
_AUDIT_COLUMNS: Final = (
    "seq, at, kind, actor, run_id, alert_id, step, action, target, trace_id, body, prev, hash"
)
_INSERT_AUDIT: Final = f"INSERT INTO audit ({_AUDIT_COLUMNS}) VALUES ({', '.join('?' * 13)})"  # noqa: S608
_AUDIT_HEAD: Final = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
_INSERT_CHECKPOINT: Final = (
    "INSERT INTO audit_checkpoints (tree_size, at, key_id, line, frontier) VALUES (?, ?, ?, ?, ?)"
)
# Spelled as the partial index `runs_unfinished` spells it, so that SQLite uses the index.
_UNFINISHED: Final = "status NOT IN ({})".format(
    ", ".join(f"'{s.value}'" for s in RunStatus if s.is_terminal)
)


class SqliteStore:
    """The `Store` protocol on one SQLite file. Open with `await SqliteStore.open(path)`.

    `commits` counts write transactions committed and `changes` the changes they carried, so
    `changes / commits` is the mean group size. Cancelling a task awaiting `apply` does not
    withdraw its change: once queued it is written (or fails) with its group.
    """

    def __init__(
        self,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        *,
        batch_limit: int,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._batch_limit = batch_limit
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="soar-sqlite-read")
        self._thread = threading.Thread(
            target=self._write_loop, name="soar-sqlite-write", daemon=True
        )
        self._closed = False
        self._head: _Head | None = None
        """The audit log's head as of this writer's last commit (used by the writer thread)."""
        self.commits = 0
        self.changes = 0
        # The writer thread needs the GIL for a moment per statement. With Python's default
        # 5 ms switch interval a busy event loop holds every commit back by up to that long,
        # and runs wait on their commits: measured, 0.3 ms lifts the four-step engine
        # benchmark from ~770 to ~1,000-1,150 runs/s on 2 cores. Process-wide, only lowered.
        sys.setswitchinterval(min(sys.getswitchinterval(), _SWITCH_INTERVAL))
        self._thread.start()

    @classmethod
    async def open(
        cls, path: Path | str, *, synchronous: str = "FULL", batch_limit: int = 256
    ) -> SqliteStore:
        """Open (creating and migrating as needed) the database at `path`.

        Args:
            synchronous: FULL (durable across power loss) or NORMAL (across process crashes).
            batch_limit: the most changes committed in one transaction.

        Raises:
            ConfigError: an unknown `synchronous` mode or a `batch_limit` below 1.
            StoreError: the file cannot be opened, is not in WAL mode, or has a newer schema.
        """
        mode = synchronous.upper()
        if mode not in SYNCHRONOUS_MODES:
            raise ConfigError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        if batch_limit < 1:
            raise ConfigError("batch_limit must be at least 1")
        writer, reader = await asyncio.to_thread(_connect, str(path), mode)
        return cls(writer, reader, batch_limit=batch_limit)

    # -- writes --------------------------------------------------------------------------

    async def apply(self, change: Change) -> None:
        """Write `change` atomically; return once its transaction has committed.

        Raises:
            ConflictError: a transition's (run_id, seq) is already recorded; nothing written.
            StoreError: a value the store cannot hold, a failed write, or the store is closed.
        """
        if self._closed:
            raise StoreError("the store is closed")
        encoded = rows.encode(change)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((encoded, future, loop))
        await future

    def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._batch_limit:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                outcomes = self._commit([p[0] for p in batch])
            except BaseException as exc:  # a bug here must not leave callers waiting forever
                error = StoreError(f"the writer failed: {exc!r}")
                error.__cause__ = exc
                outcomes = [error] * len(batch)
            _settle(batch, outcomes)

    def _commit(self, changes: list[rows.EncodedChange]) -> list[_Outcome]:
        connection = self._writer
        head, self._head = self._head, None  # known again only once this commit is durable
        try:
            connection.execute("BEGIN IMMEDIATE")
            head = _write(connection, changes, head)
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(connection)
            if len(changes) == 1:
                return [_store_error(exc)]
            return self._commit_each(changes)
        self._head = head
        self.commits += 1
        self.changes += len(changes)
        return [None] * len(changes)

    def _commit_each(self, changes: list[rows.EncodedChange]) -> list[_Outcome]:
        """One transaction again, each change under a savepoint, so a bad one fails alone."""
        connection = self._writer
        outcomes: list[_Outcome] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            head: _Head | None = None
            for change in changes:
                connection.execute("SAVEPOINT change")
                try:
                    written = _write(connection, [change], head)
                except sqlite3.Error as exc:
                    connection.execute("ROLLBACK TO change")
                    outcomes.append(_store_error(exc))
                else:
                    head = written
                    outcomes.append(None)
                connection.execute("RELEASE change")
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(connection)
            return [_store_error(exc)] * len(changes)
        self._head = head
        self.commits += 1
        self.changes += outcomes.count(None)
        return outcomes

    # -- reads ---------------------------------------------------------------------------

    async def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._reads, work, self._reader)
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc

    async def load_run(self, run_id: str) -> RunSnapshot | None:
        return await self._read(lambda c: _load_run(c, run_id))

    async def list_runs(self, run_filter: RunFilter) -> list[Run]:
        clauses: list[str] = []
        params: list[object] = []
        if run_filter.playbook_id is not None:
            clauses.append("playbook_id = ?")
            params.append(run_filter.playbook_id)
        if run_filter.statuses:
            clauses.append(f"status IN ({', '.join('?' * len(run_filter.statuses))})")
            params.extend(s.value for s in run_filter.statuses)
        if run_filter.since is not None:
            clauses.append("created_at >= ?")
            params.append(rows.to_micros(run_filter.since))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY created_at DESC, id DESC LIMIT ?"  # noqa: S608
        params.append(max(run_filter.limit, 0))

        def work(c: sqlite3.Connection) -> list[Run]:
            return [rows.run_from(r) for r in c.execute(sql, params)]

        return await self._read(work)

    async def unfinished_runs(self) -> list[str]:
        sql = f"SELECT id FROM runs WHERE {_UNFINISHED} ORDER BY created_at, id"  # noqa: S608
        return await self._read(lambda c: [r[0] for r in c.execute(sql)])

    async def transitions(self, run_id: str) -> list[Transition]:
        sql = f"SELECT {_TRANSITION_COLUMNS} FROM transitions WHERE run_id = ? ORDER BY seq"  # noqa: S608
        return await self._read(
            lambda c: [rows.transition_from(r) for r in c.execute(sql, (run_id,))]
        )

    async def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        sql = f"SELECT {_TIMER_COLUMNS} FROM timers WHERE due_at <= ? ORDER BY due_at, id LIMIT ?"  # noqa: S608
        params = (rows.to_micros(now), max(limit, 0))
        return await self._read(lambda c: [rows.timer_from(r) for r in c.execute(sql, params)])

    async def next_timer_due(self) -> datetime | None:
        def work(c: sqlite3.Connection) -> datetime | None:
            due: int | None = c.execute("SELECT min(due_at) FROM timers").fetchone()[0]
            return None if due is None else rows.from_micros(due)

        return await self._read(work)

    async def find_dedup(self, playbook_id: str, key: str, now: datetime) -> str | None:
        sql = "SELECT run_id FROM dedup WHERE playbook_id = ? AND key = ? AND expires_at > ?"
        params = (playbook_id, key, rows.to_micros(now))

        def work(c: sqlite3.Connection) -> str | None:
            row = c.execute(sql, params).fetchone()
            return None if row is None else str(row[0])

        return await self._read(work)

    async def cron_marks(self) -> dict[str, datetime]:
        sql = "SELECT playbook_id, mark FROM cron_marks"
        return await self._read(lambda c: {p: rows.from_micros(m) for p, m in c.execute(sql)})

    async def audit_head(self) -> tuple[int, str]:
        def work(c: sqlite3.Connection) -> tuple[int, str]:
            row = c.execute(_AUDIT_HEAD).fetchone()
            return (0, ZERO_HASH) if row is None else (int(row[0]), str(row[1]))

        return await self._read(work)

    async def audit_records(self, after_seq: int, limit: int) -> list[AuditRecord]:
        sql = f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?"  # noqa: S608
        params = (after_seq, max(limit, 0))
        return await self._read(lambda c: [rows.audit_from(r) for r in c.execute(sql, params)])

    async def query_audit(self, audit_filter: AuditFilter) -> list[AuditRecord]:
        clauses, params = _audit_where(audit_filter)
        sql = (
            f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE {' AND '.join(clauses)} "  # noqa: S608
            "ORDER BY seq LIMIT ?"
        )
        params.append(max(audit_filter.limit, 0))
        return await self._read(lambda c: [rows.audit_from(r) for r in c.execute(sql, params)])

    async def checkpoints(self, *, after_size: int = 0) -> list[StoredCheckpoint]:
        sql = (
            "SELECT tree_size, at, key_id, line, frontier FROM audit_checkpoints "
            "WHERE tree_size > ? ORDER BY tree_size"
        )
        return await self._read(
            lambda c: [rows.checkpoint_from(r) for r in c.execute(sql, (after_size,))]
        )

    # -- lifetime ------------------------------------------------------------------------

    async def close(self) -> None:
        """Write every change already queued, then close both connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        await asyncio.to_thread(self._shut_down)

    def _shut_down(self) -> None:
        self._thread.join()
        self._reads.shutdown(wait=True)
        self._writer.close()
        self._reader.close()


def _connect(path: str, synchronous: str) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    writer: sqlite3.Connection | None = None
    try:
        writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        writer.execute("PRAGMA busy_timeout = 10000")
        mode = writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"{path}: SQLite cannot use WAL here (journal mode {mode!r})")
        writer.execute(f"PRAGMA synchronous = {synchronous}")
        migrate(writer)
        reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        reader.execute("PRAGMA busy_timeout = 10000")
        reader.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        if writer is not None:
            writer.close()
        raise StoreError(f"{path}: cannot open the store: {exc}") from exc
    except BaseException:
        if writer is not None:
            writer.close()
        raise
    return writer, reader


_Head = tuple[int, str]
"""The audit log's last record: its seq and hash."""
_SWITCH_INTERVAL: Final = 0.0003
_MAX_VARIABLES: Final = 30_000  # below SQLite's 32,766 host parameters per statement


def _many(connection: sqlite3.Connection, sql: str, values: Sequence[Sequence[object]]) -> None:
    """`executemany`, but as multi-row statements: SQLite releases and takes back the GIL per
    statement, so one statement for many rows keeps the writer from queueing behind the event
    loop's thread once per row. Rows apply in order: a later upsert of the same key wins."""
    if len(values) == 1:
        connection.execute(sql, values[0])
        return
    head, _, rest = sql.partition(" VALUES ")
    group, _, tail = rest.partition(")")
    group += ")"
    per = max(1, _MAX_VARIABLES // max(len(values[0]), 1))
    for start in range(0, len(values), per):
        chunk = values[start : start + per]
        statement = f"{head} VALUES {', '.join([group] * len(chunk))}{tail}"
        connection.execute(statement, [v for row in chunk for v in row])


def _write(
    connection: sqlite3.Connection, changes: list[rows.EncodedChange], head: _Head | None
) -> _Head | None:
    """Every row of `changes`, in their order: a later upsert of the same key wins. Returns
    the audit log's head after them, given `head`, the head this writer last committed (None
    when it does not know)."""
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
    if runs:
        _many(connection, _UPSERT_RUN, runs)
    if steps:
        _many(connection, _UPSERT_STEP, steps)
    if transitions:
        _many(connection, _INSERT_TRANSITION, transitions)
    _write_timers(connection, changes)
    if dedup:
        _many(connection, _UPSERT_DEDUP, dedup)
    if alerts:
        _many(connection, _UPSERT_ALERT, alerts)
    if marks:
        _many(connection, _UPSERT_MARK, marks)
    events = [e for c in changes for e in c.audit]
    if events:
        head = _append_audit(connection, events, head)
    checkpoints = [c for change in changes for c in change.checkpoints]
    if checkpoints:
        _many(connection, _INSERT_CHECKPOINT, checkpoints)
    return head


def _append_audit(
    connection: sqlite3.Connection, events: list[AuditEvent], head: _Head | None
) -> _Head:
    """Seal `events` after the log's head and insert them, under the write lock, so that every
    writer (workers, a CLI command) appends to one chain: one total order, that of commits.

    The head this writer last committed is tried first, saving a read per commit: records are
    never removed, so when the next sequence number is still free that head is the head. When
    another writer appended since, the insert conflicts on `seq`, SQLite undoes just that
    statement, and the events are sealed again after the head as read now."""
    if head is not None:
        sealed = seal(events, head)
        try:
            _many(connection, _INSERT_AUDIT, rows.audit_rows(sealed))
        except sqlite3.IntegrityError:
            pass
        else:
            return sealed[-1].seq, sealed[-1].hash
    row = connection.execute(_AUDIT_HEAD).fetchone()
    sealed = seal(events, (0, ZERO_HASH) if row is None else (int(row[0]), str(row[1])))
    _many(connection, _INSERT_AUDIT, rows.audit_rows(sealed))
    return sealed[-1].seq, sealed[-1].hash


def _write_timers(connection: sqlite3.Connection, changes: list[rows.EncodedChange]) -> None:
    # The net effect of cancels and sets taken in order: each id ends deleted or set.
    final: dict[str, rows.TimerRow | None] = {}
    for change in changes:
        for timer_id in change.cancel_timers:
            final[timer_id] = None
        for timer in change.timers:
            final[timer[0]] = timer
    if not final:
        return
    cancelled = [(i,) for i, t in final.items() if t is None]
    if cancelled:
        connection.executemany(_DELETE_TIMER, cancelled)
    timers = [t for t in final.values() if t is not None]
    if timers:
        connection.executemany(_UPSERT_TIMER, timers)


def _load_run(connection: sqlite3.Connection, run_id: str) -> RunSnapshot | None:
    connection.execute("BEGIN")  # one snapshot for all five reads
    try:
        run = connection.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?",  # noqa: S608
            (run_id,),
        ).fetchone()
        if run is None:
            return None
        steps = connection.execute(
            f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id = ? ORDER BY ord, key",  # noqa: S608
            (run_id,),
        ).fetchall()
        alerts = connection.execute(
            "SELECT run_id, seq, alert FROM alerts WHERE run_id = ? ORDER BY seq", (run_id,)
        ).fetchall()
        timers = connection.execute(
            f"SELECT {_TIMER_COLUMNS} FROM timers WHERE run_id = ? ORDER BY due_at, id",  # noqa: S608
            (run_id,),
        ).fetchall()
        last_seq: int = connection.execute(
            "SELECT coalesce(max(seq), 0) FROM transitions WHERE run_id = ?", (run_id,)
        ).fetchone()[0]
    finally:
        connection.execute("COMMIT")
    return RunSnapshot(
        run=rows.run_from(run),
        steps={s[1]: rows.step_from(s) for s in steps},
        alerts=[rows.alert_from(a) for a in alerts],
        timers=[rows.timer_from(t) for t in timers],
        last_seq=last_seq,
    )


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def _store_error(exc: sqlite3.Error) -> StoreError:
    if (
        isinstance(exc, sqlite3.IntegrityError)
        and exc.sqlite_errorcode == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
    ):
        # Transitions are the only plain INSERT: every other table is an upsert.
        error: StoreError = ConflictError(f"transition already recorded: {exc}")
    else:
        error = StoreError(f"SQLite: {exc}")
    error.__cause__ = exc
    return error


def _audit_where(f: AuditFilter) -> tuple[list[str], list[object]]:
    clauses: list[str] = ["seq > ?"]
    params: list[object] = [f.after_seq]
    if f.since is not None:
        clauses.append("at >= ?")
        params.append(rows.to_micros(f.since))
    if f.until is not None:
        clauses.append("at < ?")
        params.append(rows.to_micros(f.until))
    for column, value in (
        ("run_id", f.run_id),
        ("alert_id", f.alert_id),
        ("actor", f.actor),
        ("kind", f.kind),
        ("action", f.action),
        ("target", f.target),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    return clauses, params


def _settle(batch: list[_Pending], outcomes: list[_Outcome]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], _Outcome]]] = {}
    for (_, future, loop), outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(loop, []).append((future, outcome))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, settled)


def _resolve(settled: list[tuple[asyncio.Future[None], _Outcome]]) -> None:
    for future, outcome in settled:
        if future.done():  # the caller was cancelled; its change is written all the same
            continue
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)
