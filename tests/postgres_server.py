"""A real PostgreSQL server for the suite: a throwaway cluster (initdb, then `postgres` in the
foreground) in a private temporary directory, on a free loopback port, started once per
session and removed at its end (`soar.store.postgres_cluster`, which `soar bench ingest` uses
too, with durable settings). docs/test-servers.md has the recipe.

Registered for the whole suite in tests/conftest.py (`pytest_plugins`). Tests that use it are
marked `postgres`; each gets a database of its own (`postgres_dsn`, or
`PostgresServer.database()`), created empty and dropped after the test. Without the server
binaries (`.ci/install-postgres`) the tests are skipped, unless SOAR_REQUIRE_SERVERS=1 (CI), in
which case they fail. With SOAR_TEST_POSTGRES set to the DSN of an existing server (a role
allowed to CREATE DATABASE) the fixture uses that server instead of starting one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import pytest

from soar.store.postgres_cluster import (
    PostgresCluster,
    PostgresFailed,
    PostgresUnavailable,
    bin_dir,
)
from tests.servers import unavailable

__all__ = [
    "PostgresFailed",
    "PostgresServer",
    "PostgresUnavailable",
    "bin_dir",
    "postgres_dsn",
    "postgres_server",
]

SHM = "/dev/shm"  # noqa: S108 - the cluster gets a private directory in it (mkdtemp)
SHM_NEEDED = 1 << 30  # bytes free in /dev/shm to put the cluster there (it takes ~100 MB)
# Nothing here needs to survive a crash of the machine: skip every flush to disk.
SERVER_OPTIONS = (
    "-c",
    "fsync=off",
    "-c",
    "synchronous_commit=off",
    "-c",
    "full_page_writes=off",
    "-c",
    "max_connections=200",
)


@dataclass(frozen=True)
class PostgresServer:
    """A server the tests may create databases on, as a superuser."""

    admin_dsn: str
    """The DSN of its maintenance database (`postgres`)."""
    log: Path | None = None
    """The server's log file, when the suite started the server."""
    restarter: Callable[[], None] | None = None

    def restart(self) -> None:
        """Stop the server (a fast shutdown: sessions are cut) and start it again on the same
        port and data, as an operator's restart does. Only for a server the suite started."""
        if self.restarter is None:
            raise PostgresUnavailable("SOAR_TEST_POSTGRES names a server the suite cannot restart")
        self.restarter()

    def dsn(self, database: str) -> str:
        """The DSN of `database` on this server."""
        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(path=f"/{database}"))

    async def create_database(self) -> str:
        """A new empty database with a unique name; returns its DSN."""
        name = f"soar_test_{uuid.uuid4().hex[:16]}"
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return self.dsn(name)

    async def drop_database(self, dsn: str) -> None:
        """Drop the database `dsn` names, closing any connection still open on it."""
        name = urlsplit(dsn).path.lstrip("/")
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    @asynccontextmanager
    async def database(self) -> AsyncIterator[str]:
        """A fresh database for the block; dropped after it."""
        dsn = await self.create_database()
        try:
            yield dsn
        finally:
            await self.drop_database(dsn)


def _scratch_dir() -> Path | None:
    """Where the cluster lives: /dev/shm when it has room (memory: CREATE DATABASE takes ~15 ms
    there and ~250 ms on this disk), else the default temporary directory."""
    try:
        shm = os.statvfs(SHM)
    except OSError:
        return None
    return Path(SHM) if shm.f_bavail * shm.f_frsize >= SHM_NEEDED else None


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    external = os.environ.get("SOAR_TEST_POSTGRES")
    if external:
        yield PostgresServer(admin_dsn=external)
        return
    try:
        cluster = PostgresCluster(
            parent=_scratch_dir(),
            log=tmp_path_factory.mktemp("postgres") / "server.log",
            options=SERVER_OPTIONS,
        )
    except PostgresUnavailable as exc:
        unavailable(str(exc))
    try:
        cluster.init()
        cluster.start()
        yield PostgresServer(
            admin_dsn=cluster.admin_dsn,
            log=cluster.log,
            restarter=cluster.restart,
        )
    finally:
        cluster.stop()
        cluster.remove()


@pytest.fixture
async def postgres_dsn(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """The DSN of a fresh, empty database on the suite's server, dropped after the test."""
    async with postgres_server.database() as dsn:
        yield dsn
