"""The backends the contract suites run against, each opened by its URL as soar opens it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from soar.store import Store, open_store

BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
"""Fixture params: PostgreSQL tests are marked, and use the suite's server (skipped without)."""


@asynccontextmanager
async def open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A new, empty store of the kind `request.param` names."""
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        async with server.database() as dsn, open_store(dsn) as opened:
            yield opened
        return
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'soar.db'}"
    async with open_store(url) as opened:
        yield opened
