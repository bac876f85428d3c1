"""The ldap connector's settings (`[connectors.ldap]`) and the errors of the wire client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from soar_ldap._dn import components, is_within

Flavour = Literal["ad", "openldap"]


class DirectoryError(Exception):
    """A directory operation failed; `retryable` says whether another attempt may succeed.
    Messages name DNs and LDAP result codes, never a password."""

    retryable = False


class DirectoryUnavailable(DirectoryError):
    """The directory could not be reached, or did not answer in time, or is busy."""

    retryable = True


class SettingsInvalid(DirectoryError):
    """The connector's settings are missing or wrong."""


class CertificateRefused(DirectoryError):
    """The server's TLS certificate is not trusted (tls_ca_file) or not for its name."""


class BindRefused(DirectoryError):
    """The directory refused the bind: wrong DN or password, or the account cannot bind."""


class NoSuchEntry(DirectoryError):
    """No such user, DN or group (or it is outside the configured base)."""


class OperationRefused(DirectoryError):
    """The directory refused an operation: rights, schema, password policy, ..."""


class DirectorySettings(BaseModel):
    """The `[connectors.ldap]` settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^ldaps?://[^/\s]+/?$")
    bind_dn: str = Field(min_length=1)
    base_dn: str = Field(min_length=1)
    flavour: Flavour
    tls_ca_file: str | None = None
    tls_server_name: str | None = None
    start_tls: bool = False
    users_dn: str | None = None
    login_attribute: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9-]*$")
    service_account_bases: list[str] = Field(default_factory=list)
    service_account_groups: list[str] = Field(default_factory=list)
    connect_timeout: float = Field(default=5.0, gt=0, le=120)
    operation_timeout: int = Field(default=15, ge=1, le=600)

    @field_validator("base_dn", "users_dn")
    @classmethod
    def _a_dn(cls, value: str | None) -> str | None:
        if value is not None:
            components(value)  # raises ValueError on a malformed DN
        return value

    @field_validator("bind_dn")
    @classmethod
    def _a_dn_or_principal(cls, value: str) -> str:
        if "@" not in value and "\\" not in value:  # AD also binds as user@domain, DOMAIN\\user
            components(value)
        return value

    @field_validator("service_account_bases", "service_account_groups")
    @classmethod
    def _dns(cls, values: list[str]) -> list[str]:
        for value in values:
            components(value)
        return values

    @model_validator(mode="after")
    def _users_under_base(self) -> Self:
        if self.users_dn is not None and not is_within(self.users_dn, self.base_dn):
            raise ValueError(f"users_dn {self.users_dn!r} is not under base_dn")
        return self

    @property
    def encrypted(self) -> bool:
        return self.url.startswith("ldaps://") or self.start_tls

    @property
    def login(self) -> str:
        if self.login_attribute:
            return self.login_attribute
        return "sAMAccountName" if self.flavour == "ad" else "uid"

    @property
    def account_container(self) -> str:
        return self.users_dn or self.base_dn


def settings_from(raw: Mapping[str, JsonValue]) -> DirectorySettings:
    """Parse the connector settings.

    Raises:
        SettingsInvalid: naming each wrong or missing setting.
    """
    try:
        return DirectorySettings.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors()
        )
        raise SettingsInvalid(f"ldap settings: {problems}") from None
