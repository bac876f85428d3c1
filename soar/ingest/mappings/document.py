"""Reading fields out of one hostile JSON object: dotted paths through mixed nesting, typed.

Producers disagree on nesting (`{"kibana.alert.rule.name": ...}` vs `{"kibana": {"alert": ...}}`)
and on types; every mapping reads through `Document` so the rules are the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydantic import JsonValue

from soar.errors import AlertRejected, RejectionCode

JsonObject = dict[str, JsonValue]

_MISSING = object()
_SNAKE = re.compile(r"[^0-9a-z]+")


def lookup(obj: JsonValue, path: str) -> JsonValue | None:
    """The value at a dotted `path`, whichever way the keys are split; None when absent.

    Longer literal keys win, so `{"a.b": 1, "a": {"b": 2}}` reads `a.b` as 1.
    """
    found = _lookup(obj, tuple(path.split(".")))
    return None if found is _MISSING else found  # type: ignore[return-value]


def _lookup(obj: JsonValue, parts: tuple[str, ...]) -> object:
    if not parts:
        return obj
    if not isinstance(obj, dict):
        return _MISSING
    for end in range(len(parts), 0, -1):
        key = ".".join(parts[:end])
        if key in obj:
            found = _lookup(obj[key], parts[end:])
            if found is not _MISSING:
                return found
    return _MISSING


def has_prefix(obj: JsonValue, prefix: str) -> bool:
    """Whether any field lives under the dotted `prefix` (`kibana.alert` matches all spellings)."""
    if not isinstance(obj, dict):
        return False
    for key, value in obj.items():
        if key == prefix or key.startswith(prefix + "."):
            return True
        if prefix.startswith(key + ".") and has_prefix(value, prefix[len(key) + 1 :]):
            return True
    return False


def snake(text: str) -> str:
    """`Credential Access` -> `credential_access`."""
    return _SNAKE.sub("_", text.strip().lower()).strip("_")


def invalid(field: str, message: str) -> AlertRejected:
    """An INVALID_FIELD rejection naming `field`."""
    return AlertRejected(RejectionCode.INVALID_FIELD, f"{field}: {message}", field=field)


def missing(field: str, message: str | None = None) -> AlertRejected:
    """A MISSING_FIELD rejection naming `field`."""
    return AlertRejected(
        RejectionCode.MISSING_FIELD, message or f"{field} is required", field=field
    )


class Document:
    """A read-only view over one JSON object.

    Two kinds of read: `text`/`number` with `strict=True` for fields an alert cannot be trusted
    without (a wrong type raises INVALID_FIELD naming the path), and the lenient default for
    enrichment (a wrong type reads as absent).
    """

    def __init__(self, data: JsonObject, *, prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix

    def path(self, field: str) -> str:
        """The dotted path of `field` as a rejection should name it."""
        return f"{self.prefix}{field}"

    def get(self, field: str) -> JsonValue | None:
        """The raw value, or None when absent or JSON null."""
        return lookup(self.data, field)

    def text(self, field: str, *, strict: bool = False) -> str | None:
        """A non-empty string (first element of a list of strings, as ECS arrays come)."""
        value = self.get(field)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            value = value[0]
        if value is None or value == "":
            return None
        if isinstance(value, str):
            return value if value.strip() else None
        if strict:
            raise invalid(self.path(field), f"expected a string, got {_article(json_kind(value))}")
        return None

    def first_text(self, *fields: str, strict: bool = False) -> tuple[str, str] | None:
        """The first of `fields` holding a non-empty string, as (field, value)."""
        for field in fields:
            value = self.text(field, strict=strict)
            if value is not None:
                return field, value
        return None

    def texts(self, field: str) -> list[str]:
        """Every non-empty string under `field`, which may be a string or a list."""
        value = self.get(field)
        items = value if isinstance(value, list) else [value]
        return [v for v in items if isinstance(v, str) and v.strip()]

    def objects(self, field: str) -> Iterator[Document]:
        """Each object under `field` (one object or a list of them); anything else is skipped."""
        value = self.get(field)
        if isinstance(value, dict):
            yield Document(value, prefix=self.path(field) + ".")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    yield Document(item, prefix=f"{self.path(field)}.{index}.")

    def object(self, field: str) -> Document | None:
        """The object at `field`, or None when absent or not an object."""
        value = self.get(field)
        if isinstance(value, dict):
            return Document(value, prefix=self.path(field) + ".")
        return None


def json_kind(value: object) -> str:
    """The JSON type of `value` for messages: `boolean`, `null`, `string`, `array`, ..."""
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun
