"""A small client for the API tests: JSON in, status and JSON out."""

from __future__ import annotations

from typing import Any

import aiohttp

from soar.api.auth import Role
from soar.api.testing import ApiUnderTest


class Client:
    def __init__(self, api: ApiUnderTest, role: Role | None = Role.ADMIN) -> None:
        self.api = api
        self.headers = api.headers(role) if role is not None else {}
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.session.close()

    async def call(
        self, method: str, path: str, body: Any = None, *, data: bytes | None = None, **headers: str
    ) -> tuple[int, Any]:
        sent = {**self.headers, **headers}
        async with self.session.request(
            method,
            self.api.url + path,
            json=body if data is None else None,
            data=data,
            headers=sent,
        ) as response:
            text = await response.text()
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, text
