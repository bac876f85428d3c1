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
    "Containment",
    "Falcon",
    "FalconError",
    "FileTooLarge",
    "Host",
    "HostRef",
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
_HOSTNAME = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

GET_TIMEOUT: Final = timedelta(seconds=20)
CONTAIN_TIMEOUT: Final = timedelta(seconds=30)
KILL_TIMEOUT: Final = timedelta(seconds=60)
COLLECT_TIMEOUT: Final = timedelta(seconds=120)


class HostRef(BaseModel):
    hostname: str = _HOSTNAME


class Host(BaseModel):
    device_id: str
    hostname: str
    status: str = Field(description="normal, containment_pending, contained, ...")
    contained: bool
    platform: str | None = None
    os_version: str | None = None
    local_ip: str | None = None
    last_seen: str | None = None


class Containment(BaseModel):
    device_id: str
    hostname: str
    status: str
    contained: bool
    changed: bool = Field(description="false when the host was already in that state")


class KillRequest(BaseModel):
    hostname: str = _HOSTNAME
    pid: int = Field(ge=1, le=2**31 - 1)


class KillResult(BaseModel):
    device_id: str
    hostname: str
    pid: int
    changed: bool = Field(description="false when no such process was running")


class CollectionRequest(BaseModel):
    hostname: str = _HOSTNAME
    path: str = Field(min_length=1, max_length=1024, description="the file's path on the host")


class Collection(BaseModel):
    device_id: str
    hostname: str
    session_id: str
    path: str
    filename: str
    sha256: str = Field(description="the file's SHA-256 as the EDR reports it")
    size: int | None = None
    changed: bool = Field(description="false when the session already held this file")


@asynccontextmanager
async def _falcon(ctx: ActionContext, budget: timedelta) -> AsyncIterator[Falcon]:
    try:
        async with Falcon(
            ctx.settings,
            ctx.secrets["client_id"],
            ctx.secrets["client_secret"],
            budget=budget.total_seconds() - _MARGIN,
            idempotency_key=ctx.idempotency_key,
        ) as falcon:
            yield falcon
    except FalconError as exc:
        raise ActionFailed(exc.message, retryable=exc.retryable) from None


def _host(record: dict[str, JsonValue]) -> Host:
    def text(name: str) -> str | None:
        value = record.get(name)
        return value if isinstance(value, str) else None

    status = text("status") or "unknown"
    return Host(
        device_id=text("device_id") or "",
        hostname=text("hostname") or "",
        status=status,
        contained=status in _CONTAINED,
        platform=text("platform_name"),
        os_version=text("os_version"),
        local_ip=text("local_ip"),
        last_seen=text("last_seen"),
    )


async def _lookup(falcon: Falcon, hostname: str) -> Host:
    return _host(await falcon.device(await falcon.find_device(hostname)))


@edr.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=GET_TIMEOUT,
    target=TargetKind.HOST,
    target_field="hostname",
    cache_ttl=timedelta(seconds=30),
)
async def get_host(ctx: ActionContext, params: HostRef) -> Host:
    """Look a host up by hostname: its device id, containment status, platform, last seen."""
    async with _falcon(ctx, GET_TIMEOUT) as falcon:
        return await _lookup(falcon, params.hostname)


async def _contain(ctx: ActionContext, params: HostRef, *, contain: bool) -> Containment:
    async with _falcon(ctx, CONTAIN_TIMEOUT) as falcon:
        host = await _lookup(falcon, params.hostname)
        if host.contained == contain or ctx.dry_run:
            return Containment(
                device_id=host.device_id,
                hostname=host.hostname,
                status=host.status,
                contained=host.contained,
                changed=False,
            )
        action = "contain" if contain else "lift_containment"
        await falcon.device_action(host.device_id, action)
        after = _host(await falcon.device(host.device_id))
    return Containment(
        device_id=after.device_id,
        hostname=after.hostname,
        status=after.status,
        contained=contain,
        changed=True,
    )


@edr.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=CONTAIN_TIMEOUT,
    compensate="edr.release_host",
    target=TargetKind.HOST,
    target_field="hostname",
)
async def isolate_host(ctx: ActionContext, params: HostRef) -> Containment:
    """Contain a host (network isolation). A host already contained, or on its way to it, is
    left as is (`changed: false`). Undone by `edr.release_host`."""
    return await _contain(ctx, params, contain=True)


@edr.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=CONTAIN_TIMEOUT,
    compensate="edr.isolate_host",
    target=TargetKind.HOST,
    target_field="hostname",
)
async def release_host(ctx: ActionContext, params: HostRef) -> Containment:
    """Lift a host's containment. A host that is not contained is left as is (`changed:
    false`). Undone by `edr.isolate_host`."""
    return await _contain(ctx, params, contain=False)


async def _in_state(ctx: ActionContext, params: HostRef, contained: bool) -> Containment | None:
    async with _falcon(ctx, GET_TIMEOUT) as falcon:
        host = await _lookup(falcon, params.hostname)
    if host.contained != contained:
        return None
    return Containment(
        device_id=host.device_id,
        hostname=host.hostname,
        status=host.status,
        contained=contained,
        changed=True,
    )


@edr.verify("isolate_host")
async def is_isolated(ctx: ActionContext, params: HostRef) -> Containment | None:
    """The host's containment when it is contained (or pending), else None."""
    return await _in_state(ctx, params, True)


@edr.verify("release_host")
async def is_released(ctx: ActionContext, params: HostRef) -> Containment | None:
    """The host's containment when it is not contained, else None."""
    return await _in_state(ctx, params, False)


@edr.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=KILL_TIMEOUT,
    target=TargetKind.HOST,
    target_field="hostname",
)
async def kill_process(ctx: ActionContext, params: KillRequest) -> KillResult:
    """Kill one process by pid over Real Time Response (`kill <pid>`). A pid with no process
    (already ended, or killed by an earlier attempt) is `changed: false`."""
    if ctx.dry_run:
        raise ActionFailed("kill_process takes effect: not run in a dry run", retryable=False)
    async with _falcon(ctx, KILL_TIMEOUT) as falcon:
        device_id = await falcon.find_device(params.hostname)
        session_id = await falcon.open_session(device_id)
        result = await falcon.responder_command(session_id, device_id, "kill", f"kill {params.pid}")
    stderr = result.get("stderr")
    if isinstance(stderr, str) and stderr.strip():
        if _no_such_process(stderr):
            return KillResult(
                device_id=device_id, hostname=params.hostname, pid=params.pid, changed=False
            )
        raise ActionFailed(f"kill {params.pid} failed: {stderr.strip()[:300]}", retryable=False)
    return KillResult(device_id=device_id, hostname=params.hostname, pid=params.pid, changed=True)


def _no_such_process(stderr: str) -> bool:
    # RTR reports the outcome of `kill` only as text on stderr; there is no error code to read
    lowered = stderr.lower()
    return "not found" in lowered or "no such process" in lowered


@edr.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=COLLECT_TIMEOUT,
    target=TargetKind.HOST,
    target_field="hostname",
)
async def start_forensic_collection(ctx: ActionContext, params: CollectionRequest) -> Collection:
    """Collect one file from a host over Real Time Response (`get <path>`) and wait until the
    EDR holds it. Returns the session and the file's SHA-256, which `forensics.collect_artifact`
    downloads. A file already collected in the host's session is returned (`changed: false`)."""
    if ctx.dry_run:
        raise ActionFailed("collection takes effect: not run in a dry run", retryable=False)
    async with _falcon(ctx, COLLECT_TIMEOUT) as falcon:
        device_id = await falcon.find_device(params.hostname)
        session_id = await falcon.open_session(device_id)
        found = _file(await falcon.session_files(session_id), params.path)
        changed = False
        if found is None:
            result = await falcon.responder_command(
                session_id, device_id, "get", f"get {_quoted(params.path)}"
            )
            stderr = result.get("stderr")
            if isinstance(stderr, str) and stderr.strip():
                raise ActionFailed(f"get failed: {stderr.strip()[:300]}", retryable=False)
            found = _file(await falcon.session_files(session_id), params.path)
            changed = True
        if found is None:
            raise ActionFailed("the EDR lists no collected file yet", retryable=True)
    sha256, size = found.get("sha256"), found.get("size")
    return Collection(
        device_id=device_id,
        hostname=params.hostname,
        session_id=session_id,
        path=params.path,
        filename=str(found.get("name")),
        sha256=str(sha256),
        size=size if isinstance(size, int) else None,
        changed=changed,
    )


def _file(files: list[dict[str, JsonValue]], path: str) -> dict[str, JsonValue] | None:
    for item in files:
        if item.get("name") == path and isinstance(item.get("sha256"), str):
            return item
    return None


def _quoted(path: str) -> str:
    """An RTR argument: quoted when it holds a space (RTR's own quoting)."""
    if '"' in path:
        raise ActionFailed("a path cannot contain double quotes", retryable=False)
    return f'"{path}"' if " " in path else path
