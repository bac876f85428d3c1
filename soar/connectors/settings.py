"""Reading a connector's settings (`[connectors.<name>]`): one way to refuse a bad value."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import JsonValue

from soar.errors import ActionFailed


def positive_number(settings: Mapping[str, JsonValue], name: str, default: float) -> float:
    """A positive number setting, or `default` when it is absent.

    Raises:
        ActionFailed: the setting is not a positive number (not retryable: only a new config
            mends it).
    """
    value = settings.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ActionFailed(f"setting {name!r} must be a positive number", retryable=False)
    return float(value)
