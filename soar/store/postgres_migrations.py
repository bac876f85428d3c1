"""The PostgreSQL schema as numbered migrations, applied in order, one transaction each.

The table `soar_schema` holds the number of migrations applied. Append new ones; never edit a
released one. The tables have the SQLite store's shapes (see `rows`): times are bigint
microseconds since the epoch, JSON is text (kept byte for byte, unlike jsonb), and the ids that
order results sort bytewise (`COLLATE "C"`) as SQLite's do, whatever the database's locale.
"""

from __future__ import annotations

from typing import Final

import asyncpg  # type: ignore[import-untyped]

from soar.errors import StoreError

_ADVISORY_LOCK: Final = 0x736F_6172_0001
"""Held (per transaction) while migrating, so that two processes opening one new database at
once apply each migration once."""

_SCHEMA: Final = (
    """
    CREATE TABLE runs (
        id text COLLATE "C" PRIMARY KEY,
        playbook_id text NOT NULL,
        playbook_version bigint NOT NULL,
        playbook_digest text NOT NULL,
        status text NOT NULL,
        trigger text NOT NULL,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        alert text,
        inputs text NOT NULL,
        parent_run text,
        parent_step text,
        error text,
        dry_run smallint NOT NULL,
        trace text
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
        run_id text NOT NULL,
        key text COLLATE "C" NOT NULL,
        status text NOT NULL,
        attempt bigint NOT NULL,
        idempotency_key text NOT NULL,
        inputs text,
        output text,
        error text,
        retryable smallint NOT NULL,
        started_at bigint,
        finished_at bigint,
        due_at bigint,
        ord bigint NOT NULL,
        PRIMARY KEY (run_id, key)
    )
    """,
    """
    CREATE TABLE transitions (
        run_id text NOT NULL,
        seq bigint NOT NULL,
        at bigint NOT NULL,
        kind text NOT NULL,
        step text,
        attempt bigint,
        data text,
        PRIMARY KEY (run_id, seq)
    )
    """,
    """
    CREATE TABLE timers (
        id text COLLATE "C" PRIMARY KEY,
        run_id text NOT NULL,
        kind text NOT NULL,
        due_at bigint NOT NULL,
        step text
    )
    """,
    "CREATE INDEX timers_due ON timers (due_at, id)",
    "CREATE INDEX timers_run ON timers (run_id)",
    """
    CREATE TABLE dedup (
        playbook_id text NOT NULL,
        key text NOT NULL,
        run_id text NOT NULL,
        expires_at bigint NOT NULL,
        PRIMARY KEY (playbook_id, key)
    )
    """,
    """
    CREATE TABLE alerts (
        run_id text NOT NULL,
        seq bigint NOT NULL,
        alert text,
        PRIMARY KEY (run_id, seq)
    )
    """,
    """
    CREATE TABLE cron_marks (
        playbook_id text PRIMARY KEY,
        mark bigint NOT NULL
    )
    """,
    """
    CREATE TABLE audit (
        seq bigint PRIMARY KEY,
        at bigint NOT NULL,
        kind text NOT NULL,
        actor text NOT NULL,
        run_id text,
        alert_id text,
        step text,
        action text,
        target text,
        trace_id text,
        body text NOT NULL,
        prev text NOT NULL,
        hash text NOT NULL
    )
    """,
    "CREATE INDEX audit_at ON audit (at)",
    "CREATE INDEX audit_run ON audit (run_id) WHERE run_id IS NOT NULL",
    "CREATE INDEX audit_alert ON audit (alert_id) WHERE alert_id IS NOT NULL",
    "CREATE INDEX audit_target ON audit (target) WHERE target IS NOT NULL",
    # The log's last record, one row: every writer locks it (SELECT ... FOR UPDATE) to append,
    # so that appends from many processes make one chain in commit order.
    """
    CREATE TABLE audit_head (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        seq bigint NOT NULL,
        hash text NOT NULL
    )
    """,
    "INSERT INTO audit_head (seq, hash) VALUES "
    "(0, '0000000000000000000000000000000000000000000000000000000000000000')",
    """
    CREATE TABLE audit_checkpoints (
        tree_size bigint PRIMARY KEY,
        at bigint NOT NULL,
        key_id text NOT NULL,
        line text NOT NULL,
        frontier text NOT NULL
    )
    """,
)

_LEASES: Final = (
    # Who drives each run, and the fencing token every write of it must carry. A run's row
    # stays when it ends (released: owner ''), so that its id can never be leased anew.
    """
    CREATE TABLE leases (
        run_id text PRIMARY KEY,
        owner text NOT NULL,
        token bigint NOT NULL
    )
    """,
    "CREATE INDEX leases_owner ON leases (owner) WHERE owner <> ''",
    """
    CREATE TABLE workers (
        id text PRIMARY KEY,
        expires_at bigint NOT NULL
    )
    """,
)

_INBOX_AND_TOKENS: Final = (
    # Requests for runs (approvals decided, aborts, events) from any process, carried out by
    # the worker holding the run. `seq` is the order they were recorded in.
    """
    CREATE TABLE inbox (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text NOT NULL UNIQUE,
        run_id text NOT NULL,
        kind text NOT NULL,
        body text,
        actor text NOT NULL,
        at bigint NOT NULL,
        done_at bigint,
        outcome text
    )
    """,
    "CREATE INDEX inbox_pending ON inbox (run_id, seq) WHERE done_at IS NULL",
    """
    CREATE TABLE api_tokens (
        id text COLLATE "C" PRIMARY KEY,
        name text NOT NULL,
        role text NOT NULL,
        digest text NOT NULL UNIQUE,
        created_at bigint NOT NULL,
        created_by text NOT NULL,
        revoked_at bigint
    )
    """,
)

_PLAYBOOK_VERSIONS: Final = (
    # Every saved version of a playbook, never updated nor deleted, and the rollout history:
    # the last record of each (playbook_id, version) is its current share (`seq` orders them).
    """
    CREATE TABLE playbook_versions (
        playbook_id text COLLATE "C" NOT NULL,
        version bigint NOT NULL,
        digest text NOT NULL UNIQUE,
        source text NOT NULL,
        author text NOT NULL,
        created_at bigint NOT NULL,
        PRIMARY KEY (playbook_id, version)
    )
    """,
    """
    CREATE TABLE rollouts (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        playbook_id text NOT NULL,
        version bigint NOT NULL,
        share integer NOT NULL CHECK (share BETWEEN 0 AND 100),
        mode text NOT NULL,
        actor text NOT NULL,
        at bigint NOT NULL
    )
    """,
    "CREATE INDEX rollouts_playbook ON rollouts (playbook_id, seq)",
)

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    _SCHEMA,
    _LEASES,
    _INBOX_AND_TOKENS,
    _PLAYBOOK_VERSIONS,
)
"""Migration i (1-based) brings a database from schema version i-1 to i."""

_VERSION_TABLE: Final = """
    CREATE TABLE IF NOT EXISTS soar_schema (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        version integer NOT NULL
    )
"""


async def schema_version(connection: asyncpg.Connection) -> int:
    """The number of migrations applied to the database (0 for one soar never opened)."""
    exists = await connection.fetchval("SELECT to_regclass('soar_schema') IS NOT NULL")
    if not exists:
        return 0
    version = await connection.fetchval("SELECT version FROM soar_schema")
    return 0 if version is None else int(version)


async def migrate(connection: asyncpg.Connection) -> int:
    """Apply every migration the database lacks, each in its own transaction; return the
    version. `connection` must be outside any transaction.

    Raises:
        StoreError: the database was written by a newer soar (its version is unknown here),
            or a migration failed (that migration is rolled back).
    """
    known = len(MIGRATIONS)
    version = await schema_version(connection)
    _refuse_newer(version, known)
    while version < known:
        try:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", _ADVISORY_LOCK)
                await connection.execute(_VERSION_TABLE)
                version = await schema_version(connection)
                _refuse_newer(version, known)
                if version < known:
                    for statement in MIGRATIONS[version]:
                        await connection.execute(statement)
                    version += 1
                    await connection.execute(
                        "INSERT INTO soar_schema (version) VALUES ($1) "
                        "ON CONFLICT (one) DO UPDATE SET version = excluded.version",
                        version,
                    )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreError(f"migration {version + 1} failed: {exc}") from exc
    return version


def _refuse_newer(version: int, known: int) -> None:
    if version > known:
        raise StoreError(
            f"the database has schema version {version}, newer than this soar knows ({known}); "
            "upgrade soar to open it"
        )
