"""Test support for notify: the canary credentials the loopback servers (soar_notify.testing)
are started with in these tests, and calling an action as the engine does."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel, JsonValue
from soar_notify import notify
from soar_notify import testing as servers

from soar.connectors import ActionContext, Secrets

CANARY = "canary-notify-secret"
SMTP_USER = servers.SMTP_USER
SMTP_PASSWORD = f"pw-{CANARY}-1"
ROUTING_KEY = f"rk-{CANARY}-0123456789abcdef"
AUTH_TOKEN = f"tok-{CANARY}-2"
ACCOUNT_SID = servers.ACCOUNT_SID
MONDAY_10_UTC = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


@dataclass
class CanaryVendor(servers.Vendor):
    """The webhook, paging and SMS server with the canary in every credential; its secrets
    hold the SMTP password too, so one set serves every channel."""

    token: str = field(default_factory=lambda: f"{CANARY}-{secrets.token_hex(4)}")
    routing_key: str = ROUTING_KEY
    auth_token: str = AUTH_TOKEN

    def secret_values(self) -> dict[str, str]:
        return {**super().secret_values(), "smtp_password": SMTP_PASSWORD}


def context(
    settings: dict[str, JsonValue],
    secrets_: Secrets,
    *,
    key: str = "run-1/step-1",
    at: datetime = MONDAY_10_UTC,
    dry_run: bool = False,
) -> ActionContext:
    return ActionContext(
        idempotency_key=key,
        settings=settings,
        secrets=secrets_,
        logger=logging.getLogger("soar.action.notify"),
        clock=lambda: at,
        dry_run=dry_run,
    )


async def call(name: str, ctx: ActionContext, **inputs: JsonValue) -> BaseModel:
    """Call a notify action as the engine does: inputs validated by the declared model."""
    spec = notify.actions[name]
    return await spec.fn(ctx, spec.input_model.model_validate(inputs))
