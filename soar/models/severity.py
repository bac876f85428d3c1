"""Severity: a string that orders by rank, so `severity >= "high"` means what analysts mean."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

_ALIASES = {"info": "informational", "crit": "critical", "med": "medium"}


class Severity(StrEnum):
    """The five levels, ordered `informational < low < medium < high < critical`.

    Members compare with each other and with plain strings by rank; a string that is not a
    severity name raises `ValueError` rather than comparing lexically.
    """

    INFORMATIONAL = "informational"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for informational up to 4 for critical."""
        return _RANK[self]

    @classmethod
    def parse(cls, value: object) -> Severity:
        """Read a severity name, tolerant of case and surrounding whitespace.

        Raises:
            ValueError: the value is not one of the five names (or `info`, `med`, `crit`).
        """
        if isinstance(value, Severity):
            return value
        if not isinstance(value, str):
            raise ValueError(f"severity must be a string, not {type(value).__name__}")
        text = value.strip().lower()
        text = _ALIASES.get(text, text)
        try:
            return cls(text)
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise ValueError(f"{value!r} is not a severity (expected one of {names})") from None

    def _rank_of(self, other: object) -> int:
        if isinstance(other, str):
            return Severity.parse(other).rank
        raise TypeError(f"cannot compare severity with {type(other).__name__}")

    def __lt__(self, other: object) -> bool:
        return self.rank < self._rank_of(other)

    def __le__(self, other: object) -> bool:
        return self.rank <= self._rank_of(other)

    def __gt__(self, other: object) -> bool:
        return self.rank > self._rank_of(other)

    def __ge__(self, other: object) -> bool:
        return self.rank >= self._rank_of(other)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                return self.rank == Severity.parse(other).rank
            except ValueError:
                return False
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = str.__hash__

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse,
            json_schema_input_schema=core_schema.literal_schema([s.value for s in cls]),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda s: s.value, when_used="json"
            ),
        )


_RANK = {s: i for i, s in enumerate(Severity)}
