"""What the metrics tests share besides fixtures: the canary token and a scripted HTTP server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

#: Prometheus has no authentication of its own: the token goes to it (and to the scripted
#: server, which checks it) and must come back nowhere
CANARY = "canary-metrics-token-1234"


@dataclass
class Scripted:
    """An HTTP server on loopback answering `/api/v1/*` with `status`, `body` and `headers`
    after `delay` seconds; `seen` collects each request's Authorization header."""

    url: str = ""
    status: int = 200
    body: str = '{"status":"success","data":{"resultType":"vector","result":[]}}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    seen: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(request.headers.get("Authorization", ""))
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(
            status=self.status,
            text=self.body,
            headers=self.headers,
            content_type="application/json",
        )
