"""W3C trace context in Kafka message headers, so an alert's trace starts where the detection
system published it and follows it through soar (https://www.w3.org/TR/trace-context/)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from soar.telemetry.tracing import TraceRef

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
_MAX_TRACESTATE: Final = 512  # the spec lets us drop a longer one


def inject(
    headers: Iterable[tuple[str, bytes]], ref: TraceRef, tracestate: str | None = None
) -> list[tuple[str, bytes]]:
    """`headers` with `traceparent` (and `tracestate`, when given) set to `ref`'s; any earlier
    ones, in whatever case, are replaced."""
    kept = [(k, v) for k, v in headers if k.lower() not in (TRACEPARENT, TRACESTATE)]
    kept.append((TRACEPARENT, ref.traceparent().encode()))
    if tracestate:
        kept.append((TRACESTATE, tracestate.encode()))
    return kept


def extract(headers: object) -> TraceRef | None:
    """The span named by the headers' `traceparent`, or None: missing, invalid, or given more
    than once (the spec says to ignore an ambiguous one). Never raises, whatever it is given."""
    try:
        found = [
            value
            for key, value in headers  # type: ignore[attr-defined]
            if isinstance(key, str | bytes) and _name(key) == TRACEPARENT
        ]
    except (TypeError, ValueError):
        return None
    if len(found) != 1:
        return None
    value = found[0]
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    return TraceRef.parse(value) if isinstance(value, str) else None


def extract_state(headers: Iterable[tuple[str, bytes]]) -> str | None:
    """The `tracestate` header, when one short enough is present."""
    for key, value in headers:
        if _name(key) == TRACESTATE and len(value) <= _MAX_TRACESTATE:
            try:
                return value.decode("ascii")
            except UnicodeDecodeError:
                return None
    return None


def _name(key: str | bytes) -> str:
    if isinstance(key, bytes):
        return key.decode("latin-1").lower()
    return key.lower()
