"""Monitoring data from Prometheus' HTTP API: instant and range queries, and the CPU, memory and
disk use of node exporter targets against thresholds. Read-only. See docs/connectors/metrics.md."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Final, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from soar.connectors import ActionContext, ActionFailed, Connector, SecretMissing
from soar.connectors.settings import positive_number
from soar_metrics._prometheus import Prometheus, PrometheusError
from soar_metrics._results import (
    Point,
    Sample,
    Series,
    duration,
    samples_of,
    series_of,
    warnings_of,
)
from soar_metrics._usage import (
    Breach,
    DiskUsage,
    ServerUsage,
    UsageCheck,
    UsageReport,
    check_usage,
)

__all__ = [
    "Breach",
    "DiskUsage",
    "InstantQuery",
    "Point",
    "Prometheus",
    "PrometheusError",
    "QueryResult",
    "RangeQuery",
    "RangeResult",
    "Sample",
    "Series",
    "ServerUsage",
    "UsageCheck",
    "UsageReport",
    "metrics",
]

metrics = Connector(
    "metrics",
    doc="Prometheus HTTP API: instant and range queries, server CPU/memory/disk use.",
)

SECRETS: Final = ("bearer_token", "password")
DEFAULT_MAX_SAMPLES: Final = 10_000
DEFAULT_MAX_POINTS: Final = 11_000  # per series, Prometheus' own limit for a range query
DEFAULT_MAX_RANGE_DAYS: Final = 32
_MARGIN: Final = 0.5  # seconds kept from the budget so the action reports its own timeout

QUERY_TIMEOUT: Final = timedelta(seconds=30)
RANGE_TIMEOUT: Final = timedelta(seconds=60)
USAGE_TIMEOUT: Final = timedelta(seconds=60)
_QUERY = Field(min_length=1, max_length=20_000, description="a PromQL expression")


class InstantQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = _QUERY
    time: datetime | None = Field(
        default=None, description="evaluation time (with a zone); default: Prometheus' now"
    )

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("time must carry a time zone")
        return value


class QueryResult(BaseModel):
    result_type: str = Field(description="vector, scalar, string or matrix (a range selector)")
    samples: list[Sample] = Field(description="every sample; a matrix gives every point")
    warnings: list[str] = Field(description="Prometheus' warnings about the query, if any")


class RangeQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = _QUERY
    start: datetime = Field(description="with a time zone")
    end: datetime = Field(description="with a time zone; after start")
    step: timedelta = Field(
        description="resolution: `15s`, `5m`, `1h`, ISO 8601 (`PT1M`) or seconds"
    )

    @field_validator("step", mode="before")
    @classmethod
    def _step(cls, value: object) -> object:
        return duration(value)

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a time zone")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.step <= timedelta(0):
            raise ValueError("step must be positive")
        if self.end < self.start:
            raise ValueError("end is before start")
        return self


class RangeResult(BaseModel):
    result_type: str = Field(description="always matrix")
    series: list[Series]
    warnings: list[str]


def _secret(ctx: ActionContext, name: str) -> str | None:
    """An optional secret: None when it is not set."""
    try:
        return ctx.secrets[name]
    except SecretMissing:
        return None


def _limit(ctx: ActionContext, name: str, default: float) -> float:
    return positive_number(ctx.settings, name, default)


@asynccontextmanager
async def _prometheus(ctx: ActionContext, budget: timedelta) -> AsyncIterator[Prometheus]:
    async with Prometheus(
        ctx.settings,
        bearer_token=_secret(ctx, "bearer_token"),
        password=_secret(ctx, "password"),
        budget=ctx.time_left(budget.total_seconds()) - _MARGIN,
    ) as api:
        yield api


@metrics.action(secrets=SECRETS, timeout=QUERY_TIMEOUT, cache_ttl=timedelta(seconds=15))
async def query(ctx: ActionContext, params: InstantQuery) -> QueryResult:
    """Evaluate a PromQL expression at one time: `GET /api/v1/query`.

    Read-only. A bad query is a final failure with Prometheus' own message; Prometheus
    unreachable, slow, overloaded (5xx) or rate limiting (429) is retryable."""
    limit = int(_limit(ctx, "max_samples", DEFAULT_MAX_SAMPLES))
    at = None if params.time is None else params.time.timestamp()
    ctx.logger.debug("instant query %.200s", params.query)
    async with _prometheus(ctx, QUERY_TIMEOUT) as api:
        data = await api.query(params.query, at=at)
        kind, samples = samples_of(data, limit=limit)
    return QueryResult(result_type=kind, samples=samples, warnings=warnings_of(data))


@metrics.action(secrets=SECRETS, timeout=RANGE_TIMEOUT, cache_ttl=timedelta(seconds=30))
async def query_range(ctx: ActionContext, params: RangeQuery) -> RangeResult:
    """Evaluate a PromQL expression over a time range: `GET /api/v1/query_range`.

    Refused before asking (final): a range longer than `max_range_days`, or more than
    `max_points` points per series. More than `max_samples` points in all is final too."""
    max_points = int(_limit(ctx, "max_points", DEFAULT_MAX_POINTS))
    max_days = _limit(ctx, "max_range_days", DEFAULT_MAX_RANGE_DAYS)
    limit = int(_limit(ctx, "max_samples", DEFAULT_MAX_SAMPLES * 5))
    span = params.end - params.start
    if span > timedelta(days=max_days):
        raise ActionFailed(
            f"a range of {span} is longer than {max_days:g} days (setting 'max_range_days')"
        )
    points = int(span / params.step) + 1
    if points > max_points:
        raise ActionFailed(
            f"{points} points per series (range {span}, step {params.step}) is over the limit "
            f"of {max_points} (setting 'max_points'): use a longer step"
        )
    ctx.logger.debug("range query %.200s (%d points per series)", params.query, points)
    async with _prometheus(ctx, RANGE_TIMEOUT) as api:
        data = await api.query_range(
            params.query,
            start=params.start.timestamp(),
            end=params.end.timestamp(),
            step=params.step.total_seconds(),
        )
        series = series_of(data, limit=limit)
    return RangeResult(result_type="matrix", series=series, warnings=warnings_of(data))


@metrics.action(secrets=SECRETS, timeout=USAGE_TIMEOUT, cache_ttl=timedelta(seconds=30))
async def server_usage(ctx: ActionContext, params: UsageCheck) -> UsageReport:
    """CPU %, memory % and disk % per mount of node exporter targets, each compared with its
    threshold; a figure above its threshold is a breach.

    CPU is `1 - avg(rate(node_cpu_seconds_total{mode="idle"}[cpu_window]))`, memory
    `1 - MemAvailable / MemTotal`, disk `1 - avail / size` per mount (tmpfs, overlay and the
    other `exclude_fstypes` left out). Instances asked for without data are listed in `missing`."""
    ctx.logger.debug("server usage of %d instances", len(params.instances))
    async with _prometheus(ctx, USAGE_TIMEOUT) as api:
        return await check_usage(api, params, now=ctx.clock())
