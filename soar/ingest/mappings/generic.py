"""soar's own simple alert form, for producers with no standard shape of their own.

Unlike the vendor formats, this one is soar's contract, so it is checked strictly: a field of
the wrong type is rejected, not ignored. See docs/alerts.md for the form.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from soar.errors import AlertRejected, RejectionCode
from soar.ingest.mappings.document import Document, JsonObject, invalid, missing
from soar.ingest.mappings.entities import Entities
from soar.ingest.mappings.fingerprint import mint_id
from soar.ingest.mappings.status import WORDS, status_word
from soar.ingest.mappings.timestamps import parse_time
from soar.models.alert import Alert, AlertFormat
from soar.models.severity import Severity


class _User(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = None
    domain: str | None = None
    id: str | None = None
    email: str | None = None


class _Host(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    name: str | None = None
    ips: list[str] = Field(default_factory=list)
    os: str | None = None


class _Ip(BaseModel):
    model_config = ConfigDict(extra="ignore")
    address: str
    role: Literal["src", "dst"] | None = None


class _Hash(BaseModel):
    model_config = ConfigDict(extra="ignore")
    value: str
    algorithm: str | None = None


class _Url(BaseModel):
    model_config = ConfigDict(extra="ignore")
    url: str


class _Email(BaseModel):
    model_config = ConfigDict(extra="ignore")
    address: str
    role: Literal["from", "to"] | None = None


class GenericForm(BaseModel):
    """The generic form. Entities may be strings (the name, address, URL or hash) or objects."""

    model_config = ConfigDict(extra="ignore", strict=True)

    id: str | None = None
    title: str = Field(min_length=1)
    severity: str
    time: str | int | float
    source: str = "generic"
    rule: str | None = None
    rule_id: str | None = None
    description: str | None = None
    category: str | None = None
    status: str | None = None
    tactics: list[str] = Field(default_factory=list)
    techniques: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    users: list[str | _User] = Field(default_factory=list)
    hosts: list[str | _Host] = Field(default_factory=list)
    ips: list[str | _Ip] = Field(default_factory=list)
    hashes: list[str | _Hash] = Field(default_factory=list)
    urls: list[str | _Url] = Field(default_factory=list)
    emails: list[str | _Email] = Field(default_factory=list)


def map_generic(raw: JsonObject) -> Alert:
    """Map one alert in the generic form.

    Raises:
        AlertRejected: MISSING_FIELD without `title`, `severity` or `time`; INVALID_FIELD for
            any field of the wrong type or value, named by its dotted path.
    """
    for field in ("title", "severity", "time"):
        if Document(raw).get(field) is None:
            raise missing(field)
    try:
        form = GenericForm.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = _path(error["loc"])
        raise AlertRejected(
            RejectionCode.INVALID_FIELD, f"{field}: {error['msg']}", field=field
        ) from None
    try:
        severity = Severity.parse(form.severity)
    except ValueError:
        raise invalid("severity", f"{form.severity[:40]!r} is not a severity") from None
    status = status_word(form.status)
    if form.status is not None and status is None:
        known = ", ".join(sorted(WORDS))
        raise invalid("status", f"{form.status[:40]!r} is not a status (one of {known})")
    return Alert(
        id=form.id if form.id and form.id.strip() else mint_id(raw),
        source=form.source or "generic",
        format=AlertFormat.GENERIC,
        title=form.title,
        rule=form.rule,
        rule_id=form.rule_id,
        description=form.description,
        severity=severity,
        source_severity=form.severity,
        category=form.category,
        status=status,
        time=parse_time(form.time, "time"),
        tactics=form.tactics,
        techniques=form.techniques,
        tags=form.tags,
        **_entities(form).fields(),
        raw=raw,
    )


def _path(loc: tuple[int | str, ...]) -> str:
    """The field and its list indexes; pydantic's union-member tags (`str`, `_User`) dropped."""
    parts = [str(loc[0])] if loc else []
    for part in loc[1:]:
        if not isinstance(part, int):
            break
        parts.append(str(part))
    return ".".join(parts)


def _entities(form: GenericForm) -> Entities:
    found = Entities()
    for user in form.users:
        if isinstance(user, str):
            found.user(user)
        else:
            found.user(user.name, domain=user.domain, id=user.id, email=user.email)
    for host in form.hosts:
        if isinstance(host, str):
            found.host(name=host)
        else:
            found.host(id=host.id, name=host.name, ips=host.ips, os=host.os)
    for ip in form.ips:
        found.ip(*(ip, None) if isinstance(ip, str) else (ip.address, ip.role))
    for digest in form.hashes:
        found.hash(*(digest, None) if isinstance(digest, str) else (digest.value, digest.algorithm))
    for url in form.urls:
        found.url(url if isinstance(url, str) else url.url)
    for email in form.emails:
        found.email(*(email, None) if isinstance(email, str) else (email.address, email.role))
    return found
