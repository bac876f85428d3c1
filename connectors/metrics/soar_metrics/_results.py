"""Prometheus' result shapes (vector, scalar, string, matrix) read into the actions' models, and the
PromQL text soar builds from names a playbook gives (instances, jobs): validated, never spliced."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Final

from pydantic import BaseModel, Field, JsonValue

from soar_metrics._prometheus import PrometheusError

#: what a host, an address or a `host:port` target may look like here; anything else is refused
#: rather than escaped, so no alert text reaches a query as PromQL
_TARGET: Final = re.compile(r"^[A-Za-z0-9_.:\-\[\]%]{1,255}$")
_LABEL_VALUE: Final = re.compile(r"^[A-Za-z0-9_.:\-/]{1,255}$")
_REGEX_SPECIAL: Final = re.compile(r"([.\[\]\\^$|?*+(){}])")


class Sample(BaseModel):
    """One value of one series at one time."""

    labels: dict[str, str] = Field(description="the series' labels, `__name__` included")
    value: float | None = Field(description="the value; null for NaN and ±Inf (JSON has neither)")
    time: datetime = Field(description="the sample's time (UTC)")


class Point(BaseModel):
    """One value of a series at one time."""

    time: datetime
    value: float | None = Field(description="null for NaN and ±Inf")


class Series(BaseModel):
    """One series of a range query: its labels and its points, oldest first."""

    labels: dict[str, str]
    points: list[Point]


def number(text: JsonValue) -> float | None:
    """A sample value (Prometheus sends numbers as strings), None for NaN, ±Inf and non-numbers."""
    if not isinstance(text, str | int | float) or isinstance(text, bool):
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def when(stamp: JsonValue) -> datetime:
    """A Prometheus timestamp (float seconds) as a UTC datetime.

    Raises:
        PrometheusError: not a number (not retryable).
    """
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        raise PrometheusError("Prometheus sent a sample without a time", retryable=False)
    return datetime.fromtimestamp(float(stamp), UTC)


def labels_of(item: JsonValue) -> dict[str, str]:
    if not isinstance(item, dict):
        return {}
    metric = item.get("metric")
    if not isinstance(metric, dict):
        return {}
    return {k: v for k, v in metric.items() if isinstance(v, str)}


def _pair(value: JsonValue) -> tuple[datetime, float | None]:
    if not isinstance(value, list) or len(value) != 2:
        raise PrometheusError("Prometheus sent a sample that is not [time, value]", retryable=False)
    return when(value[0]), number(value[1])


def samples_of(data: dict[str, JsonValue], *, limit: int) -> tuple[str, list[Sample]]:
    """The result type and the samples of an instant query's `data`; a matrix (a range selector
    such as `up[5m]`) gives every point of every series.

    Raises:
        PrometheusError: more than `limit` samples, or an unreadable result (not retryable).
    """
    kind = data.get("resultType")
    result = data.get("result")
    if not isinstance(kind, str):
        raise PrometheusError("Prometheus' answer has no resultType", retryable=False)
    samples: list[Sample] = []
    if kind in ("scalar", "string"):
        at, value = _pair(result)
        samples.append(Sample(labels={}, value=value, time=at))
    elif kind in ("vector", "matrix") and isinstance(result, list):
        for item in result:
            labels = labels_of(item)
            pairs = [item.get("value")] if kind == "vector" and isinstance(item, dict) else []
            if kind == "matrix" and isinstance(item, dict):
                values = item.get("values")
                pairs = values if isinstance(values, list) else []
            for pair in pairs:
                at, value = _pair(pair)
                samples.append(Sample(labels=labels, value=value, time=at))
                if len(samples) > limit:
                    raise too_many(limit)
    else:
        raise PrometheusError(f"Prometheus sent an unknown result type {kind!r}", retryable=False)
    return kind, samples


def series_of(data: dict[str, JsonValue], *, limit: int) -> list[Series]:
    """The series of a range query's `data` (a matrix).

    Raises:
        PrometheusError: more than `limit` points in all, or not a matrix (not retryable).
    """
    result = data.get("result")
    if data.get("resultType") != "matrix" or not isinstance(result, list):
        raise PrometheusError("Prometheus' range answer is not a matrix", retryable=False)
    series: list[Series] = []
    total = 0
    for item in result:
        values = item.get("values") if isinstance(item, dict) else None
        points = []
        for pair in values if isinstance(values, list) else []:
            at, value = _pair(pair)
            points.append(Point(time=at, value=value))
        total += len(points)
        if total > limit:
            raise too_many(limit)
        series.append(Series(labels=labels_of(item), points=points))
    return series


def too_many(limit: int) -> PrometheusError:
    return PrometheusError(
        f"the query returns more than {limit} samples (setting 'max_samples'): narrow it with "
        "label matchers or an aggregation, or use a longer step",
        retryable=False,
    )


def warnings_of(data: dict[str, JsonValue]) -> list[str]:
    found = data.get("warnings")
    return [w for w in found if isinstance(w, str)] if isinstance(found, list) else []


# -- PromQL built from names ----------------------------------------------------------------


def check_target(name: str) -> str:
    """`name` when it looks like a host, an address or `host:port`.

    Raises:
        ValueError: anything else (quotes, spaces, braces: it would not be a name).
    """
    if not _TARGET.match(name):
        raise ValueError(f"{name[:80]!r} is not a host name, an address or host:port")
    return name


def check_label_value(value: str) -> str:
    """`value` when it is a plain label value (a job name, an fstype).

    Raises:
        ValueError: anything else.
    """
    if not _LABEL_VALUE.match(value):
        raise ValueError(f"{value[:80]!r} is not a plain label value")
    return value


def alternatives(values: list[str], *, any_port: bool = False) -> str:
    """A RE2 alternation that matches exactly one of `values` (already checked as names), each
    optionally followed by `:port` when `any_port`, for a `=~` or `!~` matcher."""
    port = r"(:[0-9]+)?" if any_port else ""
    escaped = [_REGEX_SPECIAL.sub(r"\\\\\1", v) + port for v in values]
    return "|".join(escaped)


def host_of(instance: str) -> str:
    """The host of a `host:port` target (`[::1]:9100` → `::1`), or the instance as it is."""
    if instance.startswith("["):
        return instance[1:].split("]", 1)[0]
    head, sep, tail = instance.rpartition(":")
    if sep and tail.isdigit() and ":" not in head:
        return head
    return instance


_DURATION: Final = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)$")
_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(value: object) -> object:
    """A Prometheus-style duration (`15s`, `5m`, `1h`, `1.5h`) as a timedelta; anything else is
    left for pydantic (ISO 8601 `PT5M`, a number of seconds, a timedelta)."""
    if isinstance(value, str):
        found = _DURATION.match(value.strip())
        if found:
            return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])
    return value
