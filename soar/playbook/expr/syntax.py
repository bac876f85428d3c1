"""Source text to a Python AST: length cap first, parse errors in our own words, character
positions (ast counts UTF-8 bytes), and `steps.approve-isolation` re-joined into one key.
(The compiler caps the number of nodes and their depth as it walks the tree.)"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from typing import cast

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
    positions = SourceMap(text, base + lead)
    try:
        with warnings.catch_warnings():
            # Unknown escapes such as "\d" keep their backslash, as Python does today.
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
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
    if "-" in text:
        try:
            body = cast(ast.expr, _Hyphens(frozenset(roots)).visit(body))
        except RecursionError:
            raise ExpressionError(
                "expression too deeply nested", offset=base, length=len(source)
            ) from None
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


_TIGHTER = (ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.MatMult)


class _Hyphens(ast.NodeTransformer):
    """Re-join `steps.approve-isolation.output` (no spaces around `-`, a bare name after it
    that is not a root) into the key `approve-isolation`; `a - b` stays a subtraction."""

    def __init__(self, roots: frozenset[str]) -> None:
        self._roots = roots

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        if (
            isinstance(node.op, ast.Sub)
            and isinstance(node.left, ast.Attribute)
            and _is_dotted_path(node.left)
        ):
            joined = self._join(node.left, node.right)
            if joined is not None:
                return joined
        return node

    def _join(self, left: ast.Attribute, right: ast.expr) -> ast.expr | None:
        inner: ast.expr | None
        if isinstance(right, ast.Name):
            adjacent = (
                right.lineno == left.end_lineno
                and left.end_col_offset is not None
                and right.col_offset == left.end_col_offset + 1
            )
            if not adjacent or right.id in self._roots:
                return None
            return _located(
                ast.Attribute(value=left.value, attr=f"{left.attr}-{right.id}", ctx=ast.Load()),
                left,
                right,
            )
        if isinstance(right, ast.Attribute):
            inner = self._join(left, right.value)
            if inner is None:
                return None
            return _located(
                ast.Attribute(value=inner, attr=right.attr, ctx=ast.Load()), left, right
            )
        if isinstance(right, ast.Subscript):
            inner = self._join(left, right.value)
            if inner is None:
                return None
            return _located(
                ast.Subscript(value=inner, slice=right.slice, ctx=ast.Load()), left, right
            )
        if isinstance(right, ast.BinOp) and isinstance(right.op, _TIGHTER):
            inner = self._join(left, right.left)
            if inner is None:
                return None
            return _located(ast.BinOp(left=inner, op=right.op, right=right.right), left, right)
        return None


def _is_dotted_path(node: ast.Attribute) -> bool:
    current: ast.expr = node
    while isinstance(current, ast.Attribute | ast.Subscript):
        current = current.value
    return isinstance(current, ast.Name)


def _located(node: ast.expr, start: ast.expr, end: ast.expr) -> ast.expr:
    node.lineno = start.lineno
    node.col_offset = start.col_offset
    node.end_lineno = end.end_lineno
    node.end_col_offset = end.end_col_offset
    return node
