"""What an expression reads and calls, positioned, so `soar validate` can check it statically."""

from __future__ import annotations

from dataclasses import dataclass

ROOTS: frozenset[str] = frozenset(
    {"alert", "alerts", "steps", "item", "index", "run", "inputs", "playbook", "directory", "event"}
)
"""The names an expression may start a path with; where each is available is the engine's call."""


@dataclass(frozen=True, slots=True)
class Reference:
    """One data path an expression reads, e.g. `("steps", "approve-isolation", "output", "dn")`.

    A component is None where it is computed at run time (`alert.users[item.i]`) or is a slice.
    `offset` and `length` are characters in the source (the whole template for a template).
    `guarded` is true inside `has(...)` or `default(path, ...)`, where a missing path is expected.
    """

    path: tuple[str | int | None, ...]
    offset: int
    length: int
    guarded: bool = False


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """One call of a registry function (also as a filter); the position is the function's name."""

    name: str
    offset: int
    length: int
