"""Metrics in the Prometheus text format, one registry per `Metrics`, and the instruments that
do nothing when metrics are off (scraped over HTTP: tests/integration/telemetry)."""

from __future__ import annotations

import threading
import timeit

import pytest
from pydantic import ValidationError

from soar.telemetry.metrics import (
    NO_INSTRUMENTS,
    Instruments,
    MetricsSettings,
    configure_metrics,
)

STEP = 'outcome="succeeded",playbook="contain",step="isolate",version="3"'
APPROVAL = 'outcome="timed_out",playbook="contain",step="ask"'
ON = MetricsSettings(exporter="prometheus", port=0)


def record_a_few(instruments: Instruments) -> None:
    instruments.run_started("contain", 3)
    instruments.run_started("contain", 3)
    instruments.run_finished("contain", 3, "completed")
    instruments.run_finished("contain", 3, "completed")
    instruments.run_finished("contain", 3, "failed")
    instruments.step_finished("contain", 3, "isolate", "succeeded", 0.25)
    instruments.step_finished("contain", 3, "isolate", "retryable", 0.0005)
    instruments.connector_error("edr", "isolate", True)
    instruments.approval_waited("contain", "ask", "timed_out", 900.0)
    instruments.alert_consumed("edr")
    instruments.alert_dead_lettered("not_json")


def test_each_metrics_has_its_own_registry() -> None:
    first, second = configure_metrics("prometheus"), configure_metrics("prometheus")
    try:
        first.instruments.run_finished("contain", 1, "completed")
        second.instruments.run_finished("phish", 2, "failed")
        one, two = first.exposition().decode(), second.exposition().decode()
    finally:
        first.shutdown()
        second.shutdown()
    assert 'playbook="contain"' in one
    assert 'playbook="phish"' not in one
    assert 'playbook="phish"' in two
    assert 'playbook="contain"' not in two


def test_scrapes_at_the_same_time_each_get_every_figure_once() -> None:
    metrics = configure_metrics("prometheus")
    for index in range(20):
        metrics.instruments.step_finished("p", 1, f"s{index}", "succeeded", 0.01)
    counts: list[int] = []

    def scrape() -> None:
        for _ in range(5):
            counts.append(metrics.exposition().decode().count('step="s7"'))

    threads = [threading.Thread(target=scrape) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        metrics.shutdown()
    per_scrape = 3 + 21  # soar_steps_total, _count, _sum, and 20 buckets and +Inf
    assert counts == [per_scrape] * 20


def test_label_sets_past_the_limit_are_counted_together() -> None:
    metrics = configure_metrics("prometheus")
    try:
        for index in range(1003):
            metrics.instruments.alert_consumed(f"source-{index}")
        lines = metrics.exposition().decode().splitlines()
    finally:
        metrics.shutdown()
    consumed = [line for line in lines if line.startswith("soar_alerts_consumed_total{")]
    assert len(consumed) == 1001
    assert 'soar_alerts_consumed_total{source="_overflow"} 3.0' in consumed


def test_a_negative_duration_counts_as_zero() -> None:
    metrics = configure_metrics("prometheus")
    try:
        metrics.instruments.step_finished("p", 1, "s", "succeeded", -2.0)
        text = metrics.exposition().decode()
    finally:
        metrics.shutdown()
    labels = 'outcome="succeeded",playbook="p",step="s",version="1"'
    assert f'soar_step_duration_seconds_bucket{{le="0.001",{labels}}} 1.0' in text
    assert f"soar_step_duration_seconds_sum{{{labels}}} 0.0" in text


def test_consumer_lag_is_a_gauge_holding_the_last_value_per_partition() -> None:
    metrics = configure_metrics("prometheus")
    try:
        lag = metrics.instruments.consumer_lag
        lag("alerts", 0, 120)
        lag("alerts", 1, 3)
        lag("alerts", 0, 7)  # caught up since: the last value counts, not the sum
        lines = metrics.exposition().decode().splitlines()
    finally:
        metrics.shutdown()
    assert 'soar_consumer_lag{partition="0",topic="alerts"} 7.0' in lines
    assert 'soar_consumer_lag{partition="1",topic="alerts"} 3.0' in lines
    assert "# TYPE soar_consumer_lag gauge" in lines


def test_metrics_off_record_nothing_serve_nothing_and_cost_next_to_nothing() -> None:
    metrics = configure_metrics()
    assert metrics.instruments is NO_INSTRUMENTS
    assert not metrics.enabled
    record_a_few(metrics.instruments)
    assert metrics.exposition() == b""
    assert metrics.serve() is None
    metrics.shutdown()

    calls = 100_000
    step_finished = NO_INSTRUMENTS.step_finished
    seconds = min(
        timeit.repeat(
            lambda: step_finished("contain", 3, "isolate", "succeeded", 0.25),
            number=calls,
            repeat=3,
        )
    )
    print(f"NO_INSTRUMENTS.step_finished: {seconds / calls * 1e9:.0f} ns a call")  # not asserted


def test_shutdown_twice_is_harmless_and_stops_recording_into_the_registry() -> None:
    metrics = configure_metrics("prometheus")
    metrics.instruments.run_started("p", 1)
    metrics.shutdown()
    metrics.shutdown()
    assert b"soar_runs_started_total" not in metrics.exposition()


def test_settings_default_to_off_on_loopback_and_reject_nonsense() -> None:
    settings = MetricsSettings()
    assert (settings.exporter, settings.host, settings.port) == ("none", "127.0.0.1", 9464)
    with pytest.raises(ValidationError):
        MetricsSettings(port=65536)
    with pytest.raises(ValidationError):
        MetricsSettings(exporter="statsd")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        MetricsSettings(path="/metrics")  # type: ignore[call-arg]
