"""What `+ - * / // % < in ...` do on plain data: explicit types, size caps, no data in messages.

Every function here either returns a value or raises `EvaluationError` without a position; the
compiled closure that called it adds the position of the operator.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import cast

from soar.errors import EvaluationError
from soar.models.severity import Severity
from soar.playbook.expr.limits import MAX_INT, MAX_LIST, MAX_STRING
from soar.playbook.expr.text import kind

BinaryOperator = Callable[[object, object], object]
Comparison = Callable[[object, object], bool]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: int | float) -> int | float:
    if isinstance(value, int):
        if -MAX_INT <= value <= MAX_INT:
            return value
        raise EvaluationError("integer result is larger than 2**63 in absolute value")
    return value


def add(left: object, right: object) -> object:
    """Numbers add; strings and lists concatenate (capped); a time plus a duration is a time."""
    if _is_number(left) and _is_number(right):
        return _number(left + right)  # type: ignore[operator]
    if isinstance(left, str) and isinstance(right, str):
        if len(left) + len(right) > MAX_STRING:
            raise EvaluationError(f"string would be longer than {MAX_STRING} characters")
        return str(left) + str(right)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        if len(left) + len(right) > MAX_LIST:
            raise EvaluationError(f"list would have more than {MAX_LIST} items")
        return [*left, *right]
    try:
        if isinstance(left, datetime) and isinstance(right, timedelta):
            return left + right
        if isinstance(left, timedelta) and isinstance(right, datetime | timedelta):
            return left + right
    except OverflowError:
        raise EvaluationError("time out of range") from None
    raise EvaluationError(f"cannot add {kind(left)} and {kind(right)}")


def subtract(left: object, right: object) -> object:
    """Numbers; time minus duration (a time); time minus time, duration minus duration."""
    if _is_number(left) and _is_number(right):
        return _number(left - right)  # type: ignore[operator]
    try:
        if isinstance(left, datetime) and isinstance(right, timedelta):
            return left - right
        if isinstance(left, datetime) and isinstance(right, datetime):
            if (left.tzinfo is None) != (right.tzinfo is None):
                raise EvaluationError("cannot subtract a time with a zone and one without")
            return left - right
        if isinstance(left, timedelta) and isinstance(right, timedelta):
            return left - right
    except OverflowError:
        raise EvaluationError("time out of range") from None
    raise EvaluationError(f"cannot subtract {kind(right)} from {kind(left)}")


def multiply(left: object, right: object) -> object:
    """Numbers only (never string or list repetition); a duration times a number."""
    if _is_number(left) and _is_number(right):
        return _number(left * right)  # type: ignore[operator]
    try:
        if isinstance(left, timedelta) and _is_number(right):
            return left * right  # type: ignore[operator]
        if _is_number(left) and isinstance(right, timedelta):
            return right * left  # type: ignore[operator]
    except (OverflowError, ValueError):
        raise EvaluationError("duration out of range") from None
    raise EvaluationError(f"cannot multiply {kind(left)} by {kind(right)}")


def divide(left: object, right: object) -> object:
    """`/`: a number; a duration divided by a number or by a duration."""
    return _division(left, right, "/")


def floor_divide(left: object, right: object) -> object:
    """`//`: numbers or durations."""
    return _division(left, right, "//")


def modulo(left: object, right: object) -> object:
    """`%`: numbers or durations (never string formatting)."""
    return _division(left, right, "%")


def _division(left: object, right: object, symbol: str) -> object:
    numbers = _is_number(left) and _is_number(right)
    durations = isinstance(left, timedelta) and (
        isinstance(right, timedelta) or (symbol != "%" and _is_number(right))
    )
    if not (numbers or durations):
        raise EvaluationError(f"cannot use '{symbol}' on {kind(left)} and {kind(right)}")
    try:
        if symbol == "/":
            result = left / right  # type: ignore[operator]
        elif symbol == "//":
            result = left // right  # type: ignore[operator]
        else:
            result = left % right  # type: ignore[operator]
    except ZeroDivisionError:
        raise EvaluationError("division by zero") from None
    except (OverflowError, ValueError):
        raise EvaluationError("result out of range") from None
    if isinstance(result, int | float) and not isinstance(result, bool):
        return _number(result)
    return result


def negate(value: object) -> object:
    """Unary minus on a number or a duration."""
    if _is_number(value):
        return _number(-value)  # type: ignore[operator]
    if isinstance(value, timedelta):
        try:
            return -value
        except OverflowError:
            raise EvaluationError("duration out of range") from None
    raise EvaluationError(f"cannot negate {kind(value)}")


def plus(value: object) -> object:
    """Unary plus: numbers and durations only."""
    if _is_number(value) or isinstance(value, timedelta):
        return value
    raise EvaluationError(f"cannot apply unary '+' to {kind(value)}")


def equal(left: object, right: object) -> bool:
    """Python equality; a severity equals any spelling of its name."""
    return bool(left == right)


def not_equal(left: object, right: object) -> bool:
    return bool(left != right)


def _rank(value: object, side: str) -> int:
    try:
        return Severity.parse(value).rank
    except ValueError:
        raise EvaluationError(f"{side} side is {kind(value)}, not a severity name") from None


def _ordering(symbol: str, test: Callable[[object, object], bool]) -> Comparison:
    def compare(left: object, right: object) -> bool:
        left_type, right_type = type(left), type(right)
        if (left_type is str and right_type is str) or (
            (left_type is int or left_type is float) and (right_type is int or right_type is float)
        ):
            return test(left, right)
        if isinstance(left, Severity) or isinstance(right, Severity):
            return test(_rank(left, "left"), _rank(right, "right"))
        comparable = (
            (_is_number(left) and _is_number(right))
            or (isinstance(left, str) and isinstance(right, str))
            or (isinstance(left, timedelta) and isinstance(right, timedelta))
            or (isinstance(left, datetime) and isinstance(right, datetime))
        )
        if not comparable:
            raise EvaluationError(f"cannot compare {kind(left)} {symbol} {kind(right)}")
        try:
            return test(left, right)
        except TypeError:
            raise EvaluationError("cannot compare a time with a zone and one without") from None

    return compare


less = _ordering("<", cast(Comparison, operator.lt))
less_equal = _ordering("<=", cast(Comparison, operator.le))
greater = _ordering(">", cast(Comparison, operator.gt))
greater_equal = _ordering(">=", cast(Comparison, operator.ge))


def severity_comparison(compare: Comparison, symbol: str) -> Comparison:
    """`compare` with both sides read as severities first (for paths ending in `severity`).

    Ordering needs both sides to be severity names; `==`/`!=` fall back to plain equality
    when one side is not one.
    """

    def by_rank(left: object, right: object) -> bool:
        if type(left) is Severity and type(right) is Severity:
            return compare(left, right)
        if symbol in ("==", "!="):
            try:
                same = Severity.parse(left) == Severity.parse(right)
            except ValueError:
                same = left == right
            return same if symbol == "==" else not same
        return compare(_as_severity(left, "left"), _as_severity(right, "right"))

    return by_rank


def _as_severity(value: object, side: str) -> Severity:
    try:
        return Severity.parse(value)
    except ValueError:
        raise EvaluationError(f"{side} side is {kind(value)}, not a severity name") from None


def contains(container: object, item: object) -> bool:
    """`item in container`: a substring, a list element, or a mapping key."""
    if isinstance(container, str):
        if not isinstance(item, str):
            raise EvaluationError(f"cannot look for {kind(item)} in a string")
        return item in container
    if isinstance(container, list | tuple):
        return item in container
    if isinstance(container, Mapping):
        if not isinstance(item, str | int | float | bool) and item is not None:
            raise EvaluationError(f"a mapping key cannot be {kind(item)}")
        return item in container
    raise EvaluationError(f"cannot look inside {kind(container)}")


def member(item: object, container: object) -> bool:
    """`item in container`, operands in source order."""
    return contains(container, item)


def not_member(item: object, container: object) -> bool:
    """`item not in container`, operands in source order."""
    return not contains(container, item)
