"""The `http` tests' fixtures: loopback origins (see http_test_servers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from http_test_servers import Origin, serve


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    async for served in serve():
        yield served


@pytest.fixture
async def other_origin() -> AsyncIterator[Origin]:
    async for served in serve():
        yield served
