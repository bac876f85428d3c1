"""Metrics (OpenTelemetry) in the Prometheus exposition format: runs by status, step durations
and outcomes per playbook, version and step, connector errors, approval waits, alerts.

The engine calls `Instruments` on its hot path; with metrics off that is `NO_INSTRUMENTS`,
whose methods do nothing. Each `Metrics` keeps its own registry, never the process-global one,
so that several engines (tests) do not see each other's figures.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Final, Literal
from wsgiref.simple_server import WSGIServer

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Histogram, MeterProvider, Observation
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import start_http_server as _start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field

from soar.errors import ConfigError

STEP_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
"""Step duration bounds in seconds: a local action (1 ms) to one that ran into an hour's
timeout."""

APPROVAL_BUCKETS: Final = (
    1.0, 10.0, 30.0, 60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
    86400.0, 172800.0, 604800.0,
)  # fmt: skip
"""Approval wait bounds in seconds: someone at the console (1 s) to a week."""

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of `Metrics.exposition()`, for the API's `/metrics`: what prometheus_client's
own server sends when the scraper asks for nothing else (its `CONTENT_TYPE_LATEST` is now 1.0.0,
which names the same text with UTF-8 metric names allowed)."""

# Label sets per counter, under the OpenTelemetry SDK's own limit (2000), past which it adds an
# `otel_metric_overflow` label to every series of the metric.
_MAX_SERIES: Final = 1000
_OVERFLOW: Final = "_overflow"


class MetricsSettings(BaseModel):
    """Whether metrics are kept, and where `Metrics.serve` listens (loopback by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exporter: Literal["none", "prometheus"] = "none"
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535, description="0: any free port")


class Instruments:
    """What the engine and ingestion report. This base records nothing (metrics off)."""

    __slots__ = ()

    def run_started(self, playbook: str, version: int) -> None:
        """A run was recorded."""

    def run_finished(self, playbook: str, version: int, status: str) -> None:
        """A run ended: completed, failed or aborted."""

    def step_finished(
        self, playbook: str, version: int, step: str, outcome: str, seconds: float
    ) -> None:
        """A step instance ended (succeeded, failed, skipped) or an attempt will be retried,
        `seconds` after it started."""

    def connector_error(self, connector: str, action: str, retryable: bool) -> None:
        """An action attempt failed."""

    def approval_waited(self, playbook: str, step: str, outcome: str, seconds: float) -> None:
        """An approval was approved, denied or timed out after `seconds`."""

    def alert_consumed(self, source: str) -> None:
        """An alert was taken in."""

    def alert_dead_lettered(self, reason: str) -> None:
        """A message was dead-lettered."""

    def consumer_lag(self, topic: str, partition: int, lag: int) -> None:
        """How many messages of a partition this worker has not read yet."""


NO_INSTRUMENTS: Final = Instruments()
"""Metrics off: every call returns at once."""


class OtelInstruments(Instruments):
    """Instruments recording to an OpenTelemetry meter provider.

    Prometheus names: `soar_runs_started_total`, `soar_runs_finished_total`, `soar_steps_total`
    (success rate: `outcome="succeeded"` over all), `soar_connector_errors_total`,
    `soar_alerts_consumed_total`, `soar_alerts_dead_lettered_total`, the gauge
    `soar_consumer_lag`, and the histograms `soar_step_duration_seconds` and
    `soar_approval_wait_seconds`.

    Counts are kept here and observed by the SDK when it collects (asynchronous counters):
    adding one is a dict update under a lock, where a synchronous SDK counter costs some 15 µs
    a call on a slow core. The histograms are the SDK's (as costly), with attribute dicts built
    once per label set.
    """

    __slots__ = (
        "_alerts",
        "_approval_attributes",
        "_approval_seconds",
        "_connector_errors",
        "_dead",
        "_lag",
        "_runs_finished",
        "_runs_started",
        "_step_attributes",
        "_step_seconds",
        "_steps",
    )

    def __init__(self, meter_provider: MeterProvider) -> None:
        meter = meter_provider.get_meter("soar")
        self._runs_started = _Counts(("playbook", "version"))
        self._runs_finished = _Counts(("playbook", "version", "status"))
        self._steps = _Counts(("playbook", "version", "step", "outcome"))
        self._connector_errors = _Counts(("connector", "action", "retryable"))
        self._alerts = _Counts(("source",))
        self._dead = _Counts(("reason",))
        for name, counts, description in (
            ("soar_runs_started", self._runs_started, "runs recorded"),
            ("soar_runs_finished", self._runs_finished, "runs ended, by status"),
            ("soar_steps", self._steps, "step instances ended, by outcome"),
            ("soar_connector_errors", self._connector_errors, "failed action attempts"),
            ("soar_alerts_consumed", self._alerts, "alerts taken in, by source"),
            ("soar_alerts_dead_lettered", self._dead, "messages dead-lettered, by reason"),
        ):
            meter.create_observable_counter(
                name, callbacks=[counts.observe], description=description
            )
        self._lag = _Levels(("topic", "partition"))
        meter.create_observable_gauge(
            "soar_consumer_lag",
            callbacks=[self._lag.observe],
            description="messages of a partition not yet read by this worker",
        )
        self._step_seconds = meter.create_histogram(
            "soar_step_duration_seconds",
            unit="s",
            description="step instance duration, start to end",
            explicit_bucket_boundaries_advisory=STEP_BUCKETS,
        )
        self._approval_seconds = meter.create_histogram(
            "soar_approval_wait_seconds",
            unit="s",
            description="time an approval waited for its decision",
            explicit_bucket_boundaries_advisory=APPROVAL_BUCKETS,
        )
        self._step_attributes = _AttributeSets(("playbook", "version", "step", "outcome"))
        self._approval_attributes = _AttributeSets(("playbook", "step", "outcome"))

    def run_started(self, playbook: str, version: int) -> None:
        self._runs_started.add((playbook, version))

    def run_finished(self, playbook: str, version: int, status: str) -> None:
        self._runs_finished.add((playbook, version, status))

    def step_finished(
        self, playbook: str, version: int, step: str, outcome: str, seconds: float
    ) -> None:
        key = (playbook, version, step, outcome)
        self._steps.add(key)
        _record(self._step_seconds, seconds, self._step_attributes.get(key))

    def connector_error(self, connector: str, action: str, retryable: bool) -> None:
        self._connector_errors.add((connector, action, retryable))

    def approval_waited(self, playbook: str, step: str, outcome: str, seconds: float) -> None:
        key = (playbook, step, outcome)
        _record(self._approval_seconds, seconds, self._approval_attributes.get(key))

    def alert_consumed(self, source: str) -> None:
        self._alerts.add((source,))

    def alert_dead_lettered(self, reason: str) -> None:
        self._dead.add((reason,))

    def consumer_lag(self, topic: str, partition: int, lag: int) -> None:
        self._lag.set((topic, partition), lag)


def _record(histogram: Histogram, seconds: float, attributes: dict[str, str]) -> None:
    histogram.record(max(seconds, 0.0), attributes)  # a clock stepped back is not a negative wait


Key = tuple[str | int | bool, ...]


def _label(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Counts:
    """Monotonic counts per label set, read by the SDK at collection. At most `_MAX_SERIES`
    label sets; the rest count under one set whose labels are all `_overflow`."""

    __slots__ = ("_counts", "_lock", "_names", "_overflow")

    def __init__(self, names: Sequence[str]) -> None:
        self._names = tuple(names)
        self._overflow: Key = (_OVERFLOW,) * len(names)
        self._counts: dict[Key, int] = {}
        self._lock = threading.Lock()

    def add(self, key: Key) -> None:
        with self._lock:
            counts = self._counts
            if key not in counts and len(counts) >= _MAX_SERIES:
                key = self._overflow
            counts[key] = counts.get(key, 0) + 1

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            counts = list(self._counts.items())
        return [
            Observation(count, {name: _label(v) for name, v in zip(self._names, key, strict=True)})
            for key, count in counts
        ]


class _Levels(_Counts):
    """Last values per label set (a gauge), with the same bounds as `_Counts`."""

    __slots__ = ()

    def set(self, key: Key, value: int) -> None:
        with self._lock:
            counts = self._counts
            if key not in counts and len(counts) >= _MAX_SERIES:
                key = self._overflow
            counts[key] = value


class _AttributeSets:
    """One attribute dict per label set, built on first use (at most `_MAX_SERIES` kept; past
    that each call builds its own, and past 2000 the SDK folds the excess into an overflow
    series)."""

    __slots__ = ("_names", "_sets")

    def __init__(self, names: Sequence[str]) -> None:
        self._names = tuple(names)
        self._sets: dict[Key, dict[str, str]] = {}

    def get(self, key: Key) -> dict[str, str]:
        found = self._sets.get(key)
        if found is None:
            found = {name: _label(v) for name, v in zip(self._names, key, strict=True)}
            if len(self._sets) < _MAX_SERIES:
                self._sets[key] = found
        return found


class _Serialized(Collector):
    """One collection at a time. The OpenTelemetry Prometheus collector queues what its reader
    collects and drains the queue while yielding, so two scrapes at once can get the figures
    twice and nothing."""

    def __init__(self, inner: CollectorRegistry) -> None:
        self._inner = inner
        self._lock = threading.Lock()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            return list(self._inner.collect())

    def describe(self) -> Iterable[Metric]:
        return []  # no duplicate-name check: this is its registry's only collector


class Metrics:
    """The instruments and their Prometheus exposition (what `/metrics` serves)."""

    def __init__(
        self,
        settings: MetricsSettings,
        instruments: Instruments = NO_INSTRUMENTS,
        provider: SdkMeterProvider | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.instruments = instruments
        self.registry = registry if registry is not None else CollectorRegistry()
        self.enabled = provider is not None
        self._provider = provider
        self._server: tuple[WSGIServer, threading.Thread] | None = None
        self._lock = threading.Lock()

    def exposition(self) -> bytes:
        """This instance's metrics in the Prometheus text format (`CONTENT_TYPE`); empty when
        metrics are off."""
        return bytes(generate_latest(self.registry))

    def serve(self) -> int | None:
        """Serve `/metrics` over HTTP on the settings' host and port, in a daemon thread, until
        `stop`; returns the port (the one chosen, for port 0), or None when metrics are off.

        Raises:
            OSError: the address cannot be bound.
        """
        if not self.enabled:
            return None
        with self._lock:
            if self._server is None:
                self._server = _start_http_server(
                    self.settings.port, addr=self.settings.host, registry=self.registry
                )
            return int(self._server[0].server_port)

    def stop(self) -> None:
        """Stop serving (waits for the server's loop, which looks every half second)."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            httpd, thread = server
            httpd.shutdown()
            httpd.server_close()
            thread.join()

    def shutdown(self) -> None:
        """Stop serving and release the meter provider. Idempotent."""
        self.stop()
        with self._lock:
            provider, self._provider = self._provider, None
        if provider is not None:
            provider.shutdown()


def configure_metrics(
    settings: MetricsSettings | Literal["none", "prometheus"] = "none",
) -> Metrics:
    """Metrics as `settings` say: `none` records nothing at all (`NO_INSTRUMENTS`); with
    `prometheus` an OpenTelemetry meter provider records into this `Metrics`' own registry.
    A plain exporter name is shorthand for `MetricsSettings(exporter=...)`.

    Raises:
        ConfigError: the installed opentelemetry-exporter-prometheus cannot write to a
            registry of our own (it needs a release whose reader takes `registry=`).
        pydantic.ValidationError: the shorthand names no known exporter.
    """
    if isinstance(settings, str):
        settings = MetricsSettings(exporter=settings)
    if settings.exporter == "none":
        return Metrics(settings)
    inner = CollectorRegistry()
    try:
        reader = PrometheusMetricReader(
            disable_target_info=True, scope_info_enabled=False, registry=inner
        )
    except TypeError as exc:
        raise ConfigError(
            "opentelemetry-exporter-prometheus is too old: its reader cannot take a registry"
        ) from exc
    provider = SdkMeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": "soar"}),
        shutdown_on_exit=False,
    )
    registry = CollectorRegistry()
    registry.register(_Serialized(inner))
    return Metrics(settings, OtelInstruments(provider), provider, registry)


__all__ = [
    "APPROVAL_BUCKETS",
    "CONTENT_TYPE",
    "NO_INSTRUMENTS",
    "STEP_BUCKETS",
    "Instruments",
    "Metrics",
    "MetricsSettings",
    "OtelInstruments",
    "configure_metrics",
]
