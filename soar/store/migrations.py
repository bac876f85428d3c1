"""The SQLite schema as numbered migrations, applied in order, one transaction each.

The database's `PRAGMA user_version` is the number of migrations applied. Append new ones;
never edit a released one. Times are integer microseconds since the epoch (see `rows`).
"""

from __future__ import annotations

import sqlite3
from typing import Final

from soar.errors import StoreError

_RUNS: Final = (
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        playbook_id TEXT NOT NULL,
        playbook_version INTEGER NOT NULL,
        playbook_digest TEXT NOT NULL,
        status TEXT NOT NULL,
        trigger TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        alert TEXT,
        inputs TEXT NOT NULL,
        parent_run TEXT,
        parent_step TEXT,
        error TEXT,
        dry_run INTEGER NOT NULL
    )
    """,
    """
    CREATE INDEX runs_unfinished ON runs (created_at, id)
    WHERE status NOT IN ('completed', 'failed', 'aborted')
    """,
    "CREATE INDEX runs_created ON runs (created_at, id)",
    "CREATE INDEX runs_playbook_created ON runs (playbook_id, created_at, id)",
    """
    CREATE TABLE steps (
        run_id TEXT NOT NULL,
        key TEXT NOT NULL,
        status TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        idempotency_key TEXT NOT NULL,
        inputs TEXT,
        output TEXT,
        error TEXT,
        retryable INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        due_at INTEGER,
        ord INTEGER NOT NULL,
        PRIMARY KEY (run_id, key)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE transitions (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        step TEXT,
        attempt INTEGER,
        data TEXT,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE timers (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        due_at INTEGER NOT NULL,
        step TEXT
    ) WITHOUT ROWID
    """,
    "CREATE INDEX timers_due ON timers (due_at, id)",
    "CREATE INDEX timers_run ON timers (run_id)",
    """
    CREATE TABLE dedup (
        playbook_id TEXT NOT NULL,
        key TEXT NOT NULL,
        run_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (playbook_id, key)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE alerts (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        alert TEXT,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE cron_marks (
        playbook_id TEXT PRIMARY KEY,
        mark INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
)

_AUDIT: Final = (
    "ALTER TABLE runs ADD COLUMN trace TEXT",
    """
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        actor TEXT NOT NULL,
        run_id TEXT,
        alert_id TEXT,
        step TEXT,
        action TEXT,
        target TEXT,
        trace_id TEXT,
        body TEXT NOT NULL,
        prev TEXT NOT NULL,
        hash TEXT NOT NULL
    )
    """,
    "CREATE INDEX audit_at ON audit (at)",
    "CREATE INDEX audit_run ON audit (run_id) WHERE run_id IS NOT NULL",
    "CREATE INDEX audit_alert ON audit (alert_id) WHERE alert_id IS NOT NULL",
    "CREATE INDEX audit_target ON audit (target) WHERE target IS NOT NULL",
    """
    CREATE TABLE audit_checkpoints (
        tree_size INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        line TEXT NOT NULL,
        frontier TEXT NOT NULL
    )
    """,
)

_LEASES: Final = (
    # Who drives each run, and the fencing token every write of it must carry. A run's row
    # stays when it ends (released: owner ''), so that its id can never be leased anew.
    """
    CREATE TABLE leases (
        run_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        token INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    "CREATE INDEX leases_owner ON leases (owner) WHERE owner <> ''",
    """
    CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
)

_INBOX_AND_TOKENS: Final = (
    # Requests for runs (approvals decided, aborts, events) from any process, carried out by
    # the worker holding the run. `seq` is the order they were recorded in.
    """
    CREATE TABLE inbox (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        run_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT,
        actor TEXT NOT NULL,
        at INTEGER NOT NULL,
        done_at INTEGER,
        outcome TEXT
    )
    """,
    "CREATE INDEX inbox_pending ON inbox (run_id, seq) WHERE done_at IS NULL",
    """
    CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        digest TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        revoked_at INTEGER
    ) WITHOUT ROWID
    """,
)

_PLAYBOOK_VERSIONS: Final = (
    # Every saved version of a playbook, never updated nor deleted, and the rollout history:
    # the last record of each (playbook_id, version) is its current share (`seq` orders them).
    """
    CREATE TABLE playbook_versions (
        playbook_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        digest TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL,
        author TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (playbook_id, version)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE rollouts (
        seq INTEGER PRIMARY KEY,
        playbook_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        share INTEGER NOT NULL CHECK (share BETWEEN 0 AND 100),
        mode TEXT NOT NULL,
        actor TEXT NOT NULL,
        at INTEGER NOT NULL
    )
    """,
    "CREATE INDEX rollouts_playbook ON rollouts (playbook_id, seq)",
)

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    _RUNS,
    _AUDIT,
    _LEASES,
    _INBOX_AND_TOKENS,
    _PLAYBOOK_VERSIONS,
)
"""Migration i (1-based) brings a database from user_version i-1 to i."""


def schema_version(connection: sqlite3.Connection) -> int:
    """The number of migrations applied to the database."""
    version: int = connection.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(connection: sqlite3.Connection) -> int:
    """Apply every migration the database lacks, each in its own transaction; return the version.

    `connection` must be in autocommit mode (`isolation_level=None`). Two processes opening one
    new file at once are safe: each migration re-reads the version under the write lock.

    Raises:
        StoreError: the database was written by a newer soar (its version is unknown here),
            or a migration failed (that migration is rolled back).
    """
    known = len(MIGRATIONS)
    version = schema_version(connection)
    _refuse_newer(version, known)
    while version < known:
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = schema_version(connection)
            _refuse_newer(version, known)
            if version < known:
                for statement in MIGRATIONS[version]:
                    connection.execute(statement)
                version += 1
                connection.execute(f"PRAGMA user_version = {version:d}")
            connection.execute("COMMIT")
        except BaseException as exc:
            connection.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"migration {version + 1} failed: {exc}") from exc
            raise
    return version


def _refuse_newer(version: int, known: int) -> None:
    if version > known:
        raise StoreError(
            f"the database has schema version {version}, newer than this soar knows ({known}); "
            "upgrade soar to open it"
        )
