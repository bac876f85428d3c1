"""The allow-list compiler: a parsed expression becomes nested closures over plain data, once.

Nothing here calls `eval`, `exec` or `getattr`: `a.b` and `a[k]` are item lookups in mappings
and lists, names are the context roots only, and calls go to the function registry only.
"""

from __future__ import annotations

import ast
import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from soar.errors import EvaluationError, ExpressionError
from soar.models.severity import Severity
from soar.playbook.expr import operators as ops
from soar.playbook.expr.functions import FUNCTIONS
from soar.playbook.expr.limits import MAX_DEPTH, MAX_INT, MAX_NODES, check_size
from soar.playbook.expr.paths import Accessor, dynamic_path, shorten, static_path
from soar.playbook.expr.references import FunctionCall, Reference
from soar.playbook.expr.registry import Function
from soar.playbook.expr.scope import MISSING, Evaluator, Scope, positioned
from soar.playbook.expr.syntax import SourceMap

_CONSTANT_NAMES: Mapping[str, object] = {"true": True, "false": False, "null": None}
_SEVERITY_NAMES = [s.value for s in Severity]
_BINARY: Mapping[type[ast.operator], tuple[str, ops.BinaryOperator]] = {
    ast.Add: ("+", ops.add),
    ast.Sub: ("-", ops.subtract),
    ast.Mult: ("*", ops.multiply),
    ast.Div: ("/", ops.divide),
    ast.FloorDiv: ("//", ops.floor_divide),
    ast.Mod: ("%", ops.modulo),
}
_REFUSED_OPERATORS: Mapping[type[ast.operator], str] = {
    ast.Pow: "'**' is not allowed (powers can grow without bound)",
    ast.BitAnd: "'&' is not allowed; use 'and'",
    ast.BitXor: "'^' is not allowed",
    ast.LShift: "'<<' is not allowed",
    ast.RShift: "'>>' is not allowed",
    ast.MatMult: "'@' is not allowed",
}
_COMPARISONS: Mapping[type[ast.cmpop], tuple[str, ops.Comparison]] = {
    ast.Eq: ("==", ops.equal),
    ast.NotEq: ("!=", ops.not_equal),
    ast.Lt: ("<", ops.less),
    ast.LtE: ("<=", ops.less_equal),
    ast.Gt: (">", ops.greater),
    ast.GtE: (">=", ops.greater_equal),
    ast.In: ("in", ops.member),
    ast.NotIn: ("not in", ops.not_member),
}
_REFUSED_NODES: Mapping[type[ast.AST], str] = {
    ast.ListComp: "comprehensions are not allowed; use pluck(), any() or all()",
    ast.SetComp: "comprehensions are not allowed; use pluck(), any() or all()",
    ast.DictComp: "comprehensions are not allowed; use pluck(), any() or all()",
    ast.GeneratorExp: "comprehensions are not allowed; use pluck(), any() or all()",
    ast.Lambda: "lambda is not allowed",
    ast.JoinedStr: "f-strings are not allowed; use a template or '+'",
    ast.FormattedValue: "f-strings are not allowed; use a template or '+'",
    ast.NamedExpr: "':=' is not allowed",
    ast.Starred: "'*' unpacking is not allowed",
    ast.Await: "'await' is not allowed",
    ast.Yield: "'yield' is not allowed",
    ast.YieldFrom: "'yield' is not allowed",
    ast.Set: "sets are not allowed; use a list [...]",
    ast.Slice: "a slice is only allowed inside [...]",
}


class Compiler:
    """Compiles one parsed expression; collects its references and calls on the way."""

    def __init__(self, origin: str, positions: SourceMap, roots: frozenset[str]) -> None:
        self._origin = origin
        self._positions = positions
        self._roots = roots
        self._constants: dict[Evaluator, object] = {}
        self.refs: list[Reference] = []
        self.calls: list[FunctionCall] = []
        self._nodes = 0
        self._depth = 0

    # -- helpers -------------------------------------------------------------------------

    def _span(self, node: ast.AST) -> tuple[int, int]:
        return self._positions.span(node)

    def _text(self, node: ast.AST) -> str:
        offset, length = self._span(node)
        return self._origin[offset : offset + length]

    def _error(self, message: str, node: ast.AST) -> ExpressionError:
        offset, length = self._span(node)
        return ExpressionError(message, offset=offset, length=length)

    def constant_of(self, run: Evaluator) -> object:
        return self._constants.get(run, MISSING)

    def _const(self, value: object) -> Evaluator:
        def constant(scope: Scope) -> object:
            return value

        self._constants[constant] = value
        return constant

    def compile(self, node: ast.expr) -> Evaluator:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise self._error(f"expression is too complex (more than {MAX_NODES} parts)", node)
        if self._depth >= MAX_DEPTH:
            raise self._error("expression too deeply nested", node)
        self._depth += 1
        try:
            return self._compile(node)
        finally:
            self._depth -= 1

    def _compile(self, node: ast.expr) -> Evaluator:
        match node:
            case ast.Constant():
                return self._constant(node)
            case ast.Name():
                return self._name(node)
            case ast.Attribute() | ast.Subscript():
                return self._path(node)
            case ast.BoolOp():
                return self._bool_op(node)
            case ast.UnaryOp():
                return self._unary_op(node)
            case ast.BinOp():
                return self._bin_op(node)
            case ast.Compare():
                return self._compare(node)
            case ast.IfExp():
                return self._if_exp(node)
            case ast.List() | ast.Tuple():
                return self._list(node)
            case ast.Dict():
                return self._dict(node)
            case ast.Call():
                return self._call_node(node)
        message = _REFUSED_NODES.get(type(node), f"{type(node).__name__} is not allowed")
        raise self._error(message, node)

    # -- atoms ---------------------------------------------------------------------------

    def _constant(self, node: ast.Constant) -> Evaluator:
        value = node.value
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return self._const(value)
        if isinstance(value, int):
            if abs(value) > MAX_INT:
                raise self._error("integer literal is larger than 2**63", node)
            return self._const(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self._error("number literal is too large", node)
            return self._const(value)
        if isinstance(value, bytes):
            raise self._error("byte strings are not allowed", node)
        if isinstance(value, complex):
            raise self._error("complex numbers are not allowed", node)
        raise self._error("'...' is not allowed", node)

    def _name(self, node: ast.Name) -> Evaluator:
        name = node.id
        if name in _CONSTANT_NAMES:
            return self._const(_CONSTANT_NAMES[name])
        if name.startswith("_"):
            raise self._error("names starting with '_' are not allowed", node)
        if name in self._roots:
            return self._path(node)
        if name in FUNCTIONS or name == "has":
            raise self._error(f"'{name}' is a function: call it, as in {name}(...)", node)
        raise self._error(
            f"unknown name '{name}'" + _suggest(name, sorted(self._roots), "expected one of"),
            node,
        )

    # -- paths ---------------------------------------------------------------------------

    def _is_path(self, node: ast.expr) -> bool:
        while isinstance(node, ast.Attribute | ast.Subscript):
            node = node.value
        return isinstance(node, ast.Name) and node.id in self._roots

    def _path(self, node: ast.expr, *, soft: bool = False) -> Evaluator:
        chain: list[ast.Attribute | ast.Subscript] = []
        current = node
        while isinstance(current, ast.Attribute | ast.Subscript):
            chain.append(current)
            current = current.value
        chain.reverse()
        self._nodes += len(chain)
        if self._nodes > MAX_NODES:
            raise self._error(f"expression is too complex (more than {MAX_NODES} parts)", node)
        start, _ = self._span(node)
        rooted = isinstance(current, ast.Name) and current.id in self._roots
        components: list[str | int | None] = []
        if rooted:
            assert isinstance(current, ast.Name)  # noqa: S101  # narrowed by `rooted`
            base = self._root(current.id, current, soft=soft)
            components.append(current.id)
        else:
            base = self.compile(current)
        prefix_end = sum(self._span(current))
        accessors: list[Accessor] = []
        for link in chain:
            link_offset, link_length = self._span(link)
            end = link_offset + link_length
            prefix = self._origin[start:prefix_end]
            span = (start, end - start)
            if isinstance(link, ast.Attribute):
                key = link.attr
                if key.startswith("_"):
                    raise self._error("keys starting with '_' are not allowed", link)
                accessors.append(Accessor("key", key, repr(key), prefix, span))
                components.append(key)
            elif isinstance(link.slice, ast.Slice):
                parts = tuple(
                    None if part is None else self.compile(part)
                    for part in (link.slice.lower, link.slice.upper, link.slice.step)
                )
                label = f"[{shorten(self._text(link.slice))}]"
                accessors.append(Accessor("slice", None, label, prefix, span, parts))
                components.append(None)
            else:
                key_fn = self.compile(link.slice)
                value = self.constant_of(key_fn)
                if value is MISSING:
                    label = f"[{shorten(self._text(link.slice))}]"
                    accessors.append(Accessor("dynamic", key_fn, label, prefix, span))
                    components.append(None)
                elif isinstance(value, str):
                    if value.startswith("_"):
                        raise self._error("keys starting with '_' are not allowed", link.slice)
                    accessors.append(Accessor("key", value, repr(value), prefix, span))
                    components.append(value)
                elif isinstance(value, int) and not isinstance(value, bool):
                    accessors.append(Accessor("key", value, str(value), prefix, span))
                    components.append(value)
                else:
                    raise self._error("a key must be a string or an integer", link.slice)
            prefix_end = end
        if rooted:
            self.refs.append(Reference(tuple(components), start, prefix_end - start, soft))
        if not accessors:
            return base
        if all(a.step == "key" for a in accessors):
            return static_path(base, accessors, soft=soft)
        return dynamic_path(base, accessors, soft=soft)

    def _root(self, name: str, node: ast.Name, *, soft: bool) -> Evaluator:
        offset, length = self._span(node)

        def root(scope: Scope) -> object:
            try:
                return scope.variables[name]
            except KeyError:
                if soft:
                    return MISSING
                raise EvaluationError(
                    f"'{name}' is not available here", offset=offset, length=length
                ) from None

        return root

    # -- operators -----------------------------------------------------------------------

    def _bool_op(self, node: ast.BoolOp) -> Evaluator:
        operands = [self.compile(value) for value in node.values]
        if isinstance(node.op, ast.And):

            def both(scope: Scope) -> object:
                for operand in operands[:-1]:
                    value = operand(scope)
                    if not value:
                        return value
                return operands[-1](scope)

            return both

        def either(scope: Scope) -> object:
            for operand in operands[:-1]:
                value = operand(scope)
                if value:
                    return value
            return operands[-1](scope)

        return either

    def _unary_op(self, node: ast.UnaryOp) -> Evaluator:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            constant = self.constant_of(operand)
            if constant is not MISSING:
                return self._const(not constant)

            def negation(scope: Scope) -> object:
                return not operand(scope)

            return negation
        if isinstance(node.op, ast.Invert):
            raise self._error("'~' is not allowed", node)
        operation = ops.negate if isinstance(node.op, ast.USub) else ops.plus
        return self._apply(node, operation, operand)

    def _apply(
        self, node: ast.expr, operation: Callable[[object], object], operand: Evaluator
    ) -> Evaluator:
        offset, length = self._span(node)
        constant = self.constant_of(operand)
        if constant is not MISSING:
            try:
                return self._const(operation(constant))
            except EvaluationError as exc:
                raise self._error(exc.message, node) from None

        def unary(scope: Scope) -> object:
            value = operand(scope)
            try:
                return operation(value)
            except EvaluationError as exc:
                raise positioned(exc, offset, length) from None

        return unary

    def _bin_op(self, node: ast.BinOp) -> Evaluator:
        if isinstance(node.op, ast.BitOr):
            return self._filter(node)
        refused = _REFUSED_OPERATORS.get(type(node.op))
        if refused is not None:
            raise self._error(refused, node)
        _, operation = _BINARY[type(node.op)]
        left, right = self.compile(node.left), self.compile(node.right)
        offset, length = self._span(node)
        left_constant, right_constant = self.constant_of(left), self.constant_of(right)
        if all(
            c is not MISSING and not isinstance(c, list) for c in (left_constant, right_constant)
        ):
            try:
                return self._const(operation(left_constant, right_constant))
            except EvaluationError as exc:
                raise self._error(exc.message, node) from None

        def binary(scope: Scope) -> object:
            a = left(scope)
            b = right(scope)
            try:
                return operation(a, b)
            except EvaluationError as exc:
                raise positioned(exc, offset, length) from None

        return binary

    def _compare(self, node: ast.Compare) -> Evaluator:
        nodes = [node.left, *node.comparators]
        operands = [self.compile(n) for n in nodes]
        tests: list[tuple[ops.Comparison, int, int]] = []
        for index, op in enumerate(node.ops):
            left, right = nodes[index], nodes[index + 1]
            if isinstance(op, ast.Is | ast.IsNot):
                word = "==" if isinstance(op, ast.Is) else "!="
                raise self._error(f"'is' is not allowed; use '{word}' (e.g. x {word} null)", node)
            symbol, comparison = _COMPARISONS[type(op)]
            if self._is_severity(left) or self._is_severity(right):
                self._check_severity_literals(left, right, symbol)
                if symbol not in ("in", "not in"):
                    comparison = ops.severity_comparison(comparison, symbol)
                    for position in (index, index + 1):
                        value = self.constant_of(operands[position])
                        if isinstance(value, str):
                            operands[position] = self._const(Severity.parse(value))
            start = self._span(left)[0]
            end = sum(self._span(right))
            tests.append((comparison, start, end - start))
        if len(tests) == 1:
            (comparison, offset, length), (first, second) = tests[0], operands
            if comparison is ops.equal or comparison is ops.not_equal:
                return _equality(first, second, comparison is ops.equal)

            def compare(scope: Scope) -> object:
                a = first(scope)
                b = second(scope)
                try:
                    return comparison(a, b)
                except EvaluationError as exc:
                    raise positioned(exc, offset, length) from None

            return compare

        def chain(scope: Scope) -> object:
            a = operands[0](scope)
            for (comparison, offset, length), operand in zip(tests, operands[1:], strict=True):
                b = operand(scope)
                try:
                    if not comparison(a, b):
                        return False
                except EvaluationError as exc:
                    raise positioned(exc, offset, length) from None
                a = b
            return True

        return chain

    def _is_severity(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Attribute):
            return node.attr == "severity" and self._is_path(node)
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            return node.slice.value == "severity" and self._is_path(node)
        return False

    def _check_severity_literals(self, left: ast.expr, right: ast.expr, symbol: str) -> None:
        literals: list[ast.expr] = [left, right]
        if symbol in ("in", "not in") and isinstance(right, ast.List | ast.Tuple):
            literals = list(right.elts)
        elif symbol in ("in", "not in"):
            return
        for literal in literals:
            if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
                try:
                    Severity.parse(literal.value)
                except ValueError:
                    word = literal.value.strip().lower()
                    raise self._error(
                        f"{literal.value!r} is not a severity"
                        + _suggest(word, _SEVERITY_NAMES, "expected one of"),
                        literal,
                    ) from None

    def _if_exp(self, node: ast.IfExp) -> Evaluator:
        test, body, orelse = (
            self.compile(node.test),
            self.compile(node.body),
            self.compile(node.orelse),
        )

        def choose(scope: Scope) -> object:
            return body(scope) if test(scope) else orelse(scope)

        return choose

    # -- collections ---------------------------------------------------------------------

    def _list(self, node: ast.List | ast.Tuple) -> Evaluator:
        items = [self.compile(element) for element in node.elts]
        constants = [self.constant_of(item) for item in items]
        if all(c is not MISSING and not isinstance(c, list) for c in constants):
            values = list(constants)

            def fresh(scope: Scope) -> object:
                return list(values)

            self._constants[fresh] = values
            return fresh

        def build(scope: Scope) -> object:
            return [item(scope) for item in items]

        return build

    def _dict(self, node: ast.Dict) -> Evaluator:
        entries: list[tuple[str, Evaluator]] = []
        seen: set[str] = set()
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                raise self._error("'**' unpacking is not allowed", value)
            if not isinstance(key, ast.Constant) or not isinstance(key.value, str):
                raise self._error("mapping keys must be string literals", key)
            if key.value in seen:
                raise self._error(f"key {key.value!r} appears twice", key)
            seen.add(key.value)
            entries.append((key.value, self.compile(value)))

        def build(scope: Scope) -> object:
            return {name: value(scope) for name, value in entries}

        return build

    # -- calls ---------------------------------------------------------------------------

    def _call_node(self, node: ast.Call) -> Evaluator:
        func = node.func
        if isinstance(func, ast.Attribute):
            raise self._error(
                "method calls are not allowed: write lower(x) or x | lower, not x.lower()", node
            )
        if not isinstance(func, ast.Name):
            raise self._error("only functions from the registry can be called", node)
        return self._call(func, list(node.args), list(node.keywords), node)

    def _filter(self, node: ast.BinOp) -> Evaluator:
        right = node.right
        if isinstance(right, ast.Name):
            return self._call(right, [node.left], [], node)
        if isinstance(right, ast.Call) and isinstance(right.func, ast.Name):
            return self._call(right.func, [node.left, *right.args], list(right.keywords), node)
        raise self._error(
            "the right side of '|' must be a function, e.g. x | lower or x | default('-')", right
        )

    def _call(
        self, name_node: ast.Name, args: list[ast.expr], keywords: list[ast.keyword], node: ast.expr
    ) -> Evaluator:
        name = name_node.id
        if name.startswith("_"):
            raise self._error("names starting with '_' are not allowed", name_node)
        for arg in args:
            if isinstance(arg, ast.Starred):
                raise self._error("'*' unpacking is not allowed", arg)
        for keyword in keywords:
            if keyword.arg is None:
                raise self._error("'**' unpacking is not allowed", keyword.value)
        name_offset, name_length = self._span(name_node)
        if name == "has":
            if len(args) != 1 or keywords or not self._is_path(args[0]):
                raise self._error("has() takes one path, such as has(alert.raw.user)", node)
            self.calls.append(FunctionCall(name, name_offset, name_length))
            exists = self._path(args[0], soft=True)

            def has(scope: Scope) -> object:
                return exists(scope) is not MISSING

            return has
        entry = FUNCTIONS.get(name)
        if entry is None:
            if name in self._roots:
                raise self._error(f"'{name}' is not a function", name_node)
            raise self._error(
                f"unknown function '{name}'" + _suggest(name, [*FUNCTIONS, "has"], None), name_node
            )
        problem = entry.arity_problem(len(args), tuple(k.arg or "" for k in keywords))
        if problem is not None:
            raise self._error(problem, node)
        self.calls.append(FunctionCall(name, name_offset, name_length))
        if name == "default" and args and self._is_path(args[0]):
            fallback = args[1] if len(args) > 1 else keywords[0].value
            return self._default(args[0], fallback)
        positional = [self._argument(entry, entry.param_name(i), arg) for i, arg in enumerate(args)]
        named = {k.arg or "": self._argument(entry, k.arg, k.value) for k in keywords}
        return self._invoke(entry, positional, named, node)

    def _default(self, path: ast.expr, fallback_node: ast.expr) -> Evaluator:
        value_of = self._path(path, soft=True)
        fallback = self.compile(fallback_node)

        def default(scope: Scope) -> object:
            value = value_of(scope)
            return fallback(scope) if value is None or value is MISSING else value

        return default

    def _argument(self, entry: Function, param: str | None, node: ast.expr) -> Evaluator:
        run = self.compile(node)
        if param is None:
            return run
        value = self.constant_of(run)
        if param in entry.literal and value is MISSING:
            raise self._error(f"the {param} of {entry.name}() must be a literal string", node)
        prepare = entry.prepare.get(param)
        if prepare is not None and value is not MISSING:
            try:
                return self._const(prepare(value))
            except EvaluationError as exc:
                raise self._error(f"{entry.name}(): {exc.message}", node) from None
        return run

    def _invoke(
        self,
        entry: Function,
        positional: Sequence[Evaluator],
        named: Mapping[str, Evaluator],
        node: ast.expr,
    ) -> Evaluator:
        offset, length = self._span(node)
        impl, prefix = entry.impl, f"{entry.name}(): "
        constants = [self.constant_of(run) for run in [*positional, *named.values()]]
        if entry.pure and all(c is not MISSING for c in constants):
            args = [self.constant_of(run) for run in positional]
            kwargs = {name: self.constant_of(run) for name, run in named.items()}
            try:
                result = check_size(impl(*args, **kwargs))
            except EvaluationError as exc:
                raise self._error(prefix + exc.message, node) from None
            if result is None or isinstance(result, str | int | float | datetime | timedelta):
                return self._const(result)
        clock = entry.uses_clock
        if not clock and not named and len(positional) == 1:
            (only,) = positional

            def call_one(scope: Scope) -> object:
                value = only(scope)
                try:
                    return check_size(impl(value))
                except EvaluationError as exc:
                    raise positioned(exc, offset, length, prefix) from None

            return call_one

        def call(scope: Scope) -> object:
            args = [run(scope) for run in positional]
            kwargs = {name: run(scope) for name, run in named.items()}
            try:
                if clock:
                    return check_size(impl(scope.now, *args, **kwargs))
                return check_size(impl(*args, **kwargs))
            except EvaluationError as exc:
                raise positioned(exc, offset, length, prefix) from None

        return call


def _equality(first: Evaluator, second: Evaluator, equal: bool) -> Evaluator:
    if equal:

        def same(scope: Scope) -> object:
            return first(scope) == second(scope)

        return same

    def different(scope: Scope) -> object:
        return first(scope) != second(scope)

    return different


def _suggest(word: str, candidates: Sequence[str], fallback: str | None) -> str:
    close = difflib.get_close_matches(word, candidates, n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    if fallback is not None:
        return f" ({fallback} {', '.join(candidates)})"
    return ""
