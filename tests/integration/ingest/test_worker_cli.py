"""`soar worker` as an operator runs it, configured by environment variables: it takes alerts in,
and on SIGTERM stops, commits the offsets of what it recorded, and exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import BinaryIO

import pytest

from tests.integration.ingest.kafka_tools import (
    committed_offsets,
    end_offsets,
    good,
    produce,
)
from tests.kafka_broker import KafkaBroker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = """\
id: note-every-alert
name: Note every alert
trigger: {match: 'true'}
steps:
  - {id: note, action: core.log, with: {message: "{{ alert.title }}"}}
"""


def runs_in(path: Path) -> int:
    if not path.exists():
        return 0
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    finally:
        db.close()


def scrape(log: Path) -> list[str]:
    """The worker's `/metrics`, at the address it logged (it chose a free port)."""
    found = re.search(r"metrics on (http://\S+/metrics)", log.read_text())
    assert found, log.read_text()
    for _ in range(50):  # the lag is reported with the next offset commit
        with urllib.request.urlopen(found.group(1), timeout=5) as response:  # noqa: S310
            lines = response.read().decode().splitlines()
        if any(line.startswith("soar_consumer_lag{") for line in lines):
            return lines
        time.sleep(0.1)
    return lines


async def start_worker(cwd: Path, env: dict[str, str], log: BinaryIO) -> asyncio.subprocess.Process:
    """`soar worker` in a subprocess, run in `cwd` with `env`, its output going to `log`."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from soar.cli.main import main; main()",
        "worker",
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=log,
    )


async def test_the_worker_takes_alerts_in_and_stops_cleanly_on_sigterm(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    name = uuid.uuid4().hex[:8]
    topic, group = f"alerts-{name}", f"soar-{name}"
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "note.playbook.yaml").write_text(PLAYBOOK)
    store = tmp_path / "soar.db"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SOAR_STORE": f"sqlite:///{store}",
        "SOAR_PLAYBOOKS": str(playbooks),
        "SOAR_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "SOAR_KAFKA__TOPICS": json.dumps([topic]),
        "SOAR_KAFKA__GROUP": group,
        "SOAR_KAFKA__DEAD_LETTER_TOPIC": f"dead-{name}",
        "SOAR_KAFKA__COMMIT_INTERVAL": "0.1",
        "SOAR_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "SOAR_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
        "SOAR_TELEMETRY__METRICS": "prometheus",
        "SOAR_TELEMETRY__METRICS_PORT": "0",
    }
    count = 20
    await produce(kafka_broker.bootstrap, topic, [(good(n), []) for n in range(count)])
    log = (tmp_path / "worker.log").open("wb")
    worker = await start_worker(tmp_path, env, log)
    try:
        async with asyncio.timeout(60):
            while runs_in(store) < count:
                assert worker.returncode is None, (tmp_path / "worker.log").read_text()
                await asyncio.sleep(0.2)
        scraped = await asyncio.to_thread(scrape, tmp_path / "worker.log")
        worker.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await worker.wait() == 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        log.close()
    output = (tmp_path / "worker.log").read_text()
    assert f"reading {topic} in group {group}" in output
    assert f"worker stopped: {count} message(s) taken in, 0 dead-lettered" in output
    assert runs_in(store) == count
    assert f'soar_alerts_consumed_total{{source="{topic}"}} {count}.0' in scraped
    lags = [line for line in scraped if line.startswith("soar_consumer_lag{")]
    assert lags, "no consumer lag reported"
    assert all(line.endswith(" 0.0") for line in lags), lags  # caught up
    assert await committed_offsets(kafka_broker.bootstrap, group, topic) == await end_offsets(
        kafka_broker.bootstrap, topic
    )


def unused_port() -> int:
    with socket.socket() as probe:  # nothing listens on it once closed
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize("missing", ["database", "broker"])
async def test_a_worker_waits_for_its_database_and_its_brokers_to_come_up(
    tmp_path: Path, missing: str
) -> None:
    """Started before PostgreSQL or Kafka (a reboot, a rolling restart), the worker waits and
    retries instead of exiting; SIGTERM still stops it cleanly."""
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "note.playbook.yaml").write_text(PLAYBOOK)
    store = (
        f"postgresql://soar:canary-db-secret@127.0.0.1:{unused_port()}/soar"
        if missing == "database"
        else f"sqlite:///{tmp_path / 'soar.db'}"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SOAR_STORE": store,
        "SOAR_PLAYBOOKS": str(playbooks),
        "SOAR_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{unused_port()}",
    }
    log_path = tmp_path / "worker.log"
    log = log_path.open("wb")
    worker = await start_worker(tmp_path, env, log)
    try:
        async with asyncio.timeout(30):
            while log_path.read_text().count("trying again") < 2:
                assert worker.returncode is None, log_path.read_text()
                await asyncio.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await worker.wait() == 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        log.close()
    output = log_path.read_text()
    waiting = "the store is not available" if missing == "database" else "kafka is not reachable"
    assert waiting in output
    assert "canary-db-secret" not in output
