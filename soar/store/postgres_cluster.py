"""Throwaway PostgreSQL: a local cluster (initdb, then `postgres` in the foreground, on a free
loopback port, in a private directory, removed afterwards) and a fresh schema in a database.

For `soar bench ingest --backend postgres` and the test suite's `postgres_server` fixture; the
recipe and its pitfalls are in docs/test-servers.md. Never for data that matters.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import IO, TypedDict
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from soar.errors import StoreError

PG_MAJOR = "15"
START_TIMEOUT = 30.0  # seconds until pg_isready answers; ~0.2 s on an idle 2-core box
STOP_TIMEOUT = 30.0  # seconds for a fast shutdown (SIGINT) before SIGKILL


class PostgresUnavailable(StoreError):
    """The server binaries (or, as root, the postgres user) are missing."""


class PostgresFailed(StoreError):
    """The binaries are there but the cluster did not initialise, start or stop in time."""


class _Credentials(TypedDict):
    """Whom `subprocess` runs the server's programs as (None: this process's user)."""

    user: int | None
    group: int | None
    extra_groups: list[int] | None


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


class PostgresCluster:
    """One throwaway cluster: initdb in a private directory made under `parent` (the default
    temporary directory when None), `postgres` in the foreground as this process's child.

    `options` are extra `postgres` arguments (`("-c", "fsync=off")`); without any the server
    runs with PostgreSQL's defaults, which are durable (fsync, synchronous_commit and
    full_page_writes on). `log` is where the server writes (default: `server.log` in its
    directory, removed with it). As root the server runs as the postgres user.

    Raises:
        PostgresUnavailable: no binaries, or running as root with no postgres user.
    """

    def __init__(
        self,
        *,
        parent: Path | None = None,
        log: Path | None = None,
        options: Sequence[str] = (),
        binaries: Path | None = None,
    ) -> None:
        self.binaries = binaries or bin_dir()
        self.options = tuple(options)
        self.port = 0
        # The server refuses to run as root: it runs as the postgres user, in a directory that
        # user owns (a test session's temporary directories are root's, mode 700).
        self.account = _server_account()
        self.home = Path(tempfile.mkdtemp(prefix="soar-pg-", dir=parent))
        if self.account is not None:
            os.chown(self.home, self.account.pw_uid, self.account.pw_gid)
        self.log = log or self.home / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def admin_dsn(self) -> str:
        """The DSN of the maintenance database (`postgres`), as the superuser `postgres`."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        """Create the cluster (superuser `postgres`, trust logins, UTF-8, C.UTF-8 locale).

        Raises:
            PostgresFailed: initdb failed (its output is in the message).
        """
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
            "--no-sync",  # initdb's own files only; the server's commits are as `options` say
            "--no-instructions",
        ]
        done = subprocess.run(  # noqa: S603 - fixed arguments
            command, capture_output=True, text=True, timeout=120, **self._as_server_user()
        )
        if done.returncode != 0:
            raise PostgresFailed(f"initdb failed:\n{_tail(done.stdout + done.stderr)}")

    def start(self, port: int | None = None) -> None:
        """Start the server on 127.0.0.1 (`port`, or a free one) and wait until it answers.

        Raises:
            PostgresFailed: it did not answer within START_TIMEOUT (three tries on free ports).
        """
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
                *self.options,
            ]
            self._log_file = self.log.open("ab")
            self._process = subprocess.Popen(  # noqa: S603 - fixed arguments
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a ^C reaches the owner, which stops the server itself
                **self._as_server_user(),
            )
            if self._wait_ready():
                return
            self.stop()
        raise PostgresFailed(f"postgres did not start:\n{_tail(self.log.read_text())}")

    def restart(self) -> None:
        """Stop the server (a fast shutdown: sessions are cut) and start it again on the same
        port and data, as an operator's restart does."""
        self.stop()
        self.start(port=self.port)

    def _wait_ready(self) -> bool:
        process = self._process
        if process is None:
            return False
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
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
        """Delete the cluster's directory (stop it first)."""
        shutil.rmtree(self.home, ignore_errors=True)

    def _as_server_user(self) -> _Credentials:
        if self.account is None:
            return {"user": None, "group": None, "extra_groups": None}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}


@contextlib.contextmanager
def throwaway_cluster(
    *, parent: Path | None = None, options: Sequence[str] = ()
) -> Iterator[PostgresCluster]:
    """A started cluster for the block (see `PostgresCluster`), stopped and removed after it.

    Raises:
        PostgresUnavailable: no binaries, or running as root with no postgres user.
        PostgresFailed: it did not initialise or start.
    """
    cluster = PostgresCluster(parent=parent, options=options)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        cluster.remove()


@contextlib.asynccontextmanager
async def throwaway_schema(dsn: str) -> AsyncIterator[str]:
    """A new empty schema in the database `dsn` names, for the block; yields a DSN whose
    connections put it first on their `search_path` (so a store opened on it makes its tables
    there), and drops it with everything in it after the block. The role needs `CREATE` on
    the database.

    Raises:
        StoreError: the server cannot be reached, or refuses to create the schema.
    """
    import asyncpg  # type: ignore[import-untyped]  # loaded only for this backend

    name = f"soar_bench_{uuid.uuid4().hex[:12]}"

    async def execute(sql: str) -> None:
        try:
            connection = await asyncpg.connect(dsn, timeout=30)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot connect to {_redacted(dsn)}: {exc!r}") from exc
        try:
            await connection.execute(sql)
        except asyncpg.PostgresError as exc:
            raise StoreError(f"{_redacted(dsn)}: {sql}: {exc}") from exc
        finally:
            await connection.close()

    await execute(f"CREATE SCHEMA {name}")
    try:
        yield with_search_path(dsn, name)
    finally:
        await execute(f"DROP SCHEMA {name} CASCADE")


def with_search_path(dsn: str, schema: str) -> str:
    """`dsn` with `search_path=schema` among its options (replacing one it had)."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    query.append(("search_path", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _redacted(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "commit_delay",
    "shared_buffers",
    "max_connections",
)
"""What a figure measured on a server depends on: `server_settings` reports these."""


async def server_settings(dsn: str) -> dict[str, str]:
    """The server's values of SETTINGS (as `SHOW` prints them), in that order.

    Raises:
        StoreError: the server cannot be reached.
    """
    import asyncpg

    try:
        connection = await asyncpg.connect(dsn, timeout=30)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise StoreError(f"cannot connect to {_redacted(dsn)}: {exc!r}") from exc
    try:
        return {name: str(await connection.fetchval(f"SHOW {name}")) for name in SETTINGS}
    finally:
        await connection.close()
