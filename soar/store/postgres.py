"""`PostgresStore`: runs in a PostgreSQL database, through asyncpg, written in groups.

Writes: `apply` queues its rows and awaits a future; one writer task takes every change
already queued (up to `batch_limit`) and commits them as one group on its own connection
(`soar.store.postgres_writer`), and resolves their futures only once the group has committed.
While one group commits, the next gathers. Reads go through a small pool of other connections;
each read sees every change acknowledged before it began. Several processes (workers, a CLI
command) may share one database: their audit records make one chain, in commit order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Final, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from soar.errors import ConfigError, StoreError
from soar.models.audit import AuditFilter, AuditRecord, StoredCheckpoint
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
from soar.store.postgres_migrations import migrate
from soar.store.postgres_writer import (
    AUDIT_HEAD,
    CHECKPOINT_COLUMNS,
    Committer,
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

_Pending: TypeAlias = tuple[rows.EncodedChange, asyncio.Future[None]]

_FAILURES: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
# Spelled as the partial index `runs_unfinished` spells it, so that PostgreSQL uses the index.
_UNFINISHED: Final = "status NOT IN ({})".format(
    ", ".join(f"'{s.value}'" for s in RunStatus if s.is_terminal)
)

_ORPHANS: Final = (
    "SELECT r.id, coalesce(l.token, 0) FROM runs AS r "  # noqa: S608 - fixed text
    "LEFT JOIN leases AS l ON l.run_id = r.id "
    "LEFT JOIN workers AS w ON w.id = l.owner "
    f"WHERE r.{_UNFINISHED} AND (l.owner IS NULL OR l.owner = '' OR w.id IS NULL "
    "OR w.expires_at <= $1 OR l.owner = ANY($2::text[])) "
    "ORDER BY r.created_at, r.id LIMIT $3"
)
"""Unfinished runs nobody drives: unleased, released, or held by a worker that is gone."""

_INBOX_FOR: Final = (
    f"SELECT {', '.join(f'i.{c}' for c in INBOX_COLUMNS.split(', '))} "  # noqa: S608 - fixed text
    "FROM leases AS l JOIN inbox AS i ON i.run_id = l.run_id AND i.done_at IS NULL "
    "WHERE l.owner = $1 AND l.owner <> '' ORDER BY i.seq LIMIT $2"
)
"""Pending requests of the runs a worker holds: its leases (`leases_owner`), then each run's
pending items (`inbox_pending`)."""


async def _end_transaction(connection: asyncpg.Connection) -> None:
    """What a read connection needs on its way back to the pool. Reads set no session state,
    so asyncpg's default reset (four statements, a round trip on every read) has nothing to
    undo; only a read cancelled inside its transaction leaves one open."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


class PostgresStore:
    """The `Store` protocol on a PostgreSQL database. Open with `await PostgresStore.open(dsn)`.

    Use it from the event loop that opened it. `commits` counts write transactions committed
    and `changes` the changes they carried, so `changes / commits` is the mean group size.
    Cancelling a task awaiting `apply` does not withdraw its change: once queued it is written
    (or fails) with its group.
    """

    def __init__(
        self, dsn: str, committer: Committer, reads: asyncpg.Pool, *, batch_limit: int
    ) -> None:
        self._where = _redacted(dsn)
        self._committer = committer
        self._reads = reads
        self._batch_limit = batch_limit
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._closed = False
        self._writer = asyncio.get_running_loop().create_task(
            self._write_groups(), name="soar-postgres-write"
        )

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        batch_limit: int = 256,
        read_connections: int = 4,
        connect_timeout: float = 30.0,
    ) -> PostgresStore:
        """Connect to the database `dsn` names (`postgresql://user:password@host:port/db`,
        with any libpq-style options asyncpg takes, such as `?sslmode=require`), migrate its
        schema as needed, and start writing.

        Args:
            batch_limit: the most changes committed in one transaction.
            read_connections: the most connections reads use at once (one more writes).
            connect_timeout: seconds to wait for each connection.

        Raises:
            ConfigError: a `batch_limit` or `read_connections` below 1, or a malformed DSN.
            StoreError: the server cannot be reached or refuses the login, or the database
                has a newer schema, or a migration fails.
        """
        if batch_limit < 1:
            raise ConfigError("batch_limit must be at least 1")
        if read_connections < 1:
            raise ConfigError("read_connections must be at least 1")
        where = _redacted(dsn)

        async def connect() -> asyncpg.Connection:
            try:
                return await asyncpg.connect(dsn, timeout=connect_timeout)
            except (ValueError, OverflowError) as exc:  # asyncpg's reading of the DSN
                raise ConfigError(f"store URL {where!r}: {exc}") from exc
            except (*_FAILURES, TimeoutError) as exc:
                raise StoreError(f"{where}: cannot connect: {exc!r}") from exc

        committer = Committer(connect)
        try:
            await migrate(await committer.connection())
            reads = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=read_connections,
                timeout=connect_timeout,
                reset=_end_transaction,
            )
        except (*_FAILURES, TimeoutError) as exc:
            await committer.close()
            raise StoreError(f"{where}: cannot open the store: {exc!r}") from exc
        except BaseException:
            await committer.close()
            raise
        return cls(dsn, committer, reads, batch_limit=batch_limit)

    @property
    def commits(self) -> int:
        return self._committer.commits

    @property
    def changes(self) -> int:
        return self._committer.changes

    # -- writes --------------------------------------------------------------------------

    async def apply(self, change: Change) -> None:
        """Write `change` atomically; return once its transaction has committed.

        Raises:
            ConflictError: a transition's (run_id, seq), or a checkpoint's tree size, is
                already recorded; nothing written.
            StoreError: a value the store cannot hold, a failed write, a connection lost
                mid-write (the change may then have been committed), or the store is closed.
        """
        if self._closed:
            raise StoreError("the store is closed")
        if self._writer.done():
            raise StoreError(f"{self._where}: the writer task has ended")
        encoded = rows.encode(change)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((encoded, future))
        await future

    async def _write_groups(self) -> None:
        """Take every change already queued as one group, commit it, settle its futures;
        until `close` queues None. Every change taken is settled, whatever happens here."""
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            group = [first]
            while len(group) < self._batch_limit and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                group.append(item)
            try:
                outcomes = await self._committer.commit([p[0] for p in group])
            except BaseException as exc:  # cancelled: the callers must not wait forever
                _settle(group, [StoreError(f"the writer stopped: {exc!r}")] * len(group))
                raise
            _settle(group, outcomes)

    # -- reads ---------------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        self._check_open()
        try:
            return await self._reads.fetch(sql, *args)  # type: ignore[no-any-return]
        except _FAILURES as exc:
            raise StoreError(f"PostgreSQL: {exc}") from exc

    async def load_run(self, run_id: str) -> RunSnapshot | None:
        self._check_open()
        try:
            async with (
                self._reads.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):  # one snapshot for all five reads
                run = await connection.fetchrow(
                    f"SELECT {RUN_COLUMNS} FROM runs WHERE id = $1",  # noqa: S608
                    run_id,
                )
                if run is None:
                    return None
                steps = await connection.fetch(
                    f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = $1 ORDER BY ord, key",  # noqa: S608
                    run_id,
                )
                alerts = await connection.fetch(
                    "SELECT run_id, seq, alert FROM alerts WHERE run_id = $1 ORDER BY seq", run_id
                )
                timers = await connection.fetch(
                    f"SELECT {TIMER_COLUMNS} FROM timers WHERE run_id = $1 ORDER BY due_at, id",  # noqa: S608
                    run_id,
                )
                last_seq = await connection.fetchval(
                    "SELECT coalesce(max(seq), 0) FROM transitions WHERE run_id = $1", run_id
                )
        except _FAILURES as exc:
            raise StoreError(f"PostgreSQL: {exc}") from exc
        return RunSnapshot(
            run=rows.run_from(run),
            steps={s[1]: rows.step_from(s) for s in steps},
            alerts=[rows.alert_from(a) for a in alerts],
            timers=[rows.timer_from(t) for t in timers],
            last_seq=int(last_seq),
        )

    async def has_run(self, run_id: str) -> bool:
        return bool(await self._fetch("SELECT 1 FROM runs WHERE id = $1", run_id))

    async def list_runs(self, run_filter: RunFilter) -> list[Run]:
        clauses: list[str] = []
        params: list[object] = []
        if run_filter.playbook_id is not None:
            params.append(run_filter.playbook_id)
            clauses.append(f"playbook_id = ${len(params)}")
        if run_filter.statuses:
            params.append([s.value for s in run_filter.statuses])
            clauses.append(f"status = ANY(${len(params)}::text[])")
        if run_filter.since is not None:
            params.append(rows.to_micros(run_filter.since))
            clauses.append(f"created_at >= ${len(params)}")
        if run_filter.before is not None:
            params.append(rows.to_micros(run_filter.before))
            clauses.append(f"created_at < ${len(params)}")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(max(run_filter.limit, 0))
        sql = (
            f"SELECT {RUN_COLUMNS} FROM runs {where} "  # noqa: S608
            f"ORDER BY created_at DESC, id DESC LIMIT ${len(params)}"
        )
        return [rows.run_from(r) for r in await self._fetch(sql, *params)]

    async def unfinished_runs(self) -> list[str]:
        sql = f"SELECT id FROM runs WHERE {_UNFINISHED} ORDER BY created_at, id"  # noqa: S608
        return [r[0] for r in await self._fetch(sql)]

    async def transitions(self, run_id: str) -> list[Transition]:
        sql = f"SELECT {TRANSITION_COLUMNS} FROM transitions WHERE run_id = $1 ORDER BY seq"  # noqa: S608
        return [rows.transition_from(r) for r in await self._fetch(sql, run_id)]

    async def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        sql = (
            f"SELECT {TIMER_COLUMNS} FROM timers WHERE due_at <= $1 "  # noqa: S608
            "ORDER BY due_at, id LIMIT $2"
        )
        found = await self._fetch(sql, rows.to_micros(now), max(limit, 0))
        return [rows.timer_from(r) for r in found]

    async def next_timer_due(self) -> datetime | None:
        found = await self._fetch("SELECT min(due_at) FROM timers")
        due: int | None = found[0][0]
        return None if due is None else rows.from_micros(due)

    async def find_dedup(self, playbook_id: str, key: str, now: datetime) -> str | None:
        sql = "SELECT run_id FROM dedup WHERE playbook_id = $1 AND key = $2 AND expires_at > $3"
        found = await self._fetch(sql, playbook_id, key, rows.to_micros(now))
        return None if not found else str(found[0][0])

    async def cron_marks(self) -> dict[str, datetime]:
        found = await self._fetch("SELECT playbook_id, mark FROM cron_marks")
        return {p: rows.from_micros(m) for p, m in found}

    async def audit_head(self) -> tuple[int, str]:
        found = await self._fetch(AUDIT_HEAD)
        if not found:
            raise StoreError("PostgreSQL: the audit_head row is missing")
        return int(found[0][0]), str(found[0][1])

    async def audit_records(self, after_seq: int, limit: int) -> list[AuditRecord]:
        sql = f"SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"  # noqa: S608
        return [rows.audit_from(r) for r in await self._fetch(sql, after_seq, max(limit, 0))]

    async def query_audit(self, audit_filter: AuditFilter) -> list[AuditRecord]:
        clauses, params = _audit_where(audit_filter)
        params.append(max(audit_filter.limit, 0))
        sql = (
            f"SELECT {AUDIT_COLUMNS} FROM audit WHERE {' AND '.join(clauses)} "  # noqa: S608
            f"ORDER BY seq LIMIT ${len(params)}"
        )
        return [rows.audit_from(r) for r in await self._fetch(sql, *params)]

    async def checkpoints(self, *, after_size: int = 0) -> list[StoredCheckpoint]:
        sql = (
            f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints "  # noqa: S608
            "WHERE tree_size > $1 ORDER BY tree_size"
        )
        return [rows.checkpoint_from(r) for r in await self._fetch(sql, after_size)]

    # -- leases --------------------------------------------------------------------------

    async def workers(self) -> list[Heartbeat]:
        found = await self._fetch("SELECT id, expires_at FROM workers ORDER BY id")
        return [Heartbeat(r[0], rows.from_micros(r[1])) for r in found]

    async def orphaned_runs(
        self, now: datetime, dead: Sequence[str], limit: int
    ) -> list[tuple[str, int]]:
        found = await self._fetch(_ORPHANS, rows.to_micros(now), list(dead), max(limit, 0))
        return [(r[0], int(r[1])) for r in found]

    async def held_runs(self, worker: str) -> dict[str, int]:
        sql = "SELECT run_id, token FROM leases WHERE owner = $1 AND owner <> ''"
        return {r[0]: int(r[1]) for r in await self._fetch(sql, worker)}

    # -- requests and tokens -------------------------------------------------------------

    async def inbox_for(self, worker: str, limit: int) -> list[InboxItem]:
        return [rows.inbox_from(r) for r in await self._fetch(_INBOX_FOR, worker, max(limit, 0))]

    async def inbox_item(self, id: str) -> InboxItem | None:
        sql = f"SELECT {INBOX_COLUMNS} FROM inbox WHERE id = $1"  # noqa: S608
        found = await self._fetch(sql, id)
        return rows.inbox_from(found[0]) if found else None

    async def api_token(self, digest: str) -> ApiToken | None:
        sql = f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE digest = $1"  # noqa: S608
        found = await self._fetch(sql, digest)
        return rows.token_from(found[0]) if found else None

    async def api_tokens(self) -> list[ApiToken]:
        sql = f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"  # noqa: S608
        return [rows.token_from(r) for r in await self._fetch(sql)]

    # -- playbook versions ---------------------------------------------------------------

    async def playbook_versions(self, playbook_id: str | None = None) -> list[PlaybookVersion]:
        if playbook_id is None:
            sql = f"SELECT {VERSION_COLUMNS} FROM playbook_versions ORDER BY playbook_id, version"  # noqa: S608
            return [rows.version_from(r) for r in await self._fetch(sql)]
        sql = (
            f"SELECT {VERSION_COLUMNS} FROM playbook_versions WHERE playbook_id = $1 "  # noqa: S608
            "ORDER BY version"
        )
        return [rows.version_from(r) for r in await self._fetch(sql, playbook_id)]

    async def playbook_version(self, digest: str) -> PlaybookVersion | None:
        sql = f"SELECT {VERSION_COLUMNS} FROM playbook_versions WHERE digest = $1"  # noqa: S608
        found = await self._fetch(sql, digest)
        return rows.version_from(found[0]) if found else None

    async def rollouts(self, playbook_id: str | None = None) -> list[Rollout]:
        if playbook_id is None:
            sql = f"SELECT {ROLLOUT_COLUMNS} FROM rollouts ORDER BY seq"  # noqa: S608
            return [rows.rollout_from(r) for r in await self._fetch(sql)]
        sql = f"SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE playbook_id = $1 ORDER BY seq"  # noqa: S608
        return [rows.rollout_from(r) for r in await self._fetch(sql, playbook_id)]

    # -- lifetime ------------------------------------------------------------------------

    async def close(self) -> None:
        """Write every change already queued, then close the connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        try:
            await asyncio.wait([self._writer])
        except BaseException:  # cancelled while the last groups were written: stop at once
            self._writer.cancel()
            self._committer.terminate()
            self._reads.terminate()
            raise
        await self._committer.close()
        try:
            await self._reads.close()
        except _FAILURES:  # the server is gone: nothing to say goodbye to
            self._reads.terminate()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")


def _redacted(dsn: str) -> str:
    """`dsn` without its password, for messages."""
    try:
        parts = urlsplit(dsn)
        if parts.password is None:
            return dsn
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "the PostgreSQL store"


def _audit_where(f: AuditFilter) -> tuple[list[str], list[object]]:
    params: list[object] = [f.after_seq]
    clauses: list[str] = ["seq > $1"]
    if f.since is not None:
        params.append(rows.to_micros(f.since))
        clauses.append(f"at >= ${len(params)}")
    if f.until is not None:
        params.append(rows.to_micros(f.until))
        clauses.append(f"at < ${len(params)}")
    for column, value in (
        ("run_id", f.run_id),
        ("alert_id", f.alert_id),
        ("actor", f.actor),
        ("kind", f.kind),
        ("action", f.action),
        ("target", f.target),
    ):
        if value is not None:
            params.append(value)
            clauses.append(f"{column} = ${len(params)}")
    return clauses, params


def _settle(group: list[_Pending], outcomes: list[BaseException | None]) -> None:
    for (_, future), outcome in zip(group, outcomes, strict=True):
        if future.done():  # the caller was cancelled; its change is written all the same
            continue
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)
