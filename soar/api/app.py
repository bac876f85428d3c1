"""The aiohttp application: the route table dispatched behind one gate that authenticates,
checks the role, the CSRF token and the body size, audits denials and changes, bounds time, and
answers every error as JSON."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from soar.api.auth import CSRF_HEADER, SESSION_COOKIE, Principal
from soar.api.console import STATIC_DIR
from soar.api.errors import HTTP_CODES, ApiError, error_response, invalid_body
from soar.api.identity import identify
from soar.api.openapi import document
from soar.api.routes import ROUTES
from soar.api.routing import Call, Route
from soar.api.services import ApiServices
from soar.errors import StoreError
from soar.store import Change

_log = logging.getLogger("soar.api")
SERVICES = web.AppKey("services", ApiServices)
OPENAPI = web.AppKey("openapi", dict)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
}


def build_app(services: ApiServices) -> web.Application:
    """The API under /api/v1, /metrics, and the console under /console/."""
    app = web.Application(
        middlewares=[_errors],
        client_max_size=services.settings.max_body_bytes,
    )
    app[SERVICES] = services
    app[OPENAPI] = document(ROUTES)
    for route in ROUTES:
        app.router.add_route(route.method, route.full_path, _gate(route))
    app.router.add_get("/", _to_console)
    app.router.add_get("/console", _to_console)
    app.router.add_get("/console/", _console_index)
    app.router.add_static("/console/", STATIC_DIR, follow_symlinks=False)
    app.on_response_prepare.append(_security_headers)
    app.cleanup_ctx.append(_watching)
    services.engine.observe(services.events)
    return app


async def _watching(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    watcher = asyncio.create_task(services.events.watch(services.engine), name="soar-api-events")
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher


async def _to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console/")


async def _console_index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


# -- the gate every route passes -----------------------------------------------------------------


def _gate(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        principal = await _authorize(services, route, request)
        call = Call(request, services, principal)
        if route.query is not None:
            try:
                call.query = route.query.model_validate(dict(request.query))
            except ValidationError as exc:
                raise invalid_body(exc) from None
        if route.body is not None or route.raw_body is not None:
            call.body = await _body(route, request)
        if route.stream is not None:
            result = await route.handler(call)
        else:
            async with asyncio.timeout(services.settings.request_timeout):
                result = await route.handler(call)
        if route.changes and principal is not None:
            await _audit_change(services, route, request, principal)
        if isinstance(result, web.StreamResponse):
            return result
        return web.json_response(
            text=result.model_dump_json(), status=route.status, content_type="application/json"
        )

    handle.__name__ = route.handler.__name__
    return handle


async def _authorize(services: ApiServices, route: Route, request: web.Request) -> Principal | None:
    """Who calls, if anyone; raises 401/403 (audited) when the route needs more."""
    principal, problem = await identify(services, request)
    if route.roles is None:
        return principal
    if principal is None:
        await _deny(services, route, request, None, problem or "no_token")
        raise ApiError(401, problem or "no_token", "this route needs an API token or a session")
    if not route.allows(principal.role):
        await _deny(services, route, request, principal, "role")
        raise ApiError(
            403, "forbidden", f"the {principal.role.value} role may not {route.method} {route.path}"
        )
    if route.changes and principal.via == "session":
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if not services.sessions.csrf_ok(cookie, request.headers.get(CSRF_HEADER)):
            await _deny(services, route, request, principal, "csrf")
            raise ApiError(403, "csrf", f"a change from the console needs the {CSRF_HEADER} header")
    return principal


async def _deny(
    services: ApiServices,
    route: Route,
    request: web.Request,
    principal: Principal | None,
    reason: str,
) -> None:
    engine = services.engine
    event = engine.evidence.api_denied(
        engine.clock.now(),
        actor=principal.actor if principal is not None else "anonymous",
        route=f"{request.method} {request.path}",
        reason=reason,
        client=request.remote or "unknown",
    )
    if event is not None:
        try:
            await services.store.apply(Change(audit=[event]))
        except StoreError:
            _log.exception("could not audit a denied request")


async def _audit_change(
    services: ApiServices, route: Route, request: web.Request, principal: Principal
) -> None:
    engine = services.engine
    event = engine.evidence.api_request(
        engine.clock.now(),
        actor=principal.actor,
        route=f"{request.method} {request.path}",
        via=principal.via,
        token=principal.token_id,
        client=request.remote or "unknown",
    )
    if event is not None:
        await services.store.apply(Change(audit=[event]))


async def _body(route: Route, request: web.Request) -> Any:
    """The body, refused with 413 before reading when its declared length is over the limit."""
    limit = request.app[SERVICES].settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"the body is over {limit} bytes")
    data = await request.read()  # aiohttp stops at client_max_size: 413 without the rest
    if route.raw_body is not None:
        return data
    assert route.body is not None  # noqa: S101
    try:
        return route.body.model_validate_json(data or b"null")
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise ApiError(400, "bad_json", "the body is not JSON") from None
        raise invalid_body(exc) from None


# -- middlewares -----------------------------------------------------------------------------------


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, "error")
        headers = {k: v for k, v in exc.headers.items() if k in {"Allow", "Location"}}
        return error_response(exc.status, code, exc.reason, headers=headers)
    except TimeoutError:
        return error_response(503, "timeout", "the request took too long")
    except StoreError as exc:
        _log.warning("store unavailable: %s", exc)
        return error_response(503, "store_unavailable", "the store is not available")
    except asyncio.CancelledError:
        raise
    except Exception:
        _log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal", "an unexpected error; it is in the server's log")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/console/"):
        response.headers["Cache-Control"] = "no-cache"
