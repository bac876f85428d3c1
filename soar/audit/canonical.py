"""RFC 8785 JSON Canonicalization Scheme: the one byte string a JSON value hashes as.

Most audit bodies hold only strings, small integers, booleans and ASCII keys; for those orjson
with sorted keys writes exactly the RFC 8785 bytes (its string escaping is the RFC's, which a
property test checks), many times faster than Python. Anything else — floats, non-ASCII keys —
takes the exact, slower path below.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Final

import orjson

SAFE_INTEGER: Final = 2**53
"""Integers at or beyond this magnitude have no exact JSON number in every reader."""

_escape = json.encoder.encode_basestring


def canonical(value: object) -> bytes:
    """The RFC 8785 form of a JSON value (dict with str keys, list, tuple, str, int, float,
    bool, None).

    Raises:
        ValueError: NaN or an infinity, an integer of magnitude 2**53 or more, a non-str key,
            or a value of another type.
    """
    if is_plain(value):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return _encode(value).encode()


def is_plain(value: object) -> bool:
    """No floats, no big integers, only ASCII keys: orjson's sorted output is canonical.
    Iterative, with scalars checked in line: it runs on every audit body. A caller that built
    a body of ASCII keys and safe scalars itself may check only the values it took from
    elsewhere, then write the body with `plain_canonical`."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            for key, inner in item.items():  # type: ignore[attr-defined]
                if type(key) is not str or not key.isascii():
                    return False
                inner_kind = type(inner)
                if inner_kind is str or inner is None or inner_kind is bool:
                    continue
                if inner_kind is int:
                    if not -SAFE_INTEGER < inner < SAFE_INTEGER:
                        return False
                    continue
                pending.append(inner)
        elif kind is list or kind is tuple:
            pending.extend(item)  # type: ignore[arg-type]
        elif kind is int:
            if not -SAFE_INTEGER < item < SAFE_INTEGER:  # type: ignore[operator]
                return False
        elif not (kind is str or item is None or kind is bool):
            return False
    return True


def plain_canonical(value: object) -> bytes:
    """The RFC 8785 form of a value the caller knows `is_plain` holds for."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _encode(value: object) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        if -SAFE_INTEGER < value < SAFE_INTEGER:
            return str(value)
        if abs(value) < 2**1024 and number(float(value)) == str(value):
            return str(value)  # the text a double prints as: what a reader parsed, unchanged
        raise ValueError(f"integer {value} is beyond what JSON numbers hold exactly")
    if isinstance(value, float):
        return number(value)
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise ValueError(f"object key {key!r} is not a string")
        members = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(f"{_string(k)}:{_encode(v)}" for k, v in members) + "}"
    if isinstance(value, Sequence):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    raise ValueError(f"a {type(value).__name__} is not a JSON value")


def _string(text: str) -> str:
    # the standard library's escaping is RFC 8785's: `"`, `\`, \b \f \n \r \t, other controls
    # as \u00xx in lowercase hex, everything else (non-ASCII too) as is
    return str(_escape(text))


def number(value: float) -> str:
    """ECMAScript's Number.prototype.toString, as RFC 8785 §3.2.2.3 requires.

    Raises:
        ValueError: NaN or an infinity.
    """
    if not math.isfinite(value):
        raise ValueError(f"{value} has no JSON form")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    digits, exponent = _shortest(abs(value))
    k = len(digits)
    n = exponent + k  # the value is 0.digits x 10^n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    power = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{mantissa}e{'+' if power > 0 else '-'}{abs(power)}"


def _shortest(value: float) -> tuple[str, int]:
    """The shortest round-tripping digits of `value` and their power of ten: value =
    int(digits) x 10^exponent (Python's repr finds the same digits as ECMAScript)."""
    text = repr(value)
    mantissa, _, exp = text.partition("e")
    exponent = int(exp) if exp else 0
    whole, _, fraction = mantissa.partition(".")
    if fraction == "0":
        fraction = ""
    digits = (whole + fraction).lstrip("0")
    exponent -= len(fraction)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    return stripped or "0", exponent
