"""The `edr` tests: a Falcon-shaped test server on loopback, and a way to call actions as the
engine does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from soar_edr.testing import FalconTestServer

CANARY = "canary-edr-secret-1234"


@pytest.fixture
async def falcon() -> AsyncIterator[FalconTestServer]:
    async with FalconTestServer(client_secret=CANARY) as server:
        server.add_host("web-01", processes={4242}, files={r"C:\evil.exe": b"MZ evil bytes"})
        server.add_host("db-01", status="contained")
        yield server
