"""A real PostgreSQL server for the suite: a throwaway cluster (initdb, then `postgres` in the
foreground) in a private temporary directory, on a free loopback port, started once per
session and removed at its end. docs/test-servers.md has the recipe.

Registered for the whole suite in tests/conftest.py (`pytest_plugins`). Tests that use it are
marked `postgres`; each gets a database of its own (`postgres_dsn`, or
`PostgresServer.database()`), created empty and dropped after the test. Without the server
binaries (`.ci/install-postgres`) the tests are skipped, unless SOAR_REQUIRE_SERVERS=1 (CI), in
which case they fail. With SOAR_TEST_POSTGRES set to the DSN of an existing server (a role
allowed to CREATE DATABASE) the fixture uses that server instead of starting one.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypedDict
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import pytest

from tests.servers import tail, unavailable

PG_MAJOR = "15"
START_TIMEOUT = 30.0  # seconds until pg_isready answers; ~0.2 s on an idle 2-core box
SHM = "/dev/shm"  # noqa: S108 - the cluster gets a private directory in it (mkdtemp)
SHM_NEEDED = 1 << 30  # bytes free in /dev/shm to put the cluster there (it takes ~100 MB)
STOP_TIMEOUT = 30.0  # seconds for a fast shutdown (SIGINT) before SIGKILL
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


class _Credentials(TypedDict):
    """Whom `subprocess` runs the server's programs as (None: this process's user)."""

    user: int | None
    group: int | None
    extra_groups: list[int] | None


class PostgresUnavailable(Exception):
    """The server binaries (or, as root, the postgres user) are missing."""


class PostgresFailed(Exception):
    """The binaries are there but the cluster did not initialise, start or stop in time."""


def bin_dir() -> Path:
    """Where initdb and postgres are: SOAR_PG_BIN, else Debian's PostgreSQL 15, else the newest
    /usr/lib/postgresql/*/bin, else the directory of an `initdb` on PATH.

    Raises:
        PostgresUnavailable: none of them has both binaries.
    """
    candidates: list[Path] = []
    if override := os.environ.get("SOAR_PG_BIN"):
        candidates.append(Path(override))
    candidates.append(Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin"))
    installed = Path("/usr/lib/postgresql").glob("*/bin")
    candidates.extend(sorted(installed, key=lambda p: _major(p.parent.name), reverse=True))
    if on_path := shutil.which("initdb"):
        candidates.append(Path(on_path).parent)
    for candidate in candidates:
        if all((candidate / name).is_file() for name in ("initdb", "postgres", "pg_isready")):
            return candidate
    raise PostgresUnavailable(
        f"PostgreSQL server binaries not found (set SOAR_PG_BIN or run .ci/install-postgres); "
        f"looked in {', '.join(str(c) for c in candidates)}"
    )


def _major(name: str) -> int:
    return int(name) if name.isdigit() else 0


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


class Cluster:
    """One throwaway cluster: initdb in a private directory, `postgres` in the foreground."""

    def __init__(self, binaries: Path, log: Path) -> None:
        self.binaries = binaries
        self.log = log
        self.port = 0
        # The server refuses to run as root: it runs as the postgres user, in a directory that
        # user owns (the test session's temporary directories are root's, mode 700).
        self.account = _server_account()
        self.home = Path(tempfile.mkdtemp(prefix="soar-pg-", dir=_scratch_dir()))
        if self.account is not None:
            os.chown(self.home, self.account.pw_uid, self.account.pw_gid)
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def init(self) -> None:
        command = [
            str(self.binaries / "initdb"),
            "-D",
            str(self.home / "data"),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
            "--no-instructions",
        ]
        done = subprocess.run(  # noqa: S603 - fixed arguments
            command, capture_output=True, text=True, timeout=120, **self._as_server_user()
        )
        if done.returncode != 0:
            raise PostgresFailed(f"initdb failed:\n{tail(done.stdout + done.stderr)}")

    def restart(self) -> None:
        self.stop()
        self.start(port=self.port)

    def start(self, port: int | None = None) -> None:
        for _ in range(3):  # a free port may be taken between finding it and binding it
            self.port = port or _free_port()
            command = [
                str(self.binaries / "postgres"),
                "-D",
                str(self.home / "data"),
                "-p",
                str(self.port),
                "-k",
                str(self.home),
                "-c",
                "listen_addresses=127.0.0.1",
                *SERVER_OPTIONS,
            ]
            self._log_file = self.log.open("ab")
            self._process = subprocess.Popen(  # noqa: S603 - fixed arguments
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a ^C reaches pytest, which stops the server itself
                **self._as_server_user(),
            )
            if self._wait_ready():
                return
            self.stop()
        raise PostgresFailed(f"postgres did not start:\n{tail(self.log.read_text())}")

    def _wait_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            probe = [str(self.binaries / "pg_isready"), "-q", "-h", "127.0.0.1"]
            probe += ["-p", str(self.port), "-U", "postgres", "-d", "postgres", "-t", "2"]
            if subprocess.run(probe, check=False, timeout=10).returncode == 0:  # noqa: S603
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """A fast shutdown (SIGINT: open sessions are ended), SIGKILL if it hangs."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def remove(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    def _as_server_user(self) -> _Credentials:
        if self.account is None:
            return {"user": None, "group": None, "extra_groups": None}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}


def _server_account() -> pwd.struct_passwd | None:
    """The account the server runs as: None (this one) unless this is root, then postgres.

    Raises:
        PostgresUnavailable: running as root and there is no postgres user.
    """
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresUnavailable(
            "running as root and there is no postgres user to run the server as"
        ) from exc


def _scratch_dir() -> str | None:
    """Where the cluster lives: /dev/shm when it has room (memory: CREATE DATABASE takes ~15 ms
    there and ~250 ms on this disk), else the default temporary directory."""
    try:
        shm = os.statvfs(SHM)
    except OSError:
        return None
    return SHM if shm.f_bavail * shm.f_frsize >= SHM_NEEDED else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    external = os.environ.get("SOAR_TEST_POSTGRES")
    if external:
        yield PostgresServer(admin_dsn=external)
        return
    try:
        binaries = bin_dir()
        cluster = Cluster(binaries, tmp_path_factory.mktemp("postgres") / "server.log")
    except PostgresUnavailable as exc:
        unavailable(str(exc))
    try:
        cluster.init()
        cluster.start()
        yield PostgresServer(
            admin_dsn=f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres",
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
