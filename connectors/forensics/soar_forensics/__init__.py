"""Evidence: artifacts collected from the EDR or an HTTP(S) URL, stored content-addressed by
SHA-256 with a record and a chain of custody, and checked with `soar-forensics verify`.
See docs/connectors/forensics.md."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import timedelta
from pathlib import Path
from typing import Final, Self
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from pydantic import BaseModel, Field, JsonValue, field_validator, model_validator
from soar_edr import Falcon, FalconError, FileTooLarge

from soar.connectors import ActionContext, ActionFailed, Connector, TargetKind
from soar_forensics._store import ArtifactStore, ArtifactTooLarge, Stored, StoreError

__all__ = [
    "ArtifactRef",
    "ArtifactStore",
    "CollectRequest",
    "EdrFile",
    "forensics",
]

forensics = Connector(
    "forensics", doc="Evidence: collect artifacts, store them by SHA-256 with chain of custody."
)

DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024
COLLECT_TIMEOUT: Final = timedelta(seconds=300)
_MARGIN: Final = 0.5
_CHUNK: Final = 1 << 16


class EdrFile(BaseModel):
    """A file the EDR holds after `edr.start_forensic_collection` (its output fits here)."""

    session_id: str = Field(min_length=1, max_length=128)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    filename: str = Field(min_length=1, max_length=1024)
    hostname: str | None = None
    device_id: str | None = None


class CollectRequest(BaseModel):
    """Exactly one source: `url` (http or https) or `edr` (a file the EDR collected)."""

    url: str | None = Field(default=None, max_length=4096)
    edr: EdrFile | None = None
    description: str = Field(default="", max_length=1000)

    @field_validator("url")
    @classmethod
    def _http_only(cls, url: str | None) -> str | None:
        if url is not None and urlsplit(url).scheme.lower() not in ("http", "https"):
            raise ValueError("only http and https URLs are collected")
        return url

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.url is None) == (self.edr is None):
            raise ValueError("give exactly one source: url or edr")
        return self


class ArtifactRef(BaseModel):
    """Where the evidence is: reference it from later steps, tickets and reports."""

    sha256: str
    size: int
    path: str = Field(description="the artifact's file in the store")
    record: str = Field(description="its JSON record (collector, source, chain of custody)")
    source: str = Field(description="the URL (without query), or `edr:SESSION/FILENAME`")
    changed: bool = Field(description="false when this key had already collected it")
    custody_head: str = Field(
        description="SHA-256 of the custody entry this collection added: the run and the audit "
        "log keep it, so a later edit of the record's chain up to it is found against them"
    )


def _settings(ctx: ActionContext) -> tuple[ArtifactStore, int]:
    store_dir = ctx.settings.get("store_dir")
    if not isinstance(store_dir, str) or not store_dir:
        raise ActionFailed("setting 'store_dir' must name the artifact directory", retryable=False)
    limit = ctx.settings.get("max_bytes", DEFAULT_MAX_BYTES)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ActionFailed("setting 'max_bytes' must be a positive integer", retryable=False)
    return ArtifactStore(Path(store_dir)), limit


def _ref(stored: Stored, source: str, idempotency_key: str) -> ArtifactRef:
    return ArtifactRef(
        sha256=stored.sha256,
        size=stored.size,
        path=str(stored.path),
        record=str(stored.record_path),
        source=source,
        changed=stored.changed,
        custody_head=stored.custody_head(idempotency_key),
    )


def _shown(url: str) -> str:
    """A URL fit for records and outputs: no user or password, no query (tokens live there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@forensics.action(
    secrets=["edr_client_id", "edr_client_secret"],
    idempotent=True,
    timeout=COLLECT_TIMEOUT,
    target=TargetKind.ARTIFACT,
)
async def collect_artifact(ctx: ActionContext, params: CollectRequest) -> ArtifactRef:
    """Download an artifact (from a URL, or a file the EDR collected) into the evidence store,
    named by its SHA-256, with a record: size, collector (run, step, idempotency key), source,
    time and chain of custody. The same key returns the same record without downloading again.
    The EDR secrets are read only for an `edr` source."""
    if ctx.dry_run:
        raise ActionFailed("collecting writes evidence: not run in a dry run", retryable=False)
    store, limit = _settings(ctx)
    if params.url is not None:
        source_text = _shown(params.url)
        source: dict[str, JsonValue] = {"kind": "url", "url": source_text}
    else:
        assert params.edr is not None  # noqa: S101 - the model requires one source
        source_text = f"edr:{params.edr.session_id}/{params.edr.filename}"
        source = {"kind": "edr", **params.edr.model_dump(mode="json", exclude_none=True)}
    if params.description:
        source["description"] = params.description
    done = store.collected_under(ctx.idempotency_key)
    if done is not None:
        return _ref(done, source_text, ctx.idempotency_key)
    deadline = time.monotonic() + COLLECT_TIMEOUT.total_seconds() - _MARGIN
    try:
        temporary = store.temporary()
    except StoreError as exc:
        raise ActionFailed(str(exc), retryable=False) from None
    try:
        if params.url is not None:
            sha256, size = await _fetch_url(ctx, params.url, temporary, limit, deadline)
        else:
            assert params.edr is not None  # noqa: S101
            sha256, size = await _fetch_edr(ctx, params.edr, temporary, limit, deadline)
            source["base_url"] = str(ctx.settings.get("edr_base_url"))
        run_id, _, step = ctx.idempotency_key.partition(":")
        stored = store.add(
            temporary,
            sha256=sha256,
            size=size,
            idempotency_key=ctx.idempotency_key,
            collector={
                "action": "forensics.collect_artifact",
                "run_id": run_id,
                "step": step,
                "idempotency_key": ctx.idempotency_key,
            },
            source=source,
            at=ctx.clock(),
        )
    except ArtifactTooLarge as exc:
        raise ActionFailed(str(exc), retryable=False) from None
    except (StoreError, OSError) as exc:
        raise ActionFailed(f"cannot store the artifact: {exc}", retryable=False) from None
    finally:
        temporary.unlink(missing_ok=True)
    ctx.logger.info("stored artifact %s (%d bytes) from %s", stored.sha256, size, source_text)
    return _ref(stored, source_text, ctx.idempotency_key)


async def _fetch_url(
    ctx: ActionContext, url: str, into: Path, limit: int, deadline: float
) -> tuple[str, int]:
    """Stream `url` into the file `into`; its SHA-256 and size."""
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise ActionFailed("only http and https URLs are collected", retryable=False)
    request_timeout = ctx.settings.get("request_timeout", 60)
    per_request = float(request_timeout) if isinstance(request_timeout, int | float) else 60.0
    left = deadline - time.monotonic()
    timeout = aiohttp.ClientTimeout(total=max(0.1, min(left, per_request)))
    shown = _shown(url)
    digest = hashlib.sha256()
    size = 0
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, timeout=timeout, max_redirects=5) as response,
        ):
            if response.status >= 400:
                raise ActionFailed(
                    f"{shown} answered {response.status} {response.reason or ''}".rstrip(),
                    retryable=response.status >= 500 or response.status in (408, 429),
                )
            if (response.content_length or 0) > limit:
                raise ArtifactTooLarge(
                    f"{shown} is {response.content_length} bytes, over the limit of {limit}"
                )
            with into.open("wb") as out:
                async for chunk in response.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise ArtifactTooLarge(f"{shown} is over the limit of {limit} bytes")
                    digest.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
    except TimeoutError:
        raise ActionFailed(f"{shown} did not answer in time", retryable=True) from None
    except aiohttp.TooManyRedirects:
        raise ActionFailed(f"{shown} redirects too often", retryable=False) from None
    except aiohttp.ClientError as exc:
        raise ActionFailed(
            f"{shown} is unreachable ({type(exc).__name__})", retryable=True
        ) from None
    return digest.hexdigest(), size


async def _fetch_edr(
    ctx: ActionContext, file: EdrFile, into: Path, limit: int, deadline: float
) -> tuple[str, int]:
    """Download a file the EDR collected (`extracted-file-contents`) into `into`."""
    try:
        async with Falcon(
            ctx.settings,
            ctx.secrets["edr_client_id"],
            ctx.secrets["edr_client_secret"],
            budget=deadline - time.monotonic(),
            idempotency_key=ctx.idempotency_key,
            base_url_setting="edr_base_url",
        ) as falcon:
            content = await falcon.download(
                "/real-time-response/entities/extracted-file-contents/v1",
                {
                    "session_id": file.session_id,
                    "sha256": file.sha256.lower(),
                    "filename": file.filename,
                },
                limit=limit,
            )
    except FileTooLarge as exc:
        raise ArtifactTooLarge(exc.message) from None
    except FalconError as exc:
        raise ActionFailed(exc.message, retryable=exc.retryable) from None
    await asyncio.to_thread(into.write_bytes, content)
    return hashlib.sha256(content).hexdigest(), len(content)
