"""The console's session: a token pasted once becomes a signed HttpOnly cookie plus a CSRF
token that every change must carry."""

from __future__ import annotations

from aiohttp import web

from soar.api.auth import SESSION_COOKIE, utc_now
from soar.api.errors import ApiError
from soar.api.identity import from_token
from soar.api.models import Login, Session
from soar.api.routing import SIGNED_IN, Call, Routes

routes = Routes("session")


@routes.post("/session", roles=None, body=Login, response=Session, errors=(401,))
async def login(call: Call) -> web.StreamResponse:
    """Sign in to the console with an API token; sets the session cookie."""
    principal = await from_token(call.services, call.body.token)
    if principal is None:
        raise ApiError(401, "bad_token", "that token is not known or was revoked")
    services = call.services
    cookie, csrf = services.sessions.issue(principal.digest, utc_now())
    response = web.json_response(
        Session(name=principal.name, role=principal.role.value, csrf_token=csrf).model_dump()
    )
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(services.sessions.ttl.total_seconds()),
        httponly=True,
        samesite="Strict",
        secure=services.settings.secure_cookies,
        path="/",
    )
    return response


@routes.get("/session", roles=SIGNED_IN, response=Session, errors=(401,))
async def whoami(call: Call) -> Session:
    """Who this session (or token) is, with the CSRF token for the console's changes."""
    assert call.principal is not None  # noqa: S101 - roles=SIGNED_IN needs a principal
    cookie = call.request.cookies.get(SESSION_COOKIE, "")
    csrf = call.services.sessions.csrf_for(cookie) if call.principal.via == "session" else None
    return Session(name=call.principal.name, role=call.principal.role.value, csrf_token=csrf)


@routes.delete("/session", roles=SIGNED_IN, response=Session, errors=(401,))
async def logout(call: Call) -> web.StreamResponse:
    """Sign out: the cookie is cleared."""
    assert call.principal is not None  # noqa: S101
    response = web.json_response(
        Session(name=call.principal.name, role=call.principal.role.value).model_dump()
    )
    response.del_cookie(SESSION_COOKIE, path="/")
    return response
