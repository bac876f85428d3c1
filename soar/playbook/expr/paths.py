"""Running a compiled path (`a.b[0][k][1:2]`): item lookups in mappings and lists only, a fast
route for plain dicts and lists, and a checked walk that says which step failed and why."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from soar.errors import EvaluationError
from soar.playbook.expr.scope import MISSING, Evaluator, Scope, positioned
from soar.playbook.expr.text import kind


def shorten(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _LookupFailed(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


class Accessor:
    """One `.key`, `[index]`, `[expr]` or `[a:b]` step of a path."""

    __slots__ = ("key", "label", "length", "offset", "parts", "prefix", "step")

    def __init__(
        self,
        step: str,
        key: object,
        label: str,
        prefix: str,
        span: tuple[int, int],
        parts: tuple[Evaluator | None, ...] = (),
    ) -> None:
        self.step = step  # "key", "dynamic" or "slice"
        self.key = key
        self.label = label
        self.prefix = prefix
        self.offset, self.length = span
        self.parts = parts


def _lookup(value: object, key: object, label: str) -> object:
    if isinstance(value, Mapping):
        try:
            return value[key]
        except (KeyError, TypeError):
            raise _LookupFailed(f"has no key {label}") from None
    if isinstance(value, list | tuple | str):
        if isinstance(key, int) and not isinstance(key, bool):
            try:
                return value[key]
            except IndexError:
                raise _LookupFailed(f"has no item {label}") from None
        raise _LookupFailed(f"is a {kind(value)}, not a mapping (reading key {label})")
    if value is None:
        raise _LookupFailed(f"is null (reading {label})")
    raise _LookupFailed(f"is a {kind(value)}, which has no keys (reading {label})")


def _dynamic_key(value: object, label: str) -> object:
    if isinstance(value, str):
        if value.startswith("_"):
            raise EvaluationError(f"key {label} starts with '_'; such keys cannot be read")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise EvaluationError(f"key {label} is a {kind(value)}, not a string or an integer")


def _slice(value: object, bounds: list[object], label: str) -> object:
    for bound in bounds:
        if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool)):
            raise EvaluationError(f"slice bounds must be integers, not {kind(bound)}")
    if bounds[2] == 0:
        raise EvaluationError("slice step cannot be zero")
    if not isinstance(value, list | tuple | str):
        if value is None:
            raise _LookupFailed(f"is null (slicing {label})")
        raise _LookupFailed(f"is a {kind(value)}, which cannot be sliced")
    lower, upper, step = (cast(int | None, bound) for bound in bounds)
    return value[lower:upper:step]


def static_path(base: Evaluator, accessors: list[Accessor], *, soft: bool) -> Evaluator:
    keys = tuple(a.key for a in accessors)

    def path(scope: Scope) -> object:
        start = value = base(scope)
        if value is MISSING:
            return value
        try:
            for key in keys:
                # Plain dicts and lists only; anything else takes the checked, slower walk.
                kind_of = type(value)
                if kind_of is not dict and kind_of is not list:
                    break
                value = value[key]  # type: ignore[index]
            else:
                return value
        except (KeyError, IndexError, TypeError):
            pass
        return _walk(start, accessors, scope, soft=soft)

    return path


def dynamic_path(base: Evaluator, accessors: list[Accessor], *, soft: bool) -> Evaluator:
    def path(scope: Scope) -> object:
        value = base(scope)
        if value is MISSING:
            return value
        return _walk(value, accessors, scope, soft=soft)

    return path


def _walk(value: object, accessors: list[Accessor], scope: Scope, *, soft: bool) -> object:
    for accessor in accessors:
        try:
            if accessor.step == "key":
                value = _lookup(value, accessor.key, accessor.label)
            elif accessor.step == "dynamic":
                assert callable(accessor.key)  # noqa: S101  # a "dynamic" key is an evaluator
                key = accessor.key(scope)
                try:
                    key = _dynamic_key(key, accessor.label)
                except EvaluationError as exc:
                    raise positioned(exc, accessor.offset, accessor.length) from None
                value = _lookup(value, key, accessor.label)
            else:
                bounds = [None if part is None else part(scope) for part in accessor.parts]
                try:
                    value = _slice(value, bounds, accessor.label)
                except EvaluationError as exc:
                    raise positioned(exc, accessor.offset, accessor.length) from None
        except _LookupFailed as failure:
            if soft:
                return MISSING
            raise EvaluationError(
                f"{shorten(accessor.prefix)} {failure.reason}",
                offset=accessor.offset,
                length=accessor.length,
            ) from None
    return value
