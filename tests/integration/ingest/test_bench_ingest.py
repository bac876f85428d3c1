"""`soar bench ingest` on the suite's broker: it measures, and says what it measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from soar.cli.main import cli
from tests.kafka_broker import KafkaBroker


def bench_ingest(*args: str) -> tuple[int, str, dict[str, Any] | None]:
    result = CliRunner().invoke(cli, ["bench", "ingest", *args])
    lines = result.stdout.splitlines()
    figures = json.loads(lines[-1]) if result.exit_code == 0 and lines else None
    return result.exit_code, result.output, figures


@pytest.mark.kafka
@pytest.mark.slow
def test_the_ingest_benchmark_prints_its_figures(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    code, output, figures = bench_ingest(
        "--alerts", "200", "--latency-alerts", "20", "--bootstrap", kafka_broker.bootstrap,
        "--dir", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 0, output
    assert figures is not None
    assert figures["scenario"] == "ingest"
    assert (figures["alerts"], figures["latency_alerts"], figures["backend"]) == (200, 20, "sqlite")
    assert figures["workers"] == 1
    assert figures["alerts_per_s"] > 0
    assert figures["raw_consume_per_s"] > figures["alerts_per_s"]
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert figures["runs_recorded"] == figures["alerts_recorded"] == figures["runs_expected"]
    assert "end to end:" in output


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.slow
def test_two_worker_processes_share_a_topic_and_a_postgres_store_and_run_each_alert_once(
    kafka_broker: KafkaBroker, postgres_dsn: str, tmp_path: Path
) -> None:
    code, output, figures = bench_ingest(
        "--backend", "postgres", "--dsn", postgres_dsn, "--workers", "2", "--compare",
        "--alerts", "300", "--latency-alerts", "20", "--bootstrap", kafka_broker.bootstrap,
        "--dir", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 0, output
    assert figures is not None
    assert (figures["backend"], figures["workers"], figures["partitions"]) == ("postgres", 2, 4)
    one = figures["one_worker"]
    assert (one["workers"], one["partitions"]) == (1, 4)
    for measured, workers in ((figures, 2), (one, 1)):
        # 50 warm-up alerts per worker, the backlog, the latency alerts: one run each, no more
        expected = workers * 50 + 300 + 20
        assert measured["runs_expected"] == expected
        assert measured["runs_recorded"] == measured["alerts_recorded"] == expected
        assert measured["runs_completed"] == expected
        assert len(measured["per_worker"]) == workers
        assert sum(measured["per_worker"]) == 300
        assert measured["alerts_per_s"] > 0
        assert measured["raw_consume_per_s"] > 0
        assert 0 < measured["p50_ms"] <= measured["p99_ms"]
        assert measured["latency_alerts"] == 20
    assert figures["scaling"] == pytest.approx(figures["alerts_per_s"] / one["alerts_per_s"], 0.01)
    assert figures["postgres"]["cluster"] == "dsn"
    assert {"fsync", "synchronous_commit"} <= figures["postgres"].keys()  # what was measured on
    assert "runs per worker:" in output
    assert "scaling: 2 workers take in" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--workers", "2"], "SQLite has one writer", id="sqlite-two-workers"),
        pytest.param(
            ["--backend", "memory", "--workers", "2"], "one process's own", id="memory-two-workers"
        ),
        pytest.param(["--backend", "postgres", "--compare"], "give N > 1", id="compare-one-worker"),
        pytest.param(
            ["--dsn", "postgresql://x/y"], "--backend postgres", id="dsn-without-postgres"
        ),
    ],
)
def test_what_the_ingest_benchmark_cannot_measure_is_refused_before_it_starts(
    args: list[str], message: str
) -> None:
    code, output, _ = bench_ingest(*args)
    assert code == 2
    assert message in output
