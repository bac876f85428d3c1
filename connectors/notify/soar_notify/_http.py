"""One HTTP POST to a vendor API, with its outcome sorted into the connector's errors.

Webhook URLs and tokens are secrets, so no message built here carries a URL, a header or an
exception's text (aiohttp puts the URL in some of them); a vendor's reply is quoted only after
every secret value is cut out of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from pydantic import JsonValue

from soar.connectors import ActionFailed
from soar.connectors.retry import retry_after_seconds

_QUOTE = 200
_MIN_FRAGMENT = 8  # shorter URL parts (`hooks`, `services`) are not secret


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    text: str


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by `***`; for a URL secret (a webhook) also its
    path, query and long path segments, which a vendor may echo without the host."""
    for secret in sorted(_fragments(secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _fragments(secrets: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        found.add(secret)
        if secret.startswith(("http://", "https://")):
            parts = urlsplit(secret)
            pieces = [parts.path, parts.query, *parts.path.split("/")]
            found.update(p for p in pieces if len(p) >= _MIN_FRAGMENT)
    return found


async def post(
    what: str,
    url: str,
    *,
    secrets: Iterable[str],
    limit: float,
    json: JsonValue = None,
    form: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """POST and return a 2xx reply.

    Raises:
        ActionFailed: retryable for timeouts, connection failures, 429 and 5xx; not retryable
            for other 4xx and for a URL that cannot be used. The text never holds a secret.
    """
    hidden = list(secrets)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit)) as session,
            session.post(
                url,
                json=json if form is None else None,
                data=form,
                headers=headers,
                allow_redirects=False,
            ) as response,
        ):
            text = await response.text(errors="replace")
            status = response.status
            retry_after = response.headers.get("Retry-After")
    except TimeoutError:
        raise ActionFailed(f"{what}: no answer within {limit:g} s", retryable=True) from None
    except (aiohttp.InvalidURL, ValueError):
        raise ActionFailed(f"{what}: the configured URL is not usable", retryable=False) from None
    except aiohttp.ClientConnectorCertificateError:
        raise ActionFailed(f"{what}: the TLS certificate is not trusted", retryable=False) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise ActionFailed(f"{what}: unreachable ({type(exc).__name__})", retryable=True) from None
    if 200 <= status < 300:
        return Reply(status, text)
    quoted = scrub(text.strip(), hidden)[:_QUOTE]
    if status == 429:
        wait = f", retry after {scrub(retry_after, hidden)[:20]} s" if retry_after else ""
        raise ActionFailed(
            f"{what}: rate limited (429){wait}",
            retryable=True,
            retry_after=retry_after_seconds(retry_after),
        )
    if status >= 500:
        raise ActionFailed(f"{what}: server error {status}: {quoted}", retryable=True)
    raise ActionFailed(f"{what}: refused with {status}: {quoted}", retryable=False)
