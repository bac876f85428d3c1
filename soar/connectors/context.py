"""What an action receives besides its inputs: settings, secrets, idempotency key, log, clock."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import JsonValue

from soar.errors import SecretMissing


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Secrets:
    """Read-only access to the secrets an action declared; a missing one raises `SecretMissing`."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def __getitem__(self, name: str) -> str:
        try:
            return self._values[name]
        except KeyError:
            raise SecretMissing(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def values(self) -> list[str]:
        """Every secret value, for redaction."""
        return list(self._values.values())

    def __repr__(self) -> str:
        return f"Secrets({sorted(self._values)})"


@dataclass(frozen=True, slots=True)
class ActionContext:
    """Handed to every action call. The idempotency key is the same on every retry of a step."""

    idempotency_key: str
    settings: Mapping[str, JsonValue] = field(default_factory=dict)
    secrets: Secrets = field(default_factory=lambda: Secrets({}))
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("soar.action"))
    clock: Callable[[], datetime] = _utc_now
    dry_run: bool = False
    # when the engine gives up on this attempt, on `time.monotonic()`'s clock (None: no limit)
    deadline: float | None = None

    def time_left(self, default: float) -> float:
        """Seconds until the attempt's deadline (at least 0), or `default` when it has none: the
        budget for a connector's own waits, so that it fails with a reason before the engine
        cancels it without one."""
        if self.deadline is None:
            return default
        return max(self.deadline - time.monotonic(), 0.0)
