"""The `forensics` tests: a Falcon-shaped EDR and a plain HTTP server on loopback, an evidence
store in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from forensics_test_servers import CANARY, EVIL, PATH, Origin, origin_app
from soar_edr.testing import FalconTestServer


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    found = Origin()
    runner = web.AppRunner(await origin_app(found), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    found.url = f"http://{host}:{port}"
    yield found
    await runner.cleanup()


@pytest.fixture
async def falcon() -> AsyncIterator[FalconTestServer]:
    async with FalconTestServer(client_secret=CANARY) as server:
        server.add_host("web-01", files={PATH: EVIL})
        yield server


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "evidence"


@pytest.fixture
def evil() -> bytes:
    """The bytes of the artifact both servers hold (`/files/evil.bin`, and PATH on web-01)."""
    return EVIL


@pytest.fixture
def host_path() -> str:
    return PATH
