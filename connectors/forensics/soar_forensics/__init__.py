"""Evidence: artifacts collected from a host over the EDR, from a file the EDR already collected,
or from an HTTP(S) URL, stored content-addressed by SHA-256 with a record and a chain of custody,
and checked with `soar-forensics verify`. See docs/connectors/forensics.md."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Final, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, JsonValue, field_validator, model_validator
from soar_edr import Falcon, FalconError

from soar.connectors import ActionContext, ActionFailed, Connector, TargetKind
from soar_forensics._sources import (
    download_edr_file,
    falcon,
    fetch_url,
    profile_paths,
    shown,
)
from soar_forensics._store import ArtifactStore, ArtifactTooLarge, Stored, StoreError

__all__ = [
    "ArtifactRef",
    "ArtifactStore",
    "CollectRequest",
    "EdrFile",
    "MemberRef",
    "forensics",
]

forensics = Connector(
    "forensics", doc="Evidence: collect artifacts, store them by SHA-256 with chain of custody."
)

DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024
COLLECT_TIMEOUT: Final = timedelta(seconds=300)
MANIFEST_FORMAT: Final = "soar-collection/1"
_MARGIN: Final = 0.5
_HOST_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class EdrFile(BaseModel):
    """A file the EDR holds after `edr.start_forensic_collection` (its output fits here)."""

    session_id: str = Field(min_length=1, max_length=128)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    filename: str = Field(min_length=1, max_length=1024)
    host: str | None = None
    device_id: str | None = None


class CollectRequest(BaseModel):
    """Exactly one source: `host` (with a `profile`), `edr` or `url`."""

    host: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=_HOST_PATTERN,
        description="collect the profile's files from this host (hostname or device id)",
    )
    profile: str = Field(
        default="triage",
        pattern=r"^[a-z][a-z0-9_-]*$",
        description="the collection profile (settings.profiles) for a `host`",
    )
    edr: EdrFile | None = Field(
        default=None, description="a file the EDR collected: edr.start_forensic_collection's output"
    )
    url: str | None = Field(default=None, max_length=4096, description="an http(s) URL")
    description: str = Field(default="", max_length=1000)

    @field_validator("url")
    @classmethod
    def _http_only(cls, url: str | None) -> str | None:
        if url is not None and urlsplit(url).scheme.lower() not in ("http", "https"):
            raise ValueError("only http and https URLs are collected")
        return url

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if sum(source is not None for source in (self.host, self.edr, self.url)) != 1:
            raise ValueError("give exactly one source: host, edr or url")
        return self


class MemberRef(BaseModel):
    """One file of a host collection: stored on its own, listed in the collection's manifest."""

    path: str = Field(description="the file's path on the host")
    sha256: str | None = None
    size: int | None = None
    stored: str | None = Field(default=None, description="the file in the store")
    error: str | None = Field(default=None, description="why it was not collected")


class ArtifactRef(BaseModel):
    """Where the evidence is: reference it from later steps, tickets and reports. For a host
    collection it is the manifest, which lists each file (also in `files`)."""

    sha256: str
    size: int
    path: str | None = Field(default=None, description="the artifact's file in the store")
    record: str | None = Field(
        default=None, description="its JSON record (collector, source, chain of custody)"
    )
    source: str | None = Field(
        default=None,
        description="the URL (without query), `edr:SESSION/FILENAME` or `host:HOST/PROFILE`",
    )
    changed: bool | None = Field(
        default=None, description="false when this key had already collected it"
    )
    custody_head: str | None = Field(
        default=None,
        description="SHA-256 of the custody entry this collection added: the run and the audit "
        "log keep it, so a later edit of the record's chain up to it is found against them",
    )
    files: list[MemberRef] = Field(
        default_factory=list, description="a host collection's files (empty otherwise)"
    )


def _settings(ctx: ActionContext) -> tuple[ArtifactStore, int]:
    store_dir = ctx.settings.get("store_dir")
    if not isinstance(store_dir, str) or not store_dir:
        raise ActionFailed("setting 'store_dir' must name the artifact directory", retryable=False)
    limit = ctx.settings.get("max_bytes", DEFAULT_MAX_BYTES)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ActionFailed("setting 'max_bytes' must be a positive integer", retryable=False)
    return ArtifactStore(Path(store_dir)), limit


def _source_of(params: CollectRequest) -> tuple[str, dict[str, JsonValue]]:
    if params.url is not None:
        text = shown(params.url)
        source: dict[str, JsonValue] = {"kind": "url", "url": text}
    elif params.edr is not None:
        text = f"edr:{params.edr.session_id}/{params.edr.filename}"
        source = {"kind": "edr", **params.edr.model_dump(mode="json", exclude_none=True)}
    else:
        text = f"host:{params.host}/{params.profile}"
        source = {"kind": "edr-host", "host": params.host, "profile": params.profile}
    if params.description:
        source["description"] = params.description
    return text, source


class _Collector:
    """One call's writes to the store: each artifact under the call's key, or a key derived
    from it for the files of a host collection."""

    def __init__(self, ctx: ActionContext, store: ArtifactStore, limit: int) -> None:
        self.ctx = ctx
        self.store = store
        self.limit = limit
        run_id, _, step = ctx.idempotency_key.partition(":")
        self.collector: dict[str, JsonValue] = {
            "action": "forensics.collect",
            "run_id": run_id,
            "step": step,
            "idempotency_key": ctx.idempotency_key,
        }

    async def keep(
        self,
        fill: Callable[[Path], Awaitable[tuple[str, int]]],
        source: dict[str, JsonValue],
        *,
        key: str,
    ) -> Stored:
        """Fill a temporary file with `fill`, then add it to the store under `key`."""
        try:
            temporary = self.store.temporary()
        except StoreError as exc:
            raise ActionFailed(str(exc), retryable=False) from None
        try:
            sha256, size = await fill(temporary)
            return self.store.add(
                temporary,
                sha256=sha256,
                size=size,
                idempotency_key=key,
                collector=self.collector,
                source=source,
                at=self.ctx.clock(),
            )
        except ArtifactTooLarge as exc:
            raise ActionFailed(str(exc), retryable=False) from None
        except (StoreError, OSError) as exc:
            raise ActionFailed(f"cannot store the artifact: {exc}", retryable=False) from None
        finally:
            temporary.unlink(missing_ok=True)


def _ref(stored: Stored, source: str, idempotency_key: str, files: list[MemberRef]) -> ArtifactRef:
    return ArtifactRef(
        sha256=stored.sha256,
        size=stored.size,
        path=str(stored.path),
        record=str(stored.record_path),
        source=source,
        changed=stored.changed,
        custody_head=stored.custody_head(idempotency_key),
        files=files,
    )


def _members(store: ArtifactStore, stored: Stored) -> list[MemberRef]:
    """The files a stored manifest lists (none for an artifact that is not a manifest)."""
    source = stored.record.get("source")
    if not isinstance(source, dict) or source.get("kind") != "edr-host":
        return []
    try:
        manifest = json.loads(stored.path.read_bytes())
        files = [MemberRef.model_validate(f) for f in manifest.get("files", [])]
    except (OSError, ValueError, AttributeError):
        return []
    for member in files:
        if member.sha256 is not None:
            member.stored = str(store.blob_path(member.sha256))
    return files


@forensics.action(
    secrets=["edr_client_id", "edr_client_secret"],
    idempotent=True,
    timeout=COLLECT_TIMEOUT,
    target=TargetKind.HOST,
    target_field="host",
)
async def collect(ctx: ActionContext, params: CollectRequest) -> ArtifactRef:
    """Collect evidence into the store, by SHA-256, with a record and a chain of custody.

    The record holds the size, collector (run, step, idempotency key), source and time.

    A `host` has its `profile`'s files collected over the EDR (Real Time Response `get`), each
    stored on its own, and a manifest listing them is the returned artifact; `edr` downloads a
    file the EDR already collected; `url` downloads over http(s). The same idempotency key
    returns the same reference without collecting again. The EDR secrets are read only for
    `host` and `edr` sources."""
    if ctx.dry_run:
        raise ActionFailed("collecting writes evidence: not run in a dry run", retryable=False)
    store, limit = _settings(ctx)
    source_text, source = _source_of(params)
    done = store.collected_under(ctx.idempotency_key)
    if done is not None:
        return _ref(done, source_text, ctx.idempotency_key, _members(store, done))
    deadline = time.monotonic() + COLLECT_TIMEOUT.total_seconds() - _MARGIN
    collector = _Collector(ctx, store, limit)
    files: list[MemberRef] = []
    if params.url is not None:
        url = params.url

        async def from_url(into: Path) -> tuple[str, int]:
            return await fetch_url(ctx, url, into, limit, deadline)

        stored = await collector.keep(from_url, source, key=ctx.idempotency_key)
    elif params.edr is not None:
        edr_file = params.edr
        async with falcon(ctx, deadline) as client:
            source["base_url"] = client.base_url

            async def from_edr(into: Path) -> tuple[str, int]:
                return await download_edr_file(
                    client, edr_file.session_id, edr_file.sha256, edr_file.filename, into, limit
                )

            stored = await collector.keep(from_edr, source, key=ctx.idempotency_key)
    else:
        assert params.host is not None  # noqa: S101 - the model requires one source
        stored, files = await _collect_host(
            collector, params.host, params.profile, source, deadline
        )
    ctx.logger.info(
        "stored artifact %s (%d bytes) from %s", stored.sha256, stored.size, source_text
    )
    return _ref(stored, source_text, ctx.idempotency_key, files)


async def _collect_host(
    collector: _Collector,
    host: str,
    profile: str,
    source: dict[str, JsonValue],
    deadline: float,
) -> tuple[Stored, list[MemberRef]]:
    """Collect each file of the profile from the host, store each, then store the manifest.

    A file the host does not have is listed with its error; none at all fails the action.
    """
    ctx = collector.ctx
    paths = profile_paths(ctx.settings, profile)
    files: list[MemberRef] = []
    async with falcon(ctx, deadline) as client:
        device_id = await client.resolve(host)
        session_id = await client.open_session(device_id)
        for path in paths:
            key = f"{ctx.idempotency_key}#{path}"
            earlier = collector.store.collected_under(key)
            if earlier is not None:  # stored by an earlier attempt of this step
                files.append(_stored_member(path, earlier))
                continue
            try:
                found, _ = await client.collect_file(session_id, device_id, path)
            except FalconError as exc:
                if exc.retryable:
                    raise
                files.append(MemberRef(path=path, error=exc.message))
                continue
            member = _member_source(client, host, device_id, session_id, found)

            async def from_session(
                into: Path, found: dict[str, JsonValue] = found
            ) -> tuple[str, int]:
                return await download_edr_file(
                    client,
                    session_id,
                    str(found.get("sha256")),
                    str(found.get("name")),
                    into,
                    collector.limit,
                )

            stored = await collector.keep(from_session, member, key=key)
            files.append(_stored_member(path, stored))
        source.update(
            {"device_id": device_id, "session_id": session_id, "base_url": client.base_url}
        )
    if not any(f.sha256 for f in files):
        errors = "; ".join(f"{f.path}: {f.error}" for f in files)
        raise ActionFailed(
            f"no file of profile {profile!r} was collected: {errors}", retryable=False
        )
    manifest = {
        "format": MANIFEST_FORMAT,
        "host": host,
        "device_id": device_id,
        "profile": profile,
        "files": [f.model_dump(mode="json", exclude_none=True, exclude={"stored"}) for f in files],
    }
    content = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"

    async def write_manifest(into: Path) -> tuple[str, int]:
        await asyncio.to_thread(into.write_bytes, content)
        return hashlib.sha256(content).hexdigest(), len(content)

    stored = await collector.keep(write_manifest, source, key=ctx.idempotency_key)
    return stored, files


def _stored_member(path: str, stored: Stored) -> MemberRef:
    return MemberRef(path=path, sha256=stored.sha256, size=stored.size, stored=str(stored.path))


def _member_source(
    client: Falcon, host: str, device_id: str, session_id: str, found: dict[str, JsonValue]
) -> dict[str, JsonValue]:
    return {
        "kind": "edr",
        "host": host,
        "device_id": device_id,
        "session_id": session_id,
        "filename": found.get("name"),
        "sha256": found.get("sha256"),
        "base_url": client.base_url,
    }
