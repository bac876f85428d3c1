"""The function registry: string, collection, conversion, severity, network and time helpers.

Every function is linear (or n log n for `sort`) in its input and refuses oversized input; each
can also be written as a filter, `x | f(a)` meaning `f(x, a)`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import cmp_to_key
from types import MappingProxyType

from soar.errors import EvaluationError
from soar.models.severity import Severity
from soar.playbook.expr import network, timefunctions
from soar.playbook.expr._re2 import Pattern, compile_pattern
from soar.playbook.expr.arguments import (
    expect_bool,
    expect_key,
    expect_list,
    expect_mapping,
    expect_str,
)
from soar.playbook.expr.limits import MAX_LIST, MAX_REGEX_INPUT, MAX_STRING, check_size
from soar.playbook.expr.operators import contains as _contains
from soar.playbook.expr.operators import less
from soar.playbook.expr.registry import Function, function
from soar.playbook.expr.text import kind, to_json, to_text

_INTEGER = re.compile(r"[+-]?\d{1,19}")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0", ""})


def _len(value: object) -> int:
    """The number of characters in a string, items in a list or keys in a mapping."""
    if isinstance(value, str | list | tuple | Mapping):
        return len(value)
    raise EvaluationError(f"argument must be a string, list or mapping, not {kind(value)}")


def lower(text: object) -> str:
    """The string in lower case."""
    return expect_str(text).lower()


def upper(text: object) -> str:
    """The string in upper case."""
    return expect_str(text).upper()


def strip(text: object, chars: object = None) -> str:
    """The string without leading and trailing whitespace (or without the given `chars`)."""
    return expect_str(text).strip(None if chars is None else expect_str(chars, "chars"))


def _prefixes(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(expect_str(item, what) for item in expect_list(value, what))
    return (expect_str(value, what),)


def startswith(text: object, prefix: object) -> bool:
    """True when the string starts with `prefix` (or with any of a list of prefixes)."""
    return expect_str(text).startswith(_prefixes(prefix, "prefix"))


def endswith(text: object, suffix: object) -> bool:
    """True when the string ends with `suffix` (or with any of a list of suffixes)."""
    return expect_str(text).endswith(_prefixes(suffix, "suffix"))


def contains(container: object, item: object) -> bool:
    """`item in container`: a substring, a list element or a mapping key."""
    return _contains(container, item)


def split(text: object, sep: object = None) -> list[str]:
    """The string cut at every `sep` (default: runs of whitespace)."""
    value = expect_str(text)
    if sep is None:
        parts = value.split()
    else:
        separator = expect_str(sep, "separator")
        if not separator:
            raise EvaluationError("separator must not be empty")
        if value.count(separator) >= MAX_LIST:
            raise EvaluationError(f"result would have more than {MAX_LIST} items")
        parts = value.split(separator)
    if len(parts) > MAX_LIST:
        raise EvaluationError(f"result would have more than {MAX_LIST} items")
    return parts


def join(items: object, sep: object = "") -> str:
    """The items as text (as templates write them), with `sep` between them."""
    separator = expect_str(sep, "separator")
    texts: list[str] = []
    total = 0
    for item in expect_list(items):
        text = to_text(item)
        total += len(text) + len(separator)
        if total > MAX_STRING + len(separator):
            raise EvaluationError(f"result would be longer than {MAX_STRING} characters")
        texts.append(text)
    return separator.join(texts)


def replace(text: object, old: object, new: object) -> str:
    """The string with every `old` replaced by `new`."""
    value, before, after = expect_str(text), expect_str(old, "old"), expect_str(new, "new")
    growth = len(after) - len(before)
    if growth > 0 and len(value) + value.count(before) * growth > MAX_STRING:
        raise EvaluationError(f"result would be longer than {MAX_STRING} characters")
    return value.replace(before, after)


def to_pattern(value: object) -> Pattern:
    """An RE2 regular expression, compiled once at load time."""
    if isinstance(value, str):
        try:
            return compile_pattern(expect_str(value, "pattern", limit=4096))
        except ValueError as exc:
            raise EvaluationError(str(exc)) from None
    raise EvaluationError(f"pattern must be a string literal, not {kind(value)}")


def _subject(text: object) -> str:
    return expect_str(text, "text", limit=MAX_REGEX_INPUT)


def regex_match(text: object, pattern: object) -> bool:
    """True when the whole string matches the RE2 `pattern`."""
    return (
        to_pattern(pattern).fullmatch(_subject(text)) is not None
        if isinstance(pattern, str)
        else _compiled(pattern).fullmatch(_subject(text)) is not None
    )


def regex_search(text: object, pattern: object) -> bool:
    """True when the RE2 `pattern` matches somewhere in the string."""
    return _compiled(pattern).search(_subject(text)) is not None


def regex_extract(text: object, pattern: object) -> str | None:
    """The first group the RE2 `pattern` matches (the whole match if it has none), or null."""
    compiled = _compiled(pattern)
    match = compiled.search(_subject(text))
    if match is None:
        return None
    return match.group(1 if compiled.groups else 0)


def _compiled(pattern: object) -> Pattern:
    if isinstance(pattern, str):
        return to_pattern(pattern)
    return pattern  # type: ignore[return-value]  # prepared at compile time


def default(value: object, fallback: object) -> object:
    """`fallback` when `value` is null (or, for a path, missing); otherwise `value`."""
    return fallback if value is None else value


def first(items: object) -> object:
    """The first item of a list (or character of a string); null when empty."""
    if isinstance(items, str):
        return items[:1] or None
    sequence = expect_list(items)
    return sequence[0] if sequence else None


def last(items: object) -> object:
    """The last item of a list (or character of a string); null when empty."""
    if isinstance(items, str):
        return items[-1:] or None
    sequence = expect_list(items)
    return sequence[-1] if sequence else None


def unique(items: object) -> list[object]:
    """The list without repeats, first kept; items must be strings, numbers or booleans."""
    seen: set[object] = set()
    result: list[object] = []
    for item in expect_list(items):
        if not isinstance(item, str | int | float) and item is not None:
            raise EvaluationError(f"works on strings, numbers and booleans, not {kind(item)}")
        marker = (type(item) is bool, str(item) if isinstance(item, str) else item)
        if marker not in seen:
            seen.add(marker)
            result.append(item)
    return result


def sort(items: object, key: object = None, reverse: object = False) -> list[object]:
    """The list in ascending order, as `<` orders it; `key` sorts mappings by that field."""
    sequence = list(expect_list(items))
    descending = expect_bool(reverse, "reverse")
    if key is not None:
        field = expect_key(key)
        sort_keys = [_field(item, field) for item in sequence]
    else:
        sort_keys = sequence
    order = sorted(range(len(sequence)), key=cmp_to_key(_comparer(sort_keys)), reverse=descending)
    return [sequence[i] for i in order]


def _comparer(sort_keys: list[object]) -> Callable[[int, int], int]:
    def compare(a: int, b: int) -> int:
        if less(sort_keys[a], sort_keys[b]):
            return -1
        return 1 if less(sort_keys[b], sort_keys[a]) else 0

    return compare


def _field(item: object, field: str) -> object:
    mapping = expect_mapping(item, "item")
    if field not in mapping:
        raise EvaluationError(f"an item has no key '{field}'")
    return mapping[field]


def _extreme(items: tuple[object, ...], *, largest: bool) -> object:
    candidates = expect_list(items[0]) if len(items) == 1 else items
    if not candidates:
        raise EvaluationError("the list is empty")
    best = candidates[0]
    for item in candidates[1:]:
        if less(best, item) if largest else less(item, best):
            best = item
    return best


def _min(items: object, *more: object) -> object:
    """The smallest of a list, or of two or more arguments."""
    return _extreme((items, *more), largest=False)


def _max(items: object, *more: object) -> object:
    """The largest of a list, or of two or more arguments."""
    return _extreme((items, *more), largest=True)


def _sum(items: object) -> int | float:
    """The total of a list of numbers."""
    total: int | float = 0
    for item in expect_list(items):
        if not isinstance(item, int | float) or isinstance(item, bool):
            raise EvaluationError(f"adds numbers only, not {kind(item)}")
        total += item
    return total


def keys(mapping: object) -> list[object]:
    """The keys of a mapping, in order."""
    return list(expect_mapping(mapping))


def values(mapping: object) -> list[object]:
    """The values of a mapping, in order."""
    return list(expect_mapping(mapping).values())


def _int(value: object) -> int:
    """An integer from a number (truncated), a boolean, or decimal text such as "42"."""
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EvaluationError("cannot make an integer from NaN or infinity")
        return int(value)
    if isinstance(value, str) and not isinstance(value, Severity):
        text = value.strip()
        if text.isascii() and _INTEGER.fullmatch(text):
            return int(text)
        raise EvaluationError("text is not a decimal integer")
    raise EvaluationError(f"cannot make an integer from {kind(value)}")


def _float(value: object) -> float:
    """A number from an integer, a number, or decimal text such as "2.5" or "1e3"."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and not isinstance(value, Severity):
        text = value.strip()
        if len(text) <= 64 and text.isascii() and _FLOAT.fullmatch(text):
            number = float(text)
            if math.isfinite(number):
                return number
        raise EvaluationError("text is not a finite decimal number")
    raise EvaluationError(f"cannot make a number from {kind(value)}")


def string(value: object) -> str:
    """The value as text, exactly as a template would insert it."""
    return to_text(value)


def _bool(value: object) -> bool:
    """True or false: text must read true/yes/on/1 or false/no/off/0/""; others by truthiness."""
    if isinstance(value, str) and not isinstance(value, Severity):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise EvaluationError("text is not true/false, yes/no, on/off or 1/0")
    if value is None or isinstance(value, bool | int | float | list | tuple | Mapping):
        return bool(value)
    raise EvaluationError(f"cannot make a boolean from {kind(value)}")


def severity(value: object) -> Severity:
    """A severity from its name (any case; `info`, `med`, `crit` accepted)."""
    try:
        return Severity.parse(value)
    except ValueError:
        if isinstance(value, str):
            raise EvaluationError(
                "text is not a severity (informational, low, medium, high, critical)"
            ) from None
        raise EvaluationError(f"a severity must be text, not {kind(value)}") from None


def sev_rank(value: object) -> int:
    """The rank of a severity: 0 for informational up to 4 for critical."""
    return severity(value).rank


def _json(value: object) -> str:
    """The value as compact JSON text."""
    text = to_json(value)
    check_size(text)
    return text


def _any(items: object) -> bool:
    """True when at least one item of the list is true (truthy)."""
    return any(expect_list(items))


def _all(items: object) -> bool:
    """True when every item of the list is true (truthy); true for an empty list."""
    return all(expect_list(items))


def pluck(items: object, key: object) -> list[object]:
    """The value of `key` in each mapping of a list (null where an item lacks it)."""
    field = expect_key(key)
    result: list[object] = []
    for item in expect_list(items):
        result.append(expect_mapping(item, "item").get(field))
    return result


def _functions() -> dict[str, Function]:
    t = timefunctions
    entries = [
        function(_len, name="len", signature="len(x)", example="len(alert.users) > 0"),
        function(lower, signature="lower(s)", example="alert.title | lower"),
        function(upper, signature="upper(s)", example="upper(alert.source)"),
        function(strip, signature="strip(s, chars=null)", example='strip("  x ")'),
        function(
            startswith,
            signature="startswith(s, prefix)",
            example='startswith(alert.users[0].name, ["adm-", "svc-"])',
        ),
        function(endswith, signature="endswith(s, suffix)", example='endswith(alert.title, "!")'),
        function(contains, signature="contains(x, item)", example='contains(alert.tags, "vip")'),
        function(split, signature="split(s, sep=null)", example='split("a,b", ",")'),
        function(join, signature='join(list, sep="")', example='join(alert.tags, ", ")'),
        function(
            replace, signature="replace(s, old, new)", example='replace(alert.title, "_", " ")'
        ),
        *(
            function(
                fn,
                signature=f"{fn.__name__}(s, pattern)",
                example=f'{fn.__name__}(alert.title, r"(?i)mimikatz")',
                literal=("pattern",),
                prepare={"pattern": to_pattern},
            )
            for fn in (regex_match, regex_search)
        ),
        function(
            regex_extract,
            signature="regex_extract(s, pattern)",
            example=r'regex_extract("user=bob", r"user=(\w+)")',
            literal=("pattern",),
            prepare={"pattern": to_pattern},
        ),
        function(
            default, signature="default(x, fallback)", example='alert.rule | default("no rule")'
        ),
        function(first, signature="first(list)", example="first(alert.hosts)"),
        function(last, signature="last(list)", example="last(alert.tags)"),
        function(unique, signature="unique(list)", example="unique(alert.tags)"),
        function(
            sort,
            signature="sort(list, key=null, reverse=false)",
            example='sort(alert.hosts, "name")',
        ),
        function(_min, name="min", signature="min(list) or min(a, b, ...)", example="min(3, 5)"),
        function(_max, name="max", signature="max(list) or max(a, b, ...)", example="max([3, 5])"),
        function(_sum, name="sum", signature="sum(list)", example="sum([1, 2, 3])"),
        function(keys, signature="keys(mapping)", example="keys(alert.raw)"),
        function(values, signature="values(mapping)", example="values({'a': 1})"),
        function(_int, name="int", signature="int(x)", example='int("42") + 1'),
        function(_float, name="float", signature="float(x)", example='float("2.5")'),
        function(string, signature="string(x)", example='"n=" + string(len(alert.hosts))'),
        function(_bool, name="bool", signature="bool(x)", example='bool("yes")'),
        function(severity, signature="severity(x)", example='severity("HIGH") > "medium"'),
        function(sev_rank, signature="sev_rank(x)", example="sev_rank(alert.severity) >= 3"),
        function(
            network.cidr_contains,
            signature="cidr_contains(ip, cidr)",
            example='cidr_contains(alert.ips[0].address, ["10.0.0.0/8", "192.168.0.0/16"])',
            prepare={"cidr": network.to_networks},
        ),
        function(
            network.is_private_ip,
            signature="is_private_ip(ip)",
            example="is_private_ip(alert.ips[0].address)",
        ),
        function(network.is_ip, signature="is_ip(x)", example='is_ip("10.1.2.3")'),
        function(
            t.now,
            signature="now()",
            example="now() - alert.time < duration('1h')",
            uses_clock=True,
            pure=False,
        ),
        function(
            t.timestamp, signature="timestamp(x)", example='timestamp("2024-05-01T12:00:00Z")'
        ),
        function(t.duration, signature="duration(s)", example='duration("1h30m")'),
        function(
            t.age,
            signature="age(t)",
            example='age(alert.time) > duration("15m")',
            uses_clock=True,
            pure=False,
        ),
        function(
            t.business_hours,
            signature='business_hours(t=now(), tz="UTC", start="09:00", end="17:00", '
            'days="mon-fri")',
            example='business_hours(tz="Europe/Paris")',
            uses_clock=True,
            pure=False,
            prepare={
                "tz": t.to_zone,
                "start": t.to_clock_time,
                "end": t.to_clock_time,
                "days": t.to_days,
            },
        ),
        function(
            t.on_call,
            signature="on_call(schedule, t=now())",
            example=(
                'on_call({"people": ["ana", "bo"], "start": "2024-01-01T09:00:00Z", '
                '"shift": "1d"}, "2024-01-02T10:00:00Z") == "bo"'
            ),
            uses_clock=True,
            pure=False,
        ),
        function(
            t.in_timezone,
            signature="in_timezone(t, tz)",
            example='in_timezone(alert.time, "America/New_York")',
            prepare={"tz": t.to_zone},
        ),
        function(
            t.weekday,
            signature='weekday(t, tz="UTC")',
            example='weekday(alert.time, "Europe/Paris") in ["sat", "sun"]',
            prepare={"tz": t.to_zone},
        ),
        function(
            t.hour,
            signature='hour(t, tz="UTC")',
            example='hour(alert.time, "Asia/Tokyo") < 6',
            prepare={"tz": t.to_zone},
        ),
        function(
            t.format_time,
            signature='format_time(t, fmt=null, tz="UTC")',
            example='format_time(alert.time, "%Y-%m-%d %H:%M", "Europe/Paris")',
            prepare={"tz": t.to_zone, "fmt": t.to_time_format},
        ),
        function(_json, name="json", signature="json(x)", example="json(alert.users)"),
        function(
            _any,
            name="any",
            signature="any(list)",
            example='any([alert.severity >= "high", false])',
        ),
        function(_all, name="all", signature="all(list)", example="all(pluck(alert.hosts, 'id'))"),
        function(pluck, signature="pluck(list, key)", example='pluck(alert.users, "name")'),
    ]
    return {entry.name: entry for entry in entries}


FUNCTIONS: Mapping[str, Function] = MappingProxyType(_functions())
"""Every function expressions can call, by name."""
