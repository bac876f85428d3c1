"""Durations as playbooks write them: `30s`, `15m`, `1h30m`, `2d`, `500ms`."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = timedelta(days=3660)


def parse_duration(text: str) -> timedelta:
    """Read a duration made of number+unit parts (`ms s m h d w`), e.g. `1h30m`.

    Raises:
        ValueError: empty, an unknown unit, a bare number, zero, or more than ten years.
    """
    compact = text.strip().replace(" ", "")
    if not compact:
        raise ValueError("empty duration")
    position = 0
    seconds = 0.0
    for match in _PART.finditer(compact):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(compact) or position == 0:
        raise ValueError(
            f"bad duration {text!r}: write number+unit parts such as 30s, 15m, 1h30m "
            "(units: ms, s, m, h, d, w)"
        )
    result = timedelta(seconds=seconds)
    if result <= timedelta(0):
        raise ValueError(f"bad duration {text!r}: must be more than zero")
    if result > MAX_DURATION:
        raise ValueError(f"bad duration {text!r}: more than ten years")
    return result


def format_duration(value: timedelta) -> str:
    """The shortest text `parse_duration` reads back as the same value."""
    millis = round(value.total_seconds() * 1000)
    parts: list[str] = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis or not parts:
        parts.append(f"{millis}ms")
    return "".join(parts)
