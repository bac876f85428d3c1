"""Creating, listing and revoking API tokens; each change is an audit record."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from soar.api.auth import NewToken, Role, new_token
from soar.audit.canonical import canonical
from soar.errors import ConflictError
from soar.models.audit import AuditEvent, AuditKind
from soar.store import Change, Store
from soar.store.base import ApiToken


async def create_token(store: Store, *, name: str, role: Role, by: str) -> tuple[ApiToken, str]:
    """A new token for `name` with `role`; returns its record and the secret, which is shown
    once and never stored."""
    made: NewToken = new_token()
    now = datetime.now(UTC)
    record = ApiToken(made.id, name, role.value, made.digest, now, by)
    await store.apply(
        Change(tokens=[record], audit=[_event(AuditKind.TOKEN_CREATED, now, by, record)])
    )
    return record, made.token


async def revoke_token(store: Store, token_id: str, *, by: str) -> ApiToken:
    """Revoke a token by id (its sessions end at once).

    Raises:
        ConflictError: no such token, or it was revoked already.
    """
    found = {t.id: t for t in await store.api_tokens()}.get(token_id)
    if found is None:
        raise ConflictError(f"no token {token_id}")
    if found.revoked_at is not None:
        raise ConflictError(f"token {token_id} was revoked at {found.revoked_at.isoformat()}")
    now = datetime.now(UTC)
    revoked = replace(found, revoked_at=now)
    await store.apply(
        Change(tokens=[revoked], audit=[_event(AuditKind.TOKEN_REVOKED, now, by, revoked)])
    )
    return revoked


def _event(kind: AuditKind, at: datetime, actor: str, token: ApiToken) -> AuditEvent:
    body = {
        "kind": kind.value,
        "time": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": actor,
        "token": token.id,
        "name": token.name,
        "role": token.role,
    }
    return AuditEvent(kind=kind, time=at, actor=actor, body=canonical(body))
