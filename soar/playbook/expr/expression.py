"""A compiled expression, and the entry points that compile source text into one (cached)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from functools import lru_cache

from soar.errors import EvaluationError
from soar.playbook.expr.compiler import Compiler
from soar.playbook.expr.references import ROOTS, FunctionCall, Reference
from soar.playbook.expr.scope import Clock, Evaluator, Scope
from soar.playbook.expr.syntax import parse


class Expression:
    """A compiled expression: evaluate it many times against plain data.

    `refs` and `calls` list what it reads and calls, positioned in characters of the source it
    was compiled from (the whole template string for a template part).
    """

    __slots__ = ("_length", "_offset", "_run", "calls", "refs", "source")

    def __init__(
        self,
        source: str,
        run: Evaluator,
        refs: tuple[Reference, ...],
        calls: tuple[FunctionCall, ...],
        span: tuple[int, int],
    ) -> None:
        self.source = source
        self.refs = refs
        self.calls = calls
        self._run = run
        self._offset, self._length = span

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def evaluate(self, variables: Mapping[str, object], *, clock: Clock | None = None) -> object:
        """The value of the expression for `variables` (the context roots, as plain data).

        `clock` gives `now()` (default: the real UTC time); it is read at most once.

        Raises:
            EvaluationError: the data does not fit (a missing key, a type mismatch...), with the
                position of the failing part; the message never contains data values.
        """
        return self.run_in(Scope(variables, clock))

    def run_in(self, scope: Scope) -> object:
        """Evaluate within an existing scope (templates share one `now` across their parts)."""
        try:
            return self._run(scope)
        except RecursionError:
            raise EvaluationError(
                "data too deeply nested", offset=self._offset, length=self._length
            ) from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise EvaluationError(
                f"evaluation failed ({type(exc).__name__})",
                offset=self._offset,
                length=self._length,
            ) from None


def compile_expression(source: str, *, roots: Collection[str] = ROOTS) -> Expression:
    """Compile one expression (the text of `match`, `when`... or of a `{{ }}` part).

    Raises:
        ExpressionError: it does not parse, uses something outside the language, names an
            unknown root or function, or misspells a severity; `offset`/`length` point at it.
    """
    return _compile_cached(source, frozenset(roots))


@lru_cache(maxsize=2048)
def _compile_cached(source: str, roots: frozenset[str]) -> Expression:
    return compile_part(source, roots, origin=source, base=0)


def compile_part(source: str, roots: frozenset[str], *, origin: str, base: int) -> Expression:
    """Compile `source`, which sits at `base` in the text `origin` (a template, or itself)."""
    parsed = parse(source, roots, base=base)
    compiler = Compiler(origin, parsed.positions, roots)
    run = compiler.compile(parsed.tree)
    return Expression(
        source,
        run,
        tuple(compiler.refs),
        tuple(compiler.calls),
        parsed.positions.span(parsed.tree),
    )
