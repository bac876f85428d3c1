"""`soar bench ingest` on the suite's broker: it measures, and says what it measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from soar.cli.main import cli
from tests.kafka_broker import KafkaBroker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_the_ingest_benchmark_prints_its_figures(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "ingest",
            "--alerts",
            "200",
            "--latency-alerts",
            "20",
            "--bootstrap",
            kafka_broker.bootstrap,
            "--dir",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["scenario"] == "ingest"
    assert (figures["alerts"], figures["latency_alerts"], figures["backend"]) == (200, 20, "sqlite")
    assert figures["alerts_per_s"] > 0
    assert figures["raw_consume_per_s"] > figures["alerts_per_s"]
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert "end to end:" in result.stdout
