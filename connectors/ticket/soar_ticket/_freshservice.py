"""The wire client: the Freshservice API v2 request shapes the `ticket` actions use, over aiohttp.

One `Freshservice` lives for one action call, within that action's time budget. It signs in with
HTTP basic auth (the API key as user name, "X" as password). Every failure becomes
`FreshserviceError(message, retryable=...)`, with the API key hidden from its message.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping
from json import loads
from types import TracebackType
from typing import Final, Self

import aiohttp
from pydantic import JsonValue

from soar.connectors import ActionFailed
from soar.connectors.retry import retry_after_seconds
from soar.connectors.settings import positive_number

_RATE_LIMIT_TRIES: Final = 3
_DEFAULT_REQUEST_TIMEOUT: Final = 20.0
_MAX_BODY: Final = 4 * 1024 * 1024  # bytes of one API answer read at most

Body = dict[str, JsonValue]


class FreshserviceError(ActionFailed):
    """A Freshservice request failed: an `ActionFailed`, with the HTTP `status` if any."""


def base_url_of(settings: Mapping[str, JsonValue]) -> str:
    """The helpdesk's base URL (`https://acme.freshservice.com`), without a trailing slash.

    Raises:
        FreshserviceError: the setting is missing or not an http(s) URL (not retryable).
    """
    url = settings.get("base_url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise FreshserviceError(
            "setting 'base_url' must be the helpdesk's http(s) base URL", retryable=False
        )
    return url.rstrip("/")


class Freshservice:
    """A Freshservice API v2 session for one action call, spending at most `budget` seconds.

    Use as `async with Freshservice(settings, api_key, budget=...) as api:`.
    """

    def __init__(self, settings: Mapping[str, JsonValue], api_key: str, *, budget: float) -> None:
        self.base_url = base_url_of(settings)
        self._request_timeout = positive_number(
            settings, "request_timeout", _DEFAULT_REQUEST_TIMEOUT
        )
        self._key = api_key
        self._deadline = time.monotonic() + budget
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        # basic auth: the API key as user name, "X" as password
        token = base64.b64encode(f"{self._key}:X".encode()).decode("ascii")
        self._session = aiohttp.ClientSession(headers={"Authorization": f"Basic {token}"})
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    def remaining(self) -> float:
        """Seconds left of the action's budget."""
        return self._deadline - time.monotonic()

    def hide(self, text: str) -> str:
        """`text` with the API key hidden, for any message built from remote text."""
        return text.replace(self._key, "***") if self._key else text

    # -- requests ----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: JsonValue = None,
    ) -> Body:
        """One API call; its JSON body returned. A 429 waits its Retry-After while the budget
        allows.

        Raises:
            FreshserviceError: unreachable, timed out, rate limited past the budget, 5xx
                (retryable); refused credentials, unknown ticket, invalid request (not).
        """
        if self._session is None:
            raise RuntimeError("use Freshservice as `async with Freshservice(...) as api`")
        limited = 0
        while True:
            left = self.remaining()
            if left <= 0:
                raise FreshserviceError("the action's time budget is spent", retryable=True)
            timeout = aiohttp.ClientTimeout(total=min(self._request_timeout, left))
            try:
                async with self._session.request(
                    method, f"{self.base_url}{path}", params=params, json=json, timeout=timeout
                ) as response:
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
                    body = await _json(response)
            except TimeoutError:
                raise FreshserviceError(
                    "the helpdesk did not answer in time", retryable=True
                ) from None
            except aiohttp.ClientError as exc:
                raise FreshserviceError(
                    f"the helpdesk is unreachable ({type(exc).__name__})", retryable=True
                ) from None
            if status == 429:
                limited += 1
                wait = _seconds(retry_after)
                if limited >= _RATE_LIMIT_TRIES or wait > self.remaining() - 0.1:
                    raise FreshserviceError(
                        f"rate limited by the helpdesk (retry after {wait:g}s)",
                        retryable=True,
                        status=429,
                        retry_after=wait,
                    )
                await asyncio.sleep(wait)
                continue
            if status >= 400:
                raise self._error(status, body, f"{method} {path}")
            return body

    def _error(self, status: int, body: Body, what: str) -> FreshserviceError:
        message = _message(body)
        if status in (401, 403):
            text = f"the helpdesk refused the API key ({what}, {status}): {message}"
        elif status == 404:
            text = f"the helpdesk has no such record ({what}, 404)"
        else:
            text = f"the helpdesk answered {status} to {what}: {message}"
        retryable = status >= 500 or status == 408
        return FreshserviceError(self.hide(text)[:1000], retryable=retryable, status=status)

    # -- the calls the actions make --------------------------------------------------------

    async def ticket(self, ticket_id: int) -> Body:
        """`GET /api/v2/tickets/{id}`: the ticket record."""
        return _record(await self.request("GET", f"/api/v2/tickets/{ticket_id}"), "ticket")

    async def create(self, fields: Body) -> Body:
        """`POST /api/v2/tickets`: the new ticket's record."""
        return _record(await self.request("POST", "/api/v2/tickets", json=fields), "ticket")

    async def update(self, ticket_id: int, fields: Body) -> Body:
        """`PUT /api/v2/tickets/{id}` with only the given fields: the updated record."""
        body = await self.request("PUT", f"/api/v2/tickets/{ticket_id}", json=fields)
        return _record(body, "ticket")

    async def add_note(self, ticket_id: int, fields: Body) -> Body:
        """`POST /api/v2/tickets/{id}/notes`: the note (`{"conversation": {...}}`)."""
        body = await self.request("POST", f"/api/v2/tickets/{ticket_id}/notes", json=fields)
        return _record(body, "conversation")

    async def conversations(self, ticket_id: int) -> list[Body]:
        """`GET /api/v2/tickets/{id}/conversations`: the ticket's notes and replies."""
        body = await self.request("GET", f"/api/v2/tickets/{ticket_id}/conversations")
        return _records(body, "conversations")

    async def filter_tickets(self, query: str) -> list[Body]:
        """`GET /api/v2/tickets/filter?query="..."` (Freshservice's filter syntax)."""
        body = await self.request("GET", "/api/v2/tickets/filter", params={"query": f'"{query}"'})
        return _records(body, "tickets")

    async def recent_tickets(self, page: int) -> list[Body]:
        """One page (100) of `GET /api/v2/tickets`, newest first."""
        params = {"per_page": "100", "page": str(page), "order_type": "desc"}
        return _records(await self.request("GET", "/api/v2/tickets", params=params), "tickets")


def _record(body: Body, key: str) -> Body:
    record = body.get(key)
    if not isinstance(record, dict):
        raise FreshserviceError(f"the helpdesk's answer has no {key!r}", retryable=False)
    return record


def _records(body: Body, key: str) -> list[Body]:
    records = body.get(key)
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []


async def _json(response: aiohttp.ClientResponse) -> Body:
    raw = await response.content.read(_MAX_BODY + 1)
    if len(raw) > _MAX_BODY:
        raise FreshserviceError("the helpdesk's answer is too large", retryable=False)
    if not raw:
        return {}
    try:
        body = loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(body: Body) -> str:
    """`description` and each `errors[]` entry (`field: message (code)`) of an error body."""
    parts: list[str] = []
    description = body.get("description") or body.get("message")
    if isinstance(description, str):
        parts.append(description)
    errors = body.get("errors")
    if isinstance(errors, list):
        for item in errors[:10]:
            if isinstance(item, dict):
                field, message, code = item.get("field"), item.get("message"), item.get("code")
                parts.append(f"{field}: {message} ({code})")
    return "; ".join(parts) or "no error message"


def _seconds(header: str | None) -> float:
    found = retry_after_seconds(header)
    return 1.0 if found is None else found
