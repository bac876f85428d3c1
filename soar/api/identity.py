"""Telling callers apart: a bearer token, or the console's session cookie naming one; a
revoked or unknown token is nobody."""

from __future__ import annotations

from aiohttp import web

from soar.api.auth import SESSION_COOKIE, Principal, Role, looks_like_token, token_digest, utc_now
from soar.api.services import ApiServices


async def identify(
    services: ApiServices, request: web.Request
) -> tuple[Principal | None, str | None]:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, "bad_token"
        principal = await from_token(services, token.strip())
        return principal, None if principal is not None else "bad_token"
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None:
        return None, None
    digest = services.sessions.open(cookie, utc_now())
    if digest is None:
        return None, "session_expired"
    principal = await by_digest(services, digest, "session")
    return principal, None if principal is not None else "session_expired"


async def from_token(services: ApiServices, token: str) -> Principal | None:
    if not looks_like_token(token):
        return None
    return await by_digest(services, token_digest(token), "token")


async def by_digest(services: ApiServices, digest: str, via: str) -> Principal | None:
    found = await services.store.api_token(digest)
    if found is None or found.revoked_at is not None:
        return None
    try:
        role = Role(found.role)
    except ValueError:
        return None
    return Principal(found.id, found.name, role, digest, via)
