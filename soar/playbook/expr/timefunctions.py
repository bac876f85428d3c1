"""Time helpers: timestamps, durations, ages, time zones, business hours (zoneinfo, DST-correct)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from soar.errors import EvaluationError
from soar.playbook.durations import parse_duration
from soar.playbook.expr.arguments import expect_str
from soar.playbook.expr.text import format_time as _iso
from soar.playbook.expr.text import kind, to_utc

Clock = Callable[[], datetime]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLIS_FROM = 100_000_000_000  # epoch numbers this large are milliseconds (after 1973 in ms)
_NUMBER = re.compile(r"[+-]?\d{1,17}(\.\d{1,9})?")
_CLOCK_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_FORMAT = re.compile(r"%[aAbBdHIjmMpSyYzZ%]")


def now(clock: Clock) -> datetime:
    """The current time (UTC), the same for the whole evaluation."""
    return clock()


def timestamp(value: object) -> datetime:
    """A time from ISO 8601 text, epoch seconds or milliseconds, or a time (UTC assumed if no zone).

    Numbers of 100 000 000 000 or more are read as milliseconds.
    """
    if isinstance(value, datetime):
        return to_utc(value)
    if isinstance(value, str):
        text = expect_str(value, "time", limit=64).strip()
        if _NUMBER.fullmatch(text):
            return _from_epoch(float(text))
        try:
            return to_utc(datetime.fromisoformat(text))
        except ValueError:
            raise EvaluationError("not an ISO 8601 time such as 2024-05-01T12:00:00Z") from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _from_epoch(value)
    raise EvaluationError(f"a time must be text, a number or a time, not {kind(value)}")


def _from_epoch(number: float) -> datetime:
    seconds = number / 1000 if abs(number) >= _MILLIS_FROM else number
    try:
        return _EPOCH + timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        raise EvaluationError("epoch time out of range") from None


def duration(value: object) -> timedelta:
    """A duration from text such as `30s`, `15m`, `1h30m`, `2d`, or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        try:
            return parse_duration(expect_str(value, "duration", limit=64))
        except ValueError:
            raise EvaluationError(
                "not a duration such as 30s, 15m, 1h30m (units: ms, s, m, h, d, w)"
            ) from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return timedelta(seconds=value)
        except (OverflowError, ValueError):
            raise EvaluationError("duration out of range") from None
    raise EvaluationError(f"a duration must be text or a number, not {kind(value)}")


def age(clock: Clock, t: object) -> timedelta:
    """How long ago `t` was: `now() - timestamp(t)` (negative for a future time)."""
    return to_utc(clock()) - timestamp(t)


def to_zone(value: object) -> ZoneInfo:
    """An IANA time zone such as `Europe/Paris` or `UTC`."""
    if isinstance(value, ZoneInfo):
        return value
    name = expect_str(value, "time zone", limit=64).strip()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise EvaluationError("not a known time zone such as Europe/Paris or UTC") from None


def to_clock_time(value: object) -> time:
    """A wall-clock time `HH:MM`."""
    if isinstance(value, time):
        return value
    match = _CLOCK_TIME.fullmatch(expect_str(value, "clock time", limit=16).strip())
    if match is None or int(match.group(1)) > 24 or int(match.group(2)) > 59:
        raise EvaluationError("not a clock time such as 09:00")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if hours == 24:
        if minutes:
            raise EvaluationError("not a clock time such as 09:00")
        return time.max
    return time(hours, minutes)


def to_days(value: object) -> frozenset[int]:
    """Week days such as `mon-fri`, `mon,wed,fri` or `fri-mon` (0 is Monday)."""
    if isinstance(value, frozenset):
        return value
    days: set[int] = set()
    text = expect_str(value, "days", limit=64).strip().lower()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise EvaluationError("not a list of days such as mon-fri or mon,wed,fri")
        start = _DAYS.index(first)
        stop = _DAYS.index(last) if last else start
        days.update((start + step) % 7 for step in range((stop - start) % 7 + 1))
    return frozenset(days)


def business_hours(
    clock: Clock,
    t: object = None,
    tz: object = "UTC",
    start: object = "09:00",
    end: object = "17:00",
    days: object = "mon-fri",
) -> bool:
    """True when time `t` (default now) falls in working hours in time zone `tz`.

    Hours run from `start` to `end` on the listed `days`, read on the local wall clock, so
    daylight-saving changes are followed. An `end` before `start` is a night shift that ends
    the next morning.
    """
    local = in_timezone(to_utc(clock()) if t is None else t, tz)
    opens, closes = to_clock_time(start), to_clock_time(end)
    weekdays = to_days(days)
    wall = local.time().replace(tzinfo=None)
    weekday = local.weekday()
    if opens < closes:
        return weekday in weekdays and opens <= wall < closes
    return (weekday in weekdays and wall >= opens) or (
        (weekday - 1) % 7 in weekdays and wall < closes
    )


def in_timezone(t: object, tz: object) -> datetime:
    """Time `t` as local time in zone `tz` (same instant; templates print the offset)."""
    try:
        return timestamp(t).astimezone(to_zone(tz))
    except OverflowError:
        raise EvaluationError("time out of range") from None


def weekday(t: object, tz: object = "UTC") -> str:
    """The day of the week of `t` in zone `tz`: `mon`, `tue`, ... `sun`."""
    return _DAYS[in_timezone(t, tz).weekday()]


def hour(t: object, tz: object = "UTC") -> int:
    """The hour (0-23) of `t` on the wall clock of zone `tz`."""
    return in_timezone(t, tz).hour


def to_time_format(value: object) -> str:
    """A strftime format using only `%a %A %b %B %d %H %I %j %m %M %p %S %y %Y %z %Z %%`."""
    text = expect_str(value, "format", limit=200)
    if "%" in _FORMAT.sub("", text):
        raise EvaluationError(
            "format may only use %a %A %b %B %d %H %I %j %m %M %p %S %y %Y %z %Z %%"
        )
    return text


def format_time(t: object, fmt: object = None, tz: object = "UTC") -> str:
    """Time `t` as text: ISO 8601 by default, or with a strftime `fmt`, in zone `tz`."""
    local = in_timezone(t, tz)
    if fmt is None:
        return _iso(local)
    return local.strftime(to_time_format(fmt))


def on_call(clock: Clock, schedule: object, t: object = None) -> str:
    """Who is on call at time `t` (default now) on a rotation `schedule`.

    The schedule is a mapping: `people` (the rotation, in order), `start` (when the first
    shift begins; local time when it has no offset), `shift` (default `1w`), `timezone`
    (default UTC: shifts change on the local wall clock, so a Monday 09:00 hand-over stays at
    09:00 across daylight saving) and `overrides`, a list of `{from, to, who}` that win over
    the rotation.
    """
    if not isinstance(schedule, Mapping):
        raise EvaluationError(f"an on-call schedule is a mapping, not {kind(schedule)}")
    people = schedule.get("people")
    if not isinstance(people, list) or not people or not all(isinstance(p, str) for p in people):
        raise EvaluationError("an on-call schedule needs people: a non-empty list of names")
    moment = to_utc(clock()) if t is None else timestamp(t)
    for override in _overrides(schedule.get("overrides")):
        begins, ends, who = override
        if begins <= moment < ends:
            return who
    zone = to_zone(schedule.get("timezone", "UTC"))
    shift = duration(schedule.get("shift", "1w"))
    if "start" not in schedule:
        raise EvaluationError("an on-call schedule needs start: when the first shift begins")
    wall = moment.astimezone(zone).replace(tzinfo=None)
    anchor_wall = _wall_clock(schedule["start"], zone)
    index = (wall - anchor_wall) // shift
    return str(people[index % len(people)])


def _wall_clock(value: object, zone: ZoneInfo) -> datetime:
    """A time on the zone's wall clock; text without an offset is already wall-clock time."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is None:
            return parsed
    return timestamp(value).astimezone(zone).replace(tzinfo=None)


def _overrides(value: object) -> list[tuple[datetime, datetime, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise EvaluationError(f"on-call overrides are a list, not {kind(value)}")
    found = []
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("who"), str):
            raise EvaluationError("an on-call override is a mapping with from, to and who")
        found.append((timestamp(item.get("from")), timestamp(item.get("to")), str(item["who"])))
    return found
