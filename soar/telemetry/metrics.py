"""Metrics (OpenTelemetry) in the Prometheus exposition format: runs by status, step durations
and outcomes per playbook, version and step, connector errors, approval waits, alerts.

The engine calls `Instruments` on its hot path; with metrics off that is `NO_INSTRUMENTS`,
whose methods do nothing. Each `Metrics` keeps its own registry, never the process-global one,
so that several engines (tests) do not see each other's figures.
"""

from __future__ import annotations

import threading
from typing import Final, Literal
from wsgiref.simple_server import WSGIServer

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from prometheus_client import CollectorRegistry, generate_latest, start_http_server

DURATION_BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    900.0, 1800.0, 3600.0,
)  # fmt: skip


class Instruments:
    """What the engine and ingestion report. This base records nothing (metrics off)."""

    def run_started(self, playbook: str, version: int) -> None:
        """A run was recorded."""

    def run_finished(self, playbook: str, version: int, status: str) -> None:
        """A run ended: completed, failed or aborted."""

    def step_finished(
        self, playbook: str, version: int, step: str, outcome: str, seconds: float
    ) -> None:
        """A step instance ended (succeeded, failed, skipped) or an attempt will be retried."""

    def connector_error(self, connector: str, action: str, retryable: bool) -> None:
        """An action attempt failed."""

    def approval_waited(self, playbook: str, step: str, outcome: str, seconds: float) -> None:
        """An approval was approved, denied or timed out after `seconds`."""

    def alert_consumed(self, source: str) -> None:
        """An alert was taken in."""

    def alert_dead_lettered(self, reason: str) -> None:
        """A message was dead-lettered."""


NO_INSTRUMENTS: Final = Instruments()


class OtelInstruments(Instruments):
    """Instruments recording to an OpenTelemetry meter provider."""

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("soar")
        self._runs_started = meter.create_counter("soar_runs_started", description="runs recorded")
        self._runs_finished = meter.create_counter(
            "soar_runs_finished", description="runs ended, by status"
        )
        self._steps = meter.create_counter(
            "soar_steps", description="step instances ended, by outcome"
        )
        self._step_seconds = meter.create_histogram(
            "soar_step_duration_seconds", unit="s", description="step duration, start to end"
        )
        self._connector_errors = meter.create_counter(
            "soar_connector_errors", description="failed action attempts"
        )
        self._approval_seconds = meter.create_histogram(
            "soar_approval_wait_seconds", unit="s", description="time an approval waited"
        )
        self._alerts = meter.create_counter("soar_alerts_consumed", description="alerts taken in")
        self._dead = meter.create_counter(
            "soar_alerts_dead_lettered", description="messages dead-lettered, by reason"
        )

    def run_started(self, playbook: str, version: int) -> None:
        self._runs_started.add(1, {"playbook": playbook, "version": str(version)})

    def run_finished(self, playbook: str, version: int, status: str) -> None:
        self._runs_finished.add(
            1, {"playbook": playbook, "version": str(version), "status": status}
        )

    def step_finished(
        self, playbook: str, version: int, step: str, outcome: str, seconds: float
    ) -> None:
        labels = {"playbook": playbook, "version": str(version), "step": step, "outcome": outcome}
        self._steps.add(1, labels)
        self._step_seconds.record(seconds, labels)

    def connector_error(self, connector: str, action: str, retryable: bool) -> None:
        self._connector_errors.add(
            1,
            {
                "connector": connector,
                "action": action,
                "retryable": "true" if retryable else "false",
            },
        )

    def approval_waited(self, playbook: str, step: str, outcome: str, seconds: float) -> None:
        self._approval_seconds.record(
            seconds, {"playbook": playbook, "step": step, "outcome": outcome}
        )

    def alert_consumed(self, source: str) -> None:
        self._alerts.add(1, {"source": source})

    def alert_dead_lettered(self, reason: str) -> None:
        self._dead.add(1, {"reason": reason})


class Metrics:
    """The instruments and their Prometheus exposition (what `/metrics` serves)."""

    def __init__(self, instruments: Instruments, registry: CollectorRegistry | None = None,
                 provider: MeterProvider | None = None) -> None:  # fmt: skip
        self.instruments = instruments
        self.registry = registry or CollectorRegistry()
        self._provider = provider
        self._server: tuple[WSGIServer, threading.Thread] | None = None

    def exposition(self) -> bytes:
        """This instance's metrics in the Prometheus text format."""
        return bytes(generate_latest(self.registry))

    def serve(self, host: str = "127.0.0.1", port: int = 9464) -> int:
        """Expose `/metrics` over HTTP (loopback unless told otherwise); returns the port."""
        if self._server is None:
            self._server = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server[0].server_port)

    def shutdown(self) -> None:
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self._server = None
        if self._provider is not None:
            self._provider.shutdown()


def configure_metrics(exporter: Literal["none", "prometheus"]) -> Metrics:
    """Metrics for the chosen exporter; `none` records nothing at all."""
    if exporter == "none":
        return Metrics(NO_INSTRUMENTS)
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(disable_target_info=True, registry=registry)
    provider = MeterProvider(
        metric_readers=[reader],
        views=[
            View(
                instrument_type=Histogram,
                aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS),
            )
        ],
    )
    return Metrics(OtelInstruments(provider), registry, provider)
