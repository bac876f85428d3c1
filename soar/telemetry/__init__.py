"""Traces and metrics (OpenTelemetry), and trace context carried in Kafka headers."""

from soar.telemetry.metrics import NO_INSTRUMENTS, Instruments, Metrics, configure_metrics
from soar.telemetry.propagation import extract, inject
from soar.telemetry.tracing import NO_TRACING, TraceRef, Tracing, configure_tracing, new_trace

__all__ = [
    "NO_INSTRUMENTS",
    "NO_TRACING",
    "Instruments",
    "Metrics",
    "TraceRef",
    "Tracing",
    "configure_metrics",
    "configure_tracing",
    "extract",
    "inject",
    "new_trace",
]
