"""The shape of a registry function: its callable, arity, keyword names and compile-time hooks."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

Prepare = Callable[[object], object]


@dataclass(frozen=True, slots=True)
class Function:
    """A function expressions may call, as `name(x, ...)` or as a filter `x | name(...)`.

    `impl` receives the arguments as evaluated (and, when `uses_clock`, the evaluation's
    `now` callable first). It returns a value or raises `EvaluationError` without a position.
    `prepare` maps a parameter name to a converter applied at compile time when that argument
    is a literal (a bad literal is then a compile error); parameters in `literal` must be
    literals. A `pure` function called with literals only is run once, at compile time.
    """

    name: str
    impl: Callable[..., object]
    min_args: int
    max_args: int | None
    params: tuple[str, ...]
    signature: str
    doc: str
    example: str
    uses_clock: bool = False
    pure: bool = True
    literal: frozenset[str] = frozenset()
    prepare: Mapping[str, Prepare] = field(default_factory=lambda: MappingProxyType({}))

    def param_name(self, index: int) -> str | None:
        """The name of the `index`th positional parameter, None for variadic ones."""
        return self.params[index] if index < len(self.params) else None

    def arity_problem(self, positional: int, keywords: tuple[str, ...]) -> str | None:
        """Why this many positional arguments plus these keywords cannot be a call, if so."""
        for name in keywords:
            if name not in self.params:
                return f"{self.name}() has no parameter '{name}'"
            if self.params.index(name) < positional:
                return f"{self.name}() got '{name}' twice"
        if len(set(keywords)) != len(keywords):
            return f"{self.name}() got a keyword twice"
        given = positional + len(keywords)
        filled = set(self.params[:positional]) | set(keywords)
        missing = [p for p in self.params[: self.min_args] if p not in filled]
        too_many = self.max_args is not None and positional > self.max_args
        if missing or too_many or given < self.min_args:
            return f"{self.name}() takes {self._arity()}, {given} given"
        return None

    def _arity(self) -> str:
        def count(n: int) -> str:
            return f"{n} argument" + ("" if n == 1 else "s")

        if self.max_args is None:
            return f"at least {count(self.min_args)}"
        if self.min_args == self.max_args:
            return count(self.min_args)
        return f"{self.min_args} to {count(self.max_args)}"


def function(
    impl: Callable[..., object],
    *,
    signature: str,
    example: str,
    name: str | None = None,
    uses_clock: bool = False,
    pure: bool = True,
    literal: tuple[str, ...] = (),
    prepare: Mapping[str, Prepare] | None = None,
) -> Function:
    """Describe `impl` as a registry entry; arity and keyword names come from its signature."""
    parameters = list(inspect.signature(impl).parameters.values())
    if uses_clock:
        parameters = parameters[1:]
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    variadic = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    doc = inspect.cleandoc(impl.__doc__ or "").split("\n\n")[0].replace("\n", " ")
    return Function(
        name=name or impl.__name__.strip("_"),
        impl=impl,
        min_args=len(required),
        max_args=None if variadic else len(positional),
        params=tuple(p.name for p in positional),
        signature=signature,
        doc=doc,
        example=example,
        uses_clock=uses_clock,
        pure=pure,
        literal=frozenset(literal),
        prepare=MappingProxyType(dict(prepare or {})),
    )
