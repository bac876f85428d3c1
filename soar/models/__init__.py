"""Pure data shared by every room: alerts, severity, entities."""

from soar.models.alert import (
    Alert,
    AlertFormat,
    EmailEntity,
    HashEntity,
    HostEntity,
    IpEntity,
    UrlEntity,
    UserEntity,
)
from soar.models.severity import Severity

__all__ = [
    "Alert",
    "AlertFormat",
    "EmailEntity",
    "HashEntity",
    "HostEntity",
    "IpEntity",
    "Severity",
    "UrlEntity",
    "UserEntity",
]
