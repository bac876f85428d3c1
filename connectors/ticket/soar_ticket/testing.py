"""A loopback test server in the Freshservice API v2 request and response shapes, for the `ticket`
tests and the lab: tickets, notes, the filter query, basic auth with the API key, and switches
for 429 with Retry-After, 5xx and slow answers. It keeps what it was asked, to count effects.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from aiohttp import web
from pydantic import JsonValue

from soar.connectors import Secrets
from soar.connectors.testing import FaultSwitches

JSON = dict[str, JsonValue]
_FIELDS = ("subject", "description", "priority", "status", "source", "group_id", "responder_id")
_FILTER = re.compile(r"^\"(\w+):'([^']*)'\"$")


def error(status: int, description: str, errors: list[JsonValue] | None = None) -> web.Response:
    """A Freshservice error body: `{"description": ..., "errors": [{field, message, code}]}`."""
    return web.json_response({"description": description, "errors": errors or []}, status=status)


@dataclass
class Seen:
    """One request the server answered: what tests assert on."""

    method: str
    path: str
    query: dict[str, str]
    body: str
    authorization: str


class FreshserviceTestServer(FaultSwitches):
    """`async with FreshserviceTestServer(api_key=...) as helpdesk:` on 127.0.0.1, a free port.

    Switches, each counting down per answered request: `rate_limit(times, retry_after)`,
    `fail(times, status)`, `slow(seconds, times)` (see `FaultSwitches`);
    `lose_answers(seconds, times)` counts writes. `effects` counts creations and updates.
    """

    def __init__(self, *, api_key: str = "test-api-key") -> None:
        super().__init__()
        self.api_key = api_key
        self.tickets: dict[int, JSON] = {}
        self.notes: dict[int, list[JSON]] = {}
        self.seen: list[Seen] = []
        self.effects: Counter[str] = Counter()  # "create", "update:<id>", "note:<id>"
        self._next_id = 100
        self._stalled = 0
        self._stall_seconds = 0.0
        self._runner: web.AppRunner | None = None
        self.url = ""

    @property
    def settings(self) -> JSON:
        return {"base_url": self.url}

    @property
    def secrets(self) -> Secrets:
        return Secrets({"api_key": self.api_key})

    # -- switches ------------------------------------------------------------------------------

    def lose_answers(self, seconds: float, times: int) -> None:
        """The next `times` writes take effect, then their answers are held back `seconds`:
        a client with a shorter timeout never learns that they succeeded."""
        self._stalled, self._stall_seconds = times, seconds

    def add_ticket(self, **fields: JsonValue) -> JSON:
        """Put a ticket in place (status 2, priority 2 unless given); returns its record."""
        self._next_id += 1
        record: JSON = {
            "id": self._next_id,
            "subject": "a ticket",
            "description": "<p>a ticket</p>",
            "description_text": "a ticket",
            "status": 2,
            "priority": 2,
            "source": 2,
            "requester_id": 7,
            "group_id": None,
            "responder_id": None,
            "custom_fields": {},
            **fields,
        }
        self.tickets[self._next_id] = record
        return record

    def writes(self) -> list[Seen]:
        return [s for s in self.seen if s.method in ("POST", "PUT", "DELETE")]

    # -- the server ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/api/v2/tickets/filter", self._filter)
        app.router.add_get("/api/v2/tickets", self._list)
        app.router.add_post("/api/v2/tickets", self._create)
        app.router.add_get("/api/v2/tickets/{id:\\d+}", self._get)
        app.router.add_put("/api/v2/tickets/{id:\\d+}", self._update)
        app.router.add_post("/api/v2/tickets/{id:\\d+}/notes", self._add_note)
        app.router.add_get("/api/v2/tickets/{id:\\d+}/conversations", self._conversations)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        authorization = request.headers.get("Authorization", "")
        self.seen.append(
            Seen(
                request.method,
                request.path,
                dict(request.query),
                await request.text(),
                authorization,
            )
        )
        fault = await self.next_fault(request.path)
        if fault is not None and fault.retry_after is not None:
            response = error(429, "You have exceeded the limit of requests per minute")
            response.headers.update(fault.headers)
            return response
        if fault is not None and fault.status == 400:
            problem: JsonValue = {
                "field": "group_id",
                "message": "There is no group matching the given group_id",
                "code": "invalid_value",
            }
            return error(400, "Validation failed", [problem])
        if fault is not None:
            return error(fault.status, "Something went wrong on our side")
        expected = "Basic " + base64.b64encode(f"{self.api_key}:X".encode()).decode()
        if authorization != expected:
            return error(401, "You have to be logged in to perform this action.")
        answer = await handler(request)
        if request.method in ("POST", "PUT") and self._stalled > 0:
            self._stalled -= 1
            await asyncio.sleep(self._stall_seconds)
        return answer

    def _ticket_of(self, request: web.Request) -> JSON:
        record = self.tickets.get(int(request.match_info["id"]))
        if record is None:
            raise web.HTTPNotFound(
                text='{"code": "access_denied", "message": "not found"}',
                content_type="application/json",
            )
        return record

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response({"ticket": self._ticket_of(request)})

    async def _list(self, request: web.Request) -> web.Response:
        per_page = int(request.query.get("per_page", "30"))
        page = int(request.query.get("page", "1"))
        newest = sorted(self.tickets.values(), key=lambda t: -int(str(t["id"])))
        return web.json_response({"tickets": newest[(page - 1) * per_page : page * per_page]})

    async def _filter(self, request: web.Request) -> web.Response:
        match = _FILTER.match(request.query.get("query", ""))
        if match is None:
            return error(
                400,
                "Validation failed",
                [{"field": "query", "message": "invalid query", "code": "invalid_value"}],
            )
        name, value = match.groups()
        found = [
            t
            for t in self.tickets.values()
            if isinstance(t.get("custom_fields"), dict) and t["custom_fields"].get(name) == value  # type: ignore[union-attr]
        ]
        return web.json_response({"tickets": found, "total": len(found)})

    def _invalid(self, fields: JSON) -> web.Response | None:
        problems: list[JsonValue] = [
            {
                "field": name,
                "message": f"It should be one of these values: '{','.join(map(str, allowed))}'",
                "code": "invalid_value",
            }
            for name, allowed in (("priority", (1, 2, 3, 4)), ("status", (2, 3, 4, 5)))
            if name in fields and fields[name] not in allowed
        ]
        return error(400, "Validation failed", problems) if problems else None

    async def _create(self, request: web.Request) -> web.Response:
        fields = await request.json()
        if not isinstance(fields, dict) or not fields.get("subject"):
            return error(
                400,
                "Validation failed",
                [
                    {
                        "field": "subject",
                        "message": "It should not be blank",
                        "code": "missing_field",
                    }
                ],
            )
        invalid = self._invalid(fields)
        if invalid is not None:
            return invalid
        self.effects["create"] += 1
        description = str(fields.get("description", ""))
        record = self.add_ticket(
            **{k: fields[k] for k in _FIELDS if k in fields},
            description_text=re.sub(r"<[^>]*>", "", description),
            custom_fields=dict(fields.get("custom_fields") or {}),
            requester_id=fields.get("requester_id") or 7,
        )
        return web.json_response({"ticket": record}, status=201)

    async def _update(self, request: web.Request) -> web.Response:
        record = self._ticket_of(request)
        fields = await request.json()
        if not isinstance(fields, dict):
            return error(400, "Validation failed")
        invalid = self._invalid(fields)
        if invalid is not None:
            return invalid
        self.effects[f"update:{record['id']}"] += 1
        for key, value in fields.items():
            if key == "custom_fields" and isinstance(value, dict):
                record["custom_fields"] = {**record["custom_fields"], **value}  # type: ignore[dict-item]
            else:
                record[key] = value
        return web.json_response({"ticket": record})

    async def _add_note(self, request: web.Request) -> web.Response:
        record = self._ticket_of(request)
        fields = await request.json()
        ticket_id = int(str(record["id"]))
        self.effects[f"note:{ticket_id}"] += 1
        notes = self.notes.setdefault(ticket_id, [])
        note: JSON = {
            "id": 9000 + sum(len(n) for n in self.notes.values()),
            "body": fields.get("body"),
            "body_text": re.sub(r"<[^>]*>", "", str(fields.get("body"))),
            "private": fields.get("private", True),
            "notify_emails": fields.get("notify_emails", []),
        }
        notes.append(note)
        return web.json_response({"conversation": note}, status=201)

    async def _conversations(self, request: web.Request) -> web.Response:
        record = self._ticket_of(request)
        return web.json_response({"conversations": self.notes.get(int(str(record["id"])), [])})
