"""W3C trace context in Kafka message headers, so an alert's trace starts where the detection
system published it and follows it through soar (https://www.w3.org/TR/trace-context/).

Headers are aiokafka's: a sequence of `(name, value)` pairs, names `str`, values `bytes`.
Reading is tolerant of anything (other tools write headers too); it never raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from soar.telemetry.tracing import TraceRef

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"

_MAX_TRACESTATE: Final = 512  # the spec asks to pass at least 512 characters; we pass no more
_MAX_MEMBERS: Final = 32
_MEMBER: Final = re.compile(
    r"([a-z0-9][a-z0-9_\-*/]{0,255}(?:@[a-z0-9][a-z0-9_\-*/]{0,13})?)"  # key, or tenant@system
    r"=([\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e])"  # value
)
_OWS: Final = " \t"


def inject(
    headers: Iterable[tuple[str, bytes]] | None, ref: TraceRef, tracestate: str | None = None
) -> list[tuple[str, bytes]]:
    """`headers` (not changed) plus `traceparent` naming `ref` and `tracestate` when one is
    given and valid; any earlier `traceparent` or `tracestate`, in whatever case, is dropped,
    so pass on the `tracestate` you read (`extract_state`) to keep it."""
    kept = [
        (key, value) for key, value in headers or () if _name(key) not in (TRACEPARENT, TRACESTATE)
    ]
    kept.append((TRACEPARENT, ref.traceparent().encode("ascii")))
    state = _valid_state(tracestate) if tracestate else None
    if state is not None:
        kept.append((TRACESTATE, state.encode("ascii")))
    return kept


def extract(headers: object) -> TraceRef | None:
    """The span the headers' `traceparent` names, or None: missing, invalid, or present more
    than once (the W3C test suite expects a duplicated `traceparent` to restart the trace).
    Names match in any case; values may be `bytes` or `str`."""
    found = _values(headers, TRACEPARENT)
    if found is None or len(found) != 1:
        return None
    return TraceRef.parse(found[0])


def extract_state(headers: object) -> str | None:
    """The `tracestate` to pass on with the trace `extract` found, or None: no valid
    `traceparent` (then the spec forbids reading it), none given, or not a valid list (at most
    32 members, distinct keys, 512 characters in all). Several `tracestate` headers are joined
    in order, as HTTP joins repeated fields; empty members are dropped."""
    if extract(headers) is None:
        return None
    found = _values(headers, TRACESTATE)
    if not found or any(value is None for value in found):
        return None
    return _valid_state(",".join(value for value in found if value is not None))


def _valid_state(text: str) -> str | None:
    """`text` as a tidy `tracestate` list, or None when it is not a valid one."""
    if len(text) > _MAX_TRACESTATE or not text.isascii():
        return None
    members = [member.strip(_OWS) for member in text.split(",")]
    members = [member for member in members if member]
    keys: set[str] = set()
    for member in members:
        match = _MEMBER.fullmatch(member)
        if match is None or match.group(1) in keys:
            return None
        keys.add(match.group(1))
    if not members or len(members) > _MAX_MEMBERS:
        return None
    return ",".join(members)


def _values(headers: object, wanted: str) -> list[str | None] | None:
    """The values of the headers named `wanted` (None for one that is not ASCII text), or
    None when `headers` is not a collection of pairs at all."""
    if headers is None or isinstance(headers, str | bytes | bytearray):
        return None
    try:
        items = iter(headers)  # type: ignore[call-overload]
    except TypeError:
        return None
    values: list[str | None] = []
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            continue
        key, value = item
        if isinstance(key, str | bytes | bytearray) and _name(key) == wanted:
            values.append(_text(value))
    return values


def _name(key: str | bytes | bytearray) -> str:
    if isinstance(key, str):
        return key.lower()
    return bytes(key).decode("latin-1").lower()


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value if value.isascii() else None
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    return None


__all__ = ["TRACEPARENT", "TRACESTATE", "extract", "extract_state", "inject"]
