"""The wire client: the two Prometheus HTTP API calls the `metrics` actions make, over aiohttp.

One `Prometheus` lives for one action call, within that action's time budget. It authenticates
with a bearer token or HTTP basic auth when given one. Every failure becomes
`PrometheusError(message, retryable=..., retry_after=...)`, with the secrets hidden from its
message and the URL shown without any user information.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from json import loads
from types import TracebackType
from typing import Final, Self

import aiohttp
from pydantic import JsonValue
from yarl import URL

from soar.connectors import ActionFailed
from soar.connectors.retry import retry_after_seconds
from soar.connectors.settings import positive_number

DEFAULT_TIMEOUT: Final = 10.0  # seconds for one request
_MAX_BODY: Final = 16 * 1024 * 1024  # bytes of one answer read at most
_RETRYABLE_STATUS: Final = frozenset({408, 429})

Body = dict[str, JsonValue]


class PrometheusError(ActionFailed):
    """A Prometheus request failed: an `ActionFailed` with the HTTP `status` when there was one."""


def _setting_url(settings: Mapping[str, JsonValue]) -> URL:
    url = settings.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise PrometheusError("setting 'url' must be Prometheus' http(s) base URL", retryable=False)
    parsed = URL(url.rstrip("/"))
    if parsed.user is not None or parsed.password is not None:
        raise PrometheusError(
            "setting 'url' must not carry credentials: use the 'username' setting and the "
            "'password' or 'bearer_token' secret",
            retryable=False,
        )
    return parsed


class Prometheus:
    """A Prometheus HTTP API session for one action call, spending at most `budget` seconds.

    Use as `async with Prometheus(settings, bearer_token=..., password=..., budget=...) as api:`.
    """

    def __init__(
        self,
        settings: Mapping[str, JsonValue],
        *,
        bearer_token: str | None,
        password: str | None,
        budget: float,
    ) -> None:
        self.base_url = _setting_url(settings)
        self._timeout = positive_number(settings, "timeout", DEFAULT_TIMEOUT)
        username = settings.get("username")
        if username is not None and not isinstance(username, str):
            raise PrometheusError("setting 'username' must be a string", retryable=False)
        if bearer_token and (username or password):
            raise PrometheusError(
                "give Prometheus a bearer token or basic auth ('username' and 'password'), "
                "not both",
                retryable=False,
            )
        if password and not username:
            raise PrometheusError(
                "the 'password' secret needs the 'username' setting", retryable=False
            )
        if username and ":" in username:
            raise PrometheusError("setting 'username' must not contain ':'", retryable=False)
        self._headers: dict[str, str] = {}
        if bearer_token:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
        elif username:
            pair = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {pair}"
        self._secrets = [s for s in (bearer_token, password) if s]
        self._deadline = time.monotonic() + budget
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(headers=self._headers)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def where(self) -> str:
        """The server, for messages: scheme, host and port."""
        return str(self.base_url.origin())

    def hide(self, text: str) -> str:
        """`text` with every secret hidden, for any message built from remote text."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def remaining(self) -> float:
        """Seconds left of the action's budget."""
        return self._deadline - time.monotonic()

    async def query(self, query: str, *, at: float | None = None) -> Body:
        """`GET /api/v1/query`: the answer's `data` (`resultType`, `result`) and `warnings`.

        Raises:
            PrometheusError: see `get`.
        """
        params = {"query": query}
        if at is not None:
            params["time"] = _number(at)
        return await self.get("/api/v1/query", params)

    async def query_range(self, query: str, *, start: float, end: float, step: float) -> Body:
        """`GET /api/v1/query_range`: the answer's `data` (a matrix) and `warnings`.

        Raises:
            PrometheusError: see `get`.
        """
        params = {
            "query": query,
            "start": _number(start),
            "end": _number(end),
            "step": _number(step),
        }
        return await self.get("/api/v1/query_range", params)

    async def get(self, path: str, params: dict[str, str]) -> Body:
        """One API call; `data` of its JSON answer, with the answer's `warnings` beside it.

        Raises:
            PrometheusError: unreachable, timed out, rate limited, 5xx (retryable, with the
                server's Retry-After); refused credentials, a bad query, an unreadable answer
                (not retryable), the message naming Prometheus' own error text.
        """
        if self._session is None:
            raise RuntimeError("use Prometheus as `async with Prometheus(...) as api`")
        left = self.remaining()
        if left <= 0:
            raise PrometheusError("the action's time budget is spent", retryable=True)
        wait = min(self._timeout, left)
        # Prometheus stops evaluating a query at its own `timeout` too, instead of working on
        # for an answer nobody reads.
        params = {**params, "timeout": _number(wait)}
        try:
            async with self._session.get(
                f"{self.base_url}{path}",
                params=params,
                timeout=aiohttp.ClientTimeout(total=wait),
                allow_redirects=False,
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                body = await _json(response)
        except TimeoutError:
            raise PrometheusError(
                f"Prometheus at {self.where} did not answer within {wait:g}s", retryable=True
            ) from None
        except aiohttp.ClientError as exc:
            raise PrometheusError(
                f"Prometheus at {self.where} is unreachable ({type(exc).__name__})",
                retryable=True,
            ) from None
        if status >= 300 or body.get("status") != "success":
            raise self._error(status, body, retry_after)
        data = body.get("data")
        if not isinstance(data, dict):
            raise PrometheusError(
                f"Prometheus at {self.where} answered without 'data': not a Prometheus API",
                retryable=False,
            )
        warnings = body.get("warnings")
        return {**data, "warnings": warnings if isinstance(warnings, list) else []}

    def _error(self, status: int, body: Body, retry_after: str | None) -> PrometheusError:
        kind = body.get("errorType")
        error = body.get("error")
        said = f"{kind}: {error}" if isinstance(kind, str) and isinstance(error, str) else None
        if status in (401, 403):
            text = f"Prometheus at {self.where} refused the credentials ({status})"
        elif said is not None:
            text = f"Prometheus refused the query ({status} {said})"
        elif status < 300:
            text = f"Prometheus at {self.where} answered {status} without a success status"
        else:
            text = f"Prometheus at {self.where} answered {status}"
        retryable = status >= 500 or status in _RETRYABLE_STATUS
        wait = retry_after_seconds(retry_after) if retryable else None
        return PrometheusError(
            self.hide(text)[:2000], retryable=retryable, status=status, retry_after=wait
        )


def _number(value: float) -> str:
    """A number as Prometheus reads it: seconds, with the fraction only when there is one."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


async def _json(response: aiohttp.ClientResponse) -> Body:
    raw = await response.content.read(_MAX_BODY + 1)
    if len(raw) > _MAX_BODY:
        raise PrometheusError(
            f"Prometheus' answer is over {_MAX_BODY // (1024 * 1024)} MiB: narrow the query",
            retryable=False,
        )
    try:
        body = loads(raw) if raw else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
