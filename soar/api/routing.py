"""One table of routes: each names its roles, body, query and response models once, and the
same table drives dispatch, role checks, the OpenAPI document and the role-matrix tests."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel

from soar.api.auth import Principal, Role

if TYPE_CHECKING:
    from soar.api.services import ApiServices

PREFIX = "/api/v1"
ALL_READERS = frozenset({Role.AUTHOR, Role.RESPONDER, Role.AUDITOR})
SIGNED_IN = frozenset(Role)


@dataclass(slots=True)
class Call:
    """What a handler gets: the request, who made it, and its parsed body and query."""

    request: web.Request
    services: ApiServices
    principal: Principal | None
    body: Any = None
    query: Any = None

    def param(self, name: str) -> str:
        return self.request.match_info[name]

    @property
    def actor(self) -> str:
        return self.principal.actor if self.principal is not None else "anonymous"


Handler = Callable[[Call], Awaitable[BaseModel | web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    roles: frozenset[Role] | None  # None: no token needed
    body: type[BaseModel] | None = None
    raw_body: str | None = None  # a body read as bytes, described by this media type
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    stream: str | None = None  # a streamed response of this media type
    errors: tuple[int, ...] = ()
    tag: str = ""

    @property
    def full_path(self) -> str:
        return self.path if self.path.startswith("/metrics") else PREFIX + self.path

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    @property
    def changes(self) -> bool:
        """Anything but a read: every use is audited, and a session must show its CSRF token."""
        return self.method not in {"GET", "HEAD"}

    def allows(self, role: Role) -> bool:
        return self.roles is None or role is Role.ADMIN or role in self.roles


@dataclass(slots=True)
class Routes:
    """Handlers register here with `@routes.get(...)` / `@routes.post(...)`."""

    tag: str
    table: list[Route] = field(default_factory=list)

    def add(self, method: str, path: str, **options: Any) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            summary = options.pop("summary", None) or (handler.__doc__ or "").strip()
            self.table.append(
                Route(method, path, handler, summary.split("\n")[0], tag=self.tag, **options)
            )
            return handler

        return register

    def get(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.add("GET", path, **options)

    def post(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.add("POST", path, **options)

    def delete(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.add("DELETE", path, **options)
