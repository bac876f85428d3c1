"""Argument checks shared by the registry functions; messages name types, never values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from soar.errors import EvaluationError
from soar.playbook.expr.limits import MAX_LIST, MAX_STRING
from soar.playbook.expr.text import kind


def expect_str(value: object, what: str = "argument", *, limit: int = MAX_STRING) -> str:
    """`value` as a str (a severity reads as its name), or EvaluationError."""
    if not isinstance(value, str):
        raise EvaluationError(f"{what} must be a string, not {kind(value)}")
    if len(value) > limit:
        raise EvaluationError(f"{what} is longer than {limit} characters")
    return str(value)


def expect_list(value: object, what: str = "argument") -> Sequence[object]:
    """`value` as a list (or tuple) of at most MAX_LIST items, or EvaluationError."""
    if not isinstance(value, list | tuple):
        raise EvaluationError(f"{what} must be a list, not {kind(value)}")
    if len(value) > MAX_LIST:
        raise EvaluationError(f"{what} has more than {MAX_LIST} items")
    return value


def expect_mapping(value: object, what: str = "argument") -> Mapping[object, object]:
    """`value` as a mapping of at most MAX_LIST keys, or EvaluationError."""
    if not isinstance(value, Mapping):
        raise EvaluationError(f"{what} must be a mapping, not {kind(value)}")
    if len(value) > MAX_LIST:
        raise EvaluationError(f"{what} has more than {MAX_LIST} keys")
    return value


def expect_int(value: object, what: str = "argument") -> int:
    """`value` as an int (booleans refused), or EvaluationError."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise EvaluationError(f"{what} must be an integer, not {kind(value)}")
    return value


def expect_bool(value: object, what: str = "argument") -> bool:
    """`value` as a bool, or EvaluationError."""
    if not isinstance(value, bool):
        raise EvaluationError(f"{what} must be true or false, not {kind(value)}")
    return value


def expect_key(value: object, what: str = "key") -> str:
    """A mapping key to read: a string that does not start with `_`."""
    key = expect_str(value, what, limit=1024)
    if key.startswith("_"):
        raise EvaluationError("keys starting with '_' cannot be read")
    return key
