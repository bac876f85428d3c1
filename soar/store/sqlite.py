"""`SqliteStore`: runs in one SQLite file (WAL), written by a process of its own that commits
in groups (`soar.store.sqlite_writer`).

No SQLite call runs on the event loop. Writes: `apply` queues its rows and awaits a future; a
relay thread takes every change already queued (up to `batch_limit`), hands them to the writer
process as one group, and resolves their futures only once the writer reports the group
durable. The writer writes the group in one transaction; if that fails it rolls back and writes
the group again change by change, each under its own savepoint, so only the bad change fails.
Reads run on a thread here with their own connection; WAL lets them proceed while the writer
commits, and each read sees every change acknowledged before it began.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import queue
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Final, TypeAlias, TypeVar

from soar.errors import ConfigError, StoreError
from soar.models.audit import ZERO_HASH, AuditFilter, AuditRecord, StoredCheckpoint
from soar.models.run import Run, RunStatus, Timer, Transition
from soar.store import rows
from soar.store.base import (
    ApiToken,
    Change,
    Heartbeat,
    InboxItem,
    PlaybookVersion,
    Rollout,
    RunFilter,
    RunSnapshot,
)
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
from soar.store.sqlite_writer import (
    AUDIT_HEAD,
    STOP,
    connect,
    receive,
    send,
    store_error,
)

_T = TypeVar("_T")
_Pending: TypeAlias = tuple[rows.EncodedChange, asyncio.Future[None], asyncio.AbstractEventLoop]
_Outcome: TypeAlias = BaseException | None

SYNCHRONOUS_MODES: Final = ("FULL", "NORMAL", "EXTRA")
"""`synchronous` settings that keep WAL consistent; FULL also survives power loss."""
_SWITCH_INTERVAL: Final = 0.0003
_WRITER_MAIN: Final = (
    "import sys; from soar.store.sqlite_writer import main; sys.exit(main(sys.argv[1:]))"
)

_RUN_COLUMNS: Final = RUN_COLUMNS
_STEP_COLUMNS: Final = STEP_COLUMNS
_TRANSITION_COLUMNS: Final = TRANSITION_COLUMNS
_TIMER_COLUMNS: Final = TIMER_COLUMNS
_AUDIT_COLUMNS: Final = AUDIT_COLUMNS
# Spelled as the partial index `runs_unfinished` spells it, so that SQLite uses the index.
_UNFINISHED: Final = "status NOT IN ({})".format(
    ", ".join(f"'{s.value}'" for s in RunStatus if s.is_terminal)
)

_ORPHANS: Final = (
    "SELECT r.id, coalesce(l.token, 0) FROM runs AS r "  # noqa: S608 - fixed text
    "LEFT JOIN leases AS l ON l.run_id = r.id "
    "LEFT JOIN workers AS w ON w.id = l.owner "
    f"WHERE r.{_UNFINISHED} AND (l.owner IS NULL OR l.owner = '' OR w.id IS NULL "
    "OR w.expires_at <= ? OR l.owner IN (SELECT value FROM json_each(?))) "
    "ORDER BY r.created_at, r.id LIMIT ?"
)
"""Unfinished runs nobody drives: unleased, released, or held by a worker that is gone."""

_INBOX_FOR: Final = (
    f"SELECT {', '.join(f'i.{c}' for c in INBOX_COLUMNS.split(', '))} "  # noqa: S608 - fixed text
    "FROM leases AS l JOIN inbox AS i ON i.run_id = l.run_id AND i.done_at IS NULL "
    "WHERE l.owner = ? AND l.owner <> '' ORDER BY i.seq LIMIT ?"
)
"""Pending requests of the runs a worker holds: its leases (`leases_owner`), then each run's
pending items (`inbox_pending`)."""


class SqliteStore:
    """The `Store` protocol on one SQLite file. Open with `await SqliteStore.open(path)`.

    `commits` counts write transactions committed and `changes` the changes they carried, so
    `changes / commits` is the mean group size. Cancelling a task awaiting `apply` does not
    withdraw its change: once queued it is written (or fails) with its group.
    """

    def __init__(
        self, path: str, synchronous: str, reader: sqlite3.Connection, *, batch_limit: int
    ) -> None:
        self._path = path
        self._synchronous = synchronous
        self._reader = reader
        self._batch_limit = batch_limit
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="soar-sqlite-read")
        self._ready: Future[None] = Future()
        # The writer process is started by this thread, which outlives it: Linux delivers a
        # child's parent-death signal when the thread that started it ends.
        self._thread = threading.Thread(target=self._relay, name="soar-sqlite-write", daemon=True)
        self._closed = False
        self.writer_pid: int | None = None
        """The writer process's pid, once started (for operators and tests)."""
        self.commits = 0
        self.changes = 0
        # The relay thread needs the GIL for a moment per group. With Python's default 5 ms
        # switch interval a busy event loop holds every group back by up to that long, and
        # runs wait on their commits. Process-wide, only lowered.
        sys.setswitchinterval(min(sys.getswitchinterval(), _SWITCH_INTERVAL))
        self._thread.start()

    @classmethod
    async def open(
        cls, path: Path | str, *, synchronous: str = "FULL", batch_limit: int = 256
    ) -> SqliteStore:
        """Open (creating and migrating as needed) the database at `path`, and start its
        writer process.

        Args:
            synchronous: FULL (durable across power loss) or NORMAL (across process crashes).
            batch_limit: the most changes committed in one transaction.

        Raises:
            ConfigError: an unknown `synchronous` mode or a `batch_limit` below 1.
            StoreError: the file cannot be opened, is not in WAL mode, or has a newer schema;
                or the writer process cannot start.
        """
        mode = synchronous.upper()
        if mode not in SYNCHRONOUS_MODES:
            raise ConfigError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        if batch_limit < 1:
            raise ConfigError("batch_limit must be at least 1")
        reader = await asyncio.to_thread(_open_reader, str(path), mode)
        store = cls(str(path), mode, reader, batch_limit=batch_limit)
        try:
            await asyncio.wrap_future(store._ready)
        except BaseException:
            await store.close()
            raise
        return store

    # -- writes --------------------------------------------------------------------------

    async def apply(self, change: Change) -> None:
        """Write `change` atomically; return once its transaction has committed.

        Raises:
            ConflictError: a transition's (run_id, seq) is already recorded; nothing written.
            StoreError: a value the store cannot hold, a failed write, the writer process
                ended, or the store is closed.
        """
        if self._closed:
            raise StoreError("the store is closed")
        encoded = rows.encode(change)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((encoded, future, loop))
        await future

    def _relay(self) -> None:
        """Start the writer process, then hand it each group and settle the group's futures
        with its answer. If the writer ends, every change then fails with the reason."""
        try:
            writer = _start_writer(self._path, self._synchronous)
        except StoreError as exc:
            self._ready.set_exception(exc)
            self._fail_until_closed(exc)
            return
        self.writer_pid = writer.pid
        self._ready.set_result(None)
        assert writer.stdin is not None  # noqa: S101
        assert writer.stdout is not None  # noqa: S101
        failure: StoreError | None = None
        stopping = False
        while not stopping and failure is None:
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
                send(writer.stdin, [tuple(p[0]) for p in batch])
                answer = receive(writer.stdout)
                if not isinstance(answer, tuple):
                    raise EOFError("no answer")
                outcomes, self.commits, self.changes = answer
            except (OSError, EOFError, ValueError, pickle.PickleError) as exc:
                failure = StoreError(f"the SQLite writer process ended ({exc!r}): {self._path}")
                outcomes = [failure] * len(batch)
            _settle(batch, outcomes)
        with contextlib.suppress(OSError, ValueError):
            writer.stdin.write(STOP)
            writer.stdin.close()
        writer.wait()
        writer.stdout.close()
        if failure is not None and not stopping:
            self._fail_until_closed(failure)

    def _fail_until_closed(self, error: StoreError) -> None:
        while (item := self._queue.get()) is not None:
            _settle([item], [error])

    # -- reads ---------------------------------------------------------------------------

    async def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._reads, work, self._reader)
        except sqlite3.Error as exc:
            raise store_error(exc) from exc

    async def load_run(self, run_id: str) -> RunSnapshot | None:
        return await self._read(lambda c: _load_run(c, run_id))

    async def has_run(self, run_id: str) -> bool:
        sql = "SELECT 1 FROM runs WHERE id = ?"
        return await self._read(lambda c: c.execute(sql, (run_id,)).fetchone() is not None)

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
        if run_filter.before is not None:
            clauses.append("created_at < ?")
            params.append(rows.to_micros(run_filter.before))
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
            row = c.execute(AUDIT_HEAD).fetchone()
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

    # -- leases --------------------------------------------------------------------------

    async def workers(self) -> list[Heartbeat]:
        sql = "SELECT id, expires_at FROM workers ORDER BY id"
        return await self._read(
            lambda c: [Heartbeat(w, rows.from_micros(e)) for w, e in c.execute(sql)]
        )

    async def orphaned_runs(
        self, now: datetime, dead: Sequence[str], limit: int
    ) -> list[tuple[str, int]]:
        params = (rows.to_micros(now), rows.to_json(list(dead)), max(limit, 0))
        return await self._read(lambda c: [(r, int(t)) for r, t in c.execute(_ORPHANS, params)])

    async def held_runs(self, worker: str) -> dict[str, int]:
        sql = "SELECT run_id, token FROM leases WHERE owner = ? AND owner <> ''"
        return await self._read(lambda c: {r: int(t) for r, t in c.execute(sql, (worker,))})

    # -- requests and tokens -------------------------------------------------------------

    async def inbox_for(self, worker: str, limit: int) -> list[InboxItem]:
        params = (worker, max(limit, 0))
        return await self._read(
            lambda c: [rows.inbox_from(r) for r in c.execute(_INBOX_FOR, params)]
        )

    async def inbox_item(self, id: str) -> InboxItem | None:
        sql = f"SELECT {INBOX_COLUMNS} FROM inbox WHERE id = ?"  # noqa: S608

        def work(c: sqlite3.Connection) -> InboxItem | None:
            row = c.execute(sql, (id,)).fetchone()
            return None if row is None else rows.inbox_from(row)

        return await self._read(work)

    async def api_token(self, digest: str) -> ApiToken | None:
        sql = f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE digest = ?"  # noqa: S608

        def work(c: sqlite3.Connection) -> ApiToken | None:
            row = c.execute(sql, (digest,)).fetchone()
            return None if row is None else rows.token_from(row)

        return await self._read(work)

    async def api_tokens(self) -> list[ApiToken]:
        sql = f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"  # noqa: S608
        return await self._read(lambda c: [rows.token_from(r) for r in c.execute(sql)])

    # -- playbook versions ---------------------------------------------------------------

    async def playbook_versions(self, playbook_id: str | None = None) -> list[PlaybookVersion]:
        where = "" if playbook_id is None else "WHERE playbook_id = ?"
        sql = (
            f"SELECT {VERSION_COLUMNS} FROM playbook_versions {where} ORDER BY playbook_id, version"  # noqa: S608
        )
        params = () if playbook_id is None else (playbook_id,)
        return await self._read(lambda c: [rows.version_from(r) for r in c.execute(sql, params)])

    async def playbook_version(self, digest: str) -> PlaybookVersion | None:
        sql = f"SELECT {VERSION_COLUMNS} FROM playbook_versions WHERE digest = ?"  # noqa: S608

        def work(c: sqlite3.Connection) -> PlaybookVersion | None:
            row = c.execute(sql, (digest,)).fetchone()
            return None if row is None else rows.version_from(row)

        return await self._read(work)

    async def rollouts(self, playbook_id: str | None = None) -> list[Rollout]:
        where = "" if playbook_id is None else "WHERE playbook_id = ?"
        sql = f"SELECT {ROLLOUT_COLUMNS} FROM rollouts {where} ORDER BY seq"  # noqa: S608
        params = () if playbook_id is None else (playbook_id,)
        return await self._read(lambda c: [rows.rollout_from(r) for r in c.execute(sql, params)])

    # -- lifetime ------------------------------------------------------------------------

    async def close(self) -> None:
        """Write every change already queued, stop the writer process, close the reads.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        await asyncio.to_thread(self._shut_down)

    def _shut_down(self) -> None:
        self._thread.join()
        self._reads.shutdown(wait=True)
        self._reader.close()


def _open_reader(path: str, synchronous: str) -> sqlite3.Connection:
    """Migrate the file (so that a bad file fails `open` here), then a read-only connection."""
    connect(path, synchronous).close()
    try:
        reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        reader.execute("PRAGMA busy_timeout = 10000")
        reader.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the store: {exc}") from exc
    return reader


def _start_writer(path: str, synchronous: str) -> subprocess.Popen[bytes]:
    """The writer process, once it reports its connection open.

    Raises:
        StoreError: it cannot start, or cannot open the file.
    """
    package_root = str(Path(__file__).resolve().parents[2])
    python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    try:
        writer = subprocess.Popen(  # noqa: S603 - this interpreter, our own module
            [
                sys.executable,
                "-P",
                "-c",
                _WRITER_MAIN,
                path,
                synchronous,
                str(os.getpid()),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": python_path},
        )
    except OSError as exc:
        raise StoreError(f"{path}: cannot start the SQLite writer process: {exc}") from exc
    assert writer.stdout is not None  # noqa: S101
    try:
        answer = receive(writer.stdout)
    except (OSError, EOFError, ValueError, pickle.PickleError) as exc:
        answer = exc
    if answer == "ready":
        return writer
    writer.kill()
    writer.wait()
    for pipe in (writer.stdin, writer.stdout):
        if pipe is not None:
            pipe.close()
    if isinstance(answer, StoreError):
        raise answer
    raise StoreError(f"{path}: the SQLite writer process did not start ({answer!r})")


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
