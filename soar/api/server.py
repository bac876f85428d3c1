"""Starting and stopping the API on a host and port, with the services it needs."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from soar.api.app import build_app
from soar.api.auth import Sessions
from soar.api.services import ApiServices, EventHub
from soar.audit.keys import Keyring
from soar.config import ApiSettings, Settings
from soar.connectors.registry import Registry
from soar.engine import Engine
from soar.errors import ConfigError
from soar.ingest.limits import Limits


def session_key(settings: ApiSettings) -> bytes:
    """The configured key (shared by replicas) or a fresh one for this process.

    Raises:
        ConfigError: the key file cannot be read or is too short.
    """
    if settings.session_key_file is None:
        return secrets.token_bytes(32)
    try:
        key = settings.session_key_file.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"api.session_key_file: {exc}") from None
    if len(key) < 32:
        raise ConfigError("api.session_key_file holds fewer than 32 bytes")
    return key


def services_for(
    settings: Settings,
    engine: Engine,
    registry: Registry,
    *,
    metrics: Callable[[], bytes] | None = None,
) -> ApiServices:
    keys_dir = settings.audit.keys

    def public_keys() -> str:
        try:
            return Keyring.open(keys_dir).public_pem(None)
        except ConfigError:
            return ""

    return ApiServices(
        settings=settings.api,
        engine=engine,
        registry=registry,
        sessions=Sessions(session_key(settings.api), settings.api.session_ttl),
        events=EventHub(),
        playbooks_dir=settings.playbooks,
        limits=Limits(
            max_bytes=settings.ingest.max_message_bytes,
            max_depth=settings.ingest.max_depth,
            max_batch=settings.ingest.max_batch,
        ),
        public_keys_pem=public_keys,
        metrics=metrics,
    )


@dataclass(slots=True)
class RunningApi:
    runner: web.AppRunner
    services: ApiServices
    host: str
    port: int
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_api(services: ApiServices, host: str, port: int) -> RunningApi:
    """Serve the API until `stop()`; port 0 picks a free one (read it from `.port`)."""
    runner = web.AppRunner(build_app(services), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple):
            bound = int(address[1])
            break
    return RunningApi(runner, services, host, bound)
