"""Tickets on an ITSM helpdesk, in the Freshservice API v2 shapes: create, read, update, assign,
comment on, resolve, close and reopen. See docs/connectors/ticket.md."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Final, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from soar.connectors import ActionContext, ActionFailed, Connector, TargetKind
from soar.connectors.settings import positive_number
from soar_ticket._freshservice import Freshservice, FreshserviceError

__all__ = [
    "Assignment",
    "Freshservice",
    "FreshserviceError",
    "NewTicket",
    "Note",
    "NoteRequest",
    "Ticket",
    "TicketAssign",
    "TicketChange",
    "TicketRef",
    "TicketUpdate",
    "marker_of",
    "ticket",
]

ticket = Connector(
    "ticket",
    doc="Tickets on an ITSM helpdesk (Freshservice API v2): open, assign, note, resolve, close.",
)

SECRETS: Final = ("api_key",)
STATUS_NAMES: Final = {2: "open", 3: "pending", 4: "resolved", 5: "closed"}
OPEN, RESOLVED, CLOSED = 2, 4, 5
_MARGIN: Final = 0.5  # seconds kept from the budget so the action reports its own timeout
_DEFAULT_SEARCH_PAGES: Final = 2

READ_TIMEOUT: Final = timedelta(seconds=20)
WRITE_TIMEOUT: Final = timedelta(seconds=30)
CREATE_TIMEOUT: Final = timedelta(seconds=45)

Body = dict[str, JsonValue]
_ID = Field(ge=1, le=2**53, description="the ticket's id (its display number)")


class TicketRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticket_id: int = _ID


class NewTicket(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, max_length=255)
    description: str = Field(min_length=1, max_length=100_000, description="HTML")
    email: str | None = Field(default=None, max_length=320, description="the requester's email")
    requester_id: int | None = Field(default=None, ge=1)
    priority: int = Field(default=2, ge=1, le=4, description="1 low, 2 medium, 3 high, 4 urgent")
    status: int = Field(
        default=2, ge=2, le=5, description="2 open, 3 pending, 4 resolved, 5 closed"
    )
    source: int = Field(default=2, ge=1, description="1 email, 2 portal, 3 phone, ...")
    group_id: int | None = Field(default=None, ge=1)
    responder_id: int | None = Field(default=None, ge=1)
    custom_fields: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _requester(self) -> Self:
        if self.email is None and self.requester_id is None:
            raise ValueError("give the requester's 'email' or 'requester_id'")
        return self


class Ticket(BaseModel):
    id: int
    subject: str
    status: int
    status_name: str
    priority: int
    requester_id: int | None = None
    group_id: int | None = None
    responder_id: int | None = None
    custom_fields: dict[str, JsonValue] = Field(default_factory=dict)
    url: str = Field(description="the ticket's page for agents")
    changed: bool = Field(description="false when the ticket was already in that state")


class TicketUpdate(BaseModel):
    """Only the fields given are changed; a field given as null is cleared."""

    model_config = ConfigDict(extra="forbid")

    ticket_id: int = _ID
    subject: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=100_000)
    priority: int | None = Field(default=None, ge=1, le=4)
    status: int | None = Field(default=None, ge=2, le=5)
    group_id: int | None = Field(default=None, ge=1)
    responder_id: int | None = Field(default=None, ge=1)
    custom_fields: dict[str, JsonValue] | None = None


class TicketChange(Ticket):
    previous: dict[str, JsonValue] = Field(
        default_factory=dict, description="the changed fields' values before the change"
    )


class TicketAssign(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticket_id: int = _ID
    responder_id: int | None = Field(ge=1, description="the agent; null unassigns")
    group_id: int | None = Field(default=None, ge=1, description="left as is when not given")


class Assignment(Ticket):
    previous_responder_id: int | None = Field(description="to restore it: the compensation")
    previous_group_id: int | None = None


class NoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticket_id: int = _ID
    body: str = Field(min_length=1, max_length=100_000, description="HTML")
    private: bool = Field(default=True, description="false: the requester sees it")
    notify_emails: list[str] = Field(default_factory=list, max_length=50)


class Note(BaseModel):
    id: int
    ticket_id: int
    private: bool
    changed: bool = Field(description="false when this step's note was already there")


def marker_of(idempotency_key: str) -> str:
    """The token that ties a created ticket or note to its step: `soar-` and 24 hex digits of the
    key's SHA-256 (safe inside a filter query and in HTML)."""
    return "soar-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


def _with_marker(html: str, marker: str) -> str:
    return f"{html}\n<p>soar-ref: {marker}</p>"


@asynccontextmanager
async def _helpdesk(ctx: ActionContext, budget: timedelta) -> AsyncIterator[Freshservice]:
    async with Freshservice(
        ctx.settings, ctx.secrets["api_key"], budget=budget.total_seconds() - _MARGIN
    ) as api:
        yield api


def _int(record: Mapping[str, JsonValue], name: str) -> int | None:
    value = record.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _custom_fields(record: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    custom = record.get("custom_fields")
    return dict(custom) if isinstance(custom, dict) else {}


def _ticket(api: Freshservice, record: Mapping[str, JsonValue], *, changed: bool) -> Ticket:
    ticket_id = _int(record, "id") or 0
    status = _int(record, "status") or 0
    return Ticket(
        id=ticket_id,
        subject=str(record.get("subject") or ""),
        status=status,
        status_name=STATUS_NAMES.get(status, "unknown"),
        priority=_int(record, "priority") or 0,
        requester_id=_int(record, "requester_id"),
        group_id=_int(record, "group_id"),
        responder_id=_int(record, "responder_id"),
        custom_fields=_custom_fields(record),
        url=f"{api.base_url}/a/tickets/{ticket_id}",
        changed=changed,
    )


# -- create ------------------------------------------------------------------------------------


def _id_field(ctx: ActionContext) -> str | None:
    field = ctx.settings.get("idempotency_field")
    if field is None:
        return None
    if not isinstance(field, str) or not field.replace("_", "").isalnum():
        raise ActionFailed("setting 'idempotency_field' must be a custom field's name")
    return field


async def _find_created(ctx: ActionContext, api: Freshservice) -> Mapping[str, JsonValue] | None:
    """The ticket an earlier attempt of this step created, found by its marker, or None."""
    marker = marker_of(ctx.idempotency_key)
    field = _id_field(ctx)
    if field is not None:
        for record in await api.filter_tickets(f"{field}:'{marker}'"):
            custom = record.get("custom_fields")
            if isinstance(custom, dict) and custom.get(field) == marker:
                return record
        return None
    pages = int(positive_number(ctx.settings, "search_pages", _DEFAULT_SEARCH_PAGES))
    for page in range(1, pages + 1):
        records = await api.recent_tickets(page)
        for record in records:
            texts = (record.get("description"), record.get("description_text"))
            if any(isinstance(t, str) and marker in t for t in texts):
                return record
        if len(records) < 100:
            break
    return None


@ticket.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=CREATE_TIMEOUT,
    compensate="ticket.close_ticket",
    target=TargetKind.TICKET,
    target_field="subject",
)
async def create_ticket(ctx: ActionContext, params: NewTicket) -> Ticket:
    """Create a ticket, once per step, however often the step is retried.

    `POST /api/v2/tickets`. The step's idempotency key goes with it, as a marker in the
    description or in the custom field `idempotency_field`, and is searched for first: a
    retried step returns the ticket it created (`changed: false`). Undone by
    `ticket.close_ticket`."""
    if ctx.dry_run:
        raise ActionFailed("create_ticket takes effect: not run in a dry run")
    marker = marker_of(ctx.idempotency_key)
    field = _id_field(ctx)
    async with _helpdesk(ctx, CREATE_TIMEOUT) as api:
        found = await _find_created(ctx, api)
        if found is not None:
            return _ticket(api, found, changed=False)
        fields: dict[str, JsonValue] = {
            k: v for k, v in params.model_dump(exclude={"custom_fields"}).items() if v is not None
        }
        custom = dict(params.custom_fields)
        if field is None:
            fields["description"] = _with_marker(params.description, marker)
        else:
            custom[field] = marker
        if custom:
            fields["custom_fields"] = custom
        created = await api.create(fields)
        return _ticket(api, created, changed=True)


@ticket.verify("create_ticket")
async def find_created_ticket(ctx: ActionContext, params: NewTicket) -> Ticket | None:
    """The ticket this step created, when there is one."""
    async with _helpdesk(ctx, READ_TIMEOUT) as api:
        found = await _find_created(ctx, api)
        return None if found is None else _ticket(api, found, changed=True)


# -- read and update ----------------------------------------------------------------------------


@ticket.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=READ_TIMEOUT,
    target=TargetKind.TICKET,
    target_field="ticket_id",
)
async def get_ticket(ctx: ActionContext, params: TicketRef) -> Ticket:
    """Read a ticket: subject, status, priority, group, agent. Read-only.

    `GET /api/v2/tickets/{id}`."""
    async with _helpdesk(ctx, READ_TIMEOUT) as api:
        return _ticket(api, await api.ticket(params.ticket_id), changed=False)


def _differences(record: Mapping[str, JsonValue], wanted: Mapping[str, JsonValue]) -> Body:
    """The wanted fields whose value differs from the record's (custom fields one by one)."""
    changes: Body = {}
    for name, value in wanted.items():
        if name == "custom_fields" and isinstance(value, dict):
            current = _custom_fields(record)
            custom = {k: v for k, v in value.items() if current.get(k) != v}
            if custom:
                changes["custom_fields"] = custom
        elif record.get(name) != value:
            changes[name] = value
    return changes


def _previous(record: Mapping[str, JsonValue], changes: Mapping[str, JsonValue]) -> Body:
    previous: Body = {}
    for name, value in changes.items():
        if name == "custom_fields" and isinstance(value, dict):
            current = _custom_fields(record)
            previous["custom_fields"] = {k: current.get(k) for k in value}
        else:
            previous[name] = record.get(name)
    return previous


async def _change(
    ctx: ActionContext, api: Freshservice, ticket_id: int, wanted: Mapping[str, JsonValue]
) -> tuple[Mapping[str, JsonValue], Mapping[str, JsonValue], Body]:
    """Read the ticket, then write only what differs: (before, after, previous values)."""
    before = await api.ticket(ticket_id)
    changes = _differences(before, wanted)
    if not changes or ctx.dry_run:
        return before, before, {}
    after = await api.update(ticket_id, changes)
    return before, after, _previous(before, changes)


@ticket.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=WRITE_TIMEOUT,
    target=TargetKind.TICKET,
    target_field="ticket_id",
)
async def update_ticket(ctx: ActionContext, params: TicketUpdate) -> TicketChange:
    """Change some fields of a ticket; only those that differ are written.

    `PUT /api/v2/tickets/{id}` with the fields given that differ (none: `changed: false`).
    `previous` holds the old values, for a `compensate` step that puts them back."""
    wanted = params.model_dump(include=params.model_fields_set - {"ticket_id"})
    async with _helpdesk(ctx, WRITE_TIMEOUT) as api:
        _, after, previous = await _change(ctx, api, params.ticket_id, wanted)
        out = _ticket(api, after, changed=bool(previous))
    return TicketChange(**out.model_dump(), previous=previous)


@ticket.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=WRITE_TIMEOUT,
    compensate="ticket.assign_ticket",
    target=TargetKind.TICKET,
    target_field="ticket_id",
)
async def assign_ticket(ctx: ActionContext, params: TicketAssign) -> Assignment:
    """Assign a ticket to an agent, and optionally a group; null unassigns.

    A ticket already so assigned is `changed: false`. Undone by `ticket.assign_ticket` with
    the output's `previous_responder_id` and `previous_group_id`."""
    wanted: Body = {"responder_id": params.responder_id}
    if "group_id" in params.model_fields_set:
        wanted["group_id"] = params.group_id
    async with _helpdesk(ctx, WRITE_TIMEOUT) as api:
        before, after, previous = await _change(ctx, api, params.ticket_id, wanted)
        out = _ticket(api, after, changed=bool(previous))
    return Assignment(
        **out.model_dump(),
        previous_responder_id=_int(before, "responder_id"),
        previous_group_id=_int(before, "group_id"),
    )


async def _set_status(
    ctx: ActionContext, params: TicketRef, status: int, already: frozenset[int]
) -> Ticket:
    async with _helpdesk(ctx, WRITE_TIMEOUT) as api:
        before = await api.ticket(params.ticket_id)
        if _int(before, "status") in already or ctx.dry_run:
            return _ticket(api, before, changed=False)
        after = await api.update(params.ticket_id, {"status": status})
        return _ticket(api, after, changed=True)


@ticket.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=WRITE_TIMEOUT,
    compensate="ticket.reopen_ticket",
    target=TargetKind.TICKET,
    target_field="ticket_id",
)
async def resolve_ticket(ctx: ActionContext, params: TicketRef) -> Ticket:
    """Resolve a ticket (status 4); a resolved or closed one is left as is.

    `changed: false` when nothing was done. Undone by `ticket.reopen_ticket`."""
    return await _set_status(ctx, params, RESOLVED, frozenset({RESOLVED, CLOSED}))


@ticket.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=WRITE_TIMEOUT,
    compensate="ticket.reopen_ticket",
    target=TargetKind.TICKET,
    target_field="ticket_id",
)
async def close_ticket(ctx: ActionContext, params: TicketRef) -> Ticket:
    """Close a ticket (status 5): the compensation of create_ticket.

    The record stays, for the audit trail. A closed ticket is left as is (`changed: false`)."""
    return await _set_status(ctx, params, CLOSED, frozenset({CLOSED}))


@ticket.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=WRITE_TIMEOUT,
    target=TargetKind.TICKET,
    target_field="ticket_id",
)
async def reopen_ticket(ctx: ActionContext, params: TicketRef) -> Ticket:
    """Open a resolved or closed ticket again (status 2).

    An open or pending one is left as is (`changed: false`)."""
    return await _set_status(ctx, params, OPEN, frozenset({OPEN, 3}))


# -- notes ---------------------------------------------------------------------------------------


async def _find_note(
    ctx: ActionContext, api: Freshservice, ticket_id: int
) -> Mapping[str, JsonValue] | None:
    marker = marker_of(ctx.idempotency_key)
    for note in await api.conversations(ticket_id):
        texts = (note.get("body"), note.get("body_text"))
        if any(isinstance(t, str) and marker in t for t in texts):
            return note
    return None


def _note(record: Mapping[str, JsonValue], ticket_id: int, *, changed: bool) -> Note:
    return Note(
        id=_int(record, "id") or 0,
        ticket_id=ticket_id,
        private=record.get("private") is not False,
        changed=changed,
    )


@ticket.action(
    secrets=SECRETS,
    idempotent=True,
    timeout=WRITE_TIMEOUT,
    target=TargetKind.TICKET,
    target_field="ticket_id",
)
async def comment_ticket(ctx: ActionContext, params: NoteRequest) -> Note:
    """Add a note to a ticket, private by default; once per step.

    `POST /api/v2/tickets/{id}/notes`. The note carries the step's marker, so a retried step
    finds it and adds none (`changed: false`)."""
    if ctx.dry_run:
        raise ActionFailed("comment_ticket takes effect: not run in a dry run")
    async with _helpdesk(ctx, WRITE_TIMEOUT) as api:
        found = await _find_note(ctx, api, params.ticket_id)
        if found is not None:
            return _note(found, params.ticket_id, changed=False)
        fields: Body = {
            "body": _with_marker(params.body, marker_of(ctx.idempotency_key)),
            "private": params.private,
        }
        if params.notify_emails:
            fields["notify_emails"] = list(params.notify_emails)
        created = await api.add_note(params.ticket_id, fields)
        return _note(created, params.ticket_id, changed=True)


@ticket.verify("comment_ticket")
async def find_note(ctx: ActionContext, params: NoteRequest) -> Note | None:
    """The note this step added, when there is one."""
    async with _helpdesk(ctx, READ_TIMEOUT) as api:
        found = await _find_note(ctx, api, params.ticket_id)
    return None if found is None else _note(found, params.ticket_id, changed=True)
