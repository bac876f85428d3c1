"""One HTTP POST to a vendor API, with its outcome sorted into the connector's errors.

Webhook URLs and tokens are secrets, so no message built here carries a URL, a header or an
exception's text (aiohttp puts the URL in some of them); a vendor's reply is quoted only after
every secret value is cut out of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiohttp
from pydantic import JsonValue

from soar.connectors import ActionFailed

_QUOTE = 200


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    text: str


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


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
    except (aiohttp.ClientError, OSError) as exc:
        raise ActionFailed(f"{what}: unreachable ({type(exc).__name__})", retryable=True) from None
    except asyncio.CancelledError:
        raise
    if 200 <= status < 300:
        return Reply(status, text)
    quoted = scrub(text.strip(), hidden)[:_QUOTE]
    if status == 429:
        wait = f", retry after {scrub(retry_after, hidden)[:20]} s" if retry_after else ""
        raise ActionFailed(f"{what}: rate limited (429){wait}", retryable=True)
    if status >= 500:
        raise ActionFailed(f"{what}: server error {status}: {quoted}", retryable=True)
    raise ActionFailed(f"{what}: refused with {status}: {quoted}", retryable=False)
