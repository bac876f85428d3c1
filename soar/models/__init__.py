"""Pure data shared by every room: alerts, severity, entities.

The names load on first use, so that a process needing only `soar.models.run` or
`soar.models.audit` (the store's writer process) does not build the alert models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from soar.lazy import lazy_names

if TYPE_CHECKING:
    from soar.models.alert import (
        Alert,
        AlertFormat,
        AlertStatus,
        EmailEntity,
        HashEntity,
        HostEntity,
        IpEntity,
        UrlEntity,
        UserEntity,
    )
    from soar.models.severity import Severity

_HOMES = {
    "Alert": "soar.models.alert",
    "AlertFormat": "soar.models.alert",
    "AlertStatus": "soar.models.alert",
    "EmailEntity": "soar.models.alert",
    "HashEntity": "soar.models.alert",
    "HostEntity": "soar.models.alert",
    "IpEntity": "soar.models.alert",
    "UrlEntity": "soar.models.alert",
    "UserEntity": "soar.models.alert",
    "Severity": "soar.models.severity",
}

__all__ = [
    "Alert",
    "AlertFormat",
    "AlertStatus",
    "EmailEntity",
    "HashEntity",
    "HostEntity",
    "IpEntity",
    "Severity",
    "UrlEntity",
    "UserEntity",
]

__getattr__ = lazy_names(__name__, _HOMES)
