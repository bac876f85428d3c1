"""On-call schedules: weekly time windows in a timezone mapped to people, and who is on now.

A schedule is JSON (in `connectors.notify.directory.oncall.<name>` or passed inline):
`{"timezone": "Europe/Berlin", "shifts": [{"days": ["mon", ...], "start": "09:00",
"end": "17:00", "people": [...]}], "default": [...]}`. The first shift covering the moment wins;
a shift whose end is not after its start runs past midnight and belongs to its start day.
A person is an address string or `{"name", "email", "phone"}`.
"""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from soar.connectors import ActionFailed

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Person(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    email: str | None = None
    phone: str | None = None


Contact = str | Person


class Shift(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: list[str] = Field(default_factory=lambda: list(DAYS))
    start: time = time(0, 0)
    end: time = time(0, 0)
    people: list[Contact] = Field(min_length=1)

    @field_validator("days")
    @classmethod
    def _known_days(cls, days: list[str]) -> list[str]:
        lowered = [d.lower()[:3] for d in days]
        unknown = [d for d in lowered if d not in DAYS]
        if unknown:
            raise ValueError(f"unknown days {unknown}: use {', '.join(DAYS)}")
        return lowered

    def covers(self, local: datetime) -> bool:
        """Whether this weekly window holds the local wall-clock moment."""
        now = local.time().replace(tzinfo=None)
        today, yesterday = DAYS[local.weekday()], DAYS[(local.weekday() - 1) % 7]
        if self.start < self.end:
            return today in self.days and self.start <= now < self.end
        # wraps midnight (or is a whole day when start == end)
        return (today in self.days and now >= self.start) or (
            yesterday in self.days and now < self.end
        )


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str = "UTC"
    shifts: list[Shift] = Field(default_factory=list)
    default: list[Contact] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {name!r}") from None
        return name

    def on_call(self, moment: datetime) -> list[Contact]:
        """Who is on call at `moment` (UTC-aware): the first covering shift, else `default`."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        for shift in self.shifts:
            if shift.covers(local):
                return shift.people
        return self.default


def schedule_of(raw: JsonValue, label: str) -> Schedule:
    """Parse a schedule. Raises ActionFailed (not retryable) naming what is wrong."""
    try:
        return Schedule.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ActionFailed(f"on-call schedule {label}: {problems}", retryable=False) from None


def named_schedule(directory: dict[str, JsonValue], name: str) -> Schedule:
    """The schedule `directory.oncall.<name>`. Raises ActionFailed when there is none."""
    schedules = directory.get("oncall")
    if not isinstance(schedules, dict) or name not in schedules:
        raise ActionFailed(f"no on-call schedule {name!r} in the directory", retryable=False)
    return schedule_of(schedules[name], repr(name))


def named_group(directory: dict[str, JsonValue], name: str) -> list[Contact]:
    """The people listed as `directory.<name>` (e.g. `executives`)."""
    group = directory.get(name)
    if not isinstance(group, list):
        raise ActionFailed(f"no group {name!r} in the directory", retryable=False)
    try:
        return [_contact(entry) for entry in group]
    except ValidationError:
        raise ActionFailed(
            f"group {name!r} in the directory has bad entries", retryable=False
        ) from None


def _contact(entry: JsonValue) -> Contact:
    return entry if isinstance(entry, str) else Person.model_validate(entry)


def address_of(contact: Contact, kind: str) -> str | None:
    """The contact's address for a channel (`email` or `phone`): a bare string is taken as is."""
    if isinstance(contact, str):
        return contact
    value = contact.email if kind == "email" else contact.phone
    return value
