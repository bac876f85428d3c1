"""`/metrics` scraped over real HTTP on loopback, in the Prometheus text format."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from soar.telemetry.metrics import CONTENT_TYPE, OtelInstruments, configure_metrics
from tests.unit.telemetry.test_metrics import APPROVAL, ON, STEP, record_a_few


def test_metrics_are_scraped_over_http_on_loopback() -> None:
    metrics = configure_metrics(ON)
    try:
        assert isinstance(metrics.instruments, OtelInstruments)
        record_a_few(metrics.instruments)
        port = metrics.serve()
        assert port is not None
        assert metrics.serve() == port  # serving twice is the same server
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            content_type = response.headers["Content-Type"]
            lines = response.read().decode().splitlines()
    finally:
        metrics.shutdown()

    assert content_type == CONTENT_TYPE
    expected = [
        'soar_runs_started_total{playbook="contain",version="3"} 2.0',
        'soar_runs_finished_total{playbook="contain",status="completed",version="3"} 2.0',
        'soar_runs_finished_total{playbook="contain",status="failed",version="3"} 1.0',
        f"soar_steps_total{{{STEP}}} 1.0",
        'soar_steps_total{outcome="retryable",playbook="contain",step="isolate",version="3"} 1.0',
        f'soar_step_duration_seconds_bucket{{le="0.1",{STEP}}} 0.0',
        f'soar_step_duration_seconds_bucket{{le="0.25",{STEP}}} 1.0',
        f'soar_step_duration_seconds_bucket{{le="3600.0",{STEP}}} 1.0',
        f'soar_step_duration_seconds_bucket{{le="+Inf",{STEP}}} 1.0',
        f"soar_step_duration_seconds_count{{{STEP}}} 1.0",
        f"soar_step_duration_seconds_sum{{{STEP}}} 0.25",
        'soar_connector_errors_total{action="isolate",connector="edr",retryable="true"} 1.0',
        f'soar_approval_wait_seconds_bucket{{le="600.0",{APPROVAL}}} 0.0',
        f'soar_approval_wait_seconds_bucket{{le="900.0",{APPROVAL}}} 1.0',
        f"soar_approval_wait_seconds_count{{{APPROVAL}}} 1.0",
        'soar_alerts_consumed_total{source="edr"} 1.0',
        'soar_alerts_dead_lettered_total{reason="not_json"} 1.0',
        "# TYPE soar_step_duration_seconds histogram",
        "# TYPE soar_runs_finished_total counter",
    ]
    assert [line for line in expected if line not in lines] == []
    assert not any("otel_scope" in line or "target_info" in line for line in lines)
    with pytest.raises(urllib.error.URLError):  # stopped: nothing listens any more
        urllib.request.urlopen(url, timeout=5)
