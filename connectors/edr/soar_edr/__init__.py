"""Hosts on an EDR, in the CrowdStrike Falcon API's shapes: look up, contain and release a host,
kill a process and collect a file over Real Time Response. See docs/connectors/edr.md."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Final

from pydantic import BaseModel, Field, JsonValue

from soar.connectors import ActionContext, ActionFailed, Connector, TargetKind
from soar_edr._falcon import Falcon, FalconError, FileTooLarge, base_url_of

__all__ = [
    "Collection",
    "CollectionRequest",
    "Falcon",
    "FalconError",
    "FileTooLarge",
    "Host",
    "HostRef",
    "HostState",
    "KillRequest",
    "KillResult",
    "base_url_of",
    "edr",
]

edr = Connector(
    "edr", doc="Hosts on an EDR (CrowdStrike Falcon API): contain, release, kill, collect."
)

SECRETS: Final = ("client_id", "client_secret")
_MARGIN: Final = 0.5  # seconds kept from the budget so the action reports its own timeout
_CONTAINED: Final = frozenset({"contained", "containment_pending"})
_HOST = Field(
    min_length=1,
    max_length=255,
    pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    description="a hostname, or a Falcon device id (32 hex digits)",
)

GET_TIMEOUT: Final = timedelta(seconds=20)
CONTAIN_TIMEOUT: Final = timedelta(seconds=30)
KILL_TIMEOUT: Final = timedelta(seconds=60)
COLLECT_TIMEOUT: Final = timedelta(seconds=120)


class HostRef(BaseModel):
    host: str = _HOST


class Host(BaseModel):
    host: str = Field(description="the host as asked for (hostname or device id)")
    isolated: bool = Field(description="contained, or containment pending")
    device_id: str | None = None
    hostname: str | None = None
    status: str | None = Field(
        default=None, description="Falcon's: normal, containment_pending, contained, ..."
    )
    platform: str | None = None
    os_version: str | None = None
    local_ip: str | None = None
    last_seen: str | None = None


class HostState(BaseModel):
    host: str = Field(description="the host as asked for (hostname or device id)")
    isolated: bool
    device_id: str | None = None
    hostname: str | None = None
    status: str | None = None
    changed: bool | None = Field(
        default=None, description="false when the host was already in that state"
    )


class KillRequest(BaseModel):
    host: str = _HOST
    pid: int = Field(ge=1, le=2**31 - 1)


class KillResult(BaseModel):
    host: str
    pid: int
    device_id: str | None = None
    changed: bool | None = Field(default=None, description="false when no such process ran")


class CollectionRequest(BaseModel):
    host: str = _HOST
    path: str = Field(min_length=1, max_length=1024, description="the file's path on the host")


class Collection(BaseModel):
    host: str
    session_id: str
    filename: str = Field(description="the file's path on the host, as the EDR names it")
    sha256: str = Field(description="the file's SHA-256 as the EDR reports it")
    device_id: str | None = None
    size: int | None = None
    changed: bool | None = Field(
        default=None, description="false when the session already held this file"
    )


@asynccontextmanager
async def _falcon(ctx: ActionContext, budget: timedelta) -> AsyncIterator[Falcon]:
    async with Falcon(
        ctx.settings,
        ctx.secrets["client_id"],
        ctx.secrets["client_secret"],
        budget=budget.total_seconds() - _MARGIN,
        idempotency_key=ctx.idempotency_key,
    ) as falcon:
        yield falcon


def _host(host: str, record: dict[str, JsonValue]) -> Host:
    def text(name: str) -> str | None:
        value = record.get(name)
        return value if isinstance(value, str) else None

    status = text("status") or "unknown"
    return Host(
        host=host,
        isolated=status in _CONTAINED,
        device_id=text("device_id"),
        hostname=text("hostname"),
        status=status,
        platform=text("platform_name"),
        os_version=text("os_version"),
        local_ip=text("local_ip"),
        last_seen=text("last_seen"),
    )


async def _lookup(falcon: Falcon, host: str) -> Host:
    return _host(host, await falcon.device(await falcon.resolve(host)))


def _state(found: Host, *, changed: bool) -> HostState:
    return HostState(
        host=found.host,
        isolated=found.isolated,
        device_id=found.device_id,
        hostname=found.hostname,
        status=found.status,
        changed=changed,
    )


@edr.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=GET_TIMEOUT,
    target=TargetKind.HOST,
    target_field="host",
    cache_ttl=timedelta(seconds=30),
)
async def get_host(ctx: ActionContext, params: HostRef) -> Host:
    """Look a host up by hostname or device id: its containment, platform, address, last seen."""
    async with _falcon(ctx, GET_TIMEOUT) as falcon:
        return await _lookup(falcon, params.host)


async def _contain(ctx: ActionContext, params: HostRef, *, contain: bool) -> HostState:
    async with _falcon(ctx, CONTAIN_TIMEOUT) as falcon:
        found = await _lookup(falcon, params.host)
        if found.isolated == contain or ctx.dry_run:
            return _state(found, changed=False)
        assert found.device_id is not None  # noqa: S101 - read from the device record
        await falcon.device_action(found.device_id, "contain" if contain else "lift_containment")
        after = _host(params.host, await falcon.device(found.device_id))
    return _state(after.model_copy(update={"isolated": contain}), changed=True)


@edr.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=CONTAIN_TIMEOUT,
    compensate="edr.release_host",
    target=TargetKind.HOST,
    target_field="host",
)
async def isolate_host(ctx: ActionContext, params: HostRef) -> HostState:
    """Contain a host (network isolation); undone by `edr.release_host`.

    A host already contained, or on its way to it, is left as is (`changed: false`)."""
    return await _contain(ctx, params, contain=True)


@edr.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=CONTAIN_TIMEOUT,
    compensate="edr.isolate_host",
    target=TargetKind.HOST,
    target_field="host",
)
async def release_host(ctx: ActionContext, params: HostRef) -> HostState:
    """Lift a host's containment; undone by `edr.isolate_host`.

    A host that is not contained is left as is (`changed: false`)."""
    return await _contain(ctx, params, contain=False)


async def _in_state(ctx: ActionContext, params: HostRef, isolated: bool) -> HostState | None:
    async with _falcon(ctx, GET_TIMEOUT) as falcon:
        found = await _lookup(falcon, params.host)
    return _state(found, changed=True) if found.isolated == isolated else None


@edr.verify("isolate_host")
async def is_isolated(ctx: ActionContext, params: HostRef) -> HostState | None:
    """The host's state when it is contained (or pending), else None."""
    return await _in_state(ctx, params, True)


@edr.verify("release_host")
async def is_released(ctx: ActionContext, params: HostRef) -> HostState | None:
    """The host's state when it is not contained, else None."""
    return await _in_state(ctx, params, False)


@edr.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=KILL_TIMEOUT,
    target=TargetKind.HOST,
    target_field="host",
)
async def kill_process(ctx: ActionContext, params: KillRequest) -> KillResult:
    """Kill one process by pid over Real Time Response (`kill <pid>`).

    A pid with no process (already ended, or killed by an earlier attempt) is `changed:
    false`."""
    if ctx.dry_run:
        raise ActionFailed("kill_process takes effect: not run in a dry run", retryable=False)
    async with _falcon(ctx, KILL_TIMEOUT) as falcon:
        device_id = await falcon.resolve(params.host)
        session_id = await falcon.open_session(device_id)
        result = await falcon.responder_command(session_id, device_id, "kill", f"kill {params.pid}")
        stderr = result.get("stderr")
        if isinstance(stderr, str) and stderr.strip() and not _no_such_process(stderr):
            text = falcon.hide(f"kill {params.pid} failed: {stderr.strip()[:300]}")
            raise ActionFailed(text, retryable=False)
    changed = not (isinstance(stderr, str) and stderr.strip())
    return KillResult(host=params.host, pid=params.pid, device_id=device_id, changed=changed)


def _no_such_process(stderr: str) -> bool:
    # RTR reports the outcome of `kill` only as text on stderr; there is no error code to read
    lowered = stderr.lower()
    return "not found" in lowered or "no such process" in lowered


@edr.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=COLLECT_TIMEOUT,
    target=TargetKind.HOST,
    target_field="host",
)
async def start_forensic_collection(ctx: ActionContext, params: CollectionRequest) -> Collection:
    """Have the EDR collect one file from a host over Real Time Response (`get <path>`).

    Waits until the EDR holds it and returns the session and the file's SHA-256, which
    `forensics.collect` downloads (its `edr` input). A file already collected in the session
    is returned as it is (`changed: false`)."""
    if ctx.dry_run:
        raise ActionFailed("collection takes effect: not run in a dry run", retryable=False)
    async with _falcon(ctx, COLLECT_TIMEOUT) as falcon:
        device_id = await falcon.resolve(params.host)
        session_id = await falcon.open_session(device_id)
        found, changed = await falcon.collect_file(session_id, device_id, params.path)
    size = found.get("size")
    return Collection(
        host=params.host,
        device_id=device_id,
        session_id=session_id,
        filename=str(found.get("name")),
        sha256=str(found.get("sha256")),
        size=size if isinstance(size, int) else None,
        changed=changed,
    )
