"""Templates: strings with `{{ expr }}` parts. Values are inserted, never scanned again, so alert
data that looks like a template (`{{ 7*7 }}`) stays exactly what it is."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from functools import lru_cache

from soar.errors import EvaluationError, ExpressionError
from soar.playbook.expr.expression import Expression, compile_part
from soar.playbook.expr.lexer import code_chars
from soar.playbook.expr.limits import MAX_STRING, MAX_TEMPLATE
from soar.playbook.expr.references import ROOTS, FunctionCall, Reference
from soar.playbook.expr.scope import Scope
from soar.playbook.expr.text import to_text

Clock = Callable[[], datetime]


class Template:
    """A compiled template: literal text and `Expression` parts, in order.

    `is_constant`: no `{{ }}` at all; evaluating returns the source. `is_native`: the whole
    value is one `{{ expr }}` (whitespace around it allowed); evaluating returns the value as
    it is (a list for `for_each`, a number, null...). Otherwise evaluating returns a string.
    """

    __slots__ = ("_native", "calls", "is_constant", "is_native", "parts", "refs", "source")

    def __init__(self, source: str, parts: tuple[str | Expression, ...]) -> None:
        self.source = source
        self.parts = parts
        expressions = [part for part in parts if isinstance(part, Expression)]
        self.refs: tuple[Reference, ...] = tuple(r for e in expressions for r in e.refs)
        self.calls: tuple[FunctionCall, ...] = tuple(c for e in expressions for c in e.calls)
        self.is_constant = not expressions
        texts = [part for part in parts if isinstance(part, str)]
        self.is_native = len(expressions) == 1 and all(not text.strip() for text in texts)
        self._native = expressions[0] if self.is_native else None

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def evaluate(self, variables: Mapping[str, object], *, clock: Clock | None = None) -> object:
        """The rendered string, or the native value of a single-part template.

        Raises:
            EvaluationError: a part failed, or the result is longer than the string cap; the
                position is relative to the template string.
        """
        if self.is_constant:
            return self.source
        scope = Scope(variables, clock)
        if self._native is not None:
            return self._native.run_in(scope)
        pieces: list[str] = []
        total = 0
        for part in self.parts:
            if isinstance(part, str):
                text = part
            else:
                value = part.run_in(scope)
                try:
                    text = to_text(value)
                except EvaluationError as exc:
                    raise EvaluationError(
                        exc.message, offset=part._offset, length=part._length
                    ) from None
            total += len(text)
            if total > MAX_STRING:
                raise EvaluationError(
                    f"rendered text is longer than {MAX_STRING} characters",
                    offset=0,
                    length=len(self.source),
                )
            pieces.append(text)
        return "".join(pieces)


def compile_template(source: str, *, roots: Collection[str] = ROOTS) -> Template:
    """Compile a string with `{{ expr }}` parts; a literal `{{` is written `{{ "{{" }}`.

    Raises:
        ExpressionError: an unclosed `{{`, or a part that does not compile; offsets are
            relative to the whole template string.
    """
    return _compile_cached(source, frozenset(roots))


@lru_cache(maxsize=2048)
def _compile_cached(source: str, roots: frozenset[str]) -> Template:
    if len(source) > MAX_TEMPLATE:
        raise ExpressionError(
            f"template is longer than {MAX_TEMPLATE} characters",
            offset=MAX_TEMPLATE,
            length=len(source) - MAX_TEMPLATE,
        )
    parts: list[str | Expression] = []
    position = 0
    while True:
        opening = source.find("{{", position)
        if opening < 0:
            break
        closing = _closing(source, opening + 2)
        if closing < 0:
            raise ExpressionError("'{{' is not closed with '}}'", offset=opening, length=2)
        if opening > position:
            parts.append(source[position:opening])
        inner = source[opening + 2 : closing]
        parts.append(compile_part(inner, roots, origin=source, base=opening + 2))
        position = closing + 2
    if position < len(source):
        parts.append(source[position:])
    return Template(source, tuple(parts))


def _closing(source: str, start: int) -> int:
    """Index of the `}}` that closes a part opened just before `start`, or -1.

    Braces of mapping literals nest, and string literals are skipped, so `{{ "}}" }}` and
    `{{ {"a": {"b": 1}} }}` work.
    """
    depth = 0
    for index, char in code_chars(source, start):
        if char == "{":
            depth += 1
        elif char == "}":
            if depth:
                depth -= 1
            elif source.startswith("}}", index):
                return index
    return -1
