"""Source text to a Python AST: length cap first, parse errors in our own words, character
positions (ast counts UTF-8 bytes), and `steps.approve-isolation` read as one key.
(The compiler caps the number of nodes and their depth as it walks the tree.)"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Collection
from dataclasses import dataclass

from soar.errors import ExpressionError
from soar.playbook.expr.lexer import code_chars
from soar.playbook.expr.limits import MAX_SOURCE

_CLOSERS = {")": "(", "]": "[", "}": "{"}


class SourceMap:
    """Turns ast (line, UTF-8 byte column) pairs into character offsets in the original source."""

    __slots__ = ("_ascii", "_base", "_lines", "_simple", "_starts")

    def __init__(self, text: str, base: int) -> None:
        self._base = base
        self._starts: list[int] = [0]
        i = 0
        end = len(text) if ("\n" in text or "\r" in text) else 0
        while i < end:
            char = text[i]
            if char == "\r" and i + 1 < end and text[i + 1] == "\n":
                i += 1
            if char in "\r\n":
                self._starts.append(i + 1)
            i += 1
        self._starts.append(len(text) + 1)
        self._lines = [
            text[self._starts[n] : self._starts[n + 1]] for n in range(len(self._starts) - 1)
        ]
        self._ascii = text.isascii()
        self._simple = self._ascii and len(self._lines) == 1

    def offset(self, lineno: int, col: int) -> int:
        """Character offset of byte column `col` on 1-based line `lineno`, plus the base."""
        if self._simple:
            return self._base + col
        index = min(max(lineno, 1), len(self._lines)) - 1
        if not self._ascii:
            line = self._lines[index]
            col = len(line.encode("utf-8")[:col].decode("utf-8", "ignore"))
        return self._base + self._starts[index] + col

    def char_offset(self, lineno: int, col: int) -> int:
        """Character offset of character column `col` (0-based) on 1-based line `lineno`."""
        index = min(max(lineno, 1), len(self._lines)) - 1
        return self._base + self._starts[index] + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        """(offset, length) in characters covered by an expression node."""
        start = self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        end = self.offset(
            node.end_lineno or node.lineno,  # type: ignore[attr-defined]
            node.end_col_offset if node.end_col_offset is not None else node.col_offset,  # type: ignore[attr-defined]
        )
        return start, max(end - start, 0)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed expression: its body node and the map from node positions to characters."""

    tree: ast.expr
    positions: SourceMap


def parse(source: str, roots: Collection[str], *, base: int = 0) -> Parsed:
    """Parse one expression; `base` is added to every offset (a template part's position).

    Raises:
        ExpressionError: too long, empty, does not parse, too big or too deeply nested.
    """
    if len(source) > MAX_SOURCE:
        raise ExpressionError(
            f"expression is longer than {MAX_SOURCE} characters",
            offset=base + MAX_SOURCE,
            length=len(source) - MAX_SOURCE,
        )
    text = source.lstrip()
    lead = len(source) - len(text)
    text = text.rstrip()
    if not text:
        raise ExpressionError("empty expression", offset=base, length=len(source))
    nul = text.find("\0")
    if nul >= 0:
        raise ExpressionError(
            "expression contains a NUL character", offset=base + lead + nul, length=1
        )
    marked = _mark_hyphens(text, frozenset(roots)) if "-" in text else text
    positions = SourceMap(marked, base + lead)
    try:
        with warnings.catch_warnings():
            # Unknown escapes such as "\d" keep their backslash, as Python does today.
            warnings.simplefilter("ignore")
            tree = ast.parse(marked, mode="eval")
    except SyntaxError as exc:
        raise _syntax_error(text, positions, exc) from None
    except (RecursionError, MemoryError):
        raise ExpressionError(
            "expression too deeply nested", offset=base, length=len(source)
        ) from None
    except ValueError:
        raise ExpressionError(
            "expression does not parse", offset=base, length=len(source)
        ) from None
    body = tree.body
    if marked is not text:
        for node in ast.walk(body):
            if isinstance(node, ast.Attribute) and _MARK in node.attr:
                node.attr = node.attr.replace(_MARK, "-")
    return Parsed(body, positions)


def _hint(text: str) -> tuple[str, int, int] | None:
    """The first C-, JavaScript- or assignment-style operator, with advice, if there is one."""
    depth = 0
    for i, char in code_chars(text):
        following = text[i + 1 : i + 3]
        previous = text[i - 1] if i else ""
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "&" and following.startswith("&"):
            return "use 'and' instead of '&&'", i, 2
        elif char == "|" and following.startswith("|"):
            return "use 'or' instead of '||'", i, 2
        elif char == "!" and not following.startswith("="):
            return "use 'not' instead of '!'", i, 1
        elif char == "=" and following.startswith("==") and previous not in "=!<>":
            return "use '==' instead of '==='", i, 3
        elif char == "!" and following == "==":
            return "use '!=' instead of '!=='", i, 3
        elif (
            char == "=" and depth == 0 and previous not in "=!<>:" and not following.startswith("=")
        ):
            return "use '==' to compare ('=' assigns, which expressions cannot do)", i, 1
    return None


def _syntax_error(text: str, positions: SourceMap, exc: SyntaxError) -> ExpressionError:
    hint = _hint(text)
    if hint is not None:
        message, index, length = hint
        return ExpressionError(message, offset=positions.char_offset(1, 0) + index, length=length)
    end = positions.char_offset(1, 0) + len(text)
    detail = exc.msg or ""
    if not exc.lineno or not exc.offset:
        return ExpressionError("unexpected end of expression", offset=end, length=0)
    offset = min(positions.char_offset(exc.lineno, exc.offset - 1), end)
    length = 1 if offset < end else 0
    if "was never closed" in detail:
        return ExpressionError(
            f"'{text[offset - end + len(text)]}' is not closed", offset=offset, length=1
        )
    if detail.startswith("unmatched"):
        return ExpressionError(f"unmatched {detail.split()[-1]}", offset=offset, length=1)
    if "does not match" in detail:
        return ExpressionError(
            "closing bracket does not match the opening one", offset=offset, length=1
        )
    if "unterminated" in detail:
        return ExpressionError("string is not closed", offset=offset, length=end - offset)
    if offset >= end:
        return ExpressionError("unexpected end of expression", offset=end, length=0)
    if detail and detail != "invalid syntax" and "indent" not in detail:
        return ExpressionError(f"invalid syntax: {detail}", offset=offset, length=length)
    return ExpressionError("invalid syntax", offset=offset, length=length)


# Stands in for "-" inside a hyphenated key while Python parses the expression: a letter, so
# `steps.wait-for-it` parses as one attribute even though `for` is a keyword, and one character
# long, so every position stays where it was.
_MARK = "\u1428"


def _mark_hyphens(text: str, roots: frozenset[str]) -> str:
    """Mark each `-` that joins the words of a key after a dot (`steps.approve-isolation`):
    no space on either side, a letter or `_` after it, and the word after it neither a root
    name nor a function call. Anything else (`a - b`, `x.count-1`, `x.y-alert.z`,
    `x.y-len(z)`) stays a subtraction."""
    if _MARK in text:
        return text
    chars = list(text)
    end = len(text)
    for i, char in code_chars(text):
        if char != "-" or i == 0 or i + 1 >= end:
            continue
        before, after = text[i - 1], text[i + 1]
        if not (before.isalnum() or before == "_") or not (after.isalpha() or after == "_"):
            continue
        start = i - 1
        while start >= 0 and (text[start].isalnum() or text[start] in "_-"):
            start -= 1
        if (
            start < 0
            or text[start] != "."
            or (not text[start + 1].isalpha() and text[start + 1] != "_")
        ):
            continue
        stop = i + 1
        while stop < end and (text[stop].isalnum() or text[stop] == "_"):
            stop += 1
        calls = stop < end and text[stop] == "("
        if text[i + 1 : stop] not in roots and not calls:
            chars[i] = _MARK
    return "".join(chars)
