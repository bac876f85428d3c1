"""How values read as text: template stringification, compact JSON, and type names for messages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

from soar.errors import EvaluationError
from soar.models.severity import Severity
from soar.playbook.durations import format_duration


def kind(value: object) -> str:
    """A short, data-free name for the type of `value`, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, Severity):
        return "severity"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, datetime):
        return "time"
    if isinstance(value, timedelta):
        return "duration"
    return type(value).__name__


def format_time(value: datetime) -> str:
    """ISO 8601; UTC is written with `Z`."""
    text = value.isoformat()
    if value.tzinfo is not None and value.utcoffset() == timedelta(0):
        text = text.removesuffix("+00:00") + "Z"
    return text


def to_text(value: object) -> str:
    """The text a template inserts for `value`.

    None is empty, booleans are `true`/`false`, a severity is its name, times are ISO 8601
    with `Z` for UTC, durations read like `1h30m`, lists and mappings are compact JSON.
    """
    if isinstance(value, str):
        return value.value if isinstance(value, Severity) else value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, timedelta):
        return format_duration(value)
    return to_json(value)


class _NotJson(TypeError):
    pass


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise _NotJson(kind(value))


def to_json(value: object) -> str:
    """Compact JSON (no spaces, non-ASCII kept); times and durations as `to_text` writes them.

    Raises:
        EvaluationError: a value with no JSON form, or nesting too deep.
    """
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, default=_plain, allow_nan=False
        )
    except _NotJson as exc:
        raise EvaluationError(f"cannot write {exc.args[0]} as JSON") from None
    except TypeError:
        raise EvaluationError("cannot write a mapping with non-string keys as JSON") from None
    except ValueError:
        raise EvaluationError("cannot write NaN or infinity as JSON") from None
    except RecursionError:
        raise EvaluationError("value is too deeply nested to write as JSON") from None


def to_utc(value: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
