"""Caps that keep every expression cheap: source size, AST size, and the size of any value made."""

from __future__ import annotations

from soar.errors import EvaluationError

MAX_SOURCE = 4096
"""Characters in one expression (a template part counts on its own)."""
MAX_TEMPLATE = 65_536
"""Characters in one template string."""
MAX_NODES = 1000
"""AST expression nodes in one expression."""
MAX_DEPTH = 100
"""Nesting depth of one expression's AST."""
MAX_STRING = 1 << 20
"""Characters in any string an expression produces (1 MiB)."""
MAX_LIST = 10_000
"""Items in any list or mapping an expression produces or a function walks."""
MAX_INT = 1 << 63
"""Largest absolute integer an expression produces."""
MAX_REGEX_INPUT = 1 << 20
"""Characters a regex helper will search."""


def check_size(value: object) -> object:
    """Return `value`, or raise `EvaluationError` (no position) when it is over a cap."""
    if value is None or value is True or value is False:
        return value
    if type(value) is int:
        if -MAX_INT <= value <= MAX_INT:
            return value
        raise EvaluationError("integer result is larger than 2**63 in absolute value")
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise EvaluationError(f"string result is longer than {MAX_STRING} characters")
    elif isinstance(value, list | tuple | dict) and len(value) > MAX_LIST:
        raise EvaluationError(f"result has more than {MAX_LIST} items")
    return value
