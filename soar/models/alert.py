"""The normalised alert every input mapping produces and every playbook reads."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from soar.models.severity import Severity


class AlertFormat(StrEnum):
    """The input shapes soar reads; `auto` on input means "detect from the payload"."""

    OCSF = "ocsf"
    ECS = "ecs"
    SPLUNK = "splunk"
    GENERIC = "generic"
    ALERTMANAGER = "alertmanager"


class AlertStatus(StrEnum):
    """Where the source says the alert stands: a later `resolved` copy can end a waiting run."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class _Entity(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UserEntity(_Entity):
    """An account the alert is about. `name` is the login name as the source wrote it."""

    name: str
    domain: str | None = None
    id: str | None = None
    email: str | None = None


class HostEntity(_Entity):
    """An affected machine. `id` is the source's agent or asset id when it has one."""

    id: str | None = None
    name: str | None = None
    ips: list[str] = Field(default_factory=list)
    os: str | None = None


class IpEntity(_Entity):
    """An address seen in the alert; `role` is `src`, `dst` or None when the source does not say."""

    address: str
    role: str | None = None


class HashEntity(_Entity):
    """A file hash; `algorithm` is lower-case (`md5`, `sha1`, `sha256`, ...)."""

    algorithm: str
    value: str


class UrlEntity(_Entity):
    url: str


class EmailEntity(_Entity):
    """An email address; `role` is `from`, `to` or None."""

    address: str
    role: str | None = None


class Alert(BaseModel):
    """One threat alert after normalisation. `raw` is the source object exactly as received."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=512)
    source: str = Field(min_length=1, description="the product that raised it, e.g. 'splunk-es'")
    format: AlertFormat
    title: str
    rule: str | None = Field(default=None, description="detection rule name")
    rule_id: str | None = None
    description: str | None = None
    severity: Severity
    source_severity: str | None = Field(
        default=None, description="the source's own severity label or number, as given"
    )
    category: str | None = Field(
        default=None, description="snake_case category, e.g. 'credential_access'"
    )
    status: AlertStatus | None = Field(
        default=None, description="open, acknowledged or resolved, when the source says"
    )
    time: datetime
    tactics: list[str] = Field(default_factory=list)
    techniques: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    users: list[UserEntity] = Field(default_factory=list)
    hosts: list[HostEntity] = Field(default_factory=list)
    ips: list[IpEntity] = Field(default_factory=list)
    hashes: list[HashEntity] = Field(default_factory=list)
    urls: list[UrlEntity] = Field(default_factory=list)
    emails: list[EmailEntity] = Field(default_factory=list)
    raw: JsonValue

    @field_validator("time")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must carry a time zone")
        return value.astimezone(UTC)

    def context(self) -> dict[str, object]:
        """The alert as plain data for expressions: dicts and lists, Severity and datetime kept."""
        return self.model_dump(mode="python")
