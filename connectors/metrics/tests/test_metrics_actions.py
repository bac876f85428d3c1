"""The `metrics` actions against a real Prometheus scraping a real node exporter, and against a
scripted server for the failures a healthy Prometheus does not produce."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from metrics_scripted import CANARY, Scripted
from pydantic import BaseModel, ValidationError
from soar_metrics import metrics
from soar_metrics.testing import NodeExporter, PrometheusServer

from soar.connectors import ActionContext, ActionFailed, Secrets


async def call(
    settings: dict[str, Any],
    action: str,
    secrets: dict[str, str] | None = None,
    **inputs: object,
) -> Any:
    spec = metrics.actions[action]
    ctx = ActionContext("run-1:step", settings=settings, secrets=Secrets(secrets or {}))
    output: BaseModel = await spec.fn(ctx, spec.input_model.model_validate(inputs))
    return output


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- against the real Prometheus --------------------------------------------------------------


async def test_an_instant_query_returns_the_node_exporters_samples(
    prometheus: PrometheusServer, node_exporter: NodeExporter
) -> None:
    result = await call(prometheus.settings, "query", query='node_cpu_seconds_total{mode="idle"}')
    assert result.result_type == "vector"
    assert result.samples
    for sample in result.samples:
        assert sample.labels["instance"] == node_exporter.target
        assert sample.labels["__name__"] == "node_cpu_seconds_total"
        assert sample.value is not None
        assert sample.value > 0
        assert abs(sample.time - datetime.now(UTC)) < timedelta(minutes=1)


async def test_an_instant_query_at_a_given_time_and_a_scalar(
    prometheus: PrometheusServer,
) -> None:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    result = await call(prometheus.settings, "query", query="1 + 1", time=at.isoformat())
    assert result.result_type == "scalar"
    assert [(s.labels, s.value, s.time) for s in result.samples] == [({}, 2.0, at)]


async def test_nan_and_infinity_are_null(prometheus: PrometheusServer) -> None:
    result = await call(prometheus.settings, "query", query="vector(0) / 0")
    assert [s.value for s in result.samples] == [None]


async def test_a_range_query_returns_series_with_points(
    prometheus: PrometheusServer, node_exporter: NodeExporter
) -> None:
    end = datetime.now(UTC)
    result = await call(
        prometheus.settings,
        "query_range",
        query="node_load1",
        start=(end - timedelta(seconds=4)).isoformat(),
        end=end.isoformat(),
        step="1s",
    )
    assert result.result_type == "matrix"
    [series] = result.series
    assert series.labels["instance"] == node_exporter.target
    assert 2 <= len(series.points) <= 5
    times = [p.time for p in series.points]
    assert times == sorted(times)
    assert all(p.value is not None and p.value >= 0 for p in series.points)


async def test_server_usage_reports_the_node_exporters_host(
    prometheus: PrometheusServer, node_exporter: NodeExporter
) -> None:
    report = await call(prometheus.settings, "server_usage", cpu_window="1m")
    [server] = report.servers
    assert server.instance == node_exporter.target
    assert server.host == "127.0.0.1"
    assert 0 <= server.cpu_percent <= 100
    assert 0 < server.memory_percent < 100
    root = [d for d in server.disks if d.mountpoint == "/"]
    assert root, server.disks
    assert 0 < root[0].used_percent < 100
    assert not any(d.fstype in ("tmpfs", "overlay") for d in server.disks)
    assert report.missing == []


async def test_server_usage_flags_a_breach_over_a_low_threshold(
    prometheus: PrometheusServer, node_exporter: NodeExporter
) -> None:
    report = await call(
        prometheus.settings,
        "server_usage",
        instances=["127.0.0.1"],  # a host: any port
        cpu_window="1m",
        memory_threshold=0,
        disk_threshold=0,
        cpu_threshold=100,
    )
    [server] = report.servers
    kinds = {(b.metric, b.mountpoint) for b in server.breaches}
    assert ("memory", None) in kinds
    assert ("disk", "/") in kinds
    assert "cpu" not in {b.metric for b in server.breaches}
    assert report.breaches == server.breaches
    memory = next(b for b in report.breaches if b.metric == "memory")
    assert (memory.instance, memory.value, memory.threshold) == (
        node_exporter.target,
        server.memory_percent,
        0,
    )


async def test_server_usage_lists_instances_without_data(
    prometheus: PrometheusServer, node_exporter: NodeExporter
) -> None:
    report = await call(
        prometheus.settings,
        "server_usage",
        instances=[node_exporter.target, "db-9.example.com:9100"],
        cpu_window="1m",
    )
    assert [s.instance for s in report.servers] == [node_exporter.target]
    assert report.missing == ["db-9.example.com:9100"]


@pytest.mark.parametrize(
    "instance",
    [
        pytest.param('x"} or vector(1) #', id="quote"),
        pytest.param("a b", id="space"),
        pytest.param("a{b}", id="brace"),
    ],
)
def test_an_instance_that_is_not_a_name_is_refused(instance: str) -> None:
    spec = metrics.actions["server_usage"]
    with pytest.raises(ValidationError, match="not a host name"):
        spec.input_model.model_validate({"instances": [instance]})


async def test_a_bad_query_is_final_with_prometheus_message(
    prometheus: PrometheusServer,
) -> None:
    with pytest.raises(ActionFailed) as failed:
        await call(prometheus.settings, "query", query="sum(node_load1")
    assert failed.value.retryable is False
    assert "bad_data" in str(failed.value)
    assert "parse error" in str(failed.value)


async def test_a_range_too_long_or_too_fine_is_refused_before_asking(
    scripted: Scripted,
) -> None:
    settings = {"url": scripted.url}
    end = datetime(2026, 1, 31, tzinfo=UTC)
    with pytest.raises(ActionFailed, match="longer than 32 days") as long:
        await call(
            settings,
            "query_range",
            query="up",
            start=(end - timedelta(days=400)).isoformat(),
            end=end.isoformat(),
            step="1d",
        )
    with pytest.raises(ActionFailed, match="over the limit of 11000") as fine:
        await call(
            settings,
            "query_range",
            query="up",
            start=(end - timedelta(days=1)).isoformat(),
            end=end.isoformat(),
            step="1s",
        )
    assert (long.value.retryable, fine.value.retryable) == (False, False)
    assert scripted.seen == []


def test_a_range_that_ends_before_it_starts_is_invalid() -> None:
    spec = metrics.actions["query_range"]
    with pytest.raises(ValidationError, match="end is before start"):
        spec.input_model.model_validate(
            {
                "query": "up",
                "start": "2026-01-02T00:00:00Z",
                "end": "2026-01-01T00:00:00Z",
                "step": "1m",
            }
        )


async def test_too_many_samples_is_final(prometheus: PrometheusServer) -> None:
    settings = {**prometheus.settings, "max_samples": 1}
    with pytest.raises(ActionFailed, match="more than 1 samples") as failed:
        await call(settings, "query", query="node_cpu_seconds_total")
    assert failed.value.retryable is False


# -- failures a healthy Prometheus does not give ----------------------------------------------


async def test_prometheus_down_is_retryable() -> None:
    port = closed_port()
    with pytest.raises(ActionFailed, match="unreachable") as failed:
        await call({"url": f"http://127.0.0.1:{port}"}, "query", query="up")
    assert failed.value.retryable is True


async def test_a_slow_answer_times_out_retryably(scripted: Scripted) -> None:
    scripted.delay = 2.0
    with pytest.raises(ActionFailed, match=r"did not answer within 0\.3s") as failed:
        await call({"url": scripted.url, "timeout": 0.3}, "query", query="up")
    assert failed.value.retryable is True


@pytest.mark.parametrize("status", [429, 503])
async def test_overload_is_retryable_after_what_the_server_says(
    scripted: Scripted, status: int
) -> None:
    scripted.status = status
    scripted.body = "busy"
    scripted.headers = {"Retry-After": "7"}
    with pytest.raises(ActionFailed, match=f"answered {status}") as failed:
        await call({"url": scripted.url}, "query", query="up")
    assert failed.value.retryable is True
    assert failed.value.retry_after == 7.0


async def test_an_execution_error_is_final(scripted: Scripted) -> None:
    scripted.status = 422
    scripted.body = (
        '{"status":"error","errorType":"execution","error":"many-to-many matching not allowed"}'
    )
    with pytest.raises(ActionFailed, match="execution: many-to-many") as failed:
        await call({"url": scripted.url}, "query", query="a / b")
    assert failed.value.retryable is False


async def test_refused_credentials_are_final(scripted: Scripted) -> None:
    scripted.status = 401
    with pytest.raises(ActionFailed, match="refused the credentials") as failed:
        await call({"url": scripted.url}, "query", {"bearer_token": CANARY}, query="up")
    assert failed.value.retryable is False


async def test_basic_auth_goes_with_the_username_setting(scripted: Scripted) -> None:
    await call({"url": scripted.url, "username": "soar"}, "query", {"password": "pw"}, query="up")
    assert scripted.seen == ["Basic c29hcjpwdw=="]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param({"url": "ftp://x"}, "must be Prometheus' http", id="scheme"),
        pytest.param({"url": "http://u:p@x"}, "must not carry credentials", id="userinfo"),
        pytest.param({"url": "http://x", "timeout": 0}, "'timeout' must be", id="timeout"),
    ],
)
async def test_bad_settings_are_final(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ActionFailed, match=message) as failed:
        await call(settings, "query", query="up")
    assert failed.value.retryable is False


def test_every_action_is_read_only_and_cached_briefly() -> None:
    for spec in metrics.actions.values():
        assert spec.cache_ttl is not None
        assert spec.cache_ttl <= timedelta(seconds=30)
        assert spec.compensate is None
