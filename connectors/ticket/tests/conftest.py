"""The `ticket` tests: a Freshservice-shaped test server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from soar_ticket.testing import FreshserviceTestServer

CANARY = "canary-ticket-secret-1234"


@pytest.fixture
async def helpdesk() -> AsyncIterator[FreshserviceTestServer]:
    async with FreshserviceTestServer(api_key=CANARY) as server:
        yield server
