"""Where artifacts come from: an HTTP(S) URL, a file the EDR collected, or a host's collection
profile fetched over the EDR. Each is streamed or written into a temporary file of the store."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
from pydantic import JsonValue
from soar_edr import Falcon, FileTooLarge

from soar.connectors import ActionContext, ActionFailed
from soar_forensics._store import ArtifactTooLarge

_CHUNK: Final = 1 << 16
CONTENTS: Final = "/real-time-response/entities/extracted-file-contents/v1"

# the built-in `triage` profile: the Windows event logs most investigations start from
DEFAULT_PROFILES: Final[Mapping[str, tuple[str, ...]]] = {
    "triage": (
        r"C:\Windows\System32\winevt\Logs\Security.evtx",
        r"C:\Windows\System32\winevt\Logs\System.evtx",
        r"C:\Windows\System32\winevt\Logs\Microsoft-Windows-PowerShell%4Operational.evtx",
    ),
}


def shown(url: str) -> str:
    """A URL fit for records and outputs: no user or password, no query (tokens live there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def profile_paths(settings: Mapping[str, JsonValue], profile: str) -> list[str]:
    """The host paths of a collection profile: `settings.profiles[profile]`, else built in.

    Raises:
        ActionFailed: no such profile (not retryable).
    """
    configured = settings.get("profiles")
    if isinstance(configured, dict) and profile in configured:
        paths = configured[profile]
        if isinstance(paths, list) and paths and all(isinstance(p, str) for p in paths):
            return [str(p) for p in paths]
        raise ActionFailed(f"profile {profile!r} must be a list of paths", retryable=False)
    if profile in DEFAULT_PROFILES:
        return list(DEFAULT_PROFILES[profile])
    raise ActionFailed(f"no collection profile {profile!r} (settings.profiles)", retryable=False)


def falcon(ctx: ActionContext, deadline: float) -> Falcon:
    """A Falcon client with this connector's EDR settings and secrets.

    Raises:
        FalconError: `edr_base_url` is not set (not retryable).
    """
    return Falcon(
        ctx.settings,
        ctx.secrets["edr_client_id"],
        ctx.secrets["edr_client_secret"],
        budget=deadline - time.monotonic(),
        idempotency_key=ctx.idempotency_key,
        base_url_setting="edr_base_url",
    )


async def download_edr_file(
    client: Falcon, session_id: str, sha256: str, filename: str, into: Path, limit: int
) -> tuple[str, int]:
    """Download a file the EDR collected into `into`; its SHA-256 and size.

    Raises:
        ArtifactTooLarge: over `limit`.
        FalconError: as `Falcon.request`.
    """
    try:
        content = await client.download(
            CONTENTS,
            {"session_id": session_id, "sha256": sha256.lower(), "filename": filename},
            limit=limit,
        )
    except FileTooLarge as exc:
        raise ArtifactTooLarge(exc.message) from None
    await asyncio.to_thread(into.write_bytes, content)
    return hashlib.sha256(content).hexdigest(), len(content)


_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS: Final = 5


def check_url(settings: Mapping[str, JsonValue], url: str) -> None:
    """Refuse a URL that is not http(s), or whose host is not in `settings.url_hosts` when
    that allow-list is set.

    Raises:
        ActionFailed: refused (not retryable).
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ActionFailed("only http and https URLs are collected", retryable=False)
    allowed = settings.get("url_hosts")
    if allowed is None:
        return
    hosts = {str(h).lower() for h in allowed} if isinstance(allowed, list) else set()
    if (parts.hostname or "").lower() not in hosts:
        raise ActionFailed(
            f"{parts.hostname or '(no host)'} is not in settings.url_hosts", retryable=False
        )


async def fetch_url(
    ctx: ActionContext, url: str, into: Path, limit: int, deadline: float
) -> tuple[str, int]:
    """Stream `url` into the file `into`; its SHA-256 and size. Redirects are followed by hand
    (at most 5), each target checked as the URL was.

    Raises:
        ActionFailed: refused, 4xx (final), 5xx / 408 / 429 / timeouts / unreachable
            (retryable), too many redirects (final).
        ArtifactTooLarge: over `limit`.
    """
    check_url(ctx.settings, url)
    request_timeout = ctx.settings.get("request_timeout", 60)
    per_request = float(request_timeout) if isinstance(request_timeout, int | float) else 60.0
    where = shown(url)
    digest = hashlib.sha256()
    size = 0
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(_MAX_REDIRECTS + 1):
                left = deadline - time.monotonic()
                timeout = aiohttp.ClientTimeout(total=max(0.1, min(left, per_request)))
                async with session.get(url, timeout=timeout, allow_redirects=False) as response:
                    location = response.headers.get("Location")
                    if response.status in _REDIRECTS and location:
                        url = urljoin(url, location)
                        check_url(ctx.settings, url)
                        where = shown(url)
                        continue
                    if response.status >= 400:
                        raise ActionFailed(
                            f"{where} answered {response.status} {response.reason or ''}".rstrip(),
                            retryable=response.status >= 500 or response.status in (408, 429),
                        )
                    if (response.content_length or 0) > limit:
                        raise ArtifactTooLarge(
                            f"{where} is {response.content_length} bytes, over the limit of {limit}"
                        )
                    with into.open("wb") as out:
                        async for chunk in response.content.iter_chunked(_CHUNK):
                            size += len(chunk)
                            if size > limit:
                                raise ArtifactTooLarge(
                                    f"{where} is over the limit of {limit} bytes"
                                )
                            digest.update(chunk)
                            await asyncio.to_thread(out.write, chunk)
                    return digest.hexdigest(), size
    except TimeoutError:
        raise ActionFailed(f"{where} did not answer in time", retryable=True) from None
    except aiohttp.ClientError as exc:
        raise ActionFailed(
            f"{where} is unreachable ({type(exc).__name__})", retryable=True
        ) from None
    raise ActionFailed(f"{where} redirects more than {_MAX_REDIRECTS} times", retryable=False)
