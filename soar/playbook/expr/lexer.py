"""Just enough lexing to walk source text while skipping string literals (templates and hints)."""

from __future__ import annotations

from collections.abc import Iterator

_QUOTES = "'\""


def string_end(text: str, start: int) -> int:
    """Index just past the string literal opening at `start`, or `len(text)` if it never closes.

    Backslash escapes the next character, as in Python (raw strings included, for quoting).
    """
    quote = text[start]
    if text.startswith(quote * 3, start):
        closing = quote * 3
        i = start + 3
    else:
        closing = quote
        i = start + 1
    end = len(text)
    while i < end:
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if text.startswith(closing, i):
            return i + len(closing)
        i += 1
    return end


def code_chars(text: str, start: int = 0) -> Iterator[tuple[int, str]]:
    """(index, character) for every character of `text` from `start` outside string literals."""
    i = start
    end = len(text)
    while i < end:
        char = text[i]
        if char in _QUOTES:
            i = string_end(text, i)
            continue
        yield i, char
        i += 1
