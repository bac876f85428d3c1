"""One rule for every alert time: aware UTC, to the millisecond, whatever the producer sent.

Epoch numbers are read by magnitude, because producers that promise milliseconds send seconds
(and the reverse): below 1e11 is seconds (1e11 s is the year 5138, 1e11 ms is March 1973),
below 1e14 milliseconds, below 1e17 microseconds, below 1e20 nanoseconds. Strings of digits
(with an optional fraction) are epochs by the same rule; other strings are ISO 8601, and an ISO
time without an offset is taken as UTC. Finer than a millisecond is truncated.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from soar.ingest.mappings.document import invalid

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_UNITS = ((Decimal("1e11"), 1000), (Decimal("1e14"), 1), (Decimal("1e17"), Decimal("0.001")))
_NANOS = (Decimal("1e20"), Decimal("0.000001"))


def parse_time(value: object, field: str) -> datetime:
    """Read one alert time.

    Raises:
        AlertRejected: INVALID_FIELD naming `field` for wrong types, negative epochs, impossible
            dates, and times outside years 1970-9999.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise invalid(field, "expected an epoch number or an ISO 8601 string")
    if isinstance(value, str):
        text = value.strip()
        if _looks_numeric(text):
            return _from_epoch(_decimal(text, field), field)
        return _from_iso(text, field)
    return _from_epoch(_decimal(repr(value), field), field)


def _looks_numeric(text: str) -> bool:
    head, _, tail = text.partition(".")
    return head.isdigit() and (tail == "" or tail.isdigit())


def _decimal(text: str, field: str) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise invalid(field, f"{text[:40]!r} is not a number") from None
    if not number.is_finite():
        raise invalid(field, "time must be finite")
    return number


def _from_epoch(number: Decimal, field: str) -> datetime:
    if number < 0:
        raise invalid(field, "an epoch time cannot be negative")
    for bound, to_ms in (*_UNITS, _NANOS):
        if number < bound:
            millis = int(number * to_ms)  # int() truncates toward zero: finer digits dropped
            break
    else:
        raise invalid(field, "epoch time is out of range")
    if millis > _MAX_MS:
        raise invalid(field, "epoch time is out of range")
    return _EPOCH + timedelta(milliseconds=millis)


def _from_iso(text: str, field: str) -> datetime:
    if not text or len(text) > 64:
        raise invalid(field, f"{text[:40]!r} is not an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(field, f"{text[:40]!r} is not a valid ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:
        raise invalid(field, f"{text[:40]!r} is out of range") from None
    if parsed < _EPOCH:
        raise invalid(field, f"{text[:40]!r} is before 1970")
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)
