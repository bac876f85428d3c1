"""SIGKILL a Kafka worker at random moments while alerts flow, restart it, repeatedly: in the end
every alert has exactly one run and it finished, every effect happened once (counted by
idempotency key), the dead-letter topic holds exactly the bad messages, and the audit log
verifies offline."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.crash.kafka_worker import EFFECT_STEPS
from tests.crash.test_crash import verify_exported
from tests.integration.ingest.kafka_tools import TIME, produce, read_all
from tests.kafka_broker import KafkaBroker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

HERE = Path(__file__).parent
ALERTS = 600
BAD = [b"not json", b'{"title": "no severity", "time": "' + TIME.encode() + b'"}', b"[]"]


def alert(n: int) -> bytes:
    return json.dumps(
        {"title": f"alert {n}", "severity": "high", "id": f"a{n:04d}", "time": TIME}
    ).encode()


def completed(store: Path) -> int:
    if not store.exists():
        return 0
    db = sqlite3.connect(store, timeout=30)
    try:
        return int(db.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def start(tmp_path: Path, broker: KafkaBroker, names: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    with (tmp_path / "worker.log").open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - our own worker script
            [
                sys.executable,
                str(HERE / "kafka_worker.py"),
                str(tmp_path / "soar.db"),
                str(tmp_path / "effects.db"),
                broker.bootstrap,
                names["topic"],
                names["group"],
                names["dead"],
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def test_killed_workers_lose_no_alert_and_repeat_no_effect(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    rng = random.Random(int(os.environ.get("SOAR_CRASH_SEED", "11")))
    tag = uuid.uuid4().hex[:8]
    names = {"topic": f"crash-{tag}", "group": f"crash-{tag}", "dead": f"crash-dead-{tag}"}
    messages = [(alert(n), []) for n in range(ALERTS)]
    for index, bad in enumerate(BAD):
        messages.insert(150 * (index + 1), (bad, []))
    await produce(kafka_broker.bootstrap, names["topic"], messages)
    store = tmp_path / "soar.db"

    kills = 0
    progress: list[int] = []  # runs finished at each kill
    while kills < 4:
        worker = start(tmp_path, kafka_broker, names)
        # once it is taking alerts in (joining the group takes seconds), at a random moment
        before = completed(store)
        for _ in range(1200):  # at most a minute
            if completed(store) != before:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(rng.uniform(0.0, 0.6))
        if worker.poll() is not None:
            pytest.fail(
                f"worker exited {worker.returncode}: {(tmp_path / 'worker.log').read_text()}"
            )
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        progress.append(completed(store))
        kills += 1
        if completed(store) >= ALERTS:
            break
    log = tmp_path / "worker.log"
    starts = log.read_text().count("worker started")
    worker = start(tmp_path, kafka_broker, names)
    try:
        deadline = time.monotonic() + 120
        # up (its SIGTERM handler set), and every alert's run finished
        while (
            log.read_text().count("worker started") == starts or completed(store) < ALERTS
        ) and time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            await asyncio.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    print("runs finished at each kill:", progress)
    assert any(0 < done < ALERTS for done in progress), f"no kill landed mid-stream: {progress}"

    db = sqlite3.connect(store)
    runs = db.execute("SELECT id, status, json_extract(alert, '$.id') FROM runs").fetchall()
    # exactly one run per alert, each finished
    assert sorted(a for _, _, a in runs) == [f"a{n:04d}" for n in range(ALERTS)]
    assert {status for _, status, _ in runs} == {"completed"}
    # every effect once: one row per idempotency key, none outside the expected ones
    effects = sqlite3.connect(tmp_path / "effects.db")
    done = {key for (key,) in effects.execute("SELECT key FROM effects")}
    assert done == {f"{run_id}:{step}" for run_id, _, _ in runs for step in EFFECT_STEPS}
    # the dead-letter topic holds exactly the bad messages (each at least once, none other)
    letters = await read_all(kafka_broker.bootstrap, names["dead"], len(BAD))
    assert {letter.value for letter in letters} == set(BAD)
    # and the audit log, with checkpoints signed between kills, verifies offline
    await asyncio.to_thread(verify_exported, tmp_path)
