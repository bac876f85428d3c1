"""Liveness, readiness, the OpenAPI document, Prometheus metrics and the live event stream."""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

from soar.api.errors import ApiError
from soar.api.models import Health, Readiness
from soar.api.routing import ALL_READERS, Call, Routes
from soar.errors import StoreError

routes = Routes("system")
_KEEPALIVE_S = 15.0


@routes.get("/health", roles=None, response=Health)
async def health(call: Call) -> Health:
    """The process is up (liveness)."""
    return Health()


@routes.get("/ready", roles=None, response=Readiness, errors=(503,))
async def ready(call: Call) -> Readiness:
    """The store answers and every configured check passes (readiness); 503 otherwise."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(call.services.store.audit_head(), 5)
        checks["store"] = "ok"
    except (StoreError, OSError, TimeoutError) as exc:
        checks["store"] = f"unavailable: {type(exc).__name__}"
    for name, check in call.services.readiness.items():
        checks[name] = check()
    if any(v != "ok" for v in checks.values()):
        raise ApiError(503, "not_ready", "a readiness check failed", [checks])
    return Readiness(ready=True, checks=checks)


@routes.get("/openapi.json", roles=None, stream="application/json")
async def openapi(call: Call) -> web.StreamResponse:
    """This API's OpenAPI 3.1 document."""
    from soar.api.app import OPENAPI  # the app holds the document built from every route

    return web.json_response(call.request.app[OPENAPI])


@routes.get("/metrics", roles=None, stream="text/plain; version=0.0.4")
async def metrics(call: Call) -> web.StreamResponse:
    """Prometheus metrics of this process (runs, steps, connector errors, approvals, ingest)."""
    exposition = call.services.metrics() if call.services.metrics is not None else b""
    return web.Response(body=exposition, content_type="text/plain", charset="utf-8")


@routes.get("/events", roles=ALL_READERS, stream="text/event-stream")
async def events(call: Call) -> web.StreamResponse:
    """Server-sent events: one `run` event per durable run transition, while connected."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(call.request)
    hub = call.services.events
    # the browser closing the stream is how it normally ends, not an error
    with hub.listen() as queue, contextlib.suppress(ConnectionError):
        await response.write(b": connected\n\n")
        while queue in hub.listeners:
            try:
                event = await asyncio.wait_for(queue.get(), _KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            line = json.dumps(event, separators=(",", ":"))
            await response.write(f"event: run\ndata: {line}\n\n".encode())
        await response.write_eof()
    return response
