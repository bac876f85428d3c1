"""What SQLite itself manages on this disk, so benchmarks can report soar as a share of it.

Both figures come from plain `sqlite3` in WAL mode with nothing of soar in the way.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from soar.errors import ConfigError
from soar.store.sqlite import SYNCHRONOUS_MODES

_ROWS_PER_COMMIT = 1000
_PAYLOAD = '{"kind":"step_succeeded","step":"disable_account","attempt":1}'


@dataclass(frozen=True, slots=True)
class RawLimits:
    """Raw SQLite WAL rates on one disk: durable commits/s of one small row each, and rows/s
    when 1,000 rows share a commit."""

    commits_per_s: float
    rows_per_s: float


async def raw_sqlite_limits(
    directory: Path, *, seconds: float = 1.0, synchronous: str = "FULL"
) -> RawLimits:
    """Measure for about `seconds` each, in a thread, in a temporary file under `directory`
    that is removed afterwards.

    Raises:
        ConfigError: an unknown `synchronous` mode.
    """
    mode = synchronous.upper()
    if mode not in SYNCHRONOUS_MODES:
        raise ConfigError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
    return await asyncio.to_thread(_measure, directory, seconds, mode)


def _measure(directory: Path, seconds: float, synchronous: str) -> RawLimits:
    with tempfile.TemporaryDirectory(prefix="soar-probe-", dir=directory) as scratch:
        connection = sqlite3.connect(Path(scratch) / "probe.db", isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute(f"PRAGMA synchronous = {synchronous}")
            connection.execute(
                "CREATE TABLE t (run_id TEXT, seq INTEGER, data TEXT, PRIMARY KEY (run_id, seq))"
                " WITHOUT ROWID"
            )
            return RawLimits(
                commits_per_s=_commit_rate(connection, seconds),
                rows_per_s=_row_rate(connection, seconds),
            )
        finally:
            connection.close()


def _commit_rate(connection: sqlite3.Connection, seconds: float) -> float:
    commits = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO t VALUES ('c', ?, ?)", (commits, _PAYLOAD))
        connection.execute("COMMIT")
        commits += 1
        now = time.perf_counter()
        if now >= deadline:
            return commits / (now - start)


def _row_rate(connection: sqlite3.Connection, seconds: float) -> float:
    written = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        batch = [("r", written + i, _PAYLOAD) for i in range(_ROWS_PER_COMMIT)]
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany("INSERT INTO t VALUES (?, ?, ?)", batch)
        connection.execute("COMMIT")
        written += _ROWS_PER_COMMIT
        now = time.perf_counter()
        if now >= deadline:
            return written / (now - start)
