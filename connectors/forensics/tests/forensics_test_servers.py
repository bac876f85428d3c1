"""The loopback servers of the `forensics` tests: a plain HTTP origin with a few artifacts and
failure modes (the Falcon-shaped EDR is `soar_edr.testing`)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

CANARY = "canary-edr-secret-1234"
EVIL = b"MZ\x90\x00 this is the evil binary " * 10
PATH = r"C:\Users\alice\evil.exe"


@dataclass
class Origin:
    """A loopback HTTP server with a few artifacts and failure modes; counts its requests."""

    url: str = ""
    hits: Counter[str] = field(default_factory=Counter)


async def origin_app(origin: Origin) -> web.Application:
    async def artifact(request: web.Request) -> web.StreamResponse:
        origin.hits[request.path] += 1
        name = request.match_info["name"]
        if name == "evil.bin":
            return web.Response(body=EVIL)
        if name == "big.bin":
            return web.Response(body=b"x" * 5000)
        if name == "chunked.bin":  # no Content-Length: the limit must hold while streaming
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(10):
                await response.write(b"y" * 1000)
            await response.write_eof()
            return response
        if name == "moved.bin":
            raise web.HTTPFound("/files/evil.bin")
        if name == "away.bin":
            raise web.HTTPFound("file:///etc/passwd")
        if name == "loop.bin":
            raise web.HTTPFound("/files/loop.bin")
        if name == "down.bin":
            return web.Response(status=503, text="busy")
        if name == "slow.bin":
            await asyncio.sleep(1)
            return web.Response(body=b"late")
        return web.Response(status=404, text="no such artifact")

    app = web.Application()
    app.router.add_get("/files/{name}", artifact)
    return app
