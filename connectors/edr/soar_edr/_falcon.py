"""The wire client: the CrowdStrike Falcon API request shapes the `edr` actions use, over aiohttp.

One `Falcon` lives for one action call, within that action's time budget. The OAuth2 token is
kept per (base URL, client id, secret digest) for the process until shortly before it expires,
and fetched again on a 401. Every failure becomes `FalconError(message, retryable=...)`, with
the secret hidden from its message.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

import aiohttp
from pydantic import JsonValue

from soar.connectors import ActionFailed
from soar.connectors.retry import retry_after_seconds
from soar.connectors.settings import positive_number

# seconds before expiry a cached token is no longer used (half its lifetime, if shorter)
_REFRESH_MARGIN: Final = 60.0
_RATE_LIMIT_TRIES: Final = 3
_DEFAULT_REQUEST_TIMEOUT: Final = 30.0
_DEFAULT_POLL_INTERVAL: Final = 0.5

Envelope = dict[str, JsonValue]
_DEVICE_ID: Final = re.compile(r"^[0-9a-fA-F]{32}\Z")


class FalconError(ActionFailed):
    """A Falcon request failed: an `ActionFailed` with the HTTP `status` when there was one."""


class FileTooLarge(FalconError):
    """A downloaded file is over the caller's limit (not retryable)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    good_until: float  # time.monotonic()


# one token per (base URL, client id, SHA-256 of the secret), shared by the calls of a process
_tokens: dict[tuple[str, str, str], _Token] = {}


def base_url_of(settings: Mapping[str, JsonValue], name: str = "base_url") -> str:
    """The API's base URL from the connector's settings, without a trailing slash.

    Raises:
        FalconError: the setting is missing or not an http(s) URL (not retryable).
    """
    url = settings.get(name)
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise FalconError(f"setting {name!r} must be the EDR's http(s) base URL", retryable=False)
    return url.rstrip("/")


class Falcon:
    """A Falcon API session for one action call, spending at most `budget` seconds.

    Use as `async with Falcon(...) as falcon:`. Writes carry `idempotency_key` as an
    `Idempotency-Key` header (Falcon ignores headers it does not know).
    """

    def __init__(
        self,
        settings: Mapping[str, JsonValue],
        client_id: str,
        client_secret: str,
        *,
        budget: float,
        idempotency_key: str,
        base_url_setting: str = "base_url",
    ) -> None:
        self.base_url = base_url_of(settings, base_url_setting)
        self._request_timeout = positive_number(
            settings, "request_timeout", _DEFAULT_REQUEST_TIMEOUT
        )
        self.poll_interval = positive_number(settings, "poll_interval", _DEFAULT_POLL_INTERVAL)
        self._client_id = client_id
        self._secret = client_secret
        self._cache_key = (
            self.base_url,
            client_id,
            hashlib.sha256(client_secret.encode()).hexdigest(),
        )
        self._idempotency_key = idempotency_key
        self._deadline = time.monotonic() + budget
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    # -- budget --------------------------------------------------------------------------

    def remaining(self) -> float:
        """Seconds left of the action's budget."""
        return self._deadline - time.monotonic()

    def _timeout(self) -> aiohttp.ClientTimeout:
        left = self.remaining()
        if left <= 0:
            raise FalconError("the action's time budget is spent", retryable=True)
        return aiohttp.ClientTimeout(total=min(self._request_timeout, left))

    def hide(self, text: str) -> str:
        """`text` with the client secret hidden, for any message built from remote text."""
        return text.replace(self._secret, "***") if self._secret else text

    # -- the token -------------------------------------------------------------------------

    async def _token(self) -> str:
        cached = _tokens.get(self._cache_key)
        if cached is not None and cached.good_until > time.monotonic():
            return cached.value
        form = {"client_id": self._client_id, "client_secret": self._secret}
        status, body = await self._exchange("POST", f"{self.base_url}/oauth2/token", data=form)
        if status >= 400:
            raise self._error(status, body, "token request")
        token = body.get("access_token")
        expires_in = body.get("expires_in", 0)
        if not isinstance(token, str) or not isinstance(expires_in, int | float):
            raise FalconError("the token response has no access_token", retryable=False)
        lifetime = max(0.0, float(expires_in))
        good = time.monotonic() + lifetime - min(_REFRESH_MARGIN, lifetime / 2)
        _tokens[self._cache_key] = _Token(token, good)
        return token

    def _forget_token(self) -> None:
        _tokens.pop(self._cache_key, None)

    # -- requests ----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: JsonValue = None,
        write: bool = False,
    ) -> Envelope:
        """One API call, its JSON envelope returned (`{"meta", "resources", "errors"}`).

        A 401 fetches a new token once; a 429 waits its Retry-After while the budget allows.

        Raises:
            FalconError: unreachable, timed out, rate limited past the budget, 5xx
                (retryable); refused credentials, 4xx (not retryable).
        """
        refreshed = False
        while True:
            headers = {"Authorization": f"Bearer {await self._token()}"}
            if write:
                headers["Idempotency-Key"] = self._idempotency_key
            status, body = await self._exchange(
                method, f"{self.base_url}{path}", params=params, json=json, headers=headers
            )
            if status == 401 and not refreshed:
                self._forget_token()
                refreshed = True
                continue
            if status >= 400:
                raise self._error(status, body, f"{method} {path}")
            return body

    async def _exchange(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: JsonValue = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Envelope]:
        """Send one request; a 429 is waited out (its Retry-After) while the budget allows."""
        limited = 0
        while True:
            session = self._require_session()
            try:
                async with session.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    data=data,
                    headers=headers,
                    timeout=self._timeout(),
                ) as response:
                    body = await _json(response)
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._transport(exc) from None
            if status != 429:
                return status, body
            limited += 1
            await self._wait_out(retry_after, limited)

    async def _wait_out(self, retry_after: str | None, limited: int) -> None:
        """Sleep out a 429's Retry-After, or raise when that would pass the budget (or this is
        the third 429 in a row)."""
        wait = _seconds(retry_after)
        if limited >= _RATE_LIMIT_TRIES or wait > self.remaining() - 0.1:
            raise FalconError(
                f"rate limited by the EDR (retry after {wait:g}s)",
                retryable=True,
                status=429,
                retry_after=wait,
            )
        await asyncio.sleep(wait)

    async def download(self, path: str, params: Mapping[str, str], *, limit: int) -> bytes:
        """The body of a GET that returns a file, refused past `limit` bytes.

        Raises:
            FalconError: as `request`; also when the body exceeds `limit` (not retryable).
        """
        refreshed = False
        limited = 0
        while True:
            session = self._require_session()
            headers = {"Authorization": f"Bearer {await self._token()}"}
            try:
                async with session.get(
                    f"{self.base_url}{path}",
                    params=params,
                    headers=headers,
                    timeout=self._timeout(),
                ) as response:
                    if response.status == 401 and not refreshed:
                        self._forget_token()
                        refreshed = True
                        continue
                    if response.status == 429:
                        limited += 1
                        await self._wait_out(response.headers.get("Retry-After"), limited)
                        continue
                    if response.status >= 400:
                        raise self._error(response.status, await _json(response), f"GET {path}")
                    if (response.content_length or 0) > limit:
                        raise FileTooLarge(
                            f"the file is {response.content_length} bytes, over the limit of "
                            f"{limit}"
                        )
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.content.iter_chunked(65536):
                        size += len(chunk)
                        if size > limit:
                            raise FileTooLarge(f"the file is over the limit of {limit} bytes")
                        chunks.append(chunk)
                    return b"".join(chunks)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._transport(exc) from None

    # -- the calls the actions make --------------------------------------------------------

    async def find_device(self, hostname: str) -> str:
        """The device id of the host called `hostname`.

        Raises:
            FalconError: no such host (not retryable), or as `request`.
        """
        if "'" in hostname or "\\" in hostname:
            raise FalconError("a hostname cannot contain quotes or backslashes", retryable=False)
        body = await self.request(
            "GET", "/devices/queries/devices/v1", params={"filter": f"hostname:'{hostname}'"}
        )
        ids = [i for i in _resources(body) if isinstance(i, str)]
        if not ids:
            raise FalconError(f"no host named {hostname!r} in the EDR", retryable=False)
        if len(ids) > 1:
            raise FalconError(
                f"{len(ids)} hosts are named {hostname!r}: give the device id", retryable=False
            )
        return ids[0]

    async def resolve(self, host: str) -> str:
        """The device id of `host`: a Falcon device id (32 hex digits) as it is, else a
        hostname looked up."""
        if _DEVICE_ID.match(host):
            return host.lower()
        return await self.find_device(host)

    async def device(self, device_id: str) -> dict[str, JsonValue]:
        """The device record (`device_id`, `hostname`, `status`, ...)."""
        body = await self.request("GET", "/devices/entities/devices/v2", params={"ids": device_id})
        for item in _resources(body):
            if isinstance(item, dict) and item.get("device_id") == device_id:
                return item
        raise FalconError(f"no device {device_id!r} in the EDR", retryable=False)

    async def device_action(self, device_id: str, action_name: str) -> None:
        """`contain` or `lift_containment` one device."""
        await self.request(
            "POST",
            "/devices/entities/devices-actions/v2",
            params={"action_name": action_name},
            json={"ids": [device_id]},
            write=True,
        )

    async def open_session(self, device_id: str) -> str:
        """A Real Time Response session on the device (`queue_offline` false)."""
        body = await self.request(
            "POST",
            "/real-time-response/entities/sessions/v1",
            json={"device_id": device_id, "queue_offline": False},
            write=True,
        )
        for item in _resources(body):
            if isinstance(item, dict) and isinstance(item.get("session_id"), str):
                return str(item["session_id"])
        raise FalconError("the EDR opened no RTR session", retryable=True)

    async def responder_command(
        self, session_id: str, device_id: str, base_command: str, command_string: str
    ) -> dict[str, JsonValue]:
        """Run an RTR active-responder command and poll until it completes (within the budget).

        Returns the last status resource (`complete`, `stdout`, `stderr`, `cloud_request_id`).
        """
        path = "/real-time-response/entities/active-responder-command/v1"
        body = await self.request(
            "POST",
            path,
            json={
                "base_command": base_command,
                "command_string": command_string,
                "session_id": session_id,
                "device_id": device_id,
                "persist": False,
            },
            write=True,
        )
        request_id = next(
            (
                str(item["cloud_request_id"])
                for item in _resources(body)
                if isinstance(item, dict) and isinstance(item.get("cloud_request_id"), str)
            ),
            None,
        )
        if request_id is None:
            raise FalconError("the EDR accepted no RTR command", retryable=True)
        while True:
            status = await self.request(
                "GET", path, params={"cloud_request_id": request_id, "sequence_id": "0"}
            )
            for item in _resources(status):
                if isinstance(item, dict) and item.get("complete") is True:
                    return {**item, "cloud_request_id": request_id}
            if self.remaining() < self.poll_interval:
                raise FalconError(
                    f"RTR command {base_command} not complete within the action's time budget",
                    retryable=True,
                )
            await asyncio.sleep(self.poll_interval)

    async def session_files(self, session_id: str) -> list[dict[str, JsonValue]]:
        """The files collected (`get`) in an RTR session: name, sha256, size, cloud_request_id."""
        body = await self.request(
            "GET", "/real-time-response/entities/file/v2", params={"session_id": session_id}
        )
        return [item for item in _resources(body) if isinstance(item, dict)]

    async def collect_file(
        self, session_id: str, device_id: str, path: str
    ) -> tuple[dict[str, JsonValue], bool]:
        """Have the EDR collect one file (`get <path>`) in the session, unless the session
        already holds it; its file entry (`name`, `sha256`, `size`) and whether `get` ran.

        Raises:
            FalconError: `get` failed on the host (not retryable: its stderr), or as `request`.
        """
        found = _file(await self.session_files(session_id), path)
        if found is not None:
            return found, False
        if '"' in path:
            raise FalconError("a path cannot contain double quotes", retryable=False)
        argument = f'"{path}"' if " " in path else path
        result = await self.responder_command(session_id, device_id, "get", f"get {argument}")
        stderr = result.get("stderr")
        if isinstance(stderr, str) and stderr.strip():
            raise FalconError(self.hide(f"get failed: {stderr.strip()[:300]}"), retryable=False)
        found = _file(await self.session_files(session_id), path)
        if found is None:
            raise FalconError("the EDR lists no collected file yet", retryable=True)
        return found, True

    # -- errors ------------------------------------------------------------------------------

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use Falcon as `async with Falcon(...) as falcon`")
        return self._session

    def _transport(self, exc: BaseException) -> FalconError:
        if isinstance(exc, TimeoutError):
            return FalconError("the EDR did not answer in time", retryable=True)
        return FalconError(f"the EDR is unreachable ({type(exc).__name__})", retryable=True)

    def _error(self, status: int, body: Envelope, what: str) -> FalconError:
        message = _message(body) or "no error message"
        if status == 401:
            text = f"the EDR refused the credentials ({what}): {message}"
        else:
            text = f"the EDR answered {status} to {what}: {message}"
        retryable = status >= 500 or status in (408, 429)
        return FalconError(self.hide(text), retryable=retryable, status=status)


def _file(files: list[dict[str, JsonValue]], path: str) -> dict[str, JsonValue] | None:
    for item in files:
        if item.get("name") == path and isinstance(item.get("sha256"), str):
            return item
    return None


def _resources(body: Envelope) -> list[JsonValue]:
    resources = body.get("resources")
    return resources if isinstance(resources, list) else []


def _message(body: Envelope) -> str:
    errors = body.get("errors")
    if isinstance(errors, list):
        texts = [str(e.get("message")) for e in errors if isinstance(e, dict) and e.get("message")]
        return "; ".join(texts)[:500]
    return ""


def _seconds(header: str | None) -> float:
    found = retry_after_seconds(header)
    return 1.0 if found is None else found


async def _json(response: aiohttp.ClientResponse) -> Envelope:
    try:
        body = await response.json(content_type=None)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
