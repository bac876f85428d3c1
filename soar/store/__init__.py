"""Where runs are kept: the `Store` protocol, its backends, and `open_store` to pick one by URL.

The backends load on first use, so that the SQLite writer process (`soar.store.sqlite_writer`)
starts without them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from soar.errors import ConfigError
from soar.lazy import lazy_names

if TYPE_CHECKING:
    from soar.store.base import (
        ApiToken,
        Change,
        InboxItem,
        PlaybookVersion,
        Rollout,
        RunFilter,
        RunSnapshot,
        Store,
    )
    from soar.store.memory import MemoryStore
    from soar.store.probe import RawLimits, raw_sqlite_limits
    from soar.store.sqlite import SqliteStore

_HOMES = {
    "ApiToken": "soar.store.base",
    "Change": "soar.store.base",
    "InboxItem": "soar.store.base",
    "PlaybookVersion": "soar.store.base",
    "Rollout": "soar.store.base",
    "RunFilter": "soar.store.base",
    "RunSnapshot": "soar.store.base",
    "Store": "soar.store.base",
    "MemoryStore": "soar.store.memory",
    "PostgresStore": "soar.store.postgres",
    "RawLimits": "soar.store.probe",
    "raw_sqlite_limits": "soar.store.probe",
    "SqliteStore": "soar.store.sqlite",
}

__all__ = [
    "ApiToken",
    "Change",
    "InboxItem",
    "MemoryStore",
    "PlaybookVersion",
    "RawLimits",
    "Rollout",
    "RunFilter",
    "RunSnapshot",
    "SqliteStore",
    "Store",
    "open_store",
    "raw_sqlite_limits",
]


@asynccontextmanager
async def open_store(url: str) -> AsyncIterator[Store]:
    """Open the store `url` names, and close it (finishing queued writes) on the way out.

    `sqlite:///PATH` (relative; `sqlite:////abs/path` for an absolute one), optionally with
    `?synchronous=NORMAL`; `postgresql://USER:PASSWORD@HOST:PORT/DATABASE` (or `postgres://`),
    with any option asyncpg takes (`?sslmode=verify-full`); `memory://` keeps nothing after
    the block.

    Raises:
        ConfigError: a URL of no known form, or an unknown option.
        StoreError: the database cannot be opened.
    """
    from soar.store.memory import MemoryStore  # loaded here: see the module docstring
    from soar.store.sqlite import SqliteStore

    store: Store
    if url == "memory://":
        store = MemoryStore()
    elif url.startswith("sqlite:///"):
        path, _, query = url.removeprefix("sqlite:///").partition("?")
        if not path:
            raise ConfigError(f"store URL {url!r} names no file")
        try:
            options = {k: v[-1] for k, v in parse_qs(query, strict_parsing=bool(query)).items()}
        except ValueError as exc:
            raise ConfigError(f"store URL {url!r}: bad query: {exc}") from exc
        unknown = set(options) - {"synchronous"}
        if unknown:
            raise ConfigError(f"store URL {url!r}: unknown option {sorted(unknown)[0]!r}")
        store = await SqliteStore.open(Path(path), synchronous=options.get("synchronous", "FULL"))
    elif url.startswith(("postgresql://", "postgres://")):
        from soar.store.postgres import PostgresStore  # asyncpg loads only for this backend

        store = await PostgresStore.open(url)
    else:
        raise ConfigError(
            f"store URL {url!r}: expected sqlite:///PATH, postgresql://HOST/DATABASE or memory://"
        )
    try:
        yield store
    finally:
        await store.close()


__getattr__ = lazy_names(__name__, _HOMES)
