"""The API on a free loopback port over a given engine, with one token per role: for the
tests of soar and of anything built on it (the console's browser tests, `soar lab`)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from soar.api.auth import Role, Sessions
from soar.api.server import RunningApi, start_api
from soar.api.services import ApiServices, EventHub
from soar.api.tokens import create_token
from soar.config import ApiSettings
from soar.connectors.registry import Registry
from soar.engine import Engine


@dataclass(slots=True)
class ApiUnderTest:
    running: RunningApi
    tokens: dict[Role, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def services(self) -> ApiServices:
        return self.running.services

    def headers(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@contextlib.asynccontextmanager
async def running_api(
    engine: Engine,
    registry: Registry,
    *,
    playbooks_dir: Path,
    settings: ApiSettings | None = None,
    public_keys_pem: str = "",
) -> AsyncIterator[ApiUnderTest]:
    """Serve the API on 127.0.0.1 (a free port) until the block ends; tokens are created for
    every role, named after it (`admin`, `author`, ...)."""
    settings = settings or ApiSettings(port=0)
    services = ApiServices(
        settings=settings,
        engine=engine,
        registry=registry,
        sessions=Sessions(secrets.token_bytes(32), settings.session_ttl),
        events=EventHub(),
        playbooks_dir=playbooks_dir,
        public_keys_pem=lambda: public_keys_pem,
        metrics=lambda: b"# no metrics in tests\n",
    )
    running = await start_api(services, "127.0.0.1", 0)
    api = ApiUnderTest(running)
    try:
        for role in Role:
            _, secret = await create_token(engine.store, name=role.value, role=role, by="test")
            api.tokens[role] = secret
        yield api
    finally:
        await running.stop()
