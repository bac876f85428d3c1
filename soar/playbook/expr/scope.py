"""One evaluation's state: the variables and a `now` read at most once; the closure type."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from soar.errors import EvaluationError

Clock = Callable[[], datetime]


class Scope:
    """One evaluation: the variables, and `now` read from the clock at most once."""

    __slots__ = ("_clock", "_now", "variables")

    def __init__(self, variables: Mapping[str, object], clock: Clock | None) -> None:
        self.variables = variables
        self._clock = clock
        self._now: datetime | None = None

    def now(self) -> datetime:
        if self._now is None:
            moment = self._clock() if self._clock is not None else datetime.now(UTC)
            self._now = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        return self._now


Evaluator = Callable[[Scope], object]


class Missing:
    """A path that does not exist (inside `has()` and `default()` only)."""


MISSING = Missing()


def positioned(exc: EvaluationError, offset: int, length: int, prefix: str = "") -> EvaluationError:
    """The same failure, placed at `offset`/`length` (and its message prefixed)."""
    return EvaluationError(prefix + exc.message, offset=offset, length=length)
