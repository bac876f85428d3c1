"""The wire client: one HTTP exchange under the SSRF guard, redirects followed by hand.

Each hop is checked by the `Policy` first; a DNS name is resolved here, every address checked,
and the connection is made through a resolver pinned to exactly those addresses, so the
address that was checked is the address that is reached (no DNS rebinding between the two).
No proxy from the environment is used. The body is streamed and cut off past `max_bytes`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from soar_http._guard import IPAddress, Policy, Refused

_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_CHUNK: Final = 65536


class HttpFailure(Exception):
    """The exchange failed; `retryable` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Exchange:
    """The final answer of a request, after any redirects."""

    status: int
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    redirects: list[str] = field(default_factory=list)


class PinnedResolver(AbstractResolver):
    """A resolver that knows one host name and answers with the addresses already checked."""

    def __init__(self, host: str | None, addresses: Sequence[IPAddress]) -> None:
        self._host = host
        self._addresses = list(addresses)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._host is None or host.lower().rstrip(".") != self._host:
            raise OSError(f"no pinned address for {host}")
        results: list[ResolveResult] = []
        for address in self._addresses:
            found = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            if family in (socket.AF_UNSPEC, found):
                results.append(
                    ResolveResult(
                        hostname=host,
                        host=str(address),
                        port=port,
                        family=found,
                        proto=0,
                        flags=socket.AI_NUMERICHOST,
                    )
                )
        if not results:
            raise OSError(f"no pinned address for {host} in that family")
        return results

    async def close(self) -> None:
        return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (A and AAAA), in the resolver's order.

    Raises:
        HttpFailure: the name does not resolve (retryable).
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise HttpFailure(f"the host {host} does not resolve", retryable=True) from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise HttpFailure(f"the host {host} does not resolve", retryable=True)
    return addresses


def _origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme, (url.raw_host or "").lower().rstrip("."), url.port)


async def fetch(
    policy: Policy,
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    secret_headers: Mapping[str, str],
    body: bytes | None,
    max_bytes: int,
    budget: float,
    follow_redirects: bool,
) -> Exchange:
    """One request, and its redirects when `follow_redirects`, each hop checked again.

    `secret_headers` go to the first URL's origin only: a redirect elsewhere drops them.

    Raises:
        Refused: the guard refuses a URL or address, too many redirects (not retryable).
        HttpFailure: unreachable, timed out (retryable); the body is too large (not).
    """
    deadline = time.monotonic() + budget
    try:
        current = URL(url)
    except ValueError as exc:
        raise Refused(f"not a URL: {exc}") from None
    origin = _origin(current)
    redirects: list[str] = []
    while True:
        host = policy.check_url(current)
        if isinstance(host, str):
            left = deadline - time.monotonic()
            try:
                async with asyncio.timeout(max(left, 0.01)):
                    addresses = await resolve(host, current.port or 0)
            except TimeoutError:
                raise HttpFailure(f"resolving {host} took too long", retryable=True) from None
            policy.check_addresses(addresses)
            resolver = PinnedResolver(host, addresses)
        else:
            resolver = PinnedResolver(None, [])  # an IP literal: aiohttp asks no resolver
        sent = dict(headers)
        if _origin(current) == origin:
            sent.update(secret_headers)
        left = deadline - time.monotonic()
        if left <= 0:
            raise HttpFailure("the request did not answer in time", retryable=True)
        connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True)
        try:
            async with (
                aiohttp.ClientSession(connector=connector, trust_env=False) as session,
                session.request(
                    method,
                    current,
                    headers=sent,
                    data=body,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=left),
                ) as response,
            ):
                location = response.headers.get("Location")
                if follow_redirects and response.status in _REDIRECTS and location:
                    try:
                        target = current.join(URL(location))
                    except ValueError as exc:
                        raise Refused(f"a redirect to a malformed URL: {exc}") from None
                    if len(redirects) >= policy.max_redirects:
                        raise Refused(f"more than {policy.max_redirects} redirects")
                    redirects.append(str(target))
                    if response.status == 303 or (
                        response.status in (301, 302) and method == "POST"
                    ):
                        method, body = ("HEAD" if method == "HEAD" else "GET"), None
                    current = target
                    continue
                data = b"" if method == "HEAD" else await _read(response, max_bytes)
                return Exchange(
                    status=response.status,
                    url=str(current),
                    headers=list(response.headers.items()),
                    body=data,
                    redirects=redirects,
                )
        except TimeoutError:
            raise HttpFailure("the request did not answer in time", retryable=True) from None
        except aiohttp.ClientError as exc:
            raise HttpFailure(
                f"the host {current.raw_host} is unreachable ({type(exc).__name__})",
                retryable=True,
            ) from None


async def _read(response: aiohttp.ClientResponse, limit: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > limit:
        raise HttpFailure(
            f"the response is {declared} bytes, over the limit of {limit}", retryable=False
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise HttpFailure(f"the response is over the limit of {limit} bytes", retryable=False)
        chunks.append(chunk)
    return b"".join(chunks)
