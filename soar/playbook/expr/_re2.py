"""A typed face for google-re2: matching is linear in the input, so no catastrophic backtracking."""

from __future__ import annotations

from typing import Protocol, cast

import re2


class Match(Protocol):
    def group(self, index: int = 0, /) -> str | None: ...


class Pattern(Protocol):
    """A compiled RE2 pattern; `groups` counts its capturing groups."""

    @property
    def groups(self) -> int: ...

    def search(self, text: str) -> Match | None: ...

    def fullmatch(self, text: str) -> Match | None: ...


_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # re2 would otherwise print every bad pattern to stderr
_OPTIONS.max_mem = 8 << 20


def compile_pattern(pattern: str) -> Pattern:
    """Compile an RE2 pattern.

    Raises:
        ValueError: the pattern is not valid RE2 syntax (backreferences and lookaround are not).
    """
    try:
        return cast(Pattern, re2.compile(pattern, options=_OPTIONS))
    except re2.error as exc:
        detail = exc.args[0] if exc.args else b""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(f"bad regular expression: {detail}") from None
