"""The SQLite store's writer: a process of its own that commits changes in groups.

A worker's event loop is busy with Python, and Python runs one thread at a time: a writer
thread in the same process took the loop's turn for every statement it bound, every record
it sealed, and every time SQLite handed the interpreter back. In a process of its own the
writer has a core to itself, and the worker only pickles each group of rows across a pipe.

The protocol, on the child's stdin and stdout: frames of a 4-byte little-endian length and a
pickle. The parent sends one frame per group, a list of `EncodedChange` tuples, and an empty
frame to stop; the child answers each group with `(outcomes, commits, changes)`, one outcome
(None, or the exception for that change) per change, once the group is durable. The child
first answers `"ready"` once its connection is open, or an exception if it cannot open it.

The child dies with its parent (Linux `PR_SET_PDEATHSIG`): a worker killed with SIGKILL takes
its writer along mid-transaction, which SQLite rolls back, as if both were one process.

Started by `SqliteStore` as `main([PATH, SYNCHRONOUS, PARENT_PID])` in a new interpreter.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import sqlite3
import struct
import sys
from collections.abc import Sequence
from typing import IO, Final

from soar.errors import ConflictError, StoreError
from soar.models.audit import ZERO_HASH
from soar.store import rows
from soar.store.migrations import migrate
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

_Head = tuple[int, str]
"""The audit log's last record: its seq and hash."""
_Outcome = BaseException | None
_FRAME: Final = struct.Struct("<I")
_MAX_VARIABLES: Final = 30_000  # below SQLite's 32,766 host parameters per statement


def _upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "  # noqa: S608 - fixed names
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


AUDIT_HEAD: Final = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"

_UPSERT_RUN: Final = _upsert("runs", RUN_COLUMNS.split(", "), ["id"])
_UPSERT_STEP: Final = _upsert("steps", STEP_COLUMNS.split(", "), ["run_id", "key"])
_INSERT_TRANSITION: Final = (
    f"INSERT INTO transitions ({TRANSITION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
)
_UPSERT_TIMER: Final = _upsert("timers", TIMER_COLUMNS.split(", "), ["id"])
_DELETE_TIMER: Final = "DELETE FROM timers WHERE id = ?"
_UPSERT_DEDUP: Final = _upsert(
    "dedup", ["playbook_id", "key", "run_id", "expires_at"], ["playbook_id", "key"]
)
_UPSERT_ALERT: Final = _upsert("alerts", ["run_id", "seq", "alert"], ["run_id", "seq"])
_UPSERT_MARK: Final = _upsert("cron_marks", ["playbook_id", "mark"], ["playbook_id"])
_INSERT_AUDIT: Final = f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ({', '.join('?' * 13)})"  # noqa: S608
_UPSERT_LEASE: Final = _upsert("leases", ["run_id", "owner", "token"], ["run_id"])
_UPSERT_WORKER: Final = _upsert("workers", ["id", "expires_at"], ["id"])
_DELETE_WORKER: Final = "DELETE FROM workers WHERE id = ?"
_INSERT_CHECKPOINT: Final = (
    "INSERT INTO audit_checkpoints (tree_size, at, key_id, line, frontier) VALUES (?, ?, ?, ?, ?)"
)
_INSERT_INBOX: Final = f"INSERT INTO inbox ({INBOX_COLUMNS}) VALUES ({', '.join('?' * 8)})"  # noqa: S608
_DONE_INBOX: Final = "UPDATE inbox SET done_at = ?, outcome = ? WHERE id = ? AND done_at IS NULL"
_CLOSE_INBOX: Final = (
    "UPDATE inbox SET done_at = ?, outcome = ? WHERE run_id = ? AND done_at IS NULL"
)
_UPSERT_TOKEN: Final = _upsert("api_tokens", TOKEN_COLUMNS.split(", "), ["id"])
_INSERT_VERSION: Final = (
    f"INSERT INTO playbook_versions ({VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "  # noqa: S608
    "ON CONFLICT (playbook_id, version) DO NOTHING"
)
_VERSION_DIGEST: Final = (
    "SELECT digest FROM playbook_versions WHERE playbook_id = ? AND version = ?"
)
_INSERT_ROLLOUT: Final = f"INSERT INTO rollouts ({ROLLOUT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"  # noqa: S608


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    """A connection in WAL mode with the schema migrated to this version.

    Raises:
        StoreError: the file cannot be opened, is not in WAL mode, or has a newer schema.
    """
    connection: sqlite3.Connection | None = None
    try:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout = 10000")
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"{path}: SQLite cannot use WAL here (journal mode {mode!r})")
        connection.execute(f"PRAGMA synchronous = {synchronous}")
        migrate(connection)
    except sqlite3.Error as exc:
        if connection is not None:
            connection.close()
        raise StoreError(f"{path}: cannot open the store: {exc}") from exc
    except BaseException:
        if connection is not None:
            connection.close()
        raise
    return connection


class Committer:
    """Commits groups of changes on one connection: each group in one transaction, or, when
    that fails, change by change under savepoints so that only a bad change fails."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.head: _Head | None = None
        """The audit log's head as of this writer's last commit, None when not known."""
        self.commits = 0
        self.changes = 0

    def commit(self, changes: list[rows.EncodedChange]) -> list[_Outcome]:
        """Write `changes` durably; one outcome per change (None when written)."""
        try:
            return self._commit(changes)
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            error = StoreError(f"the writer failed: {exc!r}")
            return [error] * len(changes)

    def _commit(self, changes: list[rows.EncodedChange]) -> list[_Outcome]:
        connection = self.connection
        head, self.head = self.head, None  # known again only once this commit is durable
        try:
            connection.execute("BEGIN IMMEDIATE")
            head = _write(connection, changes, head)
            connection.execute("COMMIT")
        except (sqlite3.Error, StoreError) as exc:
            _rollback(connection)
            if len(changes) == 1:
                return [store_error(exc)]
            return self._commit_each(changes)
        self.head = head
        self.commits += 1
        self.changes += len(changes)
        return [None] * len(changes)

    def _commit_each(self, changes: list[rows.EncodedChange]) -> list[_Outcome]:
        connection = self.connection
        outcomes: list[_Outcome] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            head: _Head | None = None
            for change in changes:
                connection.execute("SAVEPOINT change")
                try:
                    written = _write(connection, [change], head)
                except (sqlite3.Error, StoreError) as exc:
                    connection.execute("ROLLBACK TO change")
                    outcomes.append(store_error(exc))
                else:
                    head = written
                    outcomes.append(None)
                connection.execute("RELEASE change")
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(connection)
            return [store_error(exc)] * len(changes)
        self.head = head
        self.commits += 1
        self.changes += outcomes.count(None)
        return outcomes


def store_error(exc: sqlite3.Error | StoreError) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.IntegrityError) and exc.sqlite_errorcode in (
        sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY,
        sqlite3.SQLITE_CONSTRAINT_UNIQUE,
    ):
        # a key recorded once: a transition's (run_id, seq), a checkpoint's tree size, an inbox
        # item's id, an API token's digest (every other table is an upsert by its key)
        return ConflictError(f"already recorded: {exc}")
    return StoreError(f"SQLite: {exc}")


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def _many(connection: sqlite3.Connection, sql: str, values: Sequence[Sequence[object]]) -> None:
    """`executemany`, but as multi-row statements, far fewer trips between Python and SQLite.
    Rows apply in order: a later upsert of the same key wins."""
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
    _write_leases(connection, changes)
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
    _write_inbox(connection, changes)
    tokens = [t for c in changes for t in c.tokens]
    if tokens:
        _many(connection, _UPSERT_TOKEN, tokens)
    _write_versions(connection, changes)
    return head


def _write_versions(connection: sqlite3.Connection, changes: list[rows.EncodedChange]) -> None:
    """Save versions (a version saved before with the same digest is left as it is) and
    append rollout records in order.

    Raises:
        ConflictError: a version saved before with another digest.
    """
    for change in changes:
        for version in change.versions:
            connection.execute(_INSERT_VERSION, version)
            recorded = connection.execute(_VERSION_DIGEST, version[:2]).fetchone()
            refusal = rows.conflicting_version(version, None if recorded is None else recorded[0])
            if refusal is not None:
                raise ConflictError(refusal)
    rollouts = [r for c in changes for r in c.rollouts]
    if rollouts:
        connection.executemany(_INSERT_ROLLOUT, rollouts)


def _write_inbox(connection: sqlite3.Connection, changes: list[rows.EncodedChange]) -> None:
    """Record requests, mark requests done, close runs' pending requests, in that order. The
    writer holds SQLite's write lock, so a run checked open here cannot end before the commit.

    Raises:
        ConflictError: a request for a run not recorded or ended, or an item done that is not
            pending (nothing of the change may then be written).
    """
    items = [i for c in changes for i in c.inbox]
    if items:
        wanted = list(dict.fromkeys(i[1] for i in items))
        statuses: dict[str, str] = {}
        for start in range(0, len(wanted), _MAX_VARIABLES):
            chunk = wanted[start : start + _MAX_VARIABLES]
            sql = f"SELECT id, status FROM runs WHERE id IN ({', '.join('?' * len(chunk))})"  # noqa: S608
            statuses.update(connection.execute(sql, chunk).fetchall())
        for item in items:
            refusal = rows.not_open_for_requests(item[1], statuses.get(item[1]))
            if refusal is not None:
                raise ConflictError(refusal)
        _many(connection, _INSERT_INBOX, items)
    for change in changes:
        for item_id, done_at, outcome in change.inbox_done:
            if connection.execute(_DONE_INBOX, (done_at, outcome, item_id)).rowcount != 1:
                raise ConflictError(f"inbox item {item_id} is not pending")
    closed = [(at, outcome, run_id) for c in changes for run_id, at, outcome in c.close_inbox]
    if closed:
        connection.executemany(_CLOSE_INBOX, closed)


def _append_audit(
    connection: sqlite3.Connection, events: list[rows.EventRow], head: _Head | None
) -> _Head:
    """Seal `events` after the log's head and insert them, under the write lock, so that every
    writer (workers, a CLI command) appends to one chain: one total order, that of commits.

    The head this writer last committed is tried first, saving a read per commit: records are
    never removed, so when the next sequence number is still free that head is the head. When
    another writer appended since, the insert conflicts on `seq`, SQLite undoes just that
    statement, and the events are sealed again after the head as read now."""
    if head is None:
        head = _read_head(connection)
    sealed = rows.sealed_rows(events, head)
    try:
        _many(connection, _INSERT_AUDIT, sealed)
    except sqlite3.IntegrityError:
        sealed = rows.sealed_rows(events, _read_head(connection))
        _many(connection, _INSERT_AUDIT, sealed)
    return sealed[-1][0], sealed[-1][12]


def _read_head(connection: sqlite3.Connection) -> _Head:
    row = connection.execute(AUDIT_HEAD).fetchone()
    return (0, ZERO_HASH) if row is None else (row[0], row[1])


def _write_leases(connection: sqlite3.Connection, changes: list[rows.EncodedChange]) -> None:
    """Check the changes' fences and take their leases, before any of their rows is written.

    Raises:
        LeaseLost: a lease or fence that does not hold.
    """
    leases = [x for c in changes for x in c.leases]
    fence = [f for c in changes for f in c.fence]
    if leases or fence:
        wanted = rows.lease_runs(leases, fence)
        current: dict[str, int] = {}
        for start in range(0, len(wanted), _MAX_VARIABLES):
            chunk = wanted[start : start + _MAX_VARIABLES]
            sql = (
                f"SELECT run_id, token FROM leases WHERE run_id IN ({', '.join('?' * len(chunk))})"  # noqa: S608
            )
            current.update(connection.execute(sql, chunk).fetchall())
        taken = rows.settle_leases(current, leases, fence)
        if taken:
            _many(connection, _UPSERT_LEASE, [x[:3] for x in taken])
    beats = [h for c in changes for h in c.heartbeats]
    if beats:
        _many(connection, _UPSERT_WORKER, beats)
    gone = [(w,) for c in changes for w in c.forget_workers]
    if gone:
        connection.executemany(_DELETE_WORKER, gone)


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


# -- the pipe --------------------------------------------------------------------------------


def send(stream: IO[bytes], message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(data)) + data)
    stream.flush()


def receive(stream: IO[bytes]) -> object:
    """The next message; None for an empty frame (stop) or the end of the stream.

    Raises:
        EOFError: the stream ended inside a frame.
    """
    header = stream.read(_FRAME.size)
    if len(header) < _FRAME.size:
        if header:
            raise EOFError("the stream ended inside a frame header")
        return None
    (size,) = _FRAME.unpack(header)
    if size == 0:
        return None
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the stream ended inside a frame")
    return pickle.loads(data)  # noqa: S301 - our own parent, over a private pipe


STOP: Final = _FRAME.pack(0)
"""The frame that tells the writer to stop once it has answered what came before."""


def _die_with(parent: int) -> None:
    """SIGKILL this process when the parent does (Linux), and stop now if it already has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def main(argv: Sequence[str]) -> int:
    # a terminal's Ctrl-C reaches the whole process group; the worker decides when its writer
    # ends (by closing its stdin), so the last writes of a clean stop still land
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path, synchronous, parent = argv
    _die_with(int(parent))
    inbox, outbox = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames goes to the parent's pipe
    try:
        connection = connect(path, synchronous)
    except StoreError as exc:
        send(outbox, exc)
        return 1
    committer = Committer(connection)
    send(outbox, "ready")
    try:
        while (batch := receive(inbox)) is not None:
            assert isinstance(batch, list)  # noqa: S101
            outcomes = committer.commit([rows.EncodedChange(*change) for change in batch])
            send(outbox, (outcomes, committer.commits, committer.changes))
    finally:
        connection.close()
    return 0
