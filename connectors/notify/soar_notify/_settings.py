"""The notify connector's settings (`connectors.notify` in the config) and its errors."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from soar.connectors import ActionFailed


class SmtpSettings(BaseModel):
    """Where mail goes. `starttls` upgrades a plain connection; `tls` is TLS from the start."""

    model_config = ConfigDict(extra="forbid")

    host: str = "localhost"
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    tls: bool = False
    username: str | None = None
    sender: str = Field(default="soar@localhost", alias="from")
    ca_file: str | None = None
    message_id_domain: str | None = None


class NotifySettings(BaseModel):
    """`connectors.notify`: endpoints and defaults; secrets are never here."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    smtp: SmtpSettings = SmtpSettings()
    chat_platform: str = Field(default="slack", pattern="^(slack|teams)$")
    pagerduty_url: str = "https://events.pagerduty.com"
    pagerduty_source: str = "soar"
    twilio_url: str = "https://api.twilio.com"
    twilio_account_sid: str | None = Field(default=None, pattern=r"^AC[0-9a-fA-F]{32}$")
    sms_from: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$")
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    directory: dict[str, JsonValue] = Field(default_factory=dict)


def settings_of(raw: Mapping[str, JsonValue]) -> NotifySettings:
    """The settings, checked.

    Raises:
        ActionFailed: (not retryable) they do not fit; the message names the fields only.
    """
    try:
        return NotifySettings.model_validate(dict(raw))
    except ValidationError as exc:
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        raise ActionFailed(f"notify settings are invalid: {where}", retryable=False) from None
