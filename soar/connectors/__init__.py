"""The connector contract: what a connector package imports to declare its actions."""

from soar.connectors.action import ActionSpec, Connector, TargetKind
from soar.connectors.context import ActionContext, Secrets
from soar.connectors.registry import ENTRY_POINT_GROUP, Registry, load_registry
from soar.connectors.testing import (
    Call,
    CallLog,
    RecordedResponse,
    RecordingConnector,
    recording_registry,
)
from soar.errors import ActionFailed, ConnectorError, SecretMissing

__all__ = [
    "ENTRY_POINT_GROUP",
    "ActionContext",
    "ActionFailed",
    "ActionSpec",
    "Call",
    "CallLog",
    "Connector",
    "ConnectorError",
    "RecordedResponse",
    "RecordingConnector",
    "Registry",
    "SecretMissing",
    "Secrets",
    "TargetKind",
    "load_registry",
    "recording_registry",
]
