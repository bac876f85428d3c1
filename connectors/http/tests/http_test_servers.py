"""For the `http` tests: an origin server on loopback that answers, echoes, redirects, stalls and
streams too much, and the settings that allow it (loopback is private: `allow_private`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import JsonValue

CANARY = "canary-http-secret-1234"


@dataclass
class Origin:
    """A loopback origin; `hits` lists the paths it was asked for."""

    url: str = ""
    port: int = 0
    hits: list[str] = field(default_factory=list)

    def settings(self, **extra: JsonValue) -> dict[str, JsonValue]:
        return {"allowed_hosts": ["127.0.0.1"], "allow_private": True, **extra}


def _app(origin: Origin) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler):  # type: ignore[no-untyped-def]
        origin.hits.append(request.path)
        return await handler(request)

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True}, headers={"X-Origin": "test"})

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "method": request.method,
                "headers": dict(request.headers),
                "body": await request.text(),
            }
        )

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status")

    async def redirect(request: web.Request) -> web.Response:
        code = int(request.query.get("status", "302"))
        return web.Response(status=code, headers={"Location": request.query["to"]})

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"x" * 32768)
        return response

    async def declared(request: web.Request) -> web.Response:
        return web.Response(body=b"y" * 5000)

    async def flaky(request: web.Request) -> web.Response:
        if origin.hits.count("/flaky") == 1:  # the first call fails, the next ones succeed
            return web.Response(status=503, text="overloaded")
        return web.json_response({"ok": True})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("seconds", "1")))
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[record])
    app.router.add_route("*", "/ok", ok)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/status/{code}", status)
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_get("/big", big)
    app.router.add_get("/declared", declared)
    app.router.add_route("*", "/slow", slow)
    app.router.add_route("*", "/flaky", flaky)
    return app


async def serve() -> AsyncIterator[Origin]:
    origin = Origin()
    runner = web.AppRunner(_app(origin), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    origin.port = runner.addresses[0][1]
    origin.url = f"http://127.0.0.1:{origin.port}"
    yield origin
    await runner.cleanup()
